"""Export a detector's branch models to ONNX.

    python -m multimodal_df.export CHECKPOINT --out DIR [--opset 17]

DIR becomes a complete checkpoint (config.json and the safetensors, copied) plus ``vision.onnx`` /
``audio.onnx`` (dynamic batch axis), MTCNN's face-detection networks ``pnet.onnx`` / ``rnet.onnx`` / ``onet.onnx``
and ``onnx.json``, which says which graphs it holds, the weights they came from and how far they are from
PyTorch. With them ``--runtime onnx`` never imports PyTorch. Load it with ``predict --checkpoint DIR --runtime onnx`` or
``mdf.load(DIR, runtime="onnx")``; without ``--runtime onnx`` it runs on PyTorch like any checkpoint.
``--out`` may be CHECKPOINT itself: the graphs are added beside its weights.

Each graph is checked against PyTorch on a random batch; a difference over 1e-3 fails the export.

Exit status: 0 exported, 2 usage or checkpoint error (nothing usable written), 3 the process itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TextIO

from .errors import CheckpointError, ExitCode, run_command
from .pipeline.checkpoint import CHECKPOINT_ENV


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.export",
        description="Write ONNX graphs of a detector's vision and audio models beside a copy of its checkpoint.",
    )
    p.add_argument(
        "checkpoint", nargs="?", help=f"detector directory (default: ${CHECKPOINT_ENV}, else the shipped model)"
    )
    p.add_argument("--out", required=True, help="directory to write (created; may be the checkpoint itself)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or later: the exporter needs 17's ops)")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Exit status: 0 exported, 2 usage or checkpoint error, 3 the process itself failed."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _export(args, out or sys.stdout))


def _export(args: argparse.Namespace, out: TextIO) -> int:
    from .pipeline.checkpoint import default_checkpoint
    from .pipeline.onnx_runtime import MANIFEST, OPSET, export_graphs
    from .predict import load_checked

    if args.opset < OPSET:
        raise CheckpointError(f"--opset {args.opset}: the graphs need opset {OPSET} or later")
    source = args.checkpoint or default_checkpoint()
    dst = Path(args.out)
    if dst.exists() and not dst.is_dir():
        raise CheckpointError(f"--out {dst} exists and is not a directory")
    # On the CPU in float32: a graph is the same whatever device exported it, and the check compares like for like.
    detector = load_checked(source, "cpu")
    written = export_graphs(detector, source, dst, args.opset)  # type: ignore[arg-type]
    manifest = json.loads((written / MANIFEST).read_text())
    for branch, g in manifest["graphs"].items():
        size = (written / g["file"]).stat().st_size / 2**20
        print(
            f"{branch}: {written / g['file']}  input {g['input']} {g['input_shape']}  {size:.1f} MB  "
            f"max |onnx - torch| {g['max_abs_diff']:.1e}",
            file=out,
        )
    faces = manifest.get("faces", {})
    if faces:
        worst = max(g["max_abs_diff"] for g in faces.values())
        print(f"faces: MTCNN {', '.join(g['file'] for g in faces.values())}  max |onnx - torch| {worst:.1e}", file=out)
    print(
        f"wrote {written} (run it with: python -m multimodal_df.predict --checkpoint {written} --runtime onnx)",
        file=out,
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
