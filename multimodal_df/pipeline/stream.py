"""Long files chunk by chunk: decode and score a span, report it, forget its frames, go on.

    >>> for item in detector.stream("lecture.mp4", chunk_s=30):
    ...     print(item.to_json())        # a ChunkResult per chunk as soon as it is scored, then a StreamVerdict

Memory stays bounded whatever the length: one chunk's sampled frames (``DecodeConfig.num_frames`` per chunk,
or ``fps`` capped at ``max_frames``, within ``KEPT_FRAMES_BYTES``), its audio (16 kHz float32: 1.9 MB per 30 s)
and, when fusion weighs audio-visual sync, its dense grey frames over the chunk's first 10 s. Across chunks only
a few numbers per face crop and per audio window are kept for the verdict. There is no ``max_seconds`` cap:
the whole file is analysed. Video and audio are read by two sequential decoders (one per stream, each on its
own handle), so badly interleaved files cost no memory either; every video frame is decoded (no seeking) and
only the sampled ones are converted to RGB.

Chunks: with a known duration D, ``round(D / chunk_s)`` equal chunks (each between 0.67x and 1.5x ``chunk_s``);
whatever the file holds beyond D (or all of it, when the container states no duration) in ``chunk_s`` steps, a
last piece under ``min_seconds`` dropped (with a note past 0.1 s: less is codec padding). Each chunk is scored exactly as
:meth:`Detector.analyze_clip` scores a clip: its own frame sampling, face track, audio windows, sync, fusion.

The verdict pools the chunks the way the models pool within a clip, so it is what :meth:`Detector.analyze`
would give if it had sampled the same frames and windows: every chunk's face-crop logits pooled by the vision
model's own rule (mean, max or top-k), every audio window's logit averaged, the branch embeddings averaged
(weighted by crops / windows), calibrated and fused as usual, with the sync measured over the first chunk's
first 10 s (as :meth:`Detector.analyze` measures it over the file's first 10 s). A short fake stretch in a long
real video is diluted by this mean, so the verdict also carries the most suspicious chunk
(``stream.max_p_fake`` and ``stream.max_chunk``) for a reviewer to look at.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MediaError, one_line
from ..media.decode import (
    _FALLBACK_FPS,
    MAX_AUDIO_FRAME_S,
    MIN_AUDIO_RATE,
    Clip,
    DenseFrames,
    DenseSpec,
    MediaInfo,
    _av_error,
    _container_duration,
    _frame_size_error,
    _FrameShape,
    _grey,
    _main_audio_stream,
    _main_video_stream,
    _open,
    check_file,
    index_timing,
    sample_times,
    usable_streams,
)
from ..media.sniff import is_image_head, read_head
from ..provenance import decide
from .outputs import AudioOutput, Prediction, VisionOutput, per_second_segments

if TYPE_CHECKING:
    from ..config import DecodeConfig
    from .detector import Detector

DEFAULT_CHUNK_S = 30.0
MIN_CHUNK_S = 2.0
"""Shorter chunks would hold too few frames and audio windows for a per-chunk score worth reading."""
_MAX_NOTES = 8


@dataclass
class ChunkResult:
    """One chunk's scores, as soon as it is scored. Times in seconds from the start of the file; every score is
    a calibrated P(fake) (None where that modality had nothing to score, all None with ``error`` set)."""

    path: str
    chunk: int
    start_s: float
    end_s: float
    p_fake: float | None
    vision: float | None
    audio: float | None
    error: str | None = None
    seconds: float = 0.0
    """Wall time spent decoding and scoring this chunk."""

    def to_json(self) -> dict[str, Any]:
        """The per-chunk line of ``predict --stream``."""

        def r(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 4)

        return {
            "path": self.path,
            "chunk": self.chunk,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "p_fake": r(self.p_fake),
            "vision": r(self.vision),
            "audio": r(self.audio),
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class StreamVerdict:
    """The whole file's verdict after its chunks: ``prediction`` as :meth:`Detector.predict` would give it, with
    how many chunks were scored and the most suspicious one."""

    prediction: Prediction
    chunks: int = 0
    scored: int = 0
    max_p_fake: float | None = None
    max_chunk: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``predict --json`` record plus ``stream``: {chunks, scored, max_p_fake, max_chunk}."""
        record = self.prediction.to_json()
        record["stream"] = {
            "chunks": self.chunks,
            "scored": self.scored,
            "max_p_fake": None if self.max_p_fake is None else round(self.max_p_fake, 4),
            "max_chunk": self.max_chunk,
        }
        return record


# ------------------------------------------------------------------------------------------- readers
@dataclass
class _ChunkFrames:
    """What the video reader returns for one chunk: RGB frames [N, H, W, 3] (None when none), their times [N]
    in seconds from the file's start, the dense grey frames (times from the chunk's start) and the time of the
    last frame decoded in the span."""

    frames: np.ndarray | None
    times: np.ndarray
    dense: DenseFrames | None
    last_t: float | None


class _VideoReader:
    """Decodes the main video stream front to back, one chunk at a time; keeps nothing between chunks but the first
    frame of the next one."""

    def __init__(
        self, path: Path, cfg: DecodeConfig, info: MediaInfo, dense: DenseSpec | None, index_rate: float | None = None
    ) -> None:
        """``index_rate``: frames per second to time frame k at k / index_rate, for streams whose timestamps are
        unusable (as :func:`~multimodal_df.media.decode.decode` does)."""
        self.cfg, self.info, self.dense, self.index_rate = cfg, info, dense, index_rate
        self.count = 0
        self.container = _open(path)
        stream = _main_video_stream(self.container)
        stream.thread_type = "AUTO"
        self.tb = float(stream.time_base) if stream.time_base else None
        self.t0 = stream.start_time * self.tb if (stream.start_time is not None and self.tb) else 0.0
        self.fps = info.fps or 25.0
        self.frames = self.container.decode(stream)
        self.pending: Any = None
        self.pending_t = 0.0
        self.pos = 0.0
        self.done = False
        self.shape: _FrameShape | None = None

    def close(self) -> None:
        self.container.close()

    def _next(self) -> tuple[Any, float] | None:
        import av

        if self.pending is not None:
            item, self.pending = (self.pending, self.pending_t), None
            return item
        if self.done:
            return None
        try:
            frame = next(self.frames)
        except StopIteration:
            self.done = True
            return None
        except av.error.FFmpegError as exc:
            # A damaged frame ends the video here; what decoded so far is still scored.
            self.info.notes.append(
                f"damaged video data at {self.pos:.1f} s; the video ends there ({type(exc).__name__})"
            )
            self.info.truncated = True
            self.done = True
            return None
        if self.index_rate is not None:
            t = self.count / self.index_rate
        else:
            t = (frame.time - self.t0) if frame.time is not None else self.pos + 1.0 / self.fps
            if not math.isfinite(t):
                t = self.pos + 1.0 / self.fps
        self.count += 1
        self.pos = t
        return frame, t

    def read(self, start: float, end: float) -> _ChunkFrames:
        """The sampled frames of [start, end): ``sample_times(end - start)`` after ``start``, as :func:`decode`
        samples a clip of that length."""
        targets = start + sample_times(end - start, self.cfg)
        dense_t = np.zeros(0)
        if self.dense is not None:
            n = int(math.floor(min(end - start, self.dense.seconds) * self.dense.fps))
            dense_t = start + (np.arange(n) + 0.5) / self.dense.fps
        half = 0.5 / self.fps
        kept, kept_t, grey, grey_t = [], [], [], []
        grey_scale = 1.0
        i = j = 0
        last_t = None
        while (item := self._next()) is not None:
            frame, t = item
            if t >= end:
                self.pending, self.pending_t = frame, t  # the first frame of the next chunk
                break
            last_t = t
            want_sample = i < len(targets) and t + half >= targets[i]
            want_dense = j < len(dense_t) and t + half >= dense_t[j]
            if not (want_sample or want_dense):
                continue
            if self.shape is None:
                self.shape = _FrameShape.first(frame, len(targets))
                if (self.shape.width, self.shape.height) != (frame.width, frame.height):
                    self.info.notes.append(
                        f"frames of {frame.width}x{frame.height} analysed at {self.shape.width}x{self.shape.height}"
                    )
            too_big = _frame_size_error(frame.width, frame.height)
            if too_big is not None:
                raise too_big
            rgb = self.shape.rgb(frame)
            if want_dense:
                g, grey_scale = _grey(rgb, self.dense.max_side)  # type: ignore[union-attr]
                grey.append(g)
                grey_t.append(max(t - start, 0.0))
                while j < len(dense_t) and dense_t[j] <= t + half:
                    j += 1
            if want_sample:
                self.info.rotation = self.shape.rotation
                kept.append(rgb)
                kept_t.append(max(t, 0.0))
                # One decoded frame may be the nearest to several targets in a low-fps video.
                while i < len(targets) and targets[i] <= t + half:
                    i += 1
        dense = DenseFrames(np.stack(grey), np.asarray(grey_t), grey_scale) if len(grey) > 1 else None
        if not kept:
            return _ChunkFrames(None, np.zeros(0), dense, last_t)
        frames = np.stack(kept)
        self.info.height, self.info.width = int(frames.shape[1]), int(frames.shape[2])
        return _ChunkFrames(frames, np.asarray(kept_t, dtype=np.float64), dense, last_t)


class _AudioReader:
    """Decodes the main audio stream to 16 kHz mono front to back, one chunk at a time; keeps nothing between chunks
    but the samples decoded past the last chunk's end (at most one audio frame)."""

    def __init__(self, path: Path, cfg: DecodeConfig, info: MediaInfo) -> None:
        import av

        self.info, self.rate = info, cfg.sample_rate
        self.container = _open(path)
        self.frames = self.container.decode(_main_audio_stream(self.container))
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.pos = 0
        """Samples handed out so far."""
        self.done = False

    def close(self) -> None:
        self.container.close()

    def _pull(self) -> None:
        import av

        try:
            frame = next(self.frames)
            if frame.sample_rate < MIN_AUDIO_RATE or frame.samples > MAX_AUDIO_FRAME_S * frame.sample_rate:
                # Resampling such a frame to 16 kHz could take gigabytes; it is damaged data, not sound.
                raise ValueError("damaged audio frame")
            outs = self.resampler.resample(frame)
        except StopIteration:
            self.done = True
            outs = self.resampler.resample(None)
        except (av.error.FFmpegError, ValueError):
            self.info.notes.append(f"damaged audio data at {self.pos / self.rate:.1f} s; the audio ends there")
            self.info.truncated = True
            self.done = True
            return
        for out in outs:
            arr = out.to_ndarray().reshape(-1)
            self.buf.append(arr)
            self.buffered += arr.size

    def read(self, end: float) -> np.ndarray:
        """The samples from where the last read ended up to ``end`` seconds, float32 [T] in [-1, 1]."""
        stop = int(round(end * self.rate))
        while not self.done and self.pos + self.buffered < stop:
            self._pull()
        wave = np.concatenate(self.buf).astype(np.float32, copy=False) if self.buf else np.zeros(0, np.float32)
        take = max(0, min(wave.size, stop - self.pos))
        rest = wave[take:]
        self.buf, self.buffered = ([rest.copy()], rest.size) if rest.size else ([], 0)
        self.pos += take
        out = np.array(wave[:take], dtype=np.float32)  # its own memory: the rest of the buffer is let go
        np.clip(out, -1.0, 1.0, out=out)
        return out


# ------------------------------------------------------------------------------------------- pooling
@dataclass
class _Pool:
    """What the verdict needs from every scored chunk: per-crop and per-window numbers, summed embeddings."""

    crop_logits: list[np.ndarray] = field(default_factory=list)
    crop_times: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    v_emb: np.ndarray | None = None
    window_logits: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    ends: list[np.ndarray] = field(default_factory=list)
    a_emb: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, pred: Prediction, offset: float) -> None:
        v, a = pred.vision, pred.audio
        if v is not None:
            self.crop_logits.append(np.asarray(v.crop_logits, np.float64))
            self.crop_times.append(np.asarray(v.times, np.float64) + offset)
            self.frames += v.frames
            self.faces += v.faces
            w = v.embedding * len(v.crop_logits)
            self.v_emb = w if self.v_emb is None else self.v_emb + w
        if a is not None:
            self.window_logits.append(np.asarray(a.window_logits, np.float64))
            self.starts.append(np.asarray(a.starts, np.float64) + offset)
            self.ends.append(np.asarray(a.ends, np.float64) + offset)
            w = a.embedding * a.windows
            self.a_emb = w if self.a_emb is None else self.a_emb + w
        for k, t in pred.timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + t

    def vision(self, det: Detector) -> VisionOutput | None:
        if not self.crop_logits:
            return None
        lg = np.concatenate(self.crop_logits)
        pooled = det.pool_vision(lg)
        cal = det.vision_meta.calibration
        emb = (self.v_emb / len(lg)).astype(np.float32)  # type: ignore[operator]
        return VisionOutput(
            pooled, float(cal(pooled)), emb, lg, cal(lg), np.concatenate(self.crop_times), self.frames, self.faces
        )

    def audio(self, det: Detector) -> AudioOutput | None:
        if not self.window_logits:
            return None
        lg = np.concatenate(self.window_logits)
        pooled = float(lg.mean())
        cal = det.audio_meta.calibration
        emb = (self.a_emb / len(lg)).astype(np.float32)  # type: ignore[operator]
        return AudioOutput(
            pooled, float(cal(pooled)), emb, lg, cal(lg), np.concatenate(self.starts), np.concatenate(self.ends)
        )


# ------------------------------------------------------------------------------------------- the stream
def chunk_bounds(duration: float | None, chunk_s: float) -> list[float]:
    """Planned chunk edges in seconds: ``round(D / chunk_s)`` equal chunks over a known duration D (at least one),
    none when the duration is unknown (then the reader goes on in ``chunk_s`` steps)."""
    if not duration or not math.isfinite(duration) or duration <= 0:
        return [0.0]
    n = max(1, int(round(duration / chunk_s)))
    return [float(x) for x in np.linspace(0.0, duration, n + 1)]


def _probe(path: Path, cfg: DecodeConfig) -> tuple[MediaInfo, bool, bool, float | None]:
    """The file's :class:`MediaInfo`, whether it has a video and an audio stream to decode, and the frame rate to
    time frames by their index when the video's timestamps are unusable (None when they are fine)."""
    size = check_file(path, cfg)
    container = _open(path)
    try:
        vstream, astream, skipped = usable_streams(container)
        info = MediaInfo(
            str(path),
            "video" if vstream is not None else "audio",
            size,
            container=container.format.name,
            video_codec=vstream.codec_context.name if vstream is not None else None,
            audio_codec=astream.codec_context.name if astream is not None else None,
            duration=_container_duration(container, [vstream, astream]),
            notes=skipped,
        )
        fps = float(vstream.average_rate) if vstream is not None and vstream.average_rate else 0.0
        if math.isfinite(fps) and fps > 0:
            info.fps = fps
        index_rate = index_timing(container, vstream, astream, info)
    except MediaError:
        raise
    except Exception as exc:
        import av

        if isinstance(exc, av.error.FFmpegError):
            raise _av_error(exc) from None
        raise
    finally:
        container.close()
    return info, vstream is not None, astream is not None, index_rate


def stream(det: Detector, path: str | Path, chunk_s: float = DEFAULT_CHUNK_S) -> Iterator[ChunkResult | StreamVerdict]:
    """Score ``path`` chunk by chunk: yields a :class:`ChunkResult` per chunk as soon as it is scored, then one
    :class:`StreamVerdict` (see the module docstring for chunking and pooling).

    Never raises for a bad input: a file that cannot be read at all yields no chunk and a verdict whose
    prediction has ``error`` set; a chunk that cannot be scored (no face and no voice in it) has its own ``error``
    and the verdict pools the others. Still images are scored whole (one verdict, no chunk).
    """
    if not chunk_s >= MIN_CHUNK_S:
        raise ValueError(f"chunk_s must be at least {MIN_CHUNK_S:g} s, got {chunk_s}")
    begin = time.perf_counter()
    p = Path(path)
    pred = Prediction(path=str(path))
    verdict = StreamVerdict(pred)
    try:
        check_file(p, det.decode_cfg)
        if is_image_head(read_head(p, 16)):
            verdict.prediction = det.predict(p)
            yield verdict
            return
        info, has_video, has_audio, index_rate = _probe(p, det.decode_cfg)
    except MediaError as exc:
        pred.error = exc.reason
        if p.is_file():
            # A file the models cannot read may still say where it came from (as analyze() does).
            det.run_provenance(p, None, pred)
        _finish(pred, begin)
        yield verdict
        return
    except Exception as exc:
        pred.error = one_line(f"internal error: {type(exc).__name__}: {exc}", 300)
        _finish(pred, begin)
        yield verdict
        return
    yield from _chunks(det, p, info, has_video, has_audio, chunk_s, verdict, begin, index_rate)


def _finish(pred: Prediction, begin: float) -> None:
    if pred.error is not None:
        pred.evidence = decide(None, None, pred.provenance)
        pred.notes.extend(pred.evidence.notes)
    pred.seconds = time.perf_counter() - begin


def _chunks(
    det: Detector,
    path: Path,
    info: MediaInfo,
    has_video: bool,
    has_audio: bool,
    chunk_s: float,
    verdict: StreamVerdict,
    begin: float,
    index_rate: float | None = None,
) -> Iterator[ChunkResult | StreamVerdict]:
    from ..fusion.sync import DENSE

    cfg = det.decode_cfg
    pred = verdict.prediction
    pred.info = info
    bounds = chunk_bounds(info.duration, chunk_s)
    planned = len(bounds) - 1
    pool = _Pool()
    first_sync = None
    first_error: str | None = None
    chunk_notes: list[str] = []
    max_p, max_chunk = -1.0, None
    vreader = areader = None
    analysed_end = 0.0
    try:
        vreader = _VideoReader(path, cfg, info, DENSE if det.uses_sync else None, index_rate) if has_video else None
        areader = _AudioReader(path, cfg, info) if has_audio else None
        start, i = 0.0, 0
        while True:
            t_chunk = time.perf_counter()
            end = bounds[i + 1] if i < planned else start + chunk_s
            got = vreader.read(start, end) if vreader is not None else _ChunkFrames(None, np.zeros(0), None, None)
            wave = areader.read(end) if areader is not None else None
            decode_s = time.perf_counter() - t_chunk
            a_end = start + wave.size / cfg.sample_rate if wave is not None else start
            v_end = got.last_t + 1.0 / (info.fps or _FALLBACK_FPS) if got.last_t is not None else start
            stop = min(end, max(a_end, v_end))
            exhausted = (vreader is None or vreader.done) and (areader is None or areader.done)
            span = stop - start
            if span <= 0 and exhausted:
                break
            if i == 0 and got.frames is not None:
                # Provenance once per file, on the first chunk's frames: they are already decoded.
                det.run_provenance(path, got.frames, pred)
            if span < cfg.min_seconds and exhausted:
                if verdict.chunks == 0:
                    raise MediaError(
                        f"clip is {span:.2f} s long; at least {cfg.min_seconds:g} s is needed for a verdict"
                    )
                if span > 0.1:  # less is container padding, not content
                    chunk_notes.append(f"the last {span:.1f} s were too short to score on their own")
                break
            result, chunk_pred = _score_chunk(det, path, info, i, start, stop, got, wave)
            result.seconds = time.perf_counter() - t_chunk
            if chunk_pred is not None:
                chunk_pred.timings["decode"] = decode_s
                pool.add(chunk_pred, start)
                if i == 0:
                    first_sync = chunk_pred.sync
                if result.p_fake is not None and result.p_fake > max_p:
                    max_p, max_chunk = result.p_fake, i
                verdict.scored += 1
            else:
                first_error = first_error or result.error
                if len(chunk_notes) < _MAX_NOTES:
                    chunk_notes.append(f"chunk {i} ({start:.0f}-{stop:.0f} s) not scored: {result.error}")
            verdict.chunks += 1
            analysed_end = stop
            yield result
            # This chunk's frames and audio go out of scope here: only the pool's numbers stay.
            del got, wave
            start, i = end, i + 1
            if exhausted:
                break
    except MediaError as exc:
        pred.error = exc.reason
    except Exception as exc:
        pred.error = one_line(f"internal error: {type(exc).__name__}: {exc}", 300)
        pred.notes.append(one_line(traceback.format_exc(limit=3).splitlines()[-1], 300))
    finally:
        for reader in (vreader, areader):
            if reader is not None:
                reader.close()
    if pred.error is None and verdict.scored == 0:
        pred.error = f"no chunk could be scored: {first_error or 'nothing to score'}"
    if pred.error is None:
        _verdict(det, pred, pool, first_sync, analysed_end)
        verdict.max_p_fake, verdict.max_chunk = max_p, max_chunk
        pred.notes.append(
            f"streamed in {verdict.chunks} chunks of about {chunk_s:g} s; the verdict pools every chunk's face crops "
            f"and audio windows (most suspicious: chunk {max_chunk}, P(fake) {max_p:.3f})"
        )
    pred.notes.extend(chunk_notes)
    info.duration = info.duration if info.duration else analysed_end
    _finish(pred, begin)
    yield verdict


def _score_chunk(
    det: Detector,
    path: Path,
    info: MediaInfo,
    i: int,
    start: float,
    stop: float,
    got: _ChunkFrames,
    wave: np.ndarray | None,
) -> tuple[ChunkResult, Prediction | None]:
    """Score one chunk as a clip of its own (times from the chunk's start); the prediction is None on failure."""
    result = ChunkResult(str(path), i, start, stop, None, None, None)
    has_wave = wave is not None and wave.size > 0
    clip = Clip(
        got.frames,
        got.times - start if got.frames is not None else np.zeros(0),
        wave if has_wave else None,
        det.decode_cfg.sample_rate,
        stop - start,
        info,
        got.dense,
    )
    chunk_pred = Prediction(path=str(path))
    try:
        if not clip.has_video and not clip.has_audio:
            raise MediaError("no decodable frames or audio in this span")
        det.analyze_clip(clip, chunk_pred)
    except MediaError as exc:
        result.error = exc.reason
        return result, None
    except Exception as exc:
        result.error = one_line(f"internal error: {type(exc).__name__}: {exc}", 300)
        return result, None
    result.p_fake = chunk_pred.p_fake
    result.vision = chunk_pred.vision.p_fake if chunk_pred.vision is not None else None
    result.audio = chunk_pred.audio.p_fake if chunk_pred.audio is not None else None
    return result, chunk_pred


def _verdict(det: Detector, pred: Prediction, pool: _Pool, sync: Any, duration: float) -> None:
    """Fill ``pred`` with the pooled verdict over every scored chunk (see the module docstring)."""
    t = time.perf_counter()
    v, a = pool.vision(det), pool.audio(det)
    pred.vision, pred.audio = v, a
    pred.sync = sync if (v is not None and a is not None) else None
    pred.p_fake = det.fuse(v, a, pred.sync)
    pred.threshold = det.threshold
    pred.evidence = decide(pred.p_fake, pred.threshold, pred.provenance)
    pred.label = pred.evidence.label
    pred.notes.extend(pred.evidence.notes)
    pred.segments = per_second_segments(duration, v, a)
    pred.timings.update(pool.timings)
    pred.timings["fusion"] = pred.timings.get("fusion", 0.0) + time.perf_counter() - t
    if v is None and det.vision is not None and pred.info is not None and pred.info.kind == "video":
        pred.notes.append("no face found in any chunk: scored without the video")
    if a is None and det.audio is not None and pred.info is not None and pred.info.audio_codec is not None:
        pred.notes.append("no chunk had audio to score: scored without the audio")
