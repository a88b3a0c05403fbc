"""Peak memory and per-chunk latency of `predict --stream` against video length.

    python benchmarks/bench_stream.py [--minutes 2 10 30 60] [--chunk-seconds 30] [--runtime torch]

Generates 320x240 H.264 (10 fps, x264 ultrafast) + AAC clips of each length from a 20 s loop of the test
fixtures' moving face and synthetic speech (cheap to encode), then runs
``python -m multimodal_df.predict CLIP --stream --json`` on each in a child process with the shipped model and
reads that child's own peak RSS (``os.wait4``'s ru_maxrss). The target: peak RSS flat in video length.
Writes benchmarks/results/stream_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOP_S = 20.0
FPS = 10
SIZE = (320, 240)


def write_long_clip(path: Path, minutes: float, seed: int = 7) -> Path:
    """A ``minutes``-long clip looping :data:`LOOP_S` seconds of fixture frames and speech; frames are encoded as
    they are written, so memory stays at the loop's size."""
    import av

    from multimodal_df.testing.fixtures import FixtureSpec, make_audio, render_frames

    spec = FixtureSpec(seed=seed, duration=LOOP_S, width=SIZE[0], height=SIZE[1], fps=FPS)
    frames, _ = render_frames(spec)
    audio = make_audio(spec)
    n_frames = int(round(minutes * 60 * FPS))
    sr = spec.sample_rate
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=Fraction(FPS), options={"preset": "ultrafast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        as_ = out.add_stream("aac", rate=sr, layout="mono")
        as_.bit_rate = 32000
        samples_per_frame = sr // FPS
        apts = 0
        pending = np.zeros(0, np.float32)
        for i in range(n_frames):
            vf = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                out.mux(pkt)
            # The audio that goes with this frame, interleaved as a camera writes it.
            a0 = (i % len(frames)) * samples_per_frame
            pending = np.concatenate([pending, audio[a0 : a0 + samples_per_frame]])
            while pending.size >= 1024:
                af = av.AudioFrame.from_ndarray(pending[None, :1024].copy(), format="flt", layout="mono")
                af.sample_rate, af.pts = sr, apts
                apts += 1024
                pending = pending[1024:]
                for pkt in as_.encode(af):
                    out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        for pkt in as_.encode(None):
            out.mux(pkt)
    return path


def run_stream(clip: Path, chunk_s: float, runtime: str, device: str) -> dict:
    """Run predict --stream in a child process: its peak RSS, per-chunk wall latency and the verdict."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "multimodal_df.predict", str(clip), "--stream", "--json"]
    cmd += ["--chunk-seconds", str(chunk_s), "--runtime", runtime, "--device", device]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    arrivals, records = [], []
    for line in proc.stdout:  # type: ignore[union-attr]
        arrivals.append(time.perf_counter() - start)
        records.append(json.loads(line))
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all children so far).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    chunks = [r for r in records if "chunk" in r]
    final = records[-1] if records else {}
    gaps = np.diff(arrivals[: len(chunks)]) if len(chunks) > 1 else np.zeros(0)
    per_chunk = [c["seconds"] for c in chunks]
    return {
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "chunks": len(chunks),
        "first_chunk_after_s": round(arrivals[0], 2) if arrivals else None,
        "chunk_seconds_median": round(statistics.median(per_chunk), 3) if per_chunk else None,
        "chunk_seconds_max": round(max(per_chunk), 3) if per_chunk else None,
        "chunk_interval_median_s": round(float(np.median(gaps)), 3) if gaps.size else None,
        "p_fake": final.get("p_fake"),
        "label": final.get("label"),
        "error": final.get("error"),
        "analysed_s": final.get("segments", [{}])[-1].get("end") if final.get("segments") else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 10, 30, 60])
    p.add_argument("--chunk-seconds", type=float, default=30.0)
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep", help="folder for the generated clips (default: a temporary one, deleted)")
    args = p.parse_args(argv)
    tmp = Path(args.keep or tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        clip = tmp / f"long_{minutes:g}min.mp4"
        t = time.perf_counter()
        if not clip.exists():
            write_long_clip(clip, minutes)
        gen_s = time.perf_counter() - t
        row = {"minutes": minutes, "file_mb": round(clip.stat().st_size / 2**20, 1), "generate_s": round(gen_s, 1)}
        row.update(run_stream(clip, args.chunk_seconds, args.runtime, args.device))
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            clip.unlink()
        # After every length, so a run stopped early keeps the lengths it finished.
        write_result(rows, args)
    print(f"wrote {write_result(rows, args)}")
    return 0


def write_result(rows: list[dict], args: argparse.Namespace) -> Path:
    """Write the rows so far to benchmarks/results/stream_<device>.json."""
    result = {
        "video": f"{SIZE[0]}x{SIZE[1]} H.264 {FPS} fps + AAC mono, looping {LOOP_S:g} s of fixture media",
        "chunk_seconds": args.chunk_seconds,
        "runtime": args.runtime,
        "device": args.device,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "1")),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "checkpoint": "shipped",
        "rows": rows,
        "peak_rss_spread_mb": round(max(r["peak_rss_mb"] for r in rows) - min(r["peak_rss_mb"] for r in rows), 1),
    }
    out = ROOT / "benchmarks" / "results" / f"stream_{args.device}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main())
