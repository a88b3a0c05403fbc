"""Decode a media file into a :class:`Clip`: sampled RGB frames and a 16 kHz mono waveform.

This is the only module that touches FFmpeg (through PyAV). Frames are decoded one at a
time and only the sampled ones are kept, so memory does not grow with video length; for
sparse samples the decoder seeks instead of decoding everything in between.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .config import DecodeConfig
from .errors import MediaError

MediaKind = Literal["video", "audio", "image"]

# Magic numbers of the still-image formats we read with Pillow instead of FFmpeg.
_IMAGE_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF little-endian
    (0, b"MM\x00*"),  # TIFF big-endian
    (8, b"WEBP"),
)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".ts", ".3gp"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma"}
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

# Beyond this gap (seconds) between sampled frames, seeking beats decoding every frame in between.
_SEEK_GAP_S = 4.0
# With no known duration (live-style streams), frames are taken at this rate.
_FALLBACK_FPS = 2.0


@dataclass
class MediaInfo:
    """What the file is, as read from its container."""

    path: str
    kind: MediaKind
    size_bytes: int
    container: str = ""
    width: int | None = None
    """Width of the frames as returned (after rotation), pixels."""
    height: int | None = None
    fps: float | None = None
    rotation: int = 0
    """Counter-clockwise degrees (0, 90, 180, 270) applied to upright the frames, from the display matrix."""
    video_codec: str | None = None
    audio_codec: str | None = None
    duration: float | None = None
    """Duration of the whole file, seconds, when the container knows it."""
    truncated: bool = False
    """True when only the first ``max_seconds`` were analysed, or the file ended early."""
    notes: list[str] = field(default_factory=list)


@dataclass
class Clip:
    """Sampled content of one file.

    ``frames``: uint8 RGB, shape [N, H, W, 3], or None for audio-only files.
    ``frame_times``: seconds from the start, shape [N].
    ``waveform``: float32 mono in [-1, 1], shape [T] at ``sample_rate``, or None without audio.
    ``duration``: seconds of the span that was analysed (0 for a still image).
    """

    frames: np.ndarray | None
    frame_times: np.ndarray
    waveform: np.ndarray | None
    sample_rate: int
    duration: float
    info: MediaInfo

    @property
    def has_video(self) -> bool:
        return self.frames is not None and len(self.frames) > 0

    @property
    def has_audio(self) -> bool:
        return self.waveform is not None and self.waveform.size > 0


def sniff(path: str | Path) -> Literal["image", "media"]:
    """Guess from the first bytes whether a file is a still image or something for FFmpeg."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    for offset, magic in _IMAGE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return "image"
    return "media"


def sniff_media(head: bytes) -> Literal["image", "video", "audio", "media"] | None:
    """What the first bytes (at least 12; 200 for MPEG-TS) of a file say it is, or None for non-media.

    Used to refuse uploads that are not media before any decoder sees them. "media" means a container
    that may hold video or audio (MP4/MOV, Matroska/WebM, MPEG-TS/PS).
    """
    for offset, magic in _IMAGE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "media"
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio", b"AVI ": "video"}.get(head[8:12])
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"\x00\x00\x01\xba" or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47):
        return "media"
    if head[:3] == b"FLV":
        return "video"
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3" or head[:5] == b"#!AMR" or head[:4] == b"\x30\x26\xb2\x75":
        return "audio"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio / ADTS AAC frame sync
        return "audio"
    return None


def check_file(path: str | Path, cfg: DecodeConfig) -> int:
    """Refuse what cannot be a readable media file before any decoder sees it; return its size."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(f"file not found: {p}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {p}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"{p} is a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        # FIFOs and devices can block forever or never end.
        raise MediaError(f"{p} is not a regular file")
    if st.st_size == 0:
        raise MediaError("file is empty (0 bytes)")
    if st.st_size > cfg.max_file_mb * 1024 * 1024:
        raise MediaError(f"file is {st.st_size / 2**20:.0f} MB, above the {cfg.max_file_mb:.0f} MB limit")
    if not os.access(p, os.R_OK):
        raise MediaError(f"no permission to read {p}")
    return st.st_size


def decode(path: str | Path, cfg: DecodeConfig | None = None) -> Clip:
    """Decode ``path`` (video, audio or image) into a :class:`Clip`.

    Raises :class:`MediaError` with a one-line reason for anything that cannot be analysed.
    """
    cfg = cfg or DecodeConfig()
    size = check_file(path, cfg)
    if sniff(path) == "image":
        return _decode_image(Path(path), size, cfg)
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        # FFmpeg would pick a demuxer by extension and fail obscurely; the bytes say it is no image.
        raise MediaError(f"not a valid image: the content of this {Path(path).suffix} file is not JPEG, PNG, GIF, BMP, TIFF or WebP")
    return _decode_av(Path(path), size, cfg)


def _decode_image(path: Path, size: int, cfg: DecodeConfig) -> Clip:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > cfg.max_image_pixels:
                raise MediaError(f"image is {w}x{h}, above the {cfg.max_image_pixels} pixel limit")
            im = ImageOps.exif_transpose(im)  # phones store portrait photos sideways + an EXIF flag
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
            fmt = (im.format or path.suffix.lstrip(".")).lower()
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"corrupt or unsupported image: {exc}") from None
    info = MediaInfo(str(path), "image", size, container=fmt, width=rgb.shape[1], height=rgb.shape[0])
    return Clip(rgb[None], np.zeros(1), None, cfg.sample_rate, 0.0, info)


def _av_error(exc: Exception) -> MediaError:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MediaError(f"not a readable video or audio file ({msg})")


def _open(path: Path):  # noqa: ANN202 - PyAV's container type
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _av_error(exc) from None


def _main_video_stream(container):  # noqa: ANN001, ANN202
    for s in container.streams.video:
        # Cover art in audio files is a one-frame "video" stream flagged as an attached picture.
        if not (s.disposition & 0x0400):  # AV_DISPOSITION_ATTACHED_PIC
            return s
    return None


def _container_duration(container, streams) -> float | None:  # noqa: ANN001
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    best = None
    for s in streams:
        if s is not None and s.duration is not None and s.time_base is not None:
            d = float(s.duration * s.time_base)
            best = d if best is None else max(best, d)
    return best


def _decode_av(path: Path, size: int, cfg: DecodeConfig) -> Clip:
    container = _open(path)
    try:
        vstream = _main_video_stream(container)
        astream = container.streams.audio[0] if container.streams.audio else None
        if vstream is None and astream is None:
            raise MediaError("no video or audio stream in the file")
        duration = _container_duration(container, [vstream, astream])
        kind: MediaKind = "video" if vstream is not None else "audio"
        info = MediaInfo(
            str(path),
            kind,
            size,
            container=container.format.name,
            video_codec=vstream.codec_context.name if vstream is not None else None,
            audio_codec=astream.codec_context.name if astream is not None else None,
            duration=duration,
        )
        if vstream is not None and vstream.average_rate:
            info.fps = float(vstream.average_rate)
        span = min(duration, cfg.max_seconds) if duration else None
        if duration is not None and duration > cfg.max_seconds:
            info.truncated = True
            info.notes.append(f"only the first {cfg.max_seconds:g} s of {duration:.1f} s analysed")
    finally:
        container.close()

    frames, times = None, np.zeros(0)
    if vstream is not None:
        frames, times = _read_frames(path, span, cfg, info)
        if frames is None or len(frames) == 0:
            info.notes.append("video stream has no decodable frames")
            frames, times = None, np.zeros(0)
            if astream is None:
                raise MediaError("video stream has no decodable frames and there is no audio")
            info.kind = "audio"

    waveform = _read_audio(path, span, cfg, info) if astream is not None else None
    if waveform is not None and waveform.size == 0:
        info.notes.append("audio stream has no decodable samples")
        waveform = None
        if frames is None:
            raise MediaError("audio stream has no decodable samples and there is no video")

    analysed = span
    if analysed is None:
        # Unknown container duration: measure what was actually decoded.
        a = waveform.size / cfg.sample_rate if waveform is not None else 0.0
        v = float(times[-1]) + 1.0 / (info.fps or _FALLBACK_FPS) if len(times) else 0.0
        analysed = max(a, v)
    if analysed < cfg.min_seconds:
        raise MediaError(f"clip is {analysed:.2f} s long; at least {cfg.min_seconds:g} s is needed for a verdict")
    return Clip(frames, times, waveform, cfg.sample_rate, float(analysed), info)


def sample_times(span: float, cfg: DecodeConfig) -> np.ndarray:
    """Timestamps (seconds) of the frames to sample from a span of ``span`` seconds."""
    if cfg.fps:
        n = min(cfg.max_frames, max(1, int(math.floor(span * cfg.fps))))
        return (np.arange(n) + 0.5) / cfg.fps
    n = max(1, cfg.num_frames)
    return (np.arange(n) + 0.5) * span / n


def _upright(img: np.ndarray, rotation: int) -> np.ndarray:
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


def _read_frames(path: Path, span: float | None, cfg: DecodeConfig, info: MediaInfo):  # noqa: ANN202
    import av

    container = _open(path)
    try:
        stream = _main_video_stream(container)
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else None
        t0 = stream.start_time * tb if (stream.start_time is not None and tb) else 0.0
        fps = info.fps or 25.0
        if span is not None:
            targets = sample_times(span, cfg)
        else:
            # Unknown length: sample at a fixed rate until max_frames or max_seconds.
            rate = cfg.fps or _FALLBACK_FPS
            targets = (np.arange(cfg.max_frames) + 0.5) / rate
            targets = targets[targets < cfg.max_seconds]
        kept: list[np.ndarray] = []
        kept_t: list[float] = []
        i = 0
        last_pts = None
        decoder = container.decode(stream)
        pos = 0.0
        seeked_for = -1
        while i < len(targets):
            target = float(targets[i])
            # One seek per target: the keyframe it lands on can still be far before the target
            # (long GOPs), and seeking again from there would loop forever.
            if tb and target - pos > _SEEK_GAP_S and seeked_for != i:
                container.seek(int((target + t0) / tb), stream=stream, backward=True)
                decoder = container.decode(stream)
                seeked_for = i
            try:
                frame = next(decoder)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                # A damaged frame: skip it, keep what decoded. A file that never decodes ends below.
                info.notes.append(f"damaged video data skipped ({type(exc).__name__})")
                info.truncated = True
                break
            t = (frame.time - t0) if frame.time is not None else pos + 1.0 / fps
            pos = t
            if t + 0.5 / fps < target:
                continue
            if frame.pts is not None and frame.pts == last_pts:
                continue
            rgb = _upright(frame.to_ndarray(format="rgb24"), frame.rotation or 0)
            info.rotation = int(round(frame.rotation or 0)) % 360
            kept.append(rgb)
            kept_t.append(max(t, 0.0))
            last_pts = frame.pts
            # One decoded frame may be the nearest to several targets in a low-fps video.
            while i < len(targets) and targets[i] <= t + 0.5 / fps:
                i += 1
    except av.error.FFmpegError as exc:
        if not kept:
            raise _av_error(exc) from None
        info.truncated = True
    finally:
        container.close()
    if not kept:
        return None, np.zeros(0)
    frames = np.stack(kept)
    info.height, info.width = int(frames.shape[1]), int(frames.shape[2])
    return frames, np.asarray(kept_t, dtype=np.float64)


def _read_audio(path: Path, span: float | None, cfg: DecodeConfig, info: MediaInfo) -> np.ndarray:
    import av

    limit = int(round((span if span is not None else cfg.max_seconds) * cfg.sample_rate))
    container = _open(path)
    chunks: list[np.ndarray] = []
    got = 0
    try:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1)
                chunks.append(arr)
                got += arr.size
            if got >= limit:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        if not chunks:
            info.notes.append(f"audio could not be decoded ({type(exc).__name__})")
            return np.zeros(0, dtype=np.float32)
        info.truncated = True
        info.notes.append("damaged audio data; analysed what decoded")
    finally:
        container.close()
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    wave = np.concatenate(chunks).astype(np.float32, copy=False)
    # AAC decoders return a few samples more or less than duration x rate: trim or pad to the span.
    if span is not None:
        n = int(round(span * cfg.sample_rate))
        if wave.size > n:
            wave = wave[:n]
        elif 0 < wave.size < n and n - wave.size < cfg.sample_rate // 10:
            wave = np.pad(wave, (0, n - wave.size))
    np.clip(wave, -1.0, 1.0, out=wave)
    return wave
