"""Time `predict` per stage on a generated 10 s 1280x720 H.264 + AAC clip, and its peak memory.

    python benchmarks/bench_predict.py [--checkpoint DIR] [--device cpu] [--repeats 3]

Without --checkpoint it times the full-size default architecture (the `default` preset:
EfficientNet-B0 at 224 px, log-mel CNN + 4-layer wav2vec 2.0, stacking fusion) with random
weights: speed does not depend on the weights' values. Writes benchmarks/results/predict_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multimodal_df.audio.model import create_audio_model  # noqa: E402
from multimodal_df.config import load_config  # noqa: E402
from multimodal_df.fusion.model import LateFusion  # noqa: E402
from multimodal_df.pipeline.detector import Detector, resolve_device  # noqa: E402
from multimodal_df.vision.model import create_vision_model  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_detector(device: torch.device) -> Detector:
    cfg = load_config("default")
    vision = create_vision_model(cfg.vision)
    audio = create_audio_model(cfg.audio, cfg.decode.sample_rate)
    fusion = LateFusion("stacking", vision.embed_dim, audio.embed_dim)
    return Detector(cfg.decode, cfg.faces, vision, audio, fusion, device=device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    clip = tmp / "bench.mp4"
    # Rendered in a child process, so this process's peak memory is predict's alone.
    code = f"from multimodal_df.testing.fixtures import FixtureSpec, make_clip; make_clip({str(clip)!r}, FixtureSpec(seed=1, duration={args.seconds}, width=1280, height=720, fps=25))"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    print(f"generated {clip.stat().st_size / 1e6:.1f} MB clip in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    rss0 = rss_mb()
    det = Detector.load(args.checkpoint, str(device)) if args.checkpoint else default_detector(device)
    rss_model = rss_mb()
    det.predict(clip)  # warm-up: MTCNN weights, allocator, lazy imports
    runs = []
    for _ in range(args.repeats):
        pred = det.predict(clip)
        assert pred.error is None, pred.error
        runs.append({**pred.timings, "total": pred.seconds})
    stages = ["decode", "faces", "vision", "audio", "fusion", "total"]
    med = {s: statistics.median(r.get(s, 0.0) for r in runs) for s in stages}
    result = {
        "clip": {
            "seconds": args.seconds,
            "width": 1280,
            "height": 720,
            "fps": 25,
            "codec": "h264+aac",
            "frames_sampled": pred.vision.frames if pred.vision else 0,
            "faces": pred.vision.faces if pred.vision else 0,
            "audio_windows": pred.audio.windows if pred.audio else 0,
        },
        "detector": args.checkpoint or "the default preset (random weights)",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "realtime_factor": round(med["total"] / args.seconds, 4),
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_model_mb": round(rss0, 1),
        "rss_after_model_load_mb": round(rss_model, 1),
    }
    out = ROOT / "benchmarks" / "results" / f"predict_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{'stage':8s} median s")
    for s in stages:
        print(f"{s:8s} {med[s]:.3f}")
    print(
        f"total / clip length = {result['realtime_factor']:.3f}; peak RSS {result['peak_rss_mb']:.0f} MB; written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
