"""Audio-visual synchrony on fixtures whose mouth opens with their speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.fusion.sync import DENSE, measure_mouth, sync_output, sync_profile
from multimodal_df.media.decode import decode
from multimodal_df.testing.fixtures import FixtureSpec, make_audio, make_clip
from multimodal_df.training.pseudofakes.av import shift_audio, swap_audio
from multimodal_df.vision.faces import FaceDetector


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[object, np.ndarray]]:
    det = FaceDetector(crop_size=64)
    out = []
    for seed in range(3):
        p = make_clip(
            tmp_path_factory.mktemp("sync") / f"t{seed}.mp4",
            FixtureSpec(seed=seed, lip_sync=True, width=200, height=200, fps=25, duration=6),
        )
        clip = decode(p, dense=DENSE)  # one pass: sparse RGB frames for faces, dense grey frames for the mouth
        tr = det.track(clip.frames, clip.frame_times)
        mouth = measure_mouth(clip.dense, tr.landmarks, tr.times)
        assert mouth is not None
        out.append((mouth, clip.waveform))
    return out


def test_in_sync_speech_peaks_near_zero_offset(talking: list) -> None:
    for mouth, wave in talking:
        s = sync_output(mouth, wave, 16000)
        assert abs(s.best_offset) <= 0.08 and s.peak > 0.25
        f = s.features()
        assert f[1] < 0.05 and f[2] < 0.1


@pytest.mark.parametrize("shift", [0.4, -0.6])
def test_shifted_audio_moves_the_peak_by_the_shift(talking: list, shift: float) -> None:
    for mouth, wave in talking:
        s = sync_output(mouth, shift_audio(wave, 16000, shift), 16000)
        assert s.best_offset == pytest.approx(shift, abs=0.1)
        synced = sync_output(mouth, wave, 16000)
        assert s.corr_at_zero < synced.corr_at_zero - 0.1
        assert s.features()[1] > 0.1  # the peak stands above the zero-offset correlation


def test_swapped_audio_loses_the_coupling(talking: list) -> None:
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
    dense = decode(p, dense=DENSE).dense
    assert dense is not None and 20 <= len(dense.frames) <= 25 and dense.frames.ndim == 3
    assert measure_mouth(dense, np.zeros((0, 5, 2)), np.zeros(0)) is None
    assert measure_mouth(dense, np.zeros((1, 5, 2)) + 50, np.zeros(1)) is None  # under 2 s of frames
    assert measure_mouth(None, np.zeros((1, 5, 2)) + 50, np.zeros(1)) is None  # decoded without dense frames


def test_fusion_learns_sync_from_shifted_and_swapped_pseudo_fakes(trained: Path, tmp_path: Path) -> None:
    """Real lip-synced clips only; fusion with sync must then tell real clips from audio-shifted copies."""
    import json

    from multimodal_df import train
    from multimodal_df.evaluation.metrics import roc_auc
    from multimodal_df.pipeline.detector import Detector
    from multimodal_df.testing.fixtures import render_frames, write_mp4

    tiny = "tiny"
    lines = ["path,label,split"]
    for i in range(8):
        make_clip(
            tmp_path / f"v{i}.mp4", FixtureSpec(seed=300 + i, lip_sync=True, width=176, height=176, fps=25, duration=4)
        )
        lines.append(f"v{i}.mp4,0,valid")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = [
        "--stage",
        "fusion",
        "--config",
        str(tiny),
        "--manifest",
        str(tmp_path / "m.csv"),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    args += [
        "--vision-checkpoint",
        str(trained / "vision"),
        "--audio-checkpoint",
        str(trained / "audio"),
        "--set",
        "fusion.use_sync=true",
        "--set",
        "train.pseudo_fakes=true",
    ]
    assert train.main(args) == 0
    assert json.loads((out / "detector" / "config.json").read_text())["fusion"]["args"]["sync_dim"] == 3
    det = Detector.load(out / "detector", "cpu")
    from multimodal_df.fusion.model import fusion_logits

    def logit(pred) -> float:
        return float(fusion_logits(det.fusion, det.fusion_inputs([(pred.vision, pred.audio, pred.sync)]))[0])

    real, fake = [], []
    for i in range(4):
        spec = FixtureSpec(seed=700 + i, lip_sync=True, width=176, height=176, fps=25, duration=4)
        frames, _ = render_frames(spec)
        wave = make_audio(spec)
        write_mp4(tmp_path / f"t{i}.mp4", frames, spec.fps, wave)
        write_mp4(tmp_path / f"s{i}.mp4", frames, spec.fps, shift_audio(wave, 16000, 0.5 if i % 2 else -0.5))
        pr, ps = det.predict(tmp_path / f"t{i}.mp4"), det.predict(tmp_path / f"s{i}.mp4")
        assert pr.error is None and pr.sync is not None and ps.sync is not None
        assert pr.to_json()["av_sync"]["best_offset_s"] is not None
        real.append(logit(pr))
        fake.append(logit(ps))
    # Same frames, same voice: only the sync differs, and the shifted copy must look clearly more fake.
    assert all(f > r + 1.0 for r, f in zip(real, fake)), (real, fake)
    assert roc_auc(np.r_[np.zeros(4), np.ones(4)], np.r_[real, fake]) >= 0.75
