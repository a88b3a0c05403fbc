"""Pseudo-fake generators on real media from ../shared/data (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.decode import decode
from multimodal_df.pseudofakes import GRIFFIN_LIM_SETTINGS, griffin_lim_resynth, landmarks_to_crop, self_blend, standardize_speech
from multimodal_df.vision.faces import FaceDetector

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the project")


@pytest.fixture(scope="module")
def real_face() -> tuple[np.ndarray, np.ndarray]:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside the project")
    clip = decode(SHARED / "faces" / "d3.mp4")
    det = FaceDetector(crop_size=128)
    track = det.track(clip.frames[:4], clip.frame_times[:4])
    assert len(track) > 0
    lm = landmarks_to_crop(track.landmarks[0], track.boxes[0], det.cfg.margin, 128)
    return np.asarray(track.crops[0]), lm


@needs_shared
def test_landmarks_land_on_the_crop(real_face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, lm = real_face
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
