"""Score videos, audio files and face images.

    python -m multimodal_df.predict video.mp4 [more files or folders] [--checkpoint DIR] [--json]

Exit status: 0 when every input was scored, 1 when any failed (the others are still
reported), 2 for usage errors (bad arguments, no usable checkpoint), 3 when the process itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TextIO

from .errors import ExitCode, run_command
from .pipeline.checkpoint import CHECKPOINT_ENV


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.predict",
        description="Tell whether videos, voices or face images were made or altered by AI.",
    )
    p.add_argument("paths", nargs="+", help="files or folders (folders are scanned for media)")
    p.add_argument("--checkpoint", help=f"detector directory (default: ${CHECKPOINT_ENV}, else the shipped model)")
    p.add_argument("--json", action="store_true", help="one JSON object per input per line")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--explain",
        metavar="OUT_DIR",
        help="write heat maps, audio evidence, a timeline and report.html per input under OUT_DIR",
    )
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
    """Exit status: 0 every input scored, 1 some inputs had errors (each has its line), 2 usage or
    checkpoint error, 3 the process itself failed."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _predict(args, out or sys.stdout))


def _predict(args: argparse.Namespace, out: TextIO) -> int:
    from .media.sniff import iter_inputs
    from .pipeline.checkpoint import load
    from .pipeline.outputs import Analysis, Prediction

    detector = load(args.checkpoint, args.device)
    failed = False
    used: set[str] = set()
    for path, err in iter_inputs(args.paths):
        analysis = Analysis(Prediction(path=path, error=err)) if err else detector.analyze(path)
        pred = analysis.prediction
        record = pred.to_json()
        if args.explain and pred.error is None:
            report = detector.explain(analysis).save(explain_dir(Path(args.explain), path, used), pred)
            record["report"] = str(report)
        failed |= pred.error is not None
        line = (
            json.dumps(record)
            if args.json
            else pred.to_text() + (f"\n       report: {record['report']}" if "report" in record else "")
        )
        print(line, file=out, flush=True)
    return ExitCode.INPUT_ERRORS if failed else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
