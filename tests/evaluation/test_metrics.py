import numpy as np
import pytest

from multimodal_df.evaluation.metrics import (
    bootstrap_auc,
    eer,
    expected_calibration_error,
    roc_auc,
    score_report,
    threshold_metrics,
)


def test_perfect_and_random_scores() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert eer(y, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert np.isnan(roc_auc(np.ones(4), np.arange(4.0)))


def test_eer_on_a_known_case() -> None:
    rng = np.random.default_rng(0)
    # Two unit Gaussians 2 apart: EER = Phi(-1) = 0.1587.
    y = np.r_[np.zeros(20000), np.ones(20000)]
    s = np.r_[rng.normal(0, 1, 20000), rng.normal(2, 1, 20000)]
    assert eer(y, s) == pytest.approx(0.1587, abs=0.01)
    lo, hi = bootstrap_auc(y[::40], s[::40], n=300)
    assert lo < roc_auc(y[::40], s[::40]) < hi


def test_ece_and_threshold_metrics() -> None:
    y = np.array([1, 1, 0, 0])
    assert expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == 0.0
    assert expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.0  # right on average within the bin
    assert expected_calibration_error(np.array([1, 1]), np.array([0.0, 0.0])) == 1.0
    m = threshold_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), 0.5)
    assert m["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    r = score_report(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.7]), 0.5, n_boot=50)
    assert r["auc"] == 1.0 and r["n_fake"] == 2 and r["accuracy"] == 1.0
