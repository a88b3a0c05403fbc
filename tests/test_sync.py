"""Audio-visual synchrony on fixtures whose mouth opens with their speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.decode import decode
from multimodal_df.fixtures import FixtureSpec, make_audio, make_clip
from multimodal_df.sync import measure_mouth, shift_audio, swap_audio, sync_output, sync_profile
from multimodal_df.vision.faces import FaceDetector


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[object, np.ndarray]]:
    det = FaceDetector(crop_size=64)
    out = []
    for seed in range(3):
        p = make_clip(tmp_path_factory.mktemp("sync") / f"t{seed}.mp4", FixtureSpec(seed=seed, lip_sync=True, width=200, height=200, fps=25, duration=6))
        clip = decode(p)
        tr = det.track(clip.frames, clip.frame_times)
        mouth = measure_mouth(p, tr.landmarks, tr.times)
        assert mouth is not None
        out.append((mouth, clip.waveform))
    return out


def test_in_sync_speech_peaks_near_zero_offset(talking: list) -> None:  # noqa: ANN001
    for mouth, wave in talking:
        s = sync_output(mouth, wave, 16000)
        assert abs(s.best_offset) <= 0.08 and s.peak > 0.25
        f = s.features()
        assert f[1] < 0.05 and f[2] < 0.1


@pytest.mark.parametrize("shift", [0.4, -0.6])
def test_shifted_audio_moves_the_peak_by_the_shift(talking: list, shift: float) -> None:  # noqa: ANN001
    for mouth, wave in talking:
        s = sync_output(mouth, shift_audio(wave, 16000, shift), 16000)
        assert s.best_offset == pytest.approx(shift, abs=0.1)
        synced = sync_output(mouth, wave, 16000)
        assert s.corr_at_zero < synced.corr_at_zero - 0.1
        assert s.features()[1] > 0.1  # the peak stands above the zero-offset correlation


def test_swapped_audio_loses_the_coupling(talking: list) -> None:  # noqa: ANN001
    synced, swapped = [], []
    for k, (mouth, wave) in enumerate(talking):
        other = make_audio(FixtureSpec(seed=100 + k, duration=6))
        synced.append(sync_output(mouth, wave, 16000).corr_at_zero)
        swapped.append(sync_output(mouth, swap_audio(wave, other), 16000).corr_at_zero)
    assert np.mean(swapped) < np.mean(synced) - 0.15, (synced, swapped)


def test_profile_edge_cases() -> None:
    # Too short to correlate, or flat: NaN profile, neutral features, no exception.
    s = sync_profile(np.ones(10), np.ones(10))
    assert np.isnan(s.corr).all() and s.best_offset == 0.0 and np.allclose(s.features(), 0.0)
    w = np.arange(10, dtype=np.float32)
    assert np.array_equal(shift_audio(w, 1, 3)[3:], w[:7]) and np.array_equal(shift_audio(w, 1, -3)[:7], w[3:])
    assert len(swap_audio(w, np.ones(4, np.float32))) == 10


def test_no_track_or_short_video_gives_none(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "short.mp4", FixtureSpec(seed=1, lip_sync=True, fps=25, duration=1.0))
    assert measure_mouth(p, np.zeros((0, 5, 2)), np.zeros(0)) is None
    assert measure_mouth(p, np.zeros((1, 5, 2)) + 50, np.zeros(1)) is None  # under 2 s of frames
