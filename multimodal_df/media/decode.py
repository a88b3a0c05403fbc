"""Decode a media file into a :class:`Clip`: sampled RGB frames and a 16 kHz mono waveform.

This is the only module that touches FFmpeg (through PyAV). Frames are decoded one at a
time and only the sampled ones are kept, so memory does not grow with video length; for
sparse samples the decoder seeks instead of decoding everything in between, and between samples it
skips the frames that no other frame is predicted from (the kept frames stay those of a full decode).
"""

from __future__ import annotations

import bisect
import math
import os
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..config import DecodeConfig
from ..errors import MediaError
from .sniff import IMAGE_EXTENSIONS, is_image_head, read_head

MediaKind = Literal["video", "audio", "image"]

# Beyond this gap (seconds) between sampled frames, seeking beats decoding every frame in between.
_SEEK_GAP_S = 4.0
# With no known duration (live-style streams), frames are taken at this rate.
_FALLBACK_FPS = 2.0

MAX_VIDEO_PIXELS = 8192 * 8192
"""Videos whose frames are larger than this (pixels, as the container declares or the decoder returns) are
refused before any frame is kept: 8K UHD (7680×4320) passes, a header claiming 65535×65535 does not."""
FRAME_PIXELS = 3840 * 2160
"""Sampled frames larger than this (pixels) are scaled down while they are converted to RGB, so a 4K frame is
kept as it is and an 8K one costs what a 4K one does."""
KEPT_FRAMES_BYTES = 512 * 2**20
"""Budget for all sampled RGB frames of one file together (bytes): with many samples the per-frame size shrinks
below :data:`FRAME_PIXELS` so that N frames never add more than this. 1080p fits up to 64 samples unchanged."""
MIN_AUDIO_RATE = 1000
"""Audio sampled slower than this (Hz) holds no voice to judge; it comes from a damaged header, and resampling it to
16 kHz would multiply each sample by thousands."""
MAX_AUDIO_FRAME_S = 30.0
"""One decoded audio frame longer than this (seconds) is damaged data: real frames hold milliseconds."""
IMAGE_WORK_PIXELS = 4096 * 4096
"""Still images larger than this (pixels, up to ``DecodeConfig.max_image_pixels``) are decoded at a reduced
size: JPEGs by the decoder's own DCT scaling (the full-size bitmap never exists), others right after decoding."""


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
class DenseFrames:
    """Grey frames at a fixed rate over the start of a video, for motion measures (audio-visual sync).

    ``frames`` uint8 [T, h, w]; ``times`` [T] seconds; ``scale``: their size over the full frames' size
    (multiply full-resolution pixel coordinates by it to land in these frames).
    """

    frames: np.ndarray
    times: np.ndarray
    scale: float


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
    dense: DenseFrames | None = None
    """Grey frames at ``dense_fps`` over the first ``dense_seconds``, when :func:`decode` was asked for them."""

    @property
    def has_video(self) -> bool:
        return self.frames is not None and len(self.frames) > 0

    @property
    def has_audio(self) -> bool:
        return self.waveform is not None and self.waveform.size > 0


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


@dataclass
class DenseSpec:
    """Ask :func:`decode` for :class:`DenseFrames`: ``fps`` over the first ``seconds``, longer side at most ``max_side``."""

    fps: float
    seconds: float = 10.0
    max_side: int = 640


def decode(path: str | Path, cfg: DecodeConfig | None = None, dense: DenseSpec | None = None) -> Clip:
    """Decode ``path`` (video, audio or image) into a :class:`Clip`.

    With ``dense``, the same pass over the video also keeps grey frames at a fixed rate over its start
    (:attr:`Clip.dense`), so motion measures never decode the file a second time.
    Raises :class:`MediaError` with a one-line reason for anything that cannot be analysed.
    """
    cfg = cfg or DecodeConfig()
    size = check_file(path, cfg)
    if is_image_head(read_head(path, 16)):
        return _decode_image(Path(path), size, cfg)
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        # FFmpeg would pick a demuxer by extension and fail obscurely; the bytes say it is no image.
        raise MediaError(
            f"not a valid image: the content of this {Path(path).suffix} file is not JPEG, PNG, GIF, BMP, TIFF, WebP or PGM/PPM"
        )
    return _decode_av(Path(path), size, cfg, dense)


def _decode_image(path: Path, size: int, cfg: DecodeConfig) -> Clip:
    from PIL import Image

    notes: list[str] = []
    # Pillow's own bomb guard (a warning past MAX_IMAGE_PIXELS, an error past twice that) runs inside Image.open,
    # before the header check below: it is set to the same limit for the call, so the two never disagree.
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = cfg.max_image_pixels
        with Image.open(path) as im:
            Image.MAX_IMAGE_PIXELS = saved
            w, h = im.size
            if w <= 0 or h <= 0 or w * h > cfg.max_image_pixels:
                raise MediaError(f"image is {w}x{h}, above the {cfg.max_image_pixels} pixel limit")
            fmt = (im.format or path.suffix.lstrip(".")).lower()
            rgb = _image_rgb(im, notes)
    except MediaError:
        raise
    except Image.DecompressionBombError:
        raise MediaError(f"image is larger than the {cfg.max_image_pixels} pixel limit (from its header)") from None
    except MemoryError:
        raise MediaError("image is too large to decode in the memory available") from None
    except Exception as exc:
        # Pillow's format plugins raise many types (OSError, SyntaxError, struct.error, EOFError, IndexError...)
        # for damaged data; every one of them means the file is not a usable image.
        raise MediaError(f"corrupt or unsupported image ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    info = MediaInfo(str(path), "image", size, container=fmt, width=rgb.shape[1], height=rgb.shape[0], notes=notes)
    return Clip(rgb[None], np.zeros(1), None, cfg.sample_rate, 0.0, info)


def _image_rgb(im, notes: list[str]) -> np.ndarray:
    """An opened (not yet loaded) Pillow image as uint8 RGB [H, W, 3], upright from its EXIF orientation, decoded at
    a reduced size when it has more than :data:`IMAGE_WORK_PIXELS` pixels."""
    from PIL import ImageOps

    w, h = im.size
    factor = _reduction(w * h, IMAGE_WORK_PIXELS)
    if factor > 1:
        # JPEG decoders scale by 1/2, 1/4 or 1/8 while decoding; asking for exactly that size selects it.
        im.draft("RGB", (-(-w // factor), -(-h // factor)))
    im.load()
    if im.size[0] * im.size[1] > IMAGE_WORK_PIXELS:
        # reduce() handles the common modes only (not palette or 16-bit ones): RGB first.
        im = im.convert("RGB").reduce(_reduction(im.size[0] * im.size[1], IMAGE_WORK_PIXELS))
    if im.size != (w, h):
        notes.append(f"image of {w}x{h} analysed at {im.size[0]}x{im.size[1]}")
    # Phones store portrait photos sideways with an EXIF flag. In place, and no conversion of what is already
    # RGB: each copy of a large image is tens of MB.
    ImageOps.exif_transpose(im, in_place=True)
    rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise MediaError(f"image decoded to an unusable shape {rgb.shape}")
    return rgb


def _reduction(pixels: int, budget: int) -> int:
    """The smallest integer factor that brings an image of ``pixels`` within ``budget`` when both sides are divided by it."""
    return max(1, math.ceil(math.sqrt(pixels / budget)))


def _av_error(exc: Exception) -> MediaError:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MediaError(f"not a readable video or audio file ({msg})")


def _open(path: Path):
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _av_error(exc) from None


def _main_video_stream(container):
    """The first video stream that is not cover art and that this FFmpeg build can decode, or None."""
    for s in container.streams.video:
        # Cover art in audio files is a one-frame "video" stream flagged as an attached picture.
        if not (s.disposition & 0x0400) and s.codec_context is not None:  # AV_DISPOSITION_ATTACHED_PIC
            return s
    return None


def _main_audio_stream(container):
    """The first audio stream this FFmpeg build can decode, or None."""
    for s in container.streams.audio:
        # An unknown codec (a damaged or exotic sample-entry tag) leaves the stream without a codec context.
        if s.codec_context is not None:
            return s
    return None


def _undecodable(container) -> list[str]:
    """Notes for the streams that no decoder in this build can read."""
    notes = []
    for kind, streams in (("video", container.streams.video), ("audio", container.streams.audio)):
        n = sum(s.codec_context is None for s in streams)
        if n:
            notes.append(f"{n} {kind} stream(s) with a codec this build cannot decode were ignored")
    return notes


def usable_streams(container) -> tuple[object | None, object | None, list[str]]:
    """The main video and audio streams worth decoding (None where there is none) and notes on those skipped.

    A :class:`MediaError` when nothing is left, or when the video frames are over :data:`MAX_VIDEO_PIXELS` as the
    header declares them (checked before any frame is decoded)."""
    vstream, astream = _main_video_stream(container), _main_audio_stream(container)
    skipped = _undecodable(container)
    if vstream is None and astream is None:
        raise MediaError(
            "no video or audio stream this build can decode (unsupported codec)"
            if skipped
            else "no video or audio stream in the file"
        )
    if vstream is not None:
        too_big = _frame_size_error(vstream.codec_context.width or 0, vstream.codec_context.height or 0)
        if too_big is not None:
            raise too_big
    rate = astream.codec_context.sample_rate if astream is not None else 0
    if astream is not None and 0 < rate < MIN_AUDIO_RATE:
        skipped.append(f"an audio stream at {rate} Hz was ignored (under {MIN_AUDIO_RATE} Hz: a damaged header)")
        astream = None
        if vstream is None:
            raise MediaError(f"the only audio stream is sampled at {rate} Hz, under the {MIN_AUDIO_RATE} Hz minimum")
    return vstream, astream, skipped


def _frame_size_error(w: int, h: int) -> MediaError | None:
    if w * h > MAX_VIDEO_PIXELS:
        return MediaError(f"video frames are {w}x{h}, above the {MAX_VIDEO_PIXELS} pixel limit")
    return None


def _container_duration(container, streams) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    best = None
    for s in streams:
        if s is not None and s.duration is not None and s.time_base is not None:
            d = float(s.duration * s.time_base)
            if math.isfinite(d) and d > 0:  # damaged headers hold negative or absurd values
                best = d if best is None else max(best, d)
    return best


def _decode_av(path: Path, size: int, cfg: DecodeConfig, dense: DenseSpec | None = None) -> Clip:
    container = _open(path)
    try:
        vstream, astream, skipped = usable_streams(container)
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
            notes=skipped,
        )
        fps = float(vstream.average_rate) if vstream is not None and vstream.average_rate else 0.0
        if math.isfinite(fps) and fps > 0:
            info.fps = fps
        index_rate = index_timing(container, vstream, astream, info)
        if index_rate is not None:
            duration = info.duration
        span = min(duration, cfg.max_seconds) if duration else None
        if duration is not None and duration > cfg.max_seconds:
            info.truncated = True
            info.notes.append(f"only the first {cfg.max_seconds:g} s of {duration:.1f} s analysed")
    finally:
        container.close()

    frames, times, dense_frames = None, np.zeros(0), None
    if vstream is not None:
        frames, times, dense_frames = _read_frames(path, span, cfg, info, dense, index_rate)
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
    return Clip(frames, times, waveform, cfg.sample_rate, float(analysed), info, dense_frames)


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


def _dense_targets(span: float | None, dense: DenseSpec | None) -> np.ndarray:
    if dense is None:
        return np.zeros(0)
    horizon = min(span, dense.seconds) if span is not None else dense.seconds
    n = max(0, int(math.floor(horizon * dense.fps)))
    return (np.arange(n) + 0.5) / dense.fps


def _grey(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return grey, scale


@dataclass
class _FrameShape:
    """The size every sampled frame is converted to, fixed by the first frame kept: frames of a stream that
    changes size (or rotation) midway still stack, and large frames are scaled down as they are converted
    to RGB (FFmpeg's scaler), so the full-size RGB frame never exists.

    ``width`` x ``height``: pixels before rotation; ``rotation``: counter-clockwise degrees applied after.
    """

    width: int
    height: int
    rotation: int

    @staticmethod
    def first(frame, targets: int) -> _FrameShape:
        """The shape for a stream whose first kept frame is ``frame``, with ``targets`` frames to keep."""
        w, h = int(frame.width), int(frame.height)
        too_big = _frame_size_error(w, h)
        if too_big is not None:
            raise too_big
        rotation = int(round(frame.rotation or 0)) % 360
        budget = min(FRAME_PIXELS, KEPT_FRAMES_BYTES // (3 * max(1, targets)))
        if w * h <= budget:
            return _FrameShape(w, h, rotation)
        scale = math.sqrt(budget / (w * h))
        # Even sizes: chroma-subsampled pixel formats convert without a half-pixel edge.
        return _FrameShape(max(2, int(w * scale) & ~1), max(2, int(h * scale) & ~1), rotation)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(height, width) of the frames :meth:`rgb` returns, after rotation."""
        k = int(round(self.rotation / 90.0)) % 4
        return (self.width, self.height) if k % 2 else (self.height, self.width)

    def rgb(self, frame, out: np.ndarray | None = None) -> np.ndarray:
        """``frame`` as uint8 RGB [H, W, 3] at this shape, upright; written into ``out`` (of :attr:`upright_size`)
        when given, which is returned. Filling a preallocated array spares a copy of every frame (np.stack) and
        fresh memory for it, which costs more than the copy on a small VM."""
        if (frame.width, frame.height) == (self.width, self.height):
            arr = frame.to_ndarray(format="rgb24")
        else:
            arr = frame.to_ndarray(format="rgb24", width=self.width, height=self.height, interpolation="AREA")
        if out is None:
            return _upright(arr, self.rotation)
        k = int(round(self.rotation / 90.0)) % 4
        out[...] = np.rot90(arr, k=k) if k else arr
        return out


def index_timing(container, vstream, astream, info: MediaInfo) -> float | None:
    """The frame rate to time video frames by their index, or None when the stream's timestamps are usable.

    When every frame sits at one time (or none), the times and the durations derived from them mean nothing: frames
    are then timed by their index at the stream's nominal rate, ``info`` gets that rate, a length from the frame
    count (or the audio, if longer) and a note. Shared by :func:`decode` and the streaming reader."""
    if vstream is None or _timestamps_usable(container, vstream):
        return None
    rate = _nominal_rate(vstream) or 25.0  # no declared rate at all: the commonest video rate
    info.fps = rate
    lengths = [int(vstream.frames) / rate] if vstream.frames and vstream.frames > 0 else []
    lengths += [d for d in [_container_duration(container, [astream])] if astream is not None and d]
    info.duration = max(lengths) if lengths else None
    info.notes.append(f"video timestamps repeat or are missing: frame times taken from the frame index at {rate:g} fps")
    return rate


def _timestamps_usable(container, stream, probe: int = 12) -> bool:
    """Whether the video stream's packets carry timestamps to time frames by: False when its first ``probe`` packets
    hold fewer than two distinct ones (all equal, as some broken muxers write them, or none at all). Reads packets
    only (no decoding); a damaged stream counts as usable here and the decoder reports what is wrong with it."""
    import av

    seen: list[int | None] = []
    try:
        for packet in container.demux(stream):
            if packet.size:  # demuxing ends with an empty flush packet
                seen.append(packet.pts if packet.pts is not None else packet.dts)
            if len(seen) >= probe:
                break
    except (av.error.FFmpegError, ValueError):
        return True
    return len(seen) < 2 or len({p for p in seen if p is not None}) >= 2


def _nominal_rate(stream) -> float | None:
    """The frame rate a stream declares apart from its timestamps, frames per second: the bitstream's own timing
    (H.264 VUI), else FFmpeg's guess, else the average of the timestamps; None when none is plausible (0-240)."""
    for rate in (stream.codec_context.framerate, stream.guessed_rate, stream.average_rate):
        try:
            r = float(rate) if rate else 0.0
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(r) and 0 < r <= 240:
            return r
    return None


class _SkipUnsafe(Exception):
    """Raised inside a skipping pass when the stream stops behaving as skipping assumes (see :class:`_SkipPlan`)."""


_LOOKAHEAD = 16
"""Packets demuxed ahead of the one being decoded, so that :class:`_SkipPlan` knows the frames around it (decode
order differs from display order by at most a few frames: H.264 and HEVC reorder at most 16)."""
_KNOWN = 64
"""Recent packet times :class:`_SkipPlan` keeps to decide with (older ones only make it skip less)."""


class _SkipPlan:
    """Which packets the sampling loop of :func:`_read_frames` can do without, so the decoder skips them.

    The loop keeps, for each target time, the first frame (in display order) whose time ``t`` has
    ``t + half >= target`` (``half``: half a frame period). A packet at time ``t`` can therefore be dropped unless,
    for the sample targets or the dense targets, the largest target ``tau`` with ``tau <= t + half`` could be
    served by it first: it cannot when a known frame at an earlier time ``q`` already has ``q + half >= tau``.
    Only such packets are decoded with ``skip_frame = NONREF``, and FFmpeg then drops them only when no other frame
    is predicted from them (B-frames that are not references: about half the frames of a typical H.264 stream);
    reference frames are decoded regardless. The frames the loop keeps are the same as without skipping.

    That holds when the decoder returns one frame per packet with the packet's timestamp, in increasing time
    order. :meth:`check` verifies both on every frame (and that no decoded packet failed to come out); any breach
    raises :class:`_SkipUnsafe`, and the caller decodes again without skipping.
    """

    def __init__(self, stream, t0: float, half: float, targets: np.ndarray, dense_targets: np.ndarray) -> None:
        tb = stream.time_base
        self.num, self.den = tb.numerator, tb.denominator
        self.t0, self.half = t0, half
        self.lists = [np.asarray(x, dtype=np.float64) for x in (targets, dense_targets) if len(x)]
        self.skipped = 0
        self.active = True
        """False once skipping is given up (a check failed before anything was skipped)."""
        self.reset()

    def reset(self) -> None:
        """Forget what was demuxed (after a seek the decoder restarts from a keyframe)."""
        self.known: list[float] = []  # sorted times of recent packets
        self.order: list[float] = []  # the same times, in demux order, for eviction
        self.in_flight: dict[int, tuple[float, bool]] = {}  # pts -> (time, skipped) of packets sent, not yet out
        self.last_out: float | None = None

    def time(self, pts: int) -> float:
        """Seconds from the stream start of ``pts``, by the very expression PyAV's ``Frame.time`` uses."""
        return float(pts) * self.num / self.den - self.t0

    def saw(self, packet) -> None:
        """Note a packet as it is demuxed (ahead of its decoding)."""
        if packet.pts is None or not packet.size:
            return
        t = self.time(packet.pts)
        bisect.insort(self.known, t)
        self.order.append(t)
        if len(self.order) > _KNOWN:
            old = self.order.pop(0)
            del self.known[bisect.bisect_left(self.known, old)]

    def skippable(self, packet) -> bool:
        """Whether the loop needs no frame of ``packet`` (which :meth:`saw` has seen)."""
        if not self.active or packet.pts is None or not packet.size:
            return False
        t = self.time(packet.pts)
        k = bisect.bisect_left(self.known, t)
        before = self.known[k - 1] if k > 0 else None  # the latest known frame strictly earlier
        for marks in self.lists:
            n = int(np.searchsorted(marks, t + self.half, side="right"))
            if n == 0:
                continue  # no target this early: this frame serves none
            if before is None or before + self.half < marks[n - 1]:
                return False  # it may be the first frame to reach target n - 1
        return True

    def sent(self, packet, skip: bool) -> None:
        """Note that ``packet`` went to the decoder; ``skip``: with NONREF (its frame may or may not come out)."""
        if packet.pts is None or not packet.size:
            return
        self.skipped += skip
        self.in_flight[packet.pts] = (self.time(packet.pts), skip)

    def check(self, frame, t: float) -> None:
        """Verify what skipping assumes on a decoded frame at time ``t``; raise :class:`_SkipUnsafe` if it fails."""
        if frame.pts is None or (self.last_out is not None and t <= self.last_out):
            raise _SkipUnsafe  # untimed, or out of order
        sent = self.in_flight.pop(frame.pts, None)
        if sent is None or sent[0] != t:
            raise _SkipUnsafe  # a frame that is not its packet's
        self.last_out = t
        for pts, (u, skipped) in list(self.in_flight.items()):
            if u < t:
                if not skipped:
                    raise _SkipUnsafe  # a packet decoded in full never came out: a frame is missing
                del self.in_flight[pts]  # dropped by the decoder, as asked


def _packet_frames(container, stream, plan: _SkipPlan | None):
    """Decoded frames of ``stream`` from the container's current position, as ``container.decode(stream)`` gives
    them; with ``plan``, packets it finds unneeded are decoded with ``skip_frame = NONREF``.

    Packets are demuxed up to :data:`_LOOKAHEAD` ahead; a demuxing error is raised only when decoding reaches the
    packet where it happened, as it would be without the lookahead."""
    import av

    demuxer = container.demux(stream)
    ctx = stream.codec_context
    queue: deque = deque()
    error: Exception | None = None
    while True:
        while error is None and len(queue) <= (_LOOKAHEAD if plan is not None else 0):
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                error = exc
                break
            queue.append(packet)
            if plan is not None:
                plan.saw(packet)
        if not queue:
            if error is not None:
                raise error
            return
        packet = queue.popleft()
        if plan is not None:
            skip = plan.skippable(packet)
            ctx.skip_frame = "NONREF" if skip else "DEFAULT"
            plan.sent(packet, skip)
        yield from packet.decode()


def _read_frames(
    path: Path,
    span: float | None,
    cfg: DecodeConfig,
    info: MediaInfo,
    dense: DenseSpec | None = None,
    index_rate: float | None = None,
):
    """Sampled RGB frames [N, H, W, 3], their times [N], and the optional dense grey frames, in one pass.

    ``index_rate``: frames per second to time frame k at k / index_rate, for streams whose timestamps are unusable
    (:func:`_timestamps_usable`); then the stream is decoded straight through (seeking needs timestamps).

    Frames no target needs are skipped by the decoder where the codec allows it (:class:`_SkipPlan`); where the
    stream breaks what that relies on (and under index timing, where skipping would shift the frame count), the
    file is decoded again without skipping, so the frames kept are always those of a full decode."""
    if index_rate is None:
        try:
            return _FramePass(path, span, cfg, info, dense, index_rate, skip=True).run()
        except _SkipUnsafe:
            pass
    return _FramePass(path, span, cfg, info, dense, index_rate, skip=False).run()


class _FramePass:
    """One decoding pass of :func:`_read_frames`. ``info`` is updated only when the pass completes, so a skipping
    pass that gives up (:class:`_SkipUnsafe`) leaves no trace."""

    def __init__(
        self,
        path: Path,
        span: float | None,
        cfg: DecodeConfig,
        info: MediaInfo,
        dense: DenseSpec | None,
        index_rate: float | None,
        skip: bool,
    ) -> None:
        self.path, self.span, self.cfg, self.info = path, span, cfg, info
        self.dense, self.index_rate, self.skip = dense, index_rate, skip

    def run(self):
        import av

        path, span, cfg, dense, index_rate = self.path, self.span, self.cfg, self.dense, self.index_rate
        container = _open(path)
        notes: list[str] = []
        truncated = False
        rotation: int | None = None
        out: np.ndarray | None = None  # every sample's slot, filled in place: no list of frames to stack
        kept = 0
        kept_t: list[float] = []
        grey: list[np.ndarray] = []
        grey_t: list[float] = []
        grey_scale = 1.0
        shape: _FrameShape | None = None
        plan: _SkipPlan | None = None
        try:
            stream = _main_video_stream(container)
            stream.thread_type = "AUTO"
            declared = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
            if declared > FRAME_PIXELS:
                # Frame threads each hold whole frames: a few of them are plenty for frames this large.
                stream.codec_context.thread_count = 2
            tb = float(stream.time_base) if stream.time_base else None
            t0 = stream.start_time * tb if (stream.start_time is not None and tb) else 0.0
            fps = index_rate or self.info.fps or 25.0
            if span is not None:
                targets = sample_times(span, cfg)
            else:
                # Unknown length: sample at a fixed rate until max_frames or max_seconds.
                rate = cfg.fps or _FALLBACK_FPS
                targets = (np.arange(cfg.max_frames) + 0.5) / rate
                targets = targets[targets < cfg.max_seconds]
            dense_targets = _dense_targets(span, dense)
            if self.skip and tb and stream.time_base is not None:
                plan = _SkipPlan(stream, t0, 0.5 / fps, targets, dense_targets)
            i = j = 0
            last_pts = last_dense_pts = None
            decoder = _packet_frames(container, stream, plan)
            pos = 0.0
            seeked_for = -1
            count = 0  # frames decoded, for index timing
            while i < len(targets) or j < len(dense_targets):
                target = float(
                    min(
                        targets[i] if i < len(targets) else np.inf,
                        dense_targets[j] if j < len(dense_targets) else np.inf,
                    )
                )
                # One seek per target: the keyframe it lands on can still be far before the target
                # (long GOPs), and seeking again from there would loop forever. The dense targets are
                # contiguous from the start, so only sparse targets after them ever seek.
                if (
                    tb
                    and index_rate is None
                    and j >= len(dense_targets)
                    and target - pos > _SEEK_GAP_S
                    and seeked_for != i
                ):
                    seeked_for = i
                    try:
                        container.seek(int((target + t0) / tb), stream=stream, backward=True)
                        if plan is not None:
                            plan.reset()
                        decoder = _packet_frames(container, stream, plan)
                    except (av.error.FFmpegError, OverflowError, ValueError):
                        pass  # damaged timing (an absurd time base or start): go on decoding in order
                try:
                    frame = next(decoder)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    if plan is not None and plan.skipped:
                        raise _SkipUnsafe from None  # a decode without skipping reports the damage as it always did
                    # A damaged frame: skip it, keep what decoded. A file that never decodes ends below.
                    notes.append(f"damaged video data skipped ({type(exc).__name__})")
                    truncated = True
                    break
                if index_rate is not None:
                    t, key = count / index_rate, count
                else:
                    t = (frame.time - t0) if frame.time is not None else pos + 1.0 / fps
                    if not math.isfinite(t):
                        t = pos + 1.0 / fps
                    key = frame.pts  # a frame decoded again after a seek has the pts of one already kept
                if plan is not None and plan.active:
                    try:
                        plan.check(frame, t)
                    except _SkipUnsafe:
                        if plan.skipped:
                            raise
                        plan.active = False  # nothing skipped yet: go on without skipping, this pass is still exact
                count += 1
                pos = t
                if t + 0.5 / fps < target:
                    continue
                want_dense = (
                    j < len(dense_targets)
                    and t + 0.5 / fps >= dense_targets[j]
                    and not (key is not None and key == last_dense_pts)
                )
                want_sample = (
                    i < len(targets) and t + 0.5 / fps >= targets[i] and not (key is not None and key == last_pts)
                )
                if not (want_dense or want_sample):
                    continue
                if shape is None:
                    shape = _FrameShape.first(frame, len(targets))
                    if (shape.width, shape.height) != (frame.width, frame.height):
                        notes.append(f"frames of {frame.width}x{frame.height} analysed at {shape.width}x{shape.height}")
                if want_sample:
                    if out is None:
                        out = np.empty((len(targets), *shape.upright_size, 3), np.uint8)
                    rgb = shape.rgb(frame, out=out[kept])
                else:
                    rgb = shape.rgb(frame)
                if want_dense:
                    g, grey_scale = _grey(rgb, dense.max_side)  # type: ignore[union-attr]
                    grey.append(g)
                    grey_t.append(max(t, 0.0))
                    last_dense_pts = key
                    while j < len(dense_targets) and dense_targets[j] <= t + 0.5 / fps:
                        j += 1
                if want_sample:
                    rotation = shape.rotation
                    kept += 1
                    kept_t.append(max(t, 0.0))
                    last_pts = key
                    # One decoded frame may be the nearest to several targets in a low-fps video.
                    while i < len(targets) and targets[i] <= t + 0.5 / fps:
                        i += 1
        except av.error.FFmpegError as exc:
            if plan is not None and plan.skipped:
                raise _SkipUnsafe from None
            if not kept:
                raise _av_error(exc) from None
            truncated = True
        finally:
            container.close()
        info = self.info
        info.notes.extend(notes)
        info.truncated = info.truncated or truncated
        if rotation is not None:
            info.rotation = rotation
        dense_frames = DenseFrames(np.stack(grey), np.asarray(grey_t, dtype=np.float64), grey_scale) if grey else None
        if not kept or out is None:
            return None, np.zeros(0), dense_frames
        # Fewer samples than targets (a frame nearest to several, or a short stream): a view of the filled slots.
        frames = out[:kept]
        info.height, info.width = int(frames.shape[1]), int(frames.shape[2])
        return frames, np.asarray(kept_t, dtype=np.float64), dense_frames


def _read_audio(path: Path, span: float | None, cfg: DecodeConfig, info: MediaInfo) -> np.ndarray:
    import av

    limit = int(round((span if span is not None else cfg.max_seconds) * cfg.sample_rate))
    container = _open(path)
    chunks: list[np.ndarray] = []
    got = 0
    try:
        stream = _main_audio_stream(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        for frame in container.decode(stream):
            if frame.sample_rate < MIN_AUDIO_RATE or frame.samples > MAX_AUDIO_FRAME_S * frame.sample_rate:
                # Resampling such a frame to 16 kHz could take gigabytes; it is damaged data, not sound.
                info.truncated = True
                info.notes.append("damaged audio data; analysed what decoded")
                break
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1)
                chunks.append(arr)
                got += arr.size
            if got >= limit:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError) as exc:
        # ValueError: the resampler refuses a frame whose format, layout or rate changed midway (damaged data).
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
