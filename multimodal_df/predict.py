"""Score videos, audio files and face images.

    python -m multimodal_df.predict video.mp4 [more files or folders] [--checkpoint DIR] [--json]

Exit status: 0 when every input was scored, 1 when any failed (the others are still
reported), 2 for usage errors (bad arguments, no usable checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, TextIO

from .decode import MEDIA_EXTENSIONS
from .detector import Detector
from .errors import CheckpointError
from .outputs import Prediction

CHECKPOINT_ENV = "MULTIMODAL_DF_CHECKPOINT"


def iter_inputs(paths: list[str]) -> Iterator[tuple[str, str | None]]:
    """Expand folders (recursively, media extensions only, sorted); yield (path, error-or-None)."""
    for p in paths:
        if os.path.isdir(p):
            found = False
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in MEDIA_EXTENSIONS:
                        found = True
                        yield os.path.join(root, f), None
            if not found:
                yield p, "no media files in this folder"
        else:
            yield p, None


def default_checkpoint() -> str | None:
    """``$MULTIMODAL_DF_CHECKPOINT``, else the model shipped inside the package, else None."""
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return env
    shipped = Path(__file__).parent / "shipped"
    return str(shipped) if (shipped / "config.json").is_file() else None


def load_detector(checkpoint: str | None, device: str = "auto") -> Detector:
    """The detector at ``checkpoint`` (default: :func:`default_checkpoint`); CheckpointError says what to do."""
    ckpt = checkpoint or default_checkpoint()
    if ckpt is None:
        raise CheckpointError(
            "no checkpoint. Pass --checkpoint DIR (a directory written by `python -m multimodal_df.train`) "
            f"or set ${CHECKPOINT_ENV} (the model that ships in multimodal_df/shipped/ is missing from this install)."
        )
    try:
        return Detector.load(ckpt, device)
    except (CheckpointError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot load checkpoint {ckpt}: {' '.join(str(exc).split())}") from None


def format_line(pred: Prediction) -> str:
    """One human-readable line per input."""
    if pred.error:
        return f"ERROR  {pred.path}: {pred.error}"
    parts = [f"{pred.label.upper():5s}  P(fake)={pred.p_fake:.3f} (threshold {pred.threshold:.3f})  {pred.path}"]  # type: ignore[union-attr]
    v, a = pred.vision, pred.audio
    parts.append(f"vision {v.p_fake:.3f} ({v.faces}/{v.frames} frames with a face)" if v else "vision -")
    parts.append(f"audio {a.p_fake:.3f} ({a.windows} windows)" if a else "audio -")
    line = "  ".join(parts) + f"  [{pred.seconds:.1f} s]"
    notes = list(pred.notes) + (pred.info.notes if pred.info else [])
    if notes:
        line += "\n       note: " + "; ".join(notes)
    return line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.predict", description="Tell whether videos, voices or face images were made or altered by AI.")
    p.add_argument("paths", nargs="+", help="files or folders (folders are scanned for media)")
    p.add_argument("--checkpoint", help=f"detector directory (default: ${CHECKPOINT_ENV}, else the shipped model)")
    p.add_argument("--json", action="store_true", help="one JSON object per input per line")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--explain", metavar="OUT_DIR", help="write heat maps, audio evidence, a timeline and report.html per input under OUT_DIR")
    return p


def explain_dir(root: Path, path: str, used: set[str]) -> Path:
    """A distinct, safe folder name per input under ``root``."""
    import re

    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).name).strip("._") or "input"
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return root / name


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        detector = load_detector(args.checkpoint, args.device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = False
    used: set[str] = set()
    for path, err in iter_inputs(args.paths):
        if err:
            pred, clip, track = Prediction(path=path, error=err), None, None
        else:
            pred, clip, track = detector.analyze_full(path)
        record = pred.to_json()
        if args.explain and pred.error is None:
            from .explain import explain

            report = explain(detector, pred, clip, track).save(explain_dir(Path(args.explain), path, used), pred)
            record["report"] = str(report)
        failed |= pred.error is not None
        line = json.dumps(record) if args.json else format_line(pred) + (f"\n       report: {record['report']}" if "report" in record else "")
        print(line, file=out, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
