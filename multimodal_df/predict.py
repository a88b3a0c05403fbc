"""Score videos, audio files and face images.

    python -m multimodal_df.predict video.mp4 [more files or folders] [--checkpoint DIR] [--json]

Exit status: 0 when every input was scored, 1 when any failed (the others are still
reported), 2 for usage errors (bad arguments, no usable checkpoint), 3 when the process itself failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from .errors import CheckpointError, ConfigError, ExitCode, one_line, run_command
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
    p.add_argument(
        "--no-provenance",
        action="store_true",
        help="skip the provenance stage (C2PA, AI-disclosure metadata, watermarks): the label follows the model only",
    )
    p.add_argument("--trust-anchors", metavar="PEM", help="root certificates a C2PA signer must chain to be trusted")
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
    from .pipeline.outputs import Analysis, Prediction

    detector = load_checked(args.checkpoint, args.device)
    detector.provenance.enabled = not args.no_provenance
    detector.provenance.trust_anchors = args.trust_anchors
    failed = False
    used: set[str] = set()
    for path, err in iter_inputs(args.paths):
        try:
            analysis = Analysis(Prediction(path=path, error=err)) if err else detector.analyze(path)
            pred = analysis.prediction
            record = pred.to_json()
            if args.explain and pred.error is None:
                report = detector.explain(analysis).save(explain_dir(Path(args.explain), path, used), pred)
                record["report"] = str(report)
            line = (
                json.dumps(record)
                if args.json
                else _text(pred) + (f"\n       report: {printable(record['report'])}" if "report" in record else "")
            )
        except Exception as exc:
            # Whatever happens to one input (an explanation that fails, a record that cannot be written), the
            # batch goes on: that input gets an error line naming the exception's type, like analyze() gives.
            pred = Prediction(path=path, error=one_line(f"internal error: {type(exc).__name__}: {exc}", 300))
            line = json.dumps(pred.to_json()) if args.json else _text(pred)
        failed |= pred.error is not None
        print(line, file=out, flush=True)
    return ExitCode.INPUT_ERRORS if failed else ExitCode.OK


def load_checked(checkpoint: str | None, device: str) -> Any:
    """:func:`multimodal_df.pipeline.checkpoint.load`, with any failure a :class:`CheckpointError` (exit status 2):
    validation names what is wrong with a checkpoint, and whatever still escapes it is the checkpoint's fault too,
    never a reason to show a traceback."""
    from .pipeline.checkpoint import load

    try:
        return load(checkpoint, device)
    except (CheckpointError, ConfigError):
        raise
    except Exception as exc:
        raise CheckpointError(
            f"cannot load checkpoint {checkpoint}: internal error: {type(exc).__name__}: {one_line(exc, 200)}"
        ) from None


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as Python writes it (a newline as ``\\n``, an undecodable
    byte of a file name as ``\\udcff``), so one input's text is one line and never drives the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _text(pred: Any) -> str:
    """``pred.to_text()`` with the parts that come from outside (file name, reasons, notes) made printable."""
    info = pred.info
    if info is not None:
        info = dataclasses.replace(info, notes=[printable(n) for n in info.notes])
    safe = dataclasses.replace(
        pred,
        path=printable(pred.path),
        error=printable(pred.error) if pred.error is not None else None,
        notes=[printable(n) for n in pred.notes],
        info=info,
    )
    return safe.to_text()


if __name__ == "__main__":
    sys.exit(main())
