"""RawBoost-style distortions for audio training: shapes, strengths and that the training set applies them."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_df.training.augment import RAWBOOST_KINDS, rawboost

SR = 16000


def _speechlike(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 20))
    return (0.2 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )


@pytest.mark.parametrize("kind", RAWBOOST_KINDS)
def test_each_distortion_keeps_length_peak_and_most_of_the_signal(kind: str) -> None:
    x = _speechlike()
    y = rawboost(x, SR, np.random.default_rng(1), kind)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-5)
    assert not np.allclose(x, y, atol=1e-4)  # it did something
    assert np.corrcoef(x, y)[0, 1] > 0.5  # and left the speech there


def test_impulsive_noise_touches_one_to_ten_percent_of_the_samples() -> None:
    x = _speechlike()
    y = rawboost(x, SR, np.random.default_rng(2), "impulsive")
    # Away from the touched samples only the peak normalisation changes the waveform: a common scale.
    ratio = y / np.where(np.abs(x) > 1e-3, x, np.nan)
    common = np.nanmedian(ratio)
    touched = np.nanmean(np.abs(ratio - common) > 1e-3)
    assert 0.005 < touched < 0.12


def test_coloured_noise_lands_between_10_and_40_db_below_the_speech() -> None:
    x = _speechlike()
    for seed in range(5):
        y = rawboost(x, SR, np.random.default_rng(seed), "coloured_noise")
        scale = np.dot(y, x) / np.dot(x, x)  # undo the peak normalisation
        noise = y - scale * x
        snr = 10 * np.log10(np.mean((scale * x) ** 2) / np.mean(noise**2))
        assert 8 < snr < 42, snr


def test_the_same_seed_gives_the_same_distortion_and_silence_passes_through() -> None:
    x = _speechlike()
    a = rawboost(x, SR, np.random.default_rng(7))
    b = rawboost(x, SR, np.random.default_rng(7))
    assert np.array_equal(a, b)
    silent = np.zeros(SR, np.float32)
    assert np.array_equal(rawboost(silent, SR, np.random.default_rng(0)), silent)
    with pytest.raises(ValueError):
        rawboost(x, SR, np.random.default_rng(0), "reverb")


def test_the_training_set_distorts_real_and_fake_windows_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal_df.training import datasets

    seen: list[int] = []

    def spy(x, sr, rng):
        seen.append(len(x))
        return x

    monkeypatch.setattr(datasets, "rawboost", spy)
    reals = [_speechlike(s) for s in range(3)]
    banks = {"world": [_speechlike(10 + s) for s in range(3)]}
    ds = datasets.SpeechPseudoFakes(reals, banks, ["world"], SR, 2, True, 0, SR, rawboost_prob=1.0)
    labels = [int(ds[i][1]) for i in range(len(ds))]
    assert len(seen) == len(ds) and set(labels) == {0, 1}
    seen.clear()
    off = datasets.SpeechPseudoFakes(reals, banks, ["world"], SR, 2, True, 0, SR)
    _ = [off[i] for i in range(len(off))]
    assert not seen


def test_real_channel_prob_sets_the_channel_chance_of_real_windows_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal_df.training import datasets

    through: list[int] = []
    monkeypatch.setattr(datasets, "degrade_channel", lambda x, sr, rng: (through.append(1), x)[1])
    reals = [_speechlike(s) for s in range(3)]
    banks = {"world": [_speechlike(10 + s) for s in range(3)]}

    def channel_share(label: int, **probs: float | None) -> float:
        ds = datasets.SpeechPseudoFakes(reals, banks, ["world"], SR, 2, True, 0, SR, **probs)  # type: ignore[arg-type]
        idx = [i for i in range(len(ds)) if ds.index[i][0] == label]
        through.clear()
        for _ in range(20):  # windows are redrawn each time: 20 passes give 120 draws per class
            for i in idx:
                ds[i]
        return len(through) / (20 * len(idx))

    assert channel_share(0, channel_prob=0.0, real_channel_prob=1.0) == 1.0
    assert channel_share(1, channel_prob=0.0, real_channel_prob=1.0) == 0.0
    # None keeps one chance for both classes.
    assert 0.3 < channel_share(0, channel_prob=0.5, real_channel_prob=None) < 0.7
    assert 0.3 < channel_share(1, channel_prob=0.5, real_channel_prob=None) < 0.7


def test_real_channel_prob_is_checked() -> None:
    from multimodal_df.config import load_config
    from multimodal_df.errors import ConfigError

    with pytest.raises(ConfigError, match="real_channel_prob"):
        load_config("tiny", {"train.real_channel_prob": 1.5})
    assert load_config("tiny", {"train.real_channel_prob": 0.8}).train.real_channel_prob == 0.8


def test_softening_blurs_a_face_crop_and_keeps_its_size() -> None:
    from multimodal_df.training.augment import soften

    rng = np.random.default_rng(0)
    crop = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    soft = soften(crop, np.random.default_rng(1))
    assert soft.shape == crop.shape and soft.dtype == np.uint8

    def fine_detail(x: np.ndarray) -> float:  # mean absolute difference of neighbouring pixels
        x = x.astype(np.float64)
        return float(np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean())

    assert fine_detail(soft) < 0.7 * fine_detail(crop)


def test_only_real_crops_are_softened_and_off_means_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal_df.training import datasets

    softened: list[int] = []

    def spy(crop, rng):
        softened.append(int(crop.sum()))
        return crop

    monkeypatch.setattr(datasets, "soften", spy)
    rng = np.random.default_rng(0)
    real = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    fake = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    items = [(real, 0, None, 0), (fake, 1, None, 1)]  # a real crop and a decoder fake (no landmarks: not a blend)
    on = datasets.CropDataset(items, True, 0, degrade_prob=0.0, soft_real_prob=1.0)
    for _ in range(3):
        on[0], on[1]
    assert softened == [int(real.sum())] * 3
    softened.clear()
    off = datasets.CropDataset(items, True, 0, degrade_prob=0.0)
    for i in (0, 1, 0, 1):
        off[i]
    assert not softened


@pytest.mark.parametrize("seed", range(5))
def test_a_time_partial_fake_is_its_source_outside_one_stretch(seed: int) -> None:
    from multimodal_df.training.pseudofakes.speech import partial_fake, rms

    real, fake = _speechlike(seed), _speechlike(100 + seed)
    y = partial_fake(real, fake, SR, np.random.default_rng(seed), "time")
    assert y.shape == real.shape and y.dtype == np.float32
    changed = np.flatnonzero(np.abs(y - real) > 1e-6)
    stretch = changed[-1] - changed[0] + 1
    assert 0.15 * len(real) < stretch < 0.65 * len(real)
    # Inside the stretch (past its joins) the samples are the fake's, brought to the real speech's level.
    middle = slice(changed[0] + stretch // 3, changed[-1] - stretch // 3)
    level = rms(real) / rms(fake)
    assert np.allclose(y[middle], fake[middle] * level, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_a_band_partial_fake_changes_nothing_below_its_cut_off(seed: int) -> None:
    from multimodal_df.training.pseudofakes.speech import partial_fake, rms

    real, fake = _speechlike(seed), _speechlike(100 + seed)
    y = partial_fake(real, fake, SR, np.random.default_rng(seed), "band")
    freqs = np.fft.rfftfreq(len(real), 1 / SR)
    change = np.abs(np.fft.rfft(y - real)) ** 2
    level = rms(real) / rms(fake)
    diff = np.abs(np.fft.rfft(fake * level - real)) ** 2
    # No cut-off is drawn below 1.5 kHz (less 200 Hz for the cross-over): what lies under it is the real speech.
    assert change[freqs < 1250].sum() < 1e-9 * change.sum()
    # Above 6.2 kHz every cut-off has handed over to the fake: all of that band's difference is there.
    top = freqs > 6300
    assert change[top].sum() == pytest.approx(diff[top].sum(), rel=1e-3)


def test_partial_fakes_are_drawn_only_from_copy_synthesis(monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal_df.training import datasets

    calls: list[int] = []
    real_partial = datasets.partial_fake
    monkeypatch.setattr(datasets, "partial_fake", lambda *a: (calls.append(1), real_partial(*a))[1])
    sources = [_speechlike(s) for s in range(3)]
    vocoded = {"world": [_speechlike(10 + s) for s in range(3)], "espeak": [_speechlike(20 + s) for s in range(3)]}

    def partial_share(generator: str, prob: float) -> float:
        banks = {generator: vocoded[generator]}
        ds = datasets.SpeechPseudoFakes(
            sources, banks, [generator], SR, 2, True, 0, SR, partial_prob=prob, sources=sources
        )
        fakes = [i for i in range(len(ds)) if ds.index[i][0] == 1]
        calls.clear()
        for i in fakes:
            assert int(ds[i][1]) == 1
        return len(calls) / len(fakes)

    assert partial_share("world", 1.0) == 1.0
    assert partial_share("world", 0.0) == 0.0
    assert partial_share("espeak", 1.0) == 0.0  # a TTS fake speaks other words: nothing to splice it into
    with pytest.raises(ValueError, match="sources"):
        datasets.SpeechPseudoFakes(sources, vocoded, ["world"], SR, 2, True, 0, SR, partial_prob=0.5)


def test_audio_partial_prob_is_checked() -> None:
    from multimodal_df.config import load_config
    from multimodal_df.errors import ConfigError

    with pytest.raises(ConfigError, match="audio_partial_prob"):
        load_config("tiny", {"train.audio_partial_prob": -0.1})
    assert load_config("tiny", {"train.audio_partial_prob": 0.5}).train.audio_partial_prob == 0.5
