"""Evaluate a detector on a labelled manifest and write ROC-AUC reports.

    python -m multimodal_df.evaluate --checkpoint DIR --manifest test.csv --out DIR [--split test]
    python -m multimodal_df.evaluate --checkpoint DIR --manifest dev.csv --manifest pseudo.csv --out DIR

With several manifests, each file's category is prefixed with its manifest's name (``dev/video:emo``), so
one table reports every source of every set, each against the real files of its own domain.

Writes ``report.json``, ``report.md``, ``roc.png``, ``predictions.jsonl`` (one record per file) and
``model_card.md``: one table of AUC per domain and per source, with ``--validation runs/x/validation.json``
next to the recipe's pseudo-fake figures (held-out generators marked). Every file goes through the same code path as ``predict``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from .errors import ConfigError, ExitCode, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.evaluate", description="ROC-AUC reports for a detector on a labelled manifest."
    )
    p.add_argument("--checkpoint", required=True, help="detector directory")
    p.add_argument(
        "--manifest",
        required=True,
        action="append",
        help="CSV with path,label[,video_label,audio_label,split,category] or a real/fake folder; repeat for several",
    )
    p.add_argument("--out", required=True, help="directory for report.json, report.md, roc.png")
    p.add_argument("--split", help="evaluate only rows of this split (e.g. test)")
    p.add_argument(
        "--validation",
        help="a recipe's validation.json: its pseudo-fake figures join the real-world ones in model_card.md",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUC intervals")
    p.add_argument(
        "--trim-silence",
        action="store_true",
        help="also report every AUC with leading/trailing silence cut from the audio (a shortcut check)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 report written, 2 bad arguments / manifest / checkpoint, 3 the process itself failed.
    Files that cannot be analysed are listed in the report, not an error of the command."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.report import build_report, fmt, model_card_table, plot_roc, with_trimmed_audio, write_markdown
    from .pipeline.checkpoint import load
    from .training.manifests import read_manifest

    validation = None
    if args.validation:
        try:
            validation = json.loads(Path(args.validation).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--validation {args.validation}: {exc}") from None
    det = load(args.checkpoint, args.device)
    rows = []
    for m in args.manifest:
        part = read_manifest(m)
        if len(args.manifest) > 1:
            for r in part:
                r.category = f"{Path(m).stem}/{r.category or ('fake' if r.label else 'real')}"
        rows += part
    if args.split:
        rows = [r for r in rows if r.split == args.split]
        if not rows:
            raise ConfigError(f"no rows with split {args.split!r} in {args.manifest}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    preds, trimmed = [], []
    with open(out / "predictions.jsonl", "w") as fh:
        for i, r in enumerate(rows):
            analysis = det.analyze(r.path)
            pred = analysis.prediction
            preds.append(pred)
            if args.trim_silence:
                trimmed.append(with_trimmed_audio(det, analysis))
            fh.write(json.dumps({**pred.to_json(), "label_true": r.label, "category": r.category}) + "\n")
            if sys.stderr.isatty():
                print(f"\r{i + 1}/{len(rows)} files", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    report = build_report(det, rows, preds, args.bootstrap)
    if args.trim_silence:
        report["trim_silence"] = build_report(det, rows, trimmed, args.bootstrap)
    report["checkpoint"] = str(args.checkpoint)
    report["manifest"] = [str(m) for m in args.manifest]
    report["split"] = args.split
    report["seconds"] = round(time.time() - t0, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_roc(preds, rows, out / "roc.png")
    title = f"Evaluation of {Path(args.checkpoint).name} on {', '.join(Path(m).name for m in args.manifest)}" + (
        f" ({args.split})" if args.split else ""
    )
    write_markdown(report, out / "report.md", title)
    (out / "model_card.md").write_text(f"## {title}\n\n" + model_card_table(report, validation))
    if "trim_silence" in report:
        extra = out / "report_trimmed.md"
        write_markdown(report["trim_silence"], extra, title + ", leading/trailing silence removed")
        text = (out / "report.md").read_text()
        t = report["trim_silence"]["fused"]
        (out / "report.md").write_text(
            text
            + f"\n## Shortcut check: silence removed\n\nWith leading and trailing silence cut from the audio, fused ROC-AUC is {fmt(t['auc'])} "
            f"(was {fmt(report['fused']['auc'])}). A large drop means the model leaned on silence. Full tables: [report_trimmed.md](report_trimmed.md).\n"
        )
    f = report["fused"]
    print(
        f"fused ROC-AUC {fmt(f['auc'])} (95% CI {fmt((f['auc_ci95'] or [None])[0])}–{fmt((f['auc_ci95'] or [None, None])[1])}) on {f['n']} files; report in {out}"
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
