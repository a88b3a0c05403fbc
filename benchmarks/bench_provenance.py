"""Cost of the provenance stage (C2PA, AI-disclosure metadata, invisible watermarks) inside ``predict``.

    python benchmarks/bench_provenance.py [--checkpoint DIR] [--device cpu] [--repeats 3]

Times ``Detector.analyze`` on generated files with the stage on and off: a 1024x1024 PNG with generator
settings, a 12-megapixel camera-sized JPEG, the same 1024x1024 picture as a C2PA-signed JPEG, and a
10 s 1280x720 H.264 + AAC clip of a face with speech (plain and C2PA-signed; C2PA hashes the whole file).
Reports per file the stage's median seconds, its parts (C2PA, metadata, watermark) and its share of
``predict``'s total; the clip's share is the figure to quote. Without --checkpoint the shipped model is used.
Writes benchmarks/results/provenance_<device>.json.
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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multimodal_df.pipeline.checkpoint import load  # noqa: E402
from multimodal_df.pipeline.detector import Detector, resolve_device  # noqa: E402


def make_files(tmp: Path, seconds: float) -> dict[str, Path]:
    """The benchmark's inputs, written under ``tmp``."""
    from PIL import Image

    from multimodal_df.testing.provenance_files import a1111_png, c2pa_sign, make_test_certs, natural_rgb

    files: dict[str, Path] = {}
    files["png_1024_a1111"] = a1111_png(tmp / "generated.png", natural_rgb(1024, 1024, 1))
    Image.fromarray(natural_rgb(3024, 4032, 2)).save(tmp / "camera.jpg", quality=90)
    files["jpeg_12mp"] = tmp / "camera.jpg"
    Image.fromarray(natural_rgb(1024, 1024, 3)).save(tmp / "plain.jpg", quality=90)
    certs = make_test_certs()
    files["jpeg_1024_c2pa"] = c2pa_sign(
        tmp / "plain.jpg", tmp / "signed.jpg", "image/jpeg", certs, "trainedAlgorithmicMedia"
    )
    clip = tmp / "clip.mp4"
    # Rendered in a child process, as benchmarks/bench_predict.py does.
    code = (
        "from multimodal_df.testing.fixtures import FixtureSpec, make_clip; "
        f"make_clip({str(clip)!r}, FixtureSpec(seed=1, duration={seconds}, width=1280, height=720, fps=25))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    files["clip_720p"] = clip
    files["clip_720p_c2pa"] = c2pa_sign(clip, tmp / "clip_signed.mp4", "video/mp4", certs, "trainedAlgorithmicMedia")
    return files


def time_file(det: Detector, path: Path, repeats: int) -> dict:
    """Median seconds of the whole analysis with the stage on and off, and of the stage and its parts."""
    det.provenance.enabled = True
    det.analyze(path)  # warm-up: lazy imports, the C2PA context, MTCNN weights
    on, parts = [], []
    pred = None
    for _ in range(repeats):
        pred = det.analyze(path)
        assert pred.prediction.error is None, pred.prediction.error
        on.append({"provenance": pred.prediction.timings["provenance"], "total": pred.prediction.seconds})
        parts.append(pred.prediction.provenance.timings_ms)  # type: ignore[union-attr]
    det.provenance.enabled = False
    off = []
    for _ in range(repeats):
        p = det.analyze(path).prediction
        off.append(p.seconds)
    det.provenance.enabled = True
    prov = statistics.median(r["provenance"] for r in on)
    total = statistics.median(r["total"] for r in on)
    keys = sorted({k for t in parts for k in t})
    rep = pred.prediction.provenance  # type: ignore[union-attr]
    return {
        "bytes": path.stat().st_size,
        "kind": rep.kind,
        "provenance_s": round(prov, 4),
        "provenance_parts_ms": {k: round(statistics.median(t.get(k, 0.0) for t in parts), 2) for k in keys},
        "total_with_provenance_s": round(total, 4),
        "total_without_provenance_s": round(statistics.median(off), 4),
        "share_of_total": round(prov / total, 4) if total > 0 else None,
        "hint": rep.verdict_hint,
        "c2pa_state": rep.c2pa.state,
        "watermark_images_checked": rep.watermark.images_checked,
        "label_from": pred.prediction.evidence.label_from,  # type: ignore[union-attr]
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="detector directory (default: the shipped model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    files = make_files(tmp, args.seconds)
    print(f"generated {len(files)} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    det = load(args.checkpoint, str(device))
    per_file = {}
    for name, path in files.items():
        per_file[name] = time_file(det, path, args.repeats)
        r = per_file[name]
        print(
            f"{name:16s} provenance {r['provenance_s']:.3f} s of {r['total_with_provenance_s']:.3f} s "
            f"({100 * (r['share_of_total'] or 0):.1f} %)  parts {r['provenance_parts_ms']}  hint {r['hint']}"
        )
    clip = per_file["clip_720p"]
    result = {
        "what": "provenance stage inside Detector.analyze (median of repeats after one warm-up)",
        "detector": args.checkpoint or "multimodal_df/shipped",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "clip": {"seconds": args.seconds, "width": 1280, "height": 720, "fps": 25, "codec": "h264+aac"},
        "files": per_file,
        "clip_10s_720p": {
            "provenance_s": clip["provenance_s"],
            "total_s": clip["total_with_provenance_s"],
            "share_of_total": clip["share_of_total"],
        },
    }
    out = ROOT / "benchmarks" / "results" / f"provenance_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"10 s 720p clip: provenance {clip['provenance_s']:.3f} s = {100 * clip['share_of_total']:.1f} % of "
        f"{clip['total_with_provenance_s']:.3f} s; written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
