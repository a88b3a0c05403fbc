"""From logits to probabilities that mean something, and the decision threshold.

A calibration is fitted on a validation set that is usually small and, for pseudo-fakes, often
perfectly separable. A plain maximum-likelihood fit then runs away: the scale grows without bound
and every score becomes 0 or 1. Two things keep it honest:

* Platt's own prior (Platt, 1999): the targets are (n_fake + 1) / (n_fake + 2) and 1 / (n_real + 2)
  instead of 1 and 0, so a perfect separation still gives a finite scale;
* the same rule of succession bounds what is reported: a calibration fitted on n_real real and
  n_fake fake items never claims more than 1 - 1 / (n_fake + 2) or less than 1 / (n_real + 2).
  Only thousands of validation items earn a score that prints as 0.000 or 1.000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Calibration:
    """Maps a logit z to P(fake) = clip(sigmoid(a * z + b), p_min, p_max). Temperature scaling is b = 0, a = 1 / T."""

    a: float = 1.0
    b: float = 0.0
    p_min: float = 0.0
    """The least P(fake) the validation evidence supports (1 / (n_real + 2)); 0 in checkpoints from before it existed."""
    p_max: float = 1.0

    def __call__(self, logit: np.ndarray | float) -> np.ndarray:
        z = np.asarray(logit, dtype=np.float64) * self.a + self.b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return np.clip(p, self.p_min, self.p_max)


def fit_calibration(
    logits: np.ndarray, y: np.ndarray, kind: str = "temperature", prior: float | None = None
) -> Calibration:
    """Fit temperature (``kind='temperature'``) or Platt (``'platt'``) scaling of ``logits`` [N] to labels ``y`` [N]
    by minimising the cross-entropy against Platt's smoothed targets; see the module docstring for why.

    ``prior``: the share of fakes the probabilities assume. Items are weighted so that the fakes carry that share of
    the loss (None: as counted, the validation set's own share), since a validation set made of one pseudo-fake per
    generator family has as many fakes per real item as there are families, which says nothing of the world."""
    import torch
    from torch import nn

    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or len(np.unique(y)) < 2:
        return Calibration()
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    target = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    yt = torch.as_tensor(target)
    w = None
    if prior is not None:
        w = torch.as_tensor(np.where(y > 0.5, prior * len(y) / n_pos, (1 - prior) * len(y) / n_neg))
    log_a = torch.zeros((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=kind == "platt")
    params = [log_a, b] if kind == "platt" else [log_a]
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(z * log_a.exp() + b, yt, weight=w)
        loss.backward()
        return loss

    opt.step(closure)
    a, bb = float(log_a.detach().exp()), float(b.detach())
    if not math.isfinite(a) or not math.isfinite(bb):
        a, bb = 1.0, 0.0
    return Calibration(a, bb, 1 / (n_neg + 2), 1 - 1 / (n_pos + 2))


def choose_threshold(p: np.ndarray, y: np.ndarray, rule: str = "youden", fixed: float = 0.5) -> float:
    """Decision threshold on P(fake): ``fixed``, or the point maximising TPR - FPR (Youden's J)."""
    y = np.asarray(y)
    if rule == "fixed" or len(np.unique(y)) < 2:
        return float(fixed)
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, p)
    j = tpr - fpr
    best = int(np.argmax(j))
    # roc_curve's first threshold is +inf; a threshold strictly inside (0, 1) keeps both labels reachable.
    t = float(thr[best]) if np.isfinite(thr[best]) else 1.0
    # Midway between this score and the next lower one generalises better than the score itself.
    lower = p[p < t]
    t = (t + float(lower.max())) / 2 if len(lower) else t
    return float(min(max(t, 1e-6), 1 - 1e-6))
