"""Start-up and one-clip latency of a fresh `predict` process, PyTorch runtime against ONNX Runtime.

    python benchmarks/startup.py [--checkpoint DIR] [--repeats 3] [--threads 1] [--out benchmarks/results/startup.md]

For each runtime (``--runtime torch`` and ``--runtime onnx``), in fresh processes:

* start-up: ``from multimodal_df.predict import load_checked`` (imports) and ``load_checked(...)`` (model load),
  timed inside the child, plus the child's whole wall time (interpreter start to exit) and which heavy libraries
  (torch, torchvision, torchaudio, transformers, facenet_pytorch) it imported;
* one clip end to end: ``python -m multimodal_df.predict CLIP --json`` on a 10 s 1920x1080 H.264 + AAC clip, the
  wall time of the whole process and its peak RSS, and inside it the analysis time and per-stage timings;
* the decode floor: every frame of the clip decoded (PyAV, one thread per frame as predict's decoder), in the
  same run, so the end-to-end time can be read as a multiple of it.

The clip is a real talking face (``../shared/data/faces/d10.mp4``, 512x512) scaled to 1080 px high on a 1920x1080
canvas, 30 fps, 10 s, re-encoded with libx264 (veryfast, x264's default keyframe interval: 2 keyframes in 300
frames) and AAC; without the shared data, a rendered synthetic face. ONNX graphs are exported first (not timed).
Only the standard library's time, subprocess and resource measure; PyAV and the package run in the children.
Writes the Markdown table to ``--out`` and the raw figures beside it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "faces" / "d10.mp4"
HEAVY = ["torch", "torchvision", "torchaudio", "transformers", "facenet_pytorch"]

MAKE_CLIP = r"""
import sys
from fractions import Fraction
from pathlib import Path
import av, numpy as np
src, out, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
W, H, FPS = 1920, 1080, 30
if src.is_file():
    import cv2
    frames, audio, rate = [], [], 16000
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="rgb24")
            side = H
            img = cv2.resize(img, (round(img.shape[1] * side / img.shape[0]), side), interpolation=cv2.INTER_CUBIC)
            canvas = np.full((H, W, 3), 40, np.uint8)
            x = (W - img.shape[1]) // 2
            canvas[:, x : x + img.shape[1]] = img[:, : W - x]
            frames.append(canvas)
            if len(frames) >= seconds * FPS:
                break
    with av.open(str(src)) as c:
        res = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        for f in c.decode(audio=0):
            for g in res.resample(f):
                audio.append(g.to_ndarray()[0])
    wave = np.concatenate(audio)[: int(seconds * rate)] if audio else np.zeros(int(seconds * rate), np.float32)
else:
    from multimodal_df.testing.fixtures import FixtureSpec, make_clip
    make_clip(out, FixtureSpec(seed=1, duration=seconds, width=W, height=H, fps=FPS))
    sys.exit(0)
with av.open(out, "w", format="mp4") as o:
    vs = o.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    a = o.add_stream("aac", rate=rate, layout="mono")
    for img in frames:
        o.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    o.mux(vs.encode())
    frame = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
    frame.sample_rate = rate
    o.mux(a.encode(frame))
    o.mux(a.encode())
"""

STARTUP = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from multimodal_df.predict import load_checked
t1 = time.perf_counter()
det = load_checked(sys.argv[1], "cpu", sys.argv[2])
t2 = time.perf_counter()
heavy = [m for m in sys.argv[3].split(",") if m in sys.modules]
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1, "heavy": heavy,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FLOOR = r"""
import sys, time, av
t = time.perf_counter()
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]
    s.thread_type = "AUTO"
    n = sum(1 for _ in c.decode(s))
print(time.perf_counter() - t, n)
"""


def child(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a fresh Python process; (its wall time in seconds, the finished process)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc


def peak_child_rss_mb() -> float:
    """Largest peak RSS of any child so far (getrusage keeps the maximum over waited-for children)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / "multimodal_df" / "shipped"))
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (the median is kept)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.md"))
    args = p.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    tmp = Path(tempfile.mkdtemp(prefix="mdf-startup-"))
    env["MULTIMODAL_DF_CACHE"] = str(tmp / "cache")  # a cold cache of ours: never the user's
    clip = tmp / "clip_1080p.mp4"
    child(["-c", MAKE_CLIP, str(SOURCE), str(clip), str(args.seconds)], env)
    graphs = tmp / "onnx"
    child(["-m", "multimodal_df.export", args.checkpoint, "--out", str(graphs)], env)
    ckpt = {"torch": args.checkpoint, "onnx": str(graphs)}
    load_before = os.getloadavg()

    results: dict[str, dict] = {}
    for runtime in ("torch", "onnx"):
        starts = []
        for _ in range(args.repeats):
            wall, proc = child(["-c", STARTUP, ckpt[runtime], runtime, ",".join(HEAVY)], env)
            starts.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "process_s": wall})
        ends = []
        for _ in range(args.repeats):
            cmd = ["-m", "multimodal_df.predict", str(clip), "--json", "--checkpoint", ckpt[runtime], "--device", "cpu"]
            wall, proc = child([*cmd, "--runtime", runtime], env)
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            assert rec["error"] is None, rec["error"]
            ends.append({"process_s": wall, "analysis_s": rec.get("seconds"), "timings": rec.get("timings", {})})
            ends[-1]["label"], ends[-1]["p_fake"] = rec["label"], rec["p_fake"]

        def med(rows: list[dict], key: str) -> float:
            return statistics.median(float(r[key]) for r in rows)

        results[runtime] = {
            "startup": {
                "imports_s": med(starts, "imports_s"),
                "load_s": med(starts, "load_s"),
                "imports_plus_load_s": statistics.median(r["imports_s"] + r["load_s"] for r in starts),
                "process_s": med(starts, "process_s"),
                "heavy_modules": starts[-1]["heavy"],
                "runs": starts,
            },
            "clip": {
                "process_s": med(ends, "process_s"),
                "analysis_s": med(ends, "analysis_s"),
                "timings_s": {
                    k: statistics.median(float(r["timings"].get(k, 0.0)) for r in ends)
                    for k in sorted({k for r in ends for k in r["timings"]})
                },
                "label": ends[-1]["label"],
                "p_fake": ends[-1]["p_fake"],
                "runs": ends,
            },
        }
    floors = [float(child(["-c", FLOOR, str(clip)], env)[1].stdout.split()[0]) for _ in range(args.repeats)]
    frames = int(child(["-c", FLOOR, str(clip)], env)[1].stdout.split()[1])
    floor = statistics.median(floors)
    result = {
        "command": f"python benchmarks/startup.py --repeats {args.repeats} --threads {args.threads}",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "clip": {
            "seconds": args.seconds,
            "width": 1920,
            "height": 1080,
            "fps": 30,
            "frames": frames,
            "source": str(SOURCE.relative_to(ROOT.parent)) if SOURCE.is_file() else "synthetic",
        },
        "threads": args.threads,
        "decode_floor_s": floor,
        "peak_child_rss_mb": peak_child_rss_mb(),
        "runtimes": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.write_text(markdown(result))
    print(out.read_text())
    return 0


def markdown(r: dict) -> str:
    """The figures as a Markdown report."""
    t, o = r["runtimes"]["torch"], r["runtimes"]["onnx"]
    floor = r["decode_floor_s"]

    def row(name: str, a: float, b: float) -> str:
        return f"| {name} | {a:.2f} | {b:.2f} | {a / b:.1f}x |"

    stages = sorted(set(t["clip"]["timings_s"]) | set(o["clip"]["timings_s"]))
    lines = [
        "# Start-up and one-clip latency: `predict --runtime torch` vs `--runtime onnx`",
        "",
        f"Command: `{r['command']}` (writes this file and `startup.json`).",
        "",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}, Python {r['machine']['python']}; "
        f"children with OMP_NUM_THREADS={r['threads']}. Load average before / after: "
        f"{' '.join(f'{x:.1f}' for x in r['machine']['load_average_before'])} / "
        f"{' '.join(f'{x:.1f}' for x in r['machine']['load_average_after'])} "
        "(a load near or above the CPU count means the machine was shared while measuring: absolute times are "
        "inflated, the ratios between runtimes less so).",
        "",
        f"Clip: {r['clip']['seconds']:g} s, {r['clip']['width']}x{r['clip']['height']}, {r['clip']['fps']} fps "
        f"({r['clip']['frames']} frames), H.264 + AAC, from `{r['clip']['source']}`. Medians of "
        f"{len(t['startup']['runs'])} fresh processes each.",
        "",
        "| seconds (median) | torch | onnx | torch / onnx |",
        "|---|---|---|---|",
        row(
            "imports (`from multimodal_df.predict import load_checked`)",
            t["startup"]["imports_s"],
            o["startup"]["imports_s"],
        ),
        row("model load (`load_checked`)", t["startup"]["load_s"], o["startup"]["load_s"]),
        row("**imports + model load**", t["startup"]["imports_plus_load_s"], o["startup"]["imports_plus_load_s"]),
        row("start-up process (interpreter start to exit)", t["startup"]["process_s"], o["startup"]["process_s"]),
        row("**one 10 s 1080p clip, whole `predict` process**", t["clip"]["process_s"], o["clip"]["process_s"]),
        row("analysis inside it (`seconds` of the record)", t["clip"]["analysis_s"], o["clip"]["analysis_s"]),
        *(
            row(f"- stage `{s}`", t["clip"]["timings_s"].get(s, 0.0), o["clip"]["timings_s"].get(s, 0.0))
            for s in stages
        ),
        "",
        f"Decode floor (every frame of the clip decoded, same run): {floor:.2f} s. Whole process / floor: torch "
        f"{t['clip']['process_s'] / floor:.1f}x, onnx {o['clip']['process_s'] / floor:.1f}x; analysis / floor: torch "
        f"{t['clip']['analysis_s'] / floor:.1f}x, onnx {o['clip']['analysis_s'] / floor:.1f}x.",
        "",
        f"Heavy libraries imported by start-up: torch runtime {t['startup']['heavy_modules']}, onnx runtime "
        f"{o['startup']['heavy_modules'] or 'none'}. Verdicts: torch {t['clip']['label']} "
        f"(P(fake) {t['clip']['p_fake']:.4f}), onnx {o['clip']['label']} (P(fake) {o['clip']['p_fake']:.4f}). "
        f"Largest peak RSS of any child: {r['peak_child_rss_mb']:.0f} MB.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
