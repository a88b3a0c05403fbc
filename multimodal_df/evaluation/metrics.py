"""Detection metrics: ROC-AUC with bootstrap intervals, AP, EER, threshold metrics, calibration error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC, or NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, p = np.asarray(y), np.asarray(p)
    return float(roc_auc_score(y, p)) if _two_classes(y) else float("nan")


def bootstrap_auc(
    y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval for ROC-AUC, resampling within each class (keeps both present)."""
    from sklearn.metrics import roc_auc_score

    y, p = np.asarray(y), np.asarray(p)
    if not _two_classes(y):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    stats = np.empty(n)
    for i in range(n):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        stats[i] = roc_auc_score(y[idx], p[idx])
    return float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2))


def eer(y: np.ndarray, p: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate."""
    from sklearn.metrics import roc_curve

    if not _two_classes(np.asarray(y)):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # Interpolate between the two ROC points straddling the crossing.
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        w = d0 / (d0 - d1)
        return float(fpr[i] + w * (fpr[i + 1] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width probability bins (weighted mean |accuracy - confidence| on P(fake))."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() / len(y) * abs(y[sel].mean() - p[sel].mean())
    return float(total)


def auc_by_kind(scores: np.ndarray, kinds: list[str] | np.ndarray) -> dict[str, dict[str, Any]]:
    """AUC of the "real" items against the items of each other kind: ``{kind: {"auc", "n"}}`` for every
    kind but "real", whose count is under ``"real"``. Scores: P(fake) or logits [N]; kinds [N]."""
    k = np.asarray(kinds)
    p = np.asarray(scores)
    real = k == "real"
    out: dict[str, dict[str, Any]] = {"real": {"n": int(real.sum())}}
    for g in sorted(set(k.tolist()) - {"real"}):
        sel = real | (k == g)
        out[g] = {"auc": roc_auc((k[sel] != "real").astype(int), p[sel]), "n": int((k == g).sum())}
    return out


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and the confusion matrix at ``threshold`` (fake = positive)."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if tp and (prec + rec) else (0.0 if tp + fp + fn else float("nan"))
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(y) if len(y) else float("nan"),
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def score_report(
    y: np.ndarray, p: np.ndarray, threshold: float | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Every ranking and calibration metric for one set of scores."""
    from sklearn.metrics import average_precision_score

    y, p = np.asarray(y).astype(int), np.asarray(p, float)
    lo, hi = bootstrap_auc(y, p, n_boot, seed)
    out: dict[str, Any] = {
        "n": len(y),
        "n_fake": int(y.sum()),
        "n_real": int((1 - y).sum()),
        "auc": roc_auc(y, p),
        "auc_ci95": [lo, hi],
        "ap": float(average_precision_score(y, p)) if _two_classes(y) else float("nan"),
        "eer": eer(y, p),
        "ece": expected_calibration_error(y, p),
    }
    if threshold is not None:
        out.update(threshold_metrics(y, p, threshold))
    return out


def clean(obj: Any) -> Any:
    """NaN/inf -> None so reports are valid JSON."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
