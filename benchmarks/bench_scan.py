"""Clips per minute: `scan` (Ray Data, local) against one `predict` process over the same folder.

    python benchmarks/bench_scan.py [--clips 20] [--num-cpus N] [--checkpoint DIR] [--batch-size 8]

The folder holds ``--clips`` copies of the bundled examples (real, fake face, fake voice) under distinct
names. Both commands run as fresh processes, timed end to end (start-up, model loading and, for scan,
starting Ray included), since that is what a user waits for. Also checks that both give the same P(fake)
per file. Writes benchmarks/results/scan_cpu.json (or scan_gpu.json where the scan saw a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "multimodal_df" / "examples"


@dataclass
class Timed:
    """One command over the folder: wall seconds and throughput."""

    command: str
    seconds: float
    clips: int
    clips_per_minute: float
    exit_code: int


def make_folder(root: Path, n: int) -> list[Path]:
    """``n`` copies of the bundled examples, cycling through them."""
    examples = sorted(EXAMPLES.glob("*.mp4"))
    out = []
    for i in range(n):
        src = examples[i % len(examples)]
        dst = root / f"{i:03d}_{src.name}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def timed(cmd: list[str], clips: int, stdout: Path) -> Timed:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    with open(stdout, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.DEVNULL, env=env, cwd=ROOT).returncode
    s = time.perf_counter() - t0
    return Timed(" ".join(cmd[2:]), round(s, 2), clips, round(clips / s * 60, 1), rc)


def p_fake(path: Path) -> dict[str, float | None]:
    return {r["path"]: r["p_fake"] for r in map(json.loads, path.read_text().splitlines())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--checkpoint", help="detector directory (default: the shipped model)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scan_cpu.json"))
    args = p.parse_args(argv)
    ckpt = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        make_folder(folder, args.clips)
        py = [sys.executable, "-m"]
        pred = timed(
            [*py, "multimodal_df.predict", str(folder), "--json", "--device", "cpu", *ckpt],
            args.clips,
            Path(tmp) / "predict.jsonl",
        )
        results = Path(tmp) / "scan.jsonl"
        scan_cmd = [*py, "multimodal_df.scan", str(folder), "--out", str(results), "--num-cpus", str(args.num_cpus)]
        scan_cmd += ["--batch-size", str(args.batch_size), "--no-progress", *ckpt]
        sc = timed(scan_cmd, args.clips, Path(tmp) / "scan.stdout")
        a, b = p_fake(Path(tmp) / "predict.jsonl"), p_fake(results)
        diff = max(abs((a[k] or 0.0) - (b.get(k) or 0.0)) for k in a)
    report = {
        "clips": args.clips,
        "num_cpus": args.num_cpus,
        "batch_size": args.batch_size,
        "checkpoint": args.checkpoint or "shipped",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        # predict's torch uses this many threads; scan's workers get one CPU each from Ray.
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "predict": asdict(pred),
        "scan": asdict(sc),
        "speedup": round(pred.seconds / sc.seconds, 2),
        "max_abs_p_fake_difference": diff,
        "same_files": sorted(a) == sorted(b),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
