"""Evaluate a detector on a labelled manifest and write ROC-AUC reports.

    python -m multimodal_df.evaluate --checkpoint DIR --manifest test.csv --out DIR [--split test]

Writes ``report.json``, ``report.md``, ``roc.png`` and ``predictions.jsonl`` (one record per
file). Every file goes through the same code path as ``predict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .audio.features import trim_silence
from .data import ManifestRow, read_manifest
from .decode import Clip
from .detector import Detector
from .errors import CheckpointError, ConfigError
from .metrics import clean, roc_auc, score_report
from .outputs import Prediction


def _scores(preds: list[Prediction], rows: list[ManifestRow], which: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    y, p = [], []
    for r, pr in zip(rows, preds):
        if pr.error:
            continue
        label = {"label": r.label, "video": r.video_label, "audio": r.audio_label}[target]
        score = pr.p_fake if which == "fused" else getattr(getattr(pr, which), "p_fake", None)
        if label is None or score is None:
            continue
        y.append(label)
        p.append(score)
    return np.asarray(y, int), np.asarray(p, float)


def build_report(det: Detector, rows: list[ManifestRow], preds: list[Prediction], n_boot: int = 1000) -> dict[str, Any]:
    """Metrics for fused and per-modality scores, per category, and the failures."""
    report: dict[str, Any] = {
        "package_version": __version__,
        "threshold": det.threshold,
        "files": len(rows),
        "scored": sum(1 for p in preds if not p.error),
        "failed": [{"path": p.path, "error": p.error} for p in preds if p.error],
    }
    y, p = _scores(preds, rows, "fused", "label")
    report["fused"] = score_report(y, p, det.threshold, n_boot)
    report["modalities"] = {}
    for which, meta in (("vision", det.vision_meta), ("audio", det.audio_meta)):
        own = "video" if which == "vision" else "audio"
        entry: dict[str, Any] = {}
        y, p = _scores(preds, rows, which, "label")
        if len(y):
            entry["on_label"] = score_report(y, p, meta.threshold, n_boot)
        y, p = _scores(preds, rows, which, own)
        if len(y):
            entry[f"on_{own}_label"] = score_report(y, p, meta.threshold, n_boot)
        report["modalities"][which] = entry or None
    # Per category: each fake category against all real files (FakeAVCeleb's RVRA vs FVRA, ...).
    cats: dict[str, Any] = {}
    categories = sorted({r.category for r in rows if r.category})
    for c in categories:
        idx = [i for i, r in enumerate(rows) if r.category == c]
        sub = [i for i in range(len(rows)) if rows[i].category == c or rows[i].label == 0]
        if len({rows[i].label for i in idx}) == 2:
            sub = idx
        entry = {"files": len(idx)}
        for which in ("fused", "vision", "audio"):
            y, p = _scores([preds[i] for i in sub], [rows[i] for i in sub], which, "label")
            entry[f"{which}_auc"] = roc_auc(y, p) if len(y) else float("nan")
        cats[c] = entry
    report["categories"] = cats
    return clean(report)


def plot_roc(preds: list[Prediction], rows: list[ManifestRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for which, target, style in (("fused", "label", "-"), ("vision", "video", "--"), ("audio", "audio", ":")):
        y, p = _scores(preds, rows, which, target)
        if target != "label" and len(y) == 0:
            y, p = _scores(preds, rows, which, "label")
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, style, label=f"{which} (AUC {roc_auc(y, p):.3f}, n={len(y)})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(x: Any, nd: int = 3) -> str:
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def write_markdown(report: dict[str, Any], path: Path, title: str) -> None:
    def row(name: str, m: dict[str, Any] | None) -> str:
        if not m:
            return f"| {name} | – | – | – | – | – | – | – | – |"
        ci = m.get("auc_ci95") or [None, None]
        return (
            f"| {name} | {m['n']} | {_fmt(m['auc'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] | {_fmt(m['ap'])} | {_fmt(m['eer'])} | "
            f"{_fmt(m.get('accuracy'))} | {_fmt(m.get('precision'))} / {_fmt(m.get('recall'))} | {_fmt(m.get('f1'))} | {_fmt(m['ece'])} |"
        )

    lines = [
        f"# {title}",
        "",
        f"{report['scored']} of {report['files']} files scored; decision threshold {_fmt(report['threshold'])} on calibrated P(fake).",
        "",
        "| scores | n | ROC-AUC [95% CI] | AP | EER | accuracy | precision / recall | F1 | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
        row("fused (label)", report["fused"]),
    ]
    for which, entry in report["modalities"].items():
        for key, m in (entry or {}).items():
            lines.append(row(f"{which} ({key.removeprefix('on_').replace('_', ' ')})", m))
    c = report["fused"].get("confusion")
    if c:
        lines += ["", "Confusion (fused, at the threshold):", "", "| | called real | called fake |", "|---|---|---|", f"| real | {c['tn']} | {c['fp']} |", f"| fake | {c['fn']} | {c['tp']} |"]
    if report["categories"]:
        lines += ["", "Per category (each category against all real files):", "", "| category | files | fused AUC | vision AUC | audio AUC |", "|---|---|---|---|---|"]
        for k, v in report["categories"].items():
            lines.append(f"| {k} | {v['files']} | {_fmt(v['fused_auc'])} | {_fmt(v['vision_auc'])} | {_fmt(v['audio_auc'])} |")
    if report["failed"]:
        lines += ["", f"Failed files ({len(report['failed'])}):", ""] + [f"- `{f['path']}`: {f['error']}" for f in report["failed"][:50]]
    lines += ["", "![ROC](roc.png)", ""]
    path.write_text("\n".join(lines))


def with_trimmed_audio(det: Detector, pred: Prediction, clip: Clip | None) -> Prediction:
    """``pred`` re-scored with leading/trailing silence cut from the audio; the vision result is reused."""
    if pred.error or clip is None or pred.audio is None or clip.waveform is None:
        return pred
    a = det.audio_output(trim_silence(clip.waveform, clip.sample_rate), clip.sample_rate)
    # Sync keeps its untrimmed measurement: trimming moves the audio against the video, which sync
    # would rightly call a shift; this check is about the audio branch's silence shortcut.
    p = det.fuse(pred.vision, a, pred.sync)
    return dataclasses.replace(pred, audio=a, p_fake=p, label="fake" if p >= det.threshold else "real")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.evaluate", description="ROC-AUC reports for a detector on a labelled manifest.")
    p.add_argument("--checkpoint", required=True, help="detector directory")
    p.add_argument("--manifest", required=True, help="CSV with path,label[,video_label,audio_label,split,category]")
    p.add_argument("--out", required=True, help="directory for report.json, report.md, roc.png")
    p.add_argument("--split", help="evaluate only rows of this split (e.g. test)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUC intervals")
    p.add_argument("--trim-silence", action="store_true", help="also report every AUC with leading/trailing silence cut from the audio (a shortcut check)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        det = Detector.load(args.checkpoint, args.device)
        rows = read_manifest(args.manifest)
    except (CheckpointError, ConfigError, RuntimeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if args.split:
        rows = [r for r in rows if r.split == args.split]
        if not rows:
            print(f"error: no rows with split {args.split!r} in {args.manifest}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    preds, trimmed = [], []
    with open(out / "predictions.jsonl", "w") as fh:
        for i, r in enumerate(rows):
            pred, clip, _ = det.analyze_full(r.path)
            preds.append(pred)
            if args.trim_silence:
                trimmed.append(with_trimmed_audio(det, pred, clip))
            fh.write(json.dumps({**pred.to_json(), "label_true": r.label, "category": r.category}) + "\n")
            if sys.stderr.isatty():
                print(f"\r{i + 1}/{len(rows)} files", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    report = build_report(det, rows, preds, args.bootstrap)
    if args.trim_silence:
        report["trim_silence"] = build_report(det, rows, trimmed, args.bootstrap)
    report["checkpoint"] = str(args.checkpoint)
    report["manifest"] = str(args.manifest)
    report["split"] = args.split
    report["seconds"] = round(time.time() - t0, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_roc(preds, rows, out / "roc.png")
    title = f"Evaluation of {Path(args.checkpoint).name} on {Path(args.manifest).name}" + (f" ({args.split})" if args.split else "")
    write_markdown(report, out / "report.md", title)
    if "trim_silence" in report:
        extra = out / "report_trimmed.md"
        write_markdown(report["trim_silence"], extra, title + ", leading/trailing silence removed")
        text = (out / "report.md").read_text()
        t = report["trim_silence"]["fused"]
        (out / "report.md").write_text(
            text + f"\n## Shortcut check: silence removed\n\nWith leading and trailing silence cut from the audio, fused ROC-AUC is {_fmt(t['auc'])} "
            f"(was {_fmt(report['fused']['auc'])}). A large drop means the model leaned on silence. Full tables: [report_trimmed.md](report_trimmed.md).\n"
        )
    f = report["fused"]
    print(f"fused ROC-AUC {_fmt(f['auc'])} (95% CI {_fmt((f['auc_ci95'] or [None])[0])}–{_fmt((f['auc_ci95'] or [None, None])[1])}) on {f['n']} files; report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
