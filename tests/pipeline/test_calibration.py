"""Calibration: recovers a known temperature, cannot run away on separable validation, bounds what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_df.pipeline.calibration import Calibration, choose_threshold, fit_calibration


def test_temperature_and_platt_calibration_recover_the_truth() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z / 2.5))).astype(int)  # true temperature 2.5
    cal = fit_calibration(z, y, "temperature")
    assert cal.a == pytest.approx(1 / 2.5, rel=0.05) and cal.b == 0.0
    y2 = (rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(int)
    platt = fit_calibration(z, y2, "platt")
    assert platt.a == pytest.approx(0.5, rel=0.08) and platt.b == pytest.approx(-1.0, abs=0.1)


def test_a_prior_states_probabilities_at_even_odds_whatever_the_validation_share() -> None:
    """Five fakes per real item (one per generator family): without a prior, Platt learns that share as its intercept
    and calls an undecided item likely fake; at prior 0.5 the intercept is the evidence alone."""
    rng = np.random.default_rng(2)
    n_real, n_fake = 4000, 20000
    z = np.r_[rng.normal(-1.5, 1.0, n_real), rng.normal(1.5, 1.0, n_fake)]  # equal-variance: true log-odds 3 z
    y = np.r_[np.zeros(n_real), np.ones(n_fake)]
    as_counted = fit_calibration(z, y, "platt")
    even = fit_calibration(z, y, "platt", prior=0.5)
    assert as_counted.b == pytest.approx(np.log(5), abs=0.15) and even.b == pytest.approx(0.0, abs=0.15)
    assert even.a == pytest.approx(3.0, rel=0.1) and as_counted.a == pytest.approx(3.0, rel=0.1)
    assert float(even(0.0)) == pytest.approx(0.5, abs=0.05) and float(as_counted(0.0)) > 0.8
    from multimodal_df.config import load_config
    from multimodal_df.errors import ConfigError

    with pytest.raises(ConfigError, match="calibration_prior"):
        load_config("tiny", {"fusion.calibration_prior": 1.0})


def test_threshold_rules() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = choose_threshold(p, y, "youden")
    assert 0.3 < t <= 0.6
    assert choose_threshold(p, y, "fixed", 0.42) == 0.42
    assert choose_threshold(p, np.zeros(6), "youden", 0.5) == 0.5


@pytest.mark.parametrize("kind", ["temperature", "platt"])
def test_separable_validation_does_not_saturate(kind: str) -> None:
    """12 perfectly separated items (the old shipped model's case): no score may print as 0.0000 or 1.0000."""
    z = np.r_[np.linspace(-30, -10, 6), np.linspace(10, 30, 6)]
    y = np.r_[np.zeros(6), np.ones(6)]
    cal = fit_calibration(z, y, kind)
    assert cal.a < 5  # the old unbounded fit returned a = 464
    p = cal(np.r_[z, -1e4, 1e4])
    assert p.min() >= 1 / 8 - 1e-12 and p.max() <= 1 - 1 / 8 + 1e-12  # rule of succession on 6 + 6 items
    assert round(float(p.min()), 4) > 0 and round(float(p.max()), 4) < 1
    assert np.all(np.diff(cal(np.linspace(-9, 9, 19))) > 0)  # ranks are kept inside the bounds


def test_bounds_loosen_with_more_evidence() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    z = (y * 2 - 1) * 8 + rng.normal(0, 1, 5000)
    cal = fit_calibration(z, y, "platt")
    assert cal.p_max > 0.999 and cal.p_min < 0.001


def test_old_checkpoints_keep_their_unbounded_calibration() -> None:
    assert Calibration(2.0, 0.0)(50.0) == pytest.approx(1.0)


def test_printed_probabilities_never_claim_certainty() -> None:
    from multimodal_df.pipeline.outputs import format_p

    assert format_p(0.5) == "0.500" and format_p(0.123456) == "0.123"
    # Rounding to 3 places would print certainty the model does not have: more places instead.
    assert format_p(0.99994) == "0.9999" and format_p(0.00004) == "0.00004"
    assert all(format_p(p) not in ("0.000", "1.000") for p in (1e-4, 1e-6, 1 - 1e-4, 1 - 1e-6))
