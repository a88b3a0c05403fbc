from __future__ import annotations

import numpy as np
import pytest

from multimodal_df.evaluation.metrics import roc_auc
from multimodal_df.fusion.model import (
    FusionInputs,
    fusion_logits,
    single_modality_variants,
    stratified_folds,
    train_fusion,
)


def _toy(n: int, seed: int) -> tuple[FusionInputs, np.ndarray, np.ndarray, np.ndarray]:
    """Each modality is fake independently; a file is fake if either is. Logits are noisy evidence."""
    rng = np.random.default_rng(seed)
    yv, ya = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y = np.maximum(yv, ya)
    v = (yv * 2 - 1) * 2.0 + rng.normal(0, 1, n)
    a = (ya * 2 - 1) * 2.0 + rng.normal(0, 1, n)
    x = FusionInputs(
        v,
        np.c_[v, rng.normal(size=n)],
        np.ones(n),
        a,
        np.c_[a, rng.normal(size=n)],
        np.ones(n),
        np.zeros((n, 0)),
        np.zeros(n),
    )
    return x, y, yv, ya


@pytest.mark.parametrize("method", ["stacking", "mlp"])
def test_fusion_learns_and_handles_missing_modalities(method: str) -> None:
    x, y, yv, ya = _toy(400, 0)
    m = train_fusion(
        method, x, y, y_v=yv, y_a=ya, hidden=16, modality_dropout=0.3, epochs=400, lr=0.02, weight_decay=1e-3
    )
    xt, yt, yvt, yat = _toy(300, 1)
    assert roc_auc(yt, fusion_logits(m, xt)) > 0.9
    # With audio missing, the verdict must follow the video alone; likewise for video missing.
    v_only = xt.subset(np.arange(len(xt)))
    v_only.a_present = np.zeros(len(xt))
    a_only = xt.subset(np.arange(len(xt)))
    a_only.v_present = np.zeros(len(xt))
    assert roc_auc(yvt, fusion_logits(m, v_only)) > 0.9
    assert roc_auc(yat, fusion_logits(m, a_only)) > 0.9
    # A clean video with no audio is called real, not "maybe an audio fake".
    clean_v = v_only.subset(np.flatnonzero(yvt == 0))
    assert np.mean(fusion_logits(m, clean_v) < 0) > 0.9


def test_single_modality_variants_take_the_remaining_label() -> None:
    x, y, yv, ya = _toy(10, 2)
    xs, ys, pat = single_modality_variants(x, y, yv, ya)
    assert len(xs) == 30
    np.testing.assert_array_equal(ys[pat == 1], yv)
    np.testing.assert_array_equal(ys[pat == 2], ya)
    assert xs.a_present[pat == 1].max() == 0 and xs.v_present[pat == 2].max() == 0


def test_stratified_folds_balance_classes() -> None:
    y = np.array([0] * 10 + [1] * 6)
    f = stratified_folds(y, 3, 0)
    for k in range(3):
        assert 3 <= (y[f == k] == 0).sum() <= 4 and 2 <= (y[f == k] == 1).sum() <= 2


def test_noisy_or_is_explainable_from_the_branch_scores() -> None:
    """noisy_or: the fused P(fake) lies between the larger branch score and their sum, equals the present branch
    when the other is missing, and learns nothing (the same for any training data)."""
    from multimodal_df.pipeline.calibration import Calibration

    x, y, yv, ya = _toy(200, 3)
    vcal, acal = Calibration(1.3, -0.2, 0.01, 0.99), Calibration(0.7, 0.4, 0.02, 0.98)
    kw = dict(hidden=8, modality_dropout=0.3, epochs=5, lr=0.01, weight_decay=0.0, calibrations=(vcal, acal))
    m = train_fusion("noisy_or", x, y, y_v=yv, y_a=ya, **kw)  # type: ignore[arg-type]
    assert not list(m.parameters())
    pv, pa = vcal(x.v_logit), acal(x.a_logit)
    p = 1 / (1 + np.exp(-fusion_logits(m, x)))
    assert np.allclose(p, 1 - (1 - pv) * (1 - pa), atol=1e-5)
    assert np.all(p >= np.maximum(pv, pa) - 1e-6) and np.all(p <= pv + pa + 1e-6)
    # A face at 0.70 and a silent voice: 0.70, not 0.999.
    logit_70 = (np.log(0.7 / 0.3) - vcal.b) / vcal.a
    one = FusionInputs(
        np.array([logit_70]), np.zeros((1, 2)), np.ones(1), np.array([-50.0]), np.zeros((1, 2)), np.ones(1),
        np.zeros((1, 0)), np.zeros(1),
    )  # fmt: skip
    assert abs(1 / (1 + np.exp(-fusion_logits(m, one)[0])) - (1 - 0.3 * (1 - acal.p_min))) < 1e-4
    # Missing audio: the vision score alone.
    xv = FusionInputs(x.v_logit, x.v_emb, x.v_present, x.a_logit, x.a_emb, np.zeros(len(y)), x.s_feat, x.s_present)
    assert np.allclose(1 / (1 + np.exp(-fusion_logits(m, xv))), pv, atol=1e-5)
    other = train_fusion("noisy_or", x, 1 - y, y_v=yv, y_a=ya, **kw)  # type: ignore[arg-type]
    assert np.allclose(fusion_logits(other, x), fusion_logits(m, x))
