"""Decoding: sampling, audio, rotation, memory on long clips, and every kind of bad input."""

from __future__ import annotations

import importlib
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from multimodal_df.config import DecodeConfig
from multimodal_df.errors import MediaError
from multimodal_df.media.decode import decode, sample_times
from multimodal_df.testing.fixtures import (
    FixtureSpec,
    make_audio,
    make_clip,
    render_frames,
    write_mp4,
    write_wav,
    zero_mp4_sample_times,
)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("d") / "c.mp4", FixtureSpec(seed=1, duration=3.0, width=176, height=144, fps=12)
    )


def test_evenly_spaced_frames_and_audio(clip_path: Path) -> None:
    clip = decode(clip_path, DecodeConfig(num_frames=6))
    assert clip.frames is not None and clip.frames.shape == (6, 144, 176, 3) and clip.frames.dtype == np.uint8
    assert np.allclose(clip.frame_times, sample_times(3.0, DecodeConfig(num_frames=6)), atol=1 / 12 + 1e-6)
    assert np.all(np.diff(clip.frame_times) > 0)
    assert clip.waveform is not None and clip.waveform.dtype == np.float32
    assert clip.waveform.size == 48000  # 3 s at 16 kHz, trimmed/padded exactly
    assert clip.info.kind == "video" and clip.info.audio_codec == "aac" and clip.info.video_codec == "h264"
    assert abs(clip.duration - 3.0) < 0.1


def test_fps_mode_caps_frames(clip_path: Path) -> None:
    clip = decode(clip_path, DecodeConfig(fps=2.0, max_frames=4))
    assert len(clip.frames) == 4
    np.testing.assert_allclose(clip.frame_times, [0.25, 0.75, 1.25, 1.75], atol=1 / 12 + 1e-6)


def test_audio_matches_what_was_written(tmp_path: Path) -> None:
    spec = FixtureSpec(seed=3, duration=2.0)
    wave = make_audio(spec)
    p = write_wav(tmp_path / "a.wav", wave)
    clip = decode(p)
    assert clip.frames is None and clip.info.kind == "audio"
    assert clip.waveform.size == wave.size
    assert np.abs(clip.waveform - wave).max() < 1e-3  # 16-bit PCM round trip


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_honoured(tmp_path: Path, rotation: int) -> None:
    frames, _ = render_frames(FixtureSpec(seed=2, width=128, height=96, duration=0.6))
    # A bright marker in the top-left corner of the upright picture.
    frames[:, :16, :16] = 255
    p = write_mp4(tmp_path / "r.mp4", frames, 10, None, rotation=rotation)
    clip = decode(p, DecodeConfig(num_frames=2))
    assert clip.frames.shape[1:3] == (96, 128)
    assert clip.info.rotation == rotation % 360
    corner = clip.frames[0, :16, :16].mean()
    opposite = clip.frames[0, -16:, -16:].mean()
    assert corner > 200 and opposite < 200


def test_long_clip_memory_stays_flat(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def write(n_seconds: int) -> Path:
        fps = 5
        frames = rng.integers(0, 255, size=(n_seconds * fps, 64, 64, 3), dtype=np.uint8)
        audio = (rng.standard_normal(n_seconds * 16000) * 0.1).astype(np.float32)
        return write_mp4(tmp_path / f"long{n_seconds}.mp4", frames, fps, audio)

    short, long = write(20), write(160)
    cfg = DecodeConfig(num_frames=8, max_seconds=15.0)
    peaks = []
    for p in (short, long):
        tracemalloc.start()
        clip = decode(p, cfg)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert len(clip.frames) == 8 and clip.waveform.size == 15 * 16000 and clip.info.truncated
    assert peaks[1] < 1.5 * peaks[0] + 1e6, peaks


def test_sparse_samples_of_a_long_video_land_on_time(tmp_path: Path) -> None:
    fps, n = 5, 120
    frames = np.zeros((n * fps, 32, 32, 3), np.uint8)
    for i in range(len(frames)):
        frames[i] = (i // fps) * 2  # brightness encodes the second
    p = write_mp4(tmp_path / "t.mp4", frames, fps, None)
    clip = decode(p, DecodeConfig(num_frames=4))
    seconds = clip.frames.reshape(4, -1).mean(1) / 2
    np.testing.assert_allclose(seconds, np.floor(clip.frame_times), atol=1.0)
    np.testing.assert_allclose(clip.frame_times, [15, 45, 75, 105], atol=0.5)


def test_sparse_samples_between_distant_keyframes(tmp_path: Path) -> None:
    # A seek lands on the keyframe before the target, which can be further back than the seek
    # gap; this used to seek again from there forever (found on a real 30 fps phone clip).
    fps = 10
    frames = np.zeros((30 * fps, 32, 32, 3), np.uint8)
    for i in range(len(frames)):
        frames[i] = (i // fps) * 4
    p = write_mp4(tmp_path / "gop.mp4", frames, fps, None, keyframe_interval=100)
    clip = decode(p, DecodeConfig(num_frames=2))
    np.testing.assert_allclose(clip.frame_times, [7.5, 22.5], atol=0.5)
    np.testing.assert_allclose(clip.frames.reshape(2, -1).mean(1) / 4, np.floor(clip.frame_times), atol=1.0)


def test_image(tmp_path: Path) -> None:
    from PIL import Image

    frames, _ = render_frames(FixtureSpec(seed=4, width=120, height=90))
    Image.fromarray(frames[0]).save(tmp_path / "f.png")
    clip = decode(tmp_path / "f.png")
    assert clip.info.kind == "image" and clip.frames.shape == (1, 90, 120, 3) and clip.waveform is None


def test_odd_sizes_decode(tmp_path: Path) -> None:
    frames, _ = render_frames(FixtureSpec(seed=5, width=98, height=58))
    p = write_mp4(tmp_path / "odd.mp4", frames, 10, None)
    clip = decode(p)
    assert clip.frames.shape[1:] == (58, 98, 3)


def test_video_without_audio(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "na.mp4", FixtureSpec(seed=6, audio=False))
    clip = decode(p)
    assert clip.has_video and clip.waveform is None and not clip.has_audio


BAD_FILES = {
    "empty": ("e.mp4", b"", "file is empty"),
    "text": ("t.mp4", b"hello, not a video", "not a readable video or audio file"),
    # Seeded: now and then unseeded noise probes as a container with no streams, which gets the
    # (equally one-line) reason "no video or audio stream in the file" and made this test flaky.
    "random-bytes": ("r.bin", np.random.default_rng(0).bytes(50_000), "not a readable video or audio file"),
    "text-as-jpg": ("x.jpg", b"print('no image')", "not a valid image"),
    "corrupt-png": (
        "b.png",
        b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(300),
        "corrupt or unsupported image",
    ),
    "missing": ("missing.mp4", None, "file not found"),
    "directory": (".", None, "is a directory"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_get_one_line_reasons(tmp_path: Path, case: str) -> None:
    name, content, reason = BAD_FILES[case]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=reason) as exc:
        decode(path)
    assert "\n" not in str(exc.value)


def test_truncated_mp4(tmp_path: Path, clip_path: Path) -> None:
    data = clip_path.read_bytes()
    # The head alone (no index at the end of an MP4 written this way) is unreadable; say so.
    (tmp_path / "head.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="not a readable"):
        decode(tmp_path / "head.mp4")


def test_too_short_and_too_large(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "s.mp4", FixtureSpec(seed=7, duration=0.3))
    with pytest.raises(MediaError, match=r"clip is 0\.\d+ s long; at least 0\.5 s"):
        decode(p)
    big = make_clip(tmp_path / "b.mp4", FixtureSpec(seed=7, duration=1.0))
    with pytest.raises(MediaError, match="above the"):
        decode(big, DecodeConfig(max_file_mb=0.001))


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        decode(fifo)


def test_frames_whose_timestamps_all_repeat_are_timed_by_their_index(tmp_path: Path) -> None:
    import av

    frames, _ = render_frames(FixtureSpec(seed=3, duration=3.0, width=176, height=144, fps=12))
    good = tmp_path / "good.mp4"
    with av.open(str(good), "w", format="mp4") as out:
        # No B-frames: the decoder then returns every frame of the damaged copy, each with pts 0.
        vs = out.add_stream("libx264", rate=12, options={"preset": "veryfast", "x264-params": "bframes=0"})
        vs.width, vs.height, vs.pix_fmt = 176, 144, "yuv420p"
        for f in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(vs.encode())
    data = bytearray(good.read_bytes())
    zero_mp4_sample_times(data)
    broken = tmp_path / "all_pts_zero.mp4"
    broken.write_bytes(bytes(data))
    with av.open(str(broken)) as c:
        assert {f.pts for f in c.decode(video=0)} == {0}  # the defect is there

    want = decode(good, DecodeConfig(num_frames=8))
    got = decode(broken, DecodeConfig(num_frames=8))
    assert got.frames is not None and got.frames.shape == want.frames.shape == (8, 144, 176, 3)
    np.testing.assert_allclose(got.frame_times, want.frame_times, atol=1e-6)
    assert np.all(np.diff(got.frame_times) > 0) and abs(got.duration - 3.0) < 0.1 and got.info.fps == 12
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() == 0  # the same frames, not just times
    assert any("timestamps repeat or are missing" in n for n in got.info.notes)
    assert not any("timestamps" in n for n in want.info.notes)


_decode_module = importlib.import_module("multimodal_df.media.decode")  # the package exports decode() under that name


def _decoded_counts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the frames the decoder returns in each pass of the frame reader (one entry per pass)."""
    mod = _decode_module
    counts: list[int] = []
    real_run, real_frames = mod._FramePass.run, mod._packet_frames

    def run(self):
        counts.append(0)
        return real_run(self)

    def frames(container, stream, plan):
        for frame in real_frames(container, stream, plan):
            counts[-1] += 1
            yield frame

    monkeypatch.setattr(mod._FramePass, "run", run)
    monkeypatch.setattr(mod, "_packet_frames", frames)
    return counts


def _same_clip(a, b) -> None:
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.frame_times, b.frame_times)
    assert a.info == b.info
    assert (a.dense is None) == (b.dense is None)
    if a.dense is not None:
        assert np.array_equal(a.dense.frames, b.dense.frames) and np.array_equal(a.dense.times, b.dense.times)


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # x264's defaults: 3 B-frames between references, so about half the frames are references to no other frame.
    frames, _ = render_frames(FixtureSpec(seed=8, duration=6.0, width=160, height=120, fps=30))
    frames[:, :4] = np.arange(len(frames), dtype=np.uint8)[:, None, None, None] * 1  # every frame different
    return write_mp4(tmp_path_factory.mktemp("b") / "b.mp4", frames, 30, None)


@pytest.mark.parametrize(
    "cfg, dense",
    [
        (DecodeConfig(num_frames=32), False),
        (DecodeConfig(num_frames=7), True),
        (DecodeConfig(fps=5.0, max_frames=64), False),
        (DecodeConfig(num_frames=2), False),  # 3 s apart: no seek, long stretches of unneeded frames
    ],
)
def test_skipping_unneeded_frames_keeps_the_same_frames(
    bframe_clip: Path, monkeypatch: pytest.MonkeyPatch, cfg: DecodeConfig, dense: bool
) -> None:
    from multimodal_df.fusion.sync import DENSE

    mod = _decode_module

    counts = _decoded_counts(monkeypatch)
    fast = decode(bframe_clip, cfg, DENSE if dense else None)
    monkeypatch.setattr(mod._SkipPlan, "skippable", lambda self, packet: False)
    full = decode(bframe_clip, cfg, DENSE if dense else None)
    _same_clip(fast, full)
    assert len(counts) == 2 and counts[0] < counts[1], counts  # one pass each; the decoder did drop frames


def test_skipping_with_seeks_keeps_the_same_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames, _ = render_frames(FixtureSpec(seed=9, duration=30.0, width=64, height=48, fps=10))
    frames[:, :4] = (np.arange(len(frames)) % 256).astype(np.uint8)[:, None, None, None]
    p = write_mp4(tmp_path / "seek.mp4", frames, 10, None, keyframe_interval=40)
    mod = _decode_module

    counts = _decoded_counts(monkeypatch)
    fast = decode(p, DecodeConfig(num_frames=4))  # 7.5 s apart: seeks
    monkeypatch.setattr(mod._SkipPlan, "skippable", lambda self, packet: False)
    full = decode(p, DecodeConfig(num_frames=4))
    _same_clip(fast, full)
    assert len(counts) == 2 and counts[0] < counts[1], counts


def test_skipping_is_given_up_when_the_stream_breaks_its_assumptions(
    bframe_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decoder that returned frames out of order, or lost one, would make a skipped frame the one needed: the
    # reader then decodes the file again without skipping. Simulated by a check that fails on the 40th frame.
    mod = _decode_module

    full = decode(bframe_clip, DecodeConfig(num_frames=12))
    counts = _decoded_counts(monkeypatch)
    real_check, seen = mod._SkipPlan.check, []

    def failing(self, frame, t):
        seen.append(t)
        if len(seen) == 40:
            raise mod._SkipUnsafe
        real_check(self, frame, t)

    monkeypatch.setattr(mod._SkipPlan, "check", failing)
    again = decode(bframe_clip, DecodeConfig(num_frames=12))
    _same_clip(again, full)
    assert len(counts) == 2 and counts[0] == 40 and counts[1] > 40, counts  # a skipping pass, then a full one
