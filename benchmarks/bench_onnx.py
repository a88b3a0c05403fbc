"""PyTorch vs ONNX Runtime for the branch models, side by side: per-item latency of a vision batch and of audio
windows, and a whole `predict` of each bundled example.

    python benchmarks/bench_onnx.py [--checkpoint DIR] [--device cpu] [--repeats 7]

Default: the shipped model (EfficientNet-Lite0 at 224 px; log-mel CNN + 2-layer wav2vec 2.0). Both runtimes use
the same number of threads (torch.get_num_threads(), so OMP_NUM_THREADS sets both). Graphs are exported into a
temporary folder first. Writes benchmarks/results/onnx_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multimodal_df.audio.features import frame_windows  # noqa: E402
from multimodal_df.audio.model import AudioModel  # noqa: E402
from multimodal_df.media.decode import decode  # noqa: E402
from multimodal_df.pipeline.checkpoint import SHIPPED, load  # noqa: E402
from multimodal_df.pipeline.onnx_runtime import attach, export_graphs  # noqa: E402
from multimodal_df.vision.model import VisionModel  # noqa: E402

EXAMPLES = ROOT / "multimodal_df" / "examples"


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(times: list[float], items: int) -> dict[str, float]:
    """Median and best of a timing, per call and per item, milliseconds."""
    med = statistics.median(times)
    return {
        "batch_ms_median": round(med * 1e3, 2),
        "batch_ms_best": round(min(times) * 1e3, 2),
        "per_item_ms": round(med * 1e3 / items, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(SHIPPED))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--vision-batch", type=int, default=32)
    p.add_argument("--audio-windows", type=int, default=16)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    graphs = Path(tempfile.mkdtemp()) / "graphs"
    t = time.perf_counter()
    ref = load(args.checkpoint, args.device)
    export_graphs(load(args.checkpoint, "cpu"), args.checkpoint, graphs)
    export_s = time.perf_counter() - t
    onnx = load(args.checkpoint, args.device)
    attach(onnx, graphs)

    rng = np.random.default_rng(0)
    s = ref.vision.input_size
    crops = rng.integers(0, 256, size=(args.vision_batch, s, s, 3), dtype=np.uint8)
    clip = decode(EXAMPLES / "real.mp4", ref.decode_cfg)
    windows, _ = frame_windows(clip.waveform, clip.sample_rate, ref.audio.args.window_s, ref.audio.args.hop_s)
    windows = np.resize(windows, (args.audio_windows, windows.shape[1]))  # repeat the clip's windows to the count

    def run(det, branch: str, model, to_input, items) -> None:
        fwd = det.branch_forward.get(branch, model)
        with torch.inference_mode():
            fwd(to_input(items, det.device))

    result: dict = {
        "checkpoint": Path(args.checkpoint).name,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "providers": onnx.runtime.providers,
        "export_seconds": round(export_s, 2),
        "vision": {"batch": args.vision_batch, "input": [3, s, s]},
        "audio": {"windows": args.audio_windows, "samples": int(windows.shape[1])},
        "predict": {},
    }
    for name, det in (("torch", ref), ("onnx", onnx)):
        result["vision"][name] = summary(
            timed(lambda d=det: run(d, "vision", d.vision, VisionModel.to_input, crops), args.repeats), len(crops)
        )
        result["audio"][name] = summary(
            timed(lambda d=det: run(d, "audio", d.audio, AudioModel.to_input, windows), args.repeats), len(windows)
        )
    for key in ("vision", "audio"):
        r = result[key]
        r["speedup"] = round(r["torch"]["batch_ms_median"] / r["onnx"]["batch_ms_median"], 2)
    for example in sorted(EXAMPLES.glob("*.mp4")):
        row = {}
        for name, det in (("torch", ref), ("onnx", onnx)):
            det.predict(example)  # warm: first-call allocations are not the steady state
            times, pred = [], None
            for _ in range(3):
                t = time.perf_counter()
                pred = det.predict(example)
                times.append(time.perf_counter() - t)
            row[name] = {
                "seconds_median": round(statistics.median(times), 3),
                "p_fake": pred.p_fake,
                "label": pred.label,
                "timings": {k: round(v, 4) for k, v in pred.timings.items()},
            }
        row["abs_p_fake_diff"] = abs(row["torch"]["p_fake"] - row["onnx"]["p_fake"])
        row["same_label"] = row["torch"]["label"] == row["onnx"]["label"]
        result["predict"][example.name] = row
    out = ROOT / "benchmarks" / "results" / f"onnx_{args.device}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("vision", "audio")}, indent=2))
    for name, row in result["predict"].items():
        print(
            f"{name}: torch {row['torch']['seconds_median']} s, onnx {row['onnx']['seconds_median']} s, |dp| {row['abs_p_fake_diff']:.1e}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
