"""Hostile media: sizes checked from the headers before decoding, large frames decoded straight to a bounded
size, unknown codecs, streams that change size midway. Each gets a one-line MediaError or a bounded decode."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimodal_df.config import DecodeConfig
from multimodal_df.errors import MediaError
from multimodal_df.media.decode import FRAME_PIXELS, IMAGE_WORK_PIXELS, KEPT_FRAMES_BYTES, MAX_VIDEO_PIXELS, decode

EXAMPLE = Path(__file__).resolve().parents[2] / "multimodal_df" / "examples" / "real.mp4"


def _grown_mb(before_kb: int) -> float:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(193))) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int, size: int = 64) -> bytes:
    """A ``size`` x ``size`` JPEG whose frame header (SOF0) says ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "name, data",
    [
        ("bomb.png", png_declaring(20000, 20000)),  # Pillow's DecompressionBombError in Image.open
        ("sof.jpg", jpeg_declaring(65500, 65500)),  # 4.3 G pixels declared by a 64x64 JPEG
        ("just_over.png", png_declaring(8000, 6251)),  # over the 50 M limit, under Pillow's own 2x guard
    ],
)
def test_declared_image_sizes_are_refused_before_decoding(tmp_path: Path, name: str, data: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MediaError, match="pixel limit") as exc:
        decode(p)
    assert "\n" not in str(exc.value) and _grown_mb(before) < 50


def test_the_configured_pixel_limit_is_the_one_applied(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    p = tmp_path / "small.png"
    PILImage.new("RGB", (300, 200)).save(p)
    assert decode(p, DecodeConfig(max_image_pixels=60_000)).frames.shape == (1, 200, 300, 3)
    with pytest.raises(MediaError, match="300x200, above the 50000 pixel limit"):
        decode(p, DecodeConfig(max_image_pixels=50_000))
    saved = PILImage.MAX_IMAGE_PIXELS
    decode(p)
    assert saved == PILImage.MAX_IMAGE_PIXELS  # Pillow's global guard is left as it was


def test_a_tiny_jpeg_declaring_7000_pixels_is_decoded_at_a_reduced_size(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg_declaring(7000, 7000, size=8))
    assert p.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clip = decode(p)
    h, w = clip.frames.shape[1:3]
    # The JPEG decoder scales by 1/2 while decoding: 3500 x 3500 (37 MB), never 7000 x 7000 (147 MB and copies).
    assert h * w <= IMAGE_WORK_PIXELS and (h, w) == (3500, 3500)
    assert any("7000x7000 analysed at 3500x3500" in n for n in clip.info.notes)
    assert _grown_mb(before) < 250


def test_large_png_is_reduced_after_decoding(tmp_path: Path) -> None:
    p = tmp_path / "wide.png"
    Image.new("RGB", (9000, 2000), (10, 200, 30)).save(p)
    clip = decode(p)
    h, w = clip.frames.shape[1:3]
    assert h * w <= IMAGE_WORK_PIXELS and abs(w / h - 4.5) < 0.01
    assert tuple(clip.frames[0, h // 2, w // 2]) == (10, 200, 30)


def _video(path: Path, sizes: list[tuple[int, int]], fps: int = 4) -> Path:
    """H.264 frames of the given sizes in one stream (a mid-stream size change when they differ)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = sizes[0][0], sizes[0][1], "yuv420p"
        for k, (w, h) in enumerate(sizes):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            if (w, h) != (s.width, s.height):
                frame = frame.reformat(width=s.width, height=s.height)
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    return path


def test_8k_frames_are_decoded_straight_to_a_bounded_size(tmp_path: Path) -> None:
    p = _video(tmp_path / "8k.mp4", [(7680, 4320)] * 4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clip = decode(p, DecodeConfig(num_frames=4))
    grown = _grown_mb(before)
    n, h, w, _ = clip.frames.shape
    assert n == 4 and h * w <= FRAME_PIXELS and abs(w / h - 16 / 9) < 0.01
    assert any("7680x4320 analysed at" in note for note in clip.info.notes)
    # Full-size RGB would be 4 x 100 MB plus a copy to stack them (the issue measured +1.2 GB).
    assert grown < 700, f"decoding grew the process by {grown:.0f} MB"


def test_many_samples_share_the_frame_budget(tmp_path: Path) -> None:
    p = _video(tmp_path / "uhd.mp4", [(3840, 2160)] * 12, fps=12)
    clip = decode(p, DecodeConfig(num_frames=64))
    assert clip.frames.nbytes <= KEPT_FRAMES_BYTES and clip.frames.shape[2] < 3840


def test_a_declared_frame_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    data = bytearray(_video(tmp_path / "small.mp4", [(64, 48)] * 6).read_bytes())
    # The avc1 sample entry's width and height (16-bit each, 24 bytes into the entry after its header).
    k = data.find(b"avc1")
    struct.pack_into(">HH", data, k + 4 + 24, 65500, 65500)
    p = tmp_path / "lying.mp4"
    p.write_bytes(bytes(data))
    try:
        clip = decode(p)
    except MediaError as exc:
        assert "\n" not in str(exc)
    else:  # FFmpeg took the size from the stream itself (the SPS), which is small: nothing large was decoded
        assert clip.frames.shape[1] * clip.frames.shape[2] <= MAX_VIDEO_PIXELS


def _ts_part(path: Path, width: int, height: int, start: int, n: int = 8, fps: int = 4) -> bytes:
    """An MPEG-TS file of ``n`` H.264 frames whose timestamps start at frame ``start`` (SPS in band)."""
    import av

    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * (k % 5), np.uint8), format="rgb24")
            frame.pts = start + k
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    return path.read_bytes()


def test_a_stream_that_changes_size_midway_still_stacks(tmp_path: Path) -> None:
    # Two transport streams back to back: the second half of the video is 320x240, the first 160x120.
    # Stacking frames of both sizes used to fail with "all input arrays must have the same shape".
    p = tmp_path / "switch.ts"
    p.write_bytes(_ts_part(tmp_path / "a.ts", 160, 120, 0) + _ts_part(tmp_path / "b.ts", 320, 240, 8))
    clip = decode(p, DecodeConfig(num_frames=8))
    assert clip.frames.shape[1:] == (120, 160, 3) and clip.frame_times.max() > 2.0  # frames from both halves


def _rename_sample_entries(data: bytes, names: dict[bytes, bytes]) -> bytes:
    """``data`` (an MP4) with the sample-entry types (codec tags) in every ``stsd`` box renamed per ``names``."""
    out = bytearray(data)
    at = out.find(b"stsd")
    while at >= 0:
        entry = at + 16  # "stsd", version and flags, entry count, entry size: then the entry's type
        if bytes(out[entry : entry + 4]) in names:
            out[entry : entry + 4] = names[bytes(out[entry : entry + 4])]
        at = out.find(b"stsd", at + 4)
    return bytes(out)


def test_an_unknown_codec_is_skipped_with_a_note(tmp_path: Path) -> None:
    p = tmp_path / "zzzz.mp4"
    p.write_bytes(_rename_sample_entries(EXAMPLE.read_bytes(), {b"avc1": b"zzzz"}))
    clip = decode(p)
    # The video stream cannot be decoded here; the audio still can.
    assert clip.frames is None and clip.has_audio and clip.info.kind == "audio"
    assert any("codec this build cannot decode" in n for n in clip.info.notes)
    # A WAV whose format tag names no codec: nothing is left to decode.
    from multimodal_df.testing.fixtures import write_wav

    wav = bytearray(write_wav(tmp_path / "speech.wav", np.full(16000, 0.1, np.float32)).read_bytes())
    struct.pack_into("<H", wav, 20, 0x1234)
    p.write_bytes(bytes(wav))
    with pytest.raises(MediaError, match="no video or audio stream this build can decode"):
        decode(p)


def test_frames_under_20_pixels_are_no_face_not_a_crash(tmp_path: Path, detector_dir: Path) -> None:
    from multimodal_df.pipeline.detector import Detector
    from multimodal_df.testing.fixtures import FixtureSpec, make_clip

    det = Detector.load(detector_dir, "cpu")
    clip = make_clip(tmp_path / "tiny.mp4", FixtureSpec(seed=1, width=16, height=16, duration=1.0))
    pred = det.predict(clip)
    assert pred.error is None and pred.vision is None and any("no face found" in n for n in pred.notes)
    for side in (1, 5, 11, 19):
        p = tmp_path / f"tiny{side}.png"
        Image.new("RGB", (side, side), (90, 60, 40)).save(p)
        pred = det.predict(p)
        assert pred.error is None or not pred.error.startswith("internal error"), pred.error


def test_a_wav_header_claiming_1_hz_is_refused_before_resampling(tmp_path: Path) -> None:
    """Found by benchmarks/fuzz.py: 1 Hz with 20 000-byte blocks made each decoded frame 10 000 samples, which
    resampling to 16 kHz turned into 160 M samples per frame (+4.3 GB)."""
    from multimodal_df.testing.fixtures import write_wav

    wav = bytearray(write_wav(tmp_path / "speech.wav", np.full(24000, 0.1, np.float32)).read_bytes())
    struct.pack_into("<I", wav, 24, 1)  # sample rate
    struct.pack_into("<H", wav, 32, 20000)  # block align
    p = tmp_path / "one_hertz.wav"
    p.write_bytes(bytes(wav))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MediaError, match="1 Hz, under the 1000 Hz minimum"):
        decode(p)
    assert _grown_mb(before) < 100
