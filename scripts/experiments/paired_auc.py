"""Paired comparison of two models' ROC-AUC on the same files: each model's AUC, the difference, and a bootstrap
over files (resampled alike for both) of that difference.

Run: python scripts/experiments/paired_auc.py A/predictions.jsonl B/predictions.jsonl [--key audio] [--n 5000]
(``predictions.jsonl`` as ``evaluate`` writes it; ``--key`` scores a branch's logit, default the fused logit.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def scores(path: Path, key: str | None) -> dict[str, tuple[int, float]]:
    """File -> (label, score) of the files scored without error."""
    out: dict[str, tuple[int, float]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("error"):
            continue
        s = r["logit"] if key is None else ((r.get("modalities") or {}).get(key) or {}).get("logit")
        if s is not None:
            out[r["path"]] = (int(r["label_true"]), float(s))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--key", default=None)
    p.add_argument("--n", type=int, default=5000)
    args = p.parse_args(argv)
    a, b = scores(args.a, args.key), scores(args.b, args.key)
    files = sorted(set(a) & set(b))
    y = np.array([a[f][0] for f in files])
    sa, sb = np.array([a[f][1] for f in files]), np.array([b[f][1] for f in files])
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.n):
        i = rng.integers(0, len(files), len(files))
        if 0 < y[i].sum() < len(i):
            diffs.append(roc_auc_score(y[i], sb[i]) - roc_auc_score(y[i], sa[i]))
    d = np.array(diffs)
    print(
        f"{len(files)} files: A {roc_auc_score(y, sa):.3f}, B {roc_auc_score(y, sb):.3f}, B - A "
        f"{roc_auc_score(y, sb) - roc_auc_score(y, sa):+.3f} (95% bootstrap {np.quantile(d, 0.025):+.3f} to "
        f"{np.quantile(d, 0.975):+.3f}; B better in {np.mean(d > 0):.1%} of resamples)"
    )


if __name__ == "__main__":
    main()
