"""ROC-AUC reports: metrics for fused and per-modality scores, per category, with the failures; Markdown and a plot."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..audio.features import trim_silence
from ..pipeline.detector import Detector
from ..pipeline.outputs import Analysis, Prediction
from ..training.manifests import ManifestRow
from .metrics import clean, roc_auc, score_report


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
    report["categories"] = category_table(rows, preds)
    report["domains"] = domain_table(rows, preds)
    return clean(report)


def domain_of(category: str | None) -> str | None:
    """``video:emo`` -> ``video``: a category's domain is what comes before its first colon (None without one)."""
    return category.split(":", 1)[0] if category and ":" in category else None


def _mean_p(preds: list[Prediction], idx: list[int]) -> float:
    ps = [preds[i].p_fake for i in idx if preds[i].p_fake is not None]
    return float(np.mean(ps)) if ps else float("nan")


def category_table(rows: list[ManifestRow], preds: list[Prediction]) -> dict[str, Any]:
    """Per category: its files, their mean fused P(fake), and for a category of fakes the AUC against the real files
    of its domain (``video:emo`` against every real ``video:*``; without a domain, against every real file), fused
    and per modality. A category that holds both classes (FakeAVCeleb's) is scored on its own files."""
    cats: dict[str, Any] = {}
    for c in sorted({r.category for r in rows if r.category}):
        idx = [i for i, r in enumerate(rows) if r.category == c]
        labels = {rows[i].label for i in idx}
        dom = domain_of(c)
        if len(labels) == 2:
            sub = idx
        else:
            sub = idx + [
                i for i, r in enumerate(rows) if r.label == 0 and r.category != c and domain_of(r.category) == dom
            ]
        entry: dict[str, Any] = {
            "files": len(idx),
            "label": "mixed" if len(labels) == 2 else ("fake" if 1 in labels else "real"),
        }
        entry["mean_p_fake"] = _mean_p(preds, idx)
        for which in ("fused", "vision", "audio"):
            y, p = _scores([preds[i] for i in sub], [rows[i] for i in sub], which, "label")
            entry[f"{which}_auc"] = roc_auc(y, p) if len(y) else float("nan")
        cats[c] = entry
    return cats


def domain_table(rows: list[ManifestRow], preds: list[Prediction]) -> dict[str, Any]:
    """Per domain (``video``, ``audio``, ``image``, ...): every fake against every real of that domain."""
    from .metrics import expected_calibration_error

    out: dict[str, Any] = {}
    for dom in sorted({d for r in rows if (d := domain_of(r.category))}):
        idx = [i for i, r in enumerate(rows) if domain_of(r.category) == dom]
        entry: dict[str, Any] = {"files": len(idx)}
        for which in ("fused", "vision", "audio"):
            y, p = _scores([preds[i] for i in idx], [rows[i] for i in idx], which, "label")
            entry[f"{which}_auc"] = roc_auc(y, p) if len(y) else float("nan")
            if which == "fused":
                entry.update(
                    n_real=int((y == 0).sum()), n_fake=int((y == 1).sum()), ece=expected_calibration_error(y, p)
                )
        out[dom] = entry
    return out


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


def fmt(x: Any, nd: int = 3) -> str:
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def write_markdown(report: dict[str, Any], path: Path, title: str) -> None:
    def row(name: str, m: dict[str, Any] | None) -> str:
        if not m:
            return f"| {name} | – | – | – | – | – | – | – | – |"
        ci = m.get("auc_ci95") or [None, None]
        return (
            f"| {name} | {m['n']} | {fmt(m['auc'])} [{fmt(ci[0])}, {fmt(ci[1])}] | {fmt(m['ap'])} | {fmt(m['eer'])} | "
            f"{fmt(m.get('accuracy'))} | {fmt(m.get('precision'))} / {fmt(m.get('recall'))} | {fmt(m.get('f1'))} | {fmt(m['ece'])} |"
        )

    lines = [
        f"# {title}",
        "",
        f"{report['scored']} of {report['files']} files scored; decision threshold {fmt(report['threshold'])} on calibrated P(fake).",
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
        lines += [
            "",
            "Confusion (fused, at the threshold):",
            "",
            "| | called real | called fake |",
            "|---|---|---|",
            f"| real | {c['tn']} | {c['fp']} |",
            f"| fake | {c['fn']} | {c['tp']} |",
        ]
    if report.get("domains"):
        lines += [
            "",
            "Per domain (every fake against every real file of the domain):",
            "",
            "| domain | real | fake | fused AUC | vision AUC | audio AUC | ECE |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in report["domains"].items():
            lines.append(
                f"| {k} | {v['n_real']} | {v['n_fake']} | {fmt(v['fused_auc'])} | {fmt(v['vision_auc'])} | "
                f"{fmt(v['audio_auc'])} | {fmt(v['ece'])} |"
            )
    if report["categories"]:
        lines += [
            "",
            "Per category (a category of fakes against the real files of its domain; categories of real files show"
            " their mean P(fake)):",
            "",
            "| category | label | files | mean P(fake) | fused AUC | vision AUC | audio AUC |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in report["categories"].items():
            lines.append(
                f"| {k} | {v['label']} | {v['files']} | {fmt(v['mean_p_fake'])} | {fmt(v['fused_auc'])} | "
                f"{fmt(v['vision_auc'])} | {fmt(v['audio_auc'])} |"
            )
    if report["failed"]:
        lines += ["", f"Failed files ({len(report['failed'])}):", ""] + [
            f"- `{f['path']}`: {f['error']}" for f in report["failed"][:50]
        ]
    lines += ["", "![ROC](roc.png)", ""]
    path.write_text("\n".join(lines))


def with_trimmed_audio(det: Detector, analysis: Analysis) -> Prediction:
    """The prediction re-scored with leading/trailing silence cut from the audio; the vision result is reused."""
    pred, clip = analysis.prediction, analysis.clip
    if pred.error or clip is None or pred.audio is None or clip.waveform is None:
        return pred
    a = det.audio_output(trim_silence(clip.waveform, clip.sample_rate), clip.sample_rate)
    # Sync keeps its untrimmed measurement: trimming moves the audio against the video, which sync
    # would rightly call a shift; this check is about the audio branch's silence shortcut.
    p = det.fuse(pred.vision, a, pred.sync)
    return dataclasses.replace(pred, audio=a, p_fake=p, label="fake" if p >= det.threshold else "real")


def model_card_table(report: dict[str, Any], validation: dict[str, Any] | None = None) -> str:
    """One Markdown table for the model card: real-world AUC per domain and per source of fakes from ``report``
    (an :func:`build_report` on media nobody on the project made), and with ``validation`` (the recipe's
    ``validation.json``) the pseudo-fake figures on never-seen people and speakers, held-out generators marked."""
    lines = [
        "| set | fakes | real | fake | fused AUC | vision AUC | audio AUC | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dom, v in (report.get("domains") or {}).items():
        lines.append(
            f"| real-world: {dom} | all | {v['n_real']} | {v['n_fake']} | {fmt(v['fused_auc'])} | "
            f"{fmt(v['vision_auc'])} | {fmt(v['audio_auc'])} | {fmt(v['ece'])} |"
        )
    for cat, v in (report.get("categories") or {}).items():
        if v["label"] == "fake":
            lines.append(
                f"| real-world: {domain_of(cat) or '-'} | {cat.split(':', 1)[-1]} | | {v['files']} | "
                f"{fmt(v['fused_auc'])} | {fmt(v['vision_auc'])} | {fmt(v['audio_auc'])} | |"
            )
    if validation:
        holdouts = {validation.get("holdout_generator"), validation.get("holdout_face_generator")} - {None}
        for key, branch, col in (
            ("vision_test_people", "pseudo-fakes, test people", "vision"),
            ("audio_test_speakers", "pseudo-fakes, test speakers", "audio"),
        ):
            t = validation.get(key) or {}
            n_real = (t.get("real") or {}).get("n", "")
            for kind, v in t.items():
                if not isinstance(v, dict) or "auc" not in v or kind == "real":
                    continue
                held = kind in holdouts
                name = f"**{kind} (held out)**" if held else kind
                ece = fmt(t.get("ece_holdout")) if held else ""
                cells = {"vision": "", "audio": ""}
                cells[col] = fmt(v["auc"])
                lines.append(
                    f"| {branch} | {name} | {n_real} | {v['n']} | | {cells['vision']} | {cells['audio']} | {ece} |"
                )
    return "\n".join(lines) + "\n"
