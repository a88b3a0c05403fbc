"""The REST API under load: many clients uploading at once, the server's resident memory sampled throughout.

    python benchmarks/bench_server_load.py [--checkpoint DIR] [--clients 16] [--uploads 10] [--workers 1]

Starts ``python -m multimodal_df.serve`` on a free loopback port, then ``--clients`` threads each POST the file
``--uploads`` times in a row (no pause, no retry) while another thread polls ``/health``. The resident memory of
the server (with its worker processes, when ``--workers`` > 1) is read from ``/proc`` every 50 ms. Requests the
model cannot take are turned away (503) rather than queued without bound, so the memory bound holds whatever the
load. Writes ``benchmarks/results/server_load.json`` (or ``--out``) and exits 1 when the peak passes ``--bound-mb``
or any answer was not the JSON record.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Answer:
    """One request: HTTP status, seconds until the whole answer arrived, and whether it was the JSON record."""

    status: int
    seconds: float
    record: bool


@dataclass
class MemoryTrace:
    """Resident memory of a process tree (MB), sampled until ``stop`` is set."""

    pid: int
    samples: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(tree_rss_mb(self.pid))
            time.sleep(0.05)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MB (from /proc; 0 for a process that is gone)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = "mmdfload"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str, key: str | None) -> Answer:
    headers = {"Content-Type": content_type}
    if key:
        headers["X-API-Key"] = key
    req = urllib.request.Request(f"{url}/v1/predict", data=body, headers=headers)
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
    except OSError:
        return Answer(0, time.perf_counter() - t, False)
    try:
        record = ctype.startswith("application/json") and {"path", "p_fake", "label", "error"} <= set(json.loads(raw))
    except ValueError:
        record = False
    return Answer(status, time.perf_counter() - t, record)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "multimodal_df.serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    cmd += ["--workers", str(args.workers), "--max-waiting", str(args.max_waiting)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.api_key:
        env["MULTIMODAL_DF_API_KEY"] = args.api_key
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}") from None  # type: ignore[union-attr]
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not answer /health within 180 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="detector directory (default: the server's default, the shipped model)")
    p.add_argument("--file", default=str(ROOT / "multimodal_df" / "examples" / "fake_face.mp4"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--uploads", type=int, default=10, help="uploads per client, one after another")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-waiting", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    p.add_argument("--api-key", help="start the server with this key and send it")
    p.add_argument("--bound-mb", type=float, default=2048.0, help="the resident memory the server must stay under")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "server_load.json"))
    args = p.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args, port)
    body, ctype = multipart(Path(args.file))
    try:
        post(url, body, ctype, args.api_key)  # warm-up: first-call costs are not load
        idle = tree_rss_mb(proc.pid)
        trace = MemoryTrace(proc.pid)
        threading.Thread(target=trace.run, daemon=True).start()
        health: list[int] = []
        done = threading.Event()

        def poll_health() -> None:
            while not done.is_set():
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
                        health.append(r.status)
                except OSError:
                    health.append(0)
                time.sleep(0.05)

        threading.Thread(target=poll_health, daemon=True).start()

        def client(_: int) -> list[Answer]:
            return [post(url, body, ctype, args.api_key) for _ in range(args.uploads)]

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(args.clients) as pool:
            answers = [a for batch in pool.map(client, range(args.clients)) for a in batch]
        wall = time.perf_counter() - t0
        done.set()
        time.sleep(0.5)
        trace.stop.set()
        after = tree_rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    ok = sorted(a.seconds for a in answers if a.status == 200)
    statuses = Counter(a.status for a in answers)
    peak = max(trace.samples, default=idle)
    result = {
        "command": "python benchmarks/bench_server_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": args.checkpoint or "(shipped)",
        "file": Path(args.file).name,
        "clients": args.clients,
        "uploads_per_client": args.uploads,
        "workers": args.workers,
        "max_waiting": args.max_waiting,
        "cpu_count": os.cpu_count(),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "all_json_records": all(a.record for a in answers),
        "ok_latency_s": {
            "median": round(statistics.median(ok), 2) if ok else None,
            "p95": round(ok[min(len(ok) - 1, int(0.95 * len(ok)))], 2) if ok else None,
        },
        "wall_s": round(wall, 1),
        "rss_mb": {"idle_after_warmup": round(idle), "peak": round(peak), "after": round(after)},
        "bound_mb": args.bound_mb,
        "health": {"ok": sum(s == 200 for s in health), "total": len(health)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if peak < args.bound_mb and result["all_json_records"] and statuses.get(0, 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
