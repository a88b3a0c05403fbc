"""Request timings against a local server (127.0.0.1 only; a bounded number of requests).

    python benchmarks/bench_server.py --checkpoint DIR [--file multimodal_df/examples/fake_face.mp4] [--requests 10]

Starts `python -m multimodal_df.serve` on a free loopback port, then times POST /v1/predict:
sequential requests without and with explanations, and a burst of concurrent ones (which queue
for the single model). Writes benchmarks/results/server_cpu.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def post(url: str, path: Path, explain: bool) -> tuple[int, float]:
    boundary = "mmdfbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{url}/v1/predict?explain={'true' if explain else 'false'}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()
        return r.status, time.perf_counter() - t


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median_s": round(statistics.median(xs), 3),
        "p95_s": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 3),
        "n": len(xs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--file", default=str(ROOT / "multimodal_df" / "examples" / "fake_face.mp4"))
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--concurrent", type=int, default=4)
    args = p.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multimodal_df.serve",
            "--port",
            str(port),
            "--checkpoint",
            args.checkpoint,
            "--device",
            "cpu",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)
        startup = time.perf_counter() - t0
        f = Path(args.file)
        post(url, f, False)  # warm-up
        plain = [post(url, f, False)[1] for _ in range(args.requests)]
        explained = [post(url, f, True)[1] for _ in range(args.requests)]
        t = time.perf_counter()
        with cf.ThreadPoolExecutor(args.concurrent) as ex:
            burst = [r[1] for r in ex.map(lambda _: post(url, f, False), range(args.concurrent))]
        wall = time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = {
        "file": f.name,
        "file_mb": round(f.stat().st_size / 1e6, 3),
        "checkpoint": args.checkpoint,
        "server_start_s": round(startup, 2),
        "sequential": summary(plain),
        "sequential_explain": summary(explained),
        "concurrent": {**summary(burst), "clients": args.concurrent, "wall_s": round(wall, 3)},
    }
    out = ROOT / "benchmarks" / "results" / "server_cpu.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
