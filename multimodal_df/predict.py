"""Score videos, audio files and face images.

    python -m multimodal_df.predict video.mp4 [more files or folders] [--checkpoint DIR] [--json]
    python -m multimodal_df.predict long.mp4 --stream [--chunk-seconds 30] --json   # a line per chunk, then the verdict
    python -m multimodal_df.predict video.mp4 --runtime onnx                        # branch models on ONNX Runtime

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
    p.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx"],
        help="what runs the vision and audio models: PyTorch, or ONNX Runtime (graphs from the checkpoint's "
        "onnx.json, else exported once into the cache, $MULTIMODAL_DF_CACHE or ~/.cache/multimodal_df)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="analyse the whole of each file in chunks with bounded memory (no max_seconds cap): a line per chunk as "
        "soon as it is scored, then the verdict line",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="--stream: length of each chunk, seconds (default 30, at least 2)",
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
    from .pipeline.outputs import Analysis, Prediction

    if args.stream and args.explain:
        raise ConfigError("--explain cannot be used with --stream (explanations need the whole clip in memory)")
    if args.stream and not args.chunk_seconds >= 2.0:
        raise ConfigError(f"--chunk-seconds must be at least 2, got {args.chunk_seconds:g}")
    detector = load_checked(args.checkpoint, args.device, args.runtime)
    if detector.runtime.exported:
        print(f"note: ONNX graphs exported once to {detector.runtime.graphs}", file=sys.stderr)
    detector.provenance.enabled = not args.no_provenance
    detector.provenance.trust_anchors = args.trust_anchors
    if args.stream:
        return _stream(detector, args, out)
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


def _stream(detector: Any, args: argparse.Namespace, out: TextIO) -> int:
    """``--stream``: per input, a line per chunk as soon as it is scored, then the verdict line (the ``--json``
    record plus ``stream``). Exit status as without it: 1 when any input got no verdict."""
    from .media.sniff import iter_inputs
    from .pipeline.outputs import Prediction
    from .pipeline.stream import ChunkResult, StreamVerdict

    failed = False
    for path, err in iter_inputs(args.paths):
        items = (
            iter([StreamVerdict(Prediction(path=path, error=err))])
            if err
            else detector.stream(path, args.chunk_seconds)
        )
        try:
            for item in items:
                if isinstance(item, ChunkResult):
                    line = json.dumps(item.to_json()) if args.json else _chunk_text(item)
                else:
                    failed |= item.prediction.error is not None
                    line = json.dumps(item.to_json()) if args.json else _text(item.prediction)
                print(line, file=out, flush=True)
        except Exception as exc:
            # As without --stream: whatever happens to one input, the batch goes on with an error line for it.
            pred = Prediction(path=path, error=one_line(f"internal error: {type(exc).__name__}: {exc}", 300))
            print(json.dumps(pred.to_json()) if args.json else _text(pred), file=out, flush=True)
            failed = True
    return ExitCode.INPUT_ERRORS if failed else ExitCode.OK


def _chunk_text(c: Any) -> str:
    """One line per chunk in text mode."""
    where = f"chunk {c.chunk:3d}  {c.start_s:8.1f}-{c.end_s:8.1f} s"
    if c.error:
        return f"{where}  not scored: {printable(c.error)}"

    from .pipeline.outputs import format_p

    def p(x: float | None) -> str:
        return "-" if x is None else format_p(x)

    return f"{where}  P(fake)={p(c.p_fake)}  vision {p(c.vision)}  audio {p(c.audio)}  {printable(c.path)}"


def load_checked(checkpoint: str | None, device: str, runtime: str = "torch") -> Any:
    """:func:`multimodal_df.pipeline.checkpoint.load`, with any failure a :class:`CheckpointError` (exit status 2):
    validation names what is wrong with a checkpoint, and whatever still escapes it is the checkpoint's fault too,
    never a reason to show a traceback. ``runtime="onnx"`` runs the branch models on ONNX Runtime
    (:func:`multimodal_df.pipeline.onnx_runtime.load`)."""
    from .pipeline.onnx_runtime import load

    try:
        return load(checkpoint, device, runtime)
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
