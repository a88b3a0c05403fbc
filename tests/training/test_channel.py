"""Channel and codec augmentation: shapes, bounds, alignment, edge cases, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from multimodal_df.training.pseudofakes.channel import (
    AMR_NB,
    CHANNEL_EFFECTS,
    DEFAULT_CODECS,
    ChannelConfig,
    add_noise,
    apply_effect,
    codec_roundtrip,
    degrade_channel,
    resample_roundtrip,
    telephone,
)

SR = 16000


def speechlike(seconds: float = 2.0, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal with breath noise: speech-like enough for codecs."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 25) if k * 150 < sample_rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    x = 0.2 * harmonics * envelope + 0.01 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def lag_of(y: np.ndarray, x: np.ndarray, max_lag: int = 400) -> int:
    """Lag (samples) maximising the cross-correlation of y against x; positive = y is late."""
    ypad = np.concatenate([np.zeros(max_lag), y, np.zeros(max_lag)])
    corr = fftconvolve(ypad, x[::-1], mode="valid")  # corr[k] = sum_i ypad[k + i] x[i], k = lag + max_lag
    return int(np.argmax(corr)) - max_lag


def always(name: str) -> ChannelConfig:
    """A config in which only ``name`` fires, always."""
    cfg = ChannelConfig.off()
    setattr(cfg, f"p_{name}", 1.0)
    return cfg


@pytest.mark.parametrize("name", CHANNEL_EFFECTS)
@pytest.mark.parametrize("sample_rate", [SR, 44100])
def test_each_effect_keeps_length_finite_bounded(name: str, sample_rate: int) -> None:
    x = speechlike(2.0, sample_rate)
    for seed in range(3):
        y = apply_effect(name, x, sample_rate, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
        assert np.abs(y).max() > 0.01  # the signal survived
        z = degrade_channel(x, sample_rate, np.random.default_rng(seed), always(name))
        assert z.shape == x.shape and np.isfinite(z).all()


@pytest.mark.parametrize("n", [0, 1, 37, 400, 1599])
@pytest.mark.parametrize("name", CHANNEL_EFFECTS)
def test_short_and_silent_inputs(name: str, n: int) -> None:
    for x in (np.zeros(n, np.float32), speechlike(0.1)[:n]):
        y = apply_effect(name, x, SR, np.random.default_rng(1))
        assert y.shape == (n,) and y.dtype == np.float32
        assert np.isfinite(y).all() and (n == 0 or np.abs(y).max() <= 1.0)
    # Silence stays (close to) silence: no stage invents signal out of nothing.
    y = apply_effect(name, np.zeros(SR // 2, np.float32), SR, np.random.default_rng(2))
    assert np.abs(y).max() < 1e-3


def test_nan_input_gives_finite_output() -> None:
    x = speechlike(0.5)
    x[100:200] = np.nan
    x[300] = np.inf
    cfg = ChannelConfig(p_reverb=1, p_noise=1, p_gain_eq=1, p_resample=1, p_telephone=1, p_codec=1)
    y = degrade_channel(x, SR, np.random.default_rng(0), cfg)
    assert y.shape == x.shape and np.isfinite(y).all()


@pytest.mark.parametrize("spec", DEFAULT_CODECS, ids=lambda s: s.name)
@pytest.mark.parametrize("sample_rate", [SR, 22050, 8000])
def test_codec_output_is_aligned(spec, sample_rate: int) -> None:
    x = speechlike(2.0, sample_rate, seed=3)
    for kbps in (spec.bitrates_kbps[0], spec.bitrates_kbps[-1]):
        y = codec_roundtrip(x, sample_rate, spec, kbps)
        assert y.shape == x.shape and np.isfinite(y).all()
        assert abs(lag_of(y, x)) <= 2, (spec.name, kbps, sample_rate)
        # Something was lost, but the signal is still there.
        assert 0.3 < np.corrcoef(x, y)[0, 1] < 1.0


@pytest.mark.parametrize("sample_rate", [SR, 8000])
def test_amr_telephone_is_aligned(sample_rate: int) -> None:
    x = speechlike(2.0, sample_rate, seed=4)
    plain = telephone(x, sample_rate)
    for kbps in (AMR_NB.bitrates_kbps[0], AMR_NB.bitrates_kbps[-1]):
        y = telephone(x, sample_rate, amr_kbps=kbps)
        assert y.shape == x.shape and np.isfinite(y).all()
        assert abs(lag_of(y, plain)) <= 2
        assert np.corrcoef(y, plain)[0, 1] > 0.5


def test_probability_zero_is_identity() -> None:
    x = speechlike(1.0)
    for seed in range(5):
        y = degrade_channel(x, SR, np.random.default_rng(seed), ChannelConfig.off())
        assert np.array_equal(y, x) and y is not x


def test_same_seed_same_output() -> None:
    x = speechlike(1.0)
    cfg = ChannelConfig(p_reverb=0.5, p_noise=0.5, p_gain_eq=0.5, p_resample=0.5, p_telephone=0.5, p_codec=0.5)
    for seed in range(4):
        a = degrade_channel(x, SR, np.random.default_rng(seed), cfg)
        b = degrade_channel(x, SR, np.random.default_rng(seed), cfg)
        assert np.array_equal(a, b)


def test_default_config_changes_something_sometimes() -> None:
    x = speechlike(1.0)
    changed = sum(not np.array_equal(degrade_channel(x, SR, np.random.default_rng(s)), x) for s in range(20))
    assert 5 < changed <= 20


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_noise_snr(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)  # constant power
    y = add_noise(x, SR, rng, snr_db=20.0, kind=kind)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.5


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_band_limiting_effects_remove_high_band() -> None:
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    for y in (telephone(x, SR), telephone(x, SR, mulaw=True), resample_roundtrip(x, SR, 8000)):
        ratio = _band_energy(y, 4500, 8000) / _band_energy(x, 4500, 8000)
        assert ratio < 0.01
    low = _band_energy(telephone(x, SR), 0, 200) / _band_energy(x, 0, 200)
    assert low < 0.1
