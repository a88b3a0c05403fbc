"""Entry point of the provenance stage: :func:`inspect_provenance`."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..media.sniff import HEAD_BYTES, FileType, identify
from .c2pa_check import check_c2pa
from .metadata import av_metadata, image_metadata
from .report import C2paResult, MetadataResult, ProvenanceReport, WatermarkResult
from .watermark import FRAME_BLOCK_BUDGET, IMAGE_BLOCK_BUDGET, MAX_FRAMES, check_watermarks, rows_read

MAX_IMAGE_PIXELS = 50_000_000
"""Larger images are not decoded for the watermark check (decompression bombs)."""
MAX_IMAGE_FILE_BYTES = 512 * 1024 * 1024
"""Image files beyond this are not opened with Pillow at all: the metadata in front of the pixels
is read whole, and no real still image needs more."""
MAX_KEYFRAME_SECONDS = 120.0
"""When the caller passes no frames, keyframes are taken from at most this far into the video..."""
MAX_KEYFRAME_PACKETS = 5000
"""...and from at most this many packets (bounds the work on files with rare keyframes)."""

T = TypeVar("T")


def _timed(timings: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round((time.perf_counter() - t0) * 1000.0, 2)


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, k)})


def _image_checks(path: Path, notes: list[str]) -> tuple[MetadataResult, WatermarkResult]:
    """Pillow opens the file once. Pixels (within limits) are loaded before the metadata is read, which
    also brings in PNG text chunks stored after the image data; the watermark decode comes last."""
    try:
        from PIL import Image
    except ImportError:
        notes.append("Pillow is not installed: image metadata and watermarks not checked")
        return MetadataResult(), WatermarkResult()
    if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
        notes.append(f"image file over {MAX_IMAGE_FILE_BYTES // 2**20} MB: metadata and watermark not read")
        return MetadataResult(), WatermarkResult()
    try:
        with Image.open(path) as im:
            w, h = im.size
            pixels_ok = w * h <= MAX_IMAGE_PIXELS
            rgb = None
            if pixels_ok:
                try:
                    # Loading first also brings in PNG text chunks stored after the image data.
                    im.load()
                    # Only the rows the watermark check reads: a full-size RGB copy of a 50 MP image is 150 MB
                    # more at the process's peak, for rows the check never looks at.
                    keep = rows_read(h, w, IMAGE_BLOCK_BUDGET)
                    # Fewer rows than that (a very wide strip) still go whole: the decoder refuses them itself.
                    top = im.crop((0, 0, w, keep)) if 0 < keep < h else im
                    rgb = np.asarray(top.convert("RGB"))
                except Exception as exc:
                    notes.append(f"image pixels undecodable ({type(exc).__name__}); watermark not checked")
            else:
                notes.append(f"image of {w}x{h} pixels not decoded (limit {MAX_IMAGE_PIXELS // 10**6} MP)")
            meta = image_metadata(im)
    except Exception as exc:
        notes.append(f"image unreadable by Pillow ({type(exc).__name__}): {str(exc)[:160]}")
        return MetadataResult(), WatermarkResult()
    wm = check_watermarks([rgb], IMAGE_BLOCK_BUDGET) if rgb is not None else WatermarkResult()
    return meta, wm


def _keyframes(path: Path, k: int) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``k`` keyframes (RGB) of the main video stream, decoded alone: cheap and least compressed."""
    notes: list[str] = []
    frames: list[np.ndarray] = []
    try:
        import av

        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video:
                return frames, notes
            stream = container.streams.video[0]
            # The decoder drops every non-key frame itself; demuxing the skipped packets costs little.
            stream.codec_context.skip_frame = "NONKEY"
            for n, packet in enumerate(container.demux(stream)):
                # A packet of None (end of stream) drains frames the decoder still holds.
                for frame in packet.decode():
                    frames.append(frame.to_ndarray(format="rgb24"))
                late = (
                    packet.pts is not None
                    and packet.time_base is not None
                    and float(packet.pts * packet.time_base) > MAX_KEYFRAME_SECONDS
                )
                if len(frames) >= k or n >= MAX_KEYFRAME_PACKETS or late:
                    break
            frames = frames[:k]
    except Exception as exc:
        notes.append(f"video keyframes undecodable ({type(exc).__name__}); watermark check limited")
    return frames, notes


def _frame_checks(frames: np.ndarray | None, path: Path, notes: list[str]) -> WatermarkResult:
    if frames is not None:
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            notes.append(f"frames must be uint8 [N, H, W, 3]; got {arr.dtype} {arr.shape}: watermark not checked")
            return WatermarkResult()
        idx = _pick(len(arr), MAX_FRAMES)
        return check_watermarks([arr[i] for i in idx], FRAME_BLOCK_BUDGET, frame_indices=idx)
    keyframes, kf_notes = _keyframes(path, MAX_FRAMES)
    notes += kf_notes
    res = check_watermarks(keyframes, FRAME_BLOCK_BUDGET)
    if keyframes:
        res.notes.append(f"no frames passed: checked {len(keyframes)} keyframe(s) decoded here")
    return res


def inspect_provenance(
    path: str | Path,
    frames: np.ndarray | None = None,
    *,
    trust_anchors: str | Path | None = None,
    max_file_bytes: int | None = None,
) -> ProvenanceReport:
    """What a media file says about its own origin. Never raises; problems become ``notes``.

    ``path``: image, audio or video file (the container is recognised from its bytes, not its name).
    ``frames``: optional uint8 RGB video frames [N, H, W, 3] at native resolution, already decoded by the
    pipeline; up to 3 of them are checked for watermarks. Without them a video's first keyframes are used.
    ``trust_anchors``: optional PEM bundle of root certificates (e.g. the C2PA trust list) that a
    manifest's signer must chain to for the state ``valid``.
    ``max_file_bytes``: files larger than this are not inspected (a note says so); the detector passes its own
    ``decode.max_file_mb`` so that the stage never reads more than the decoder would accept.
    Cost on 2 CPU cores: milliseconds for C2PA and metadata (C2PA hashes the whole file once), about
    0.1-0.4 s for the watermark decode of an image or of 3 video frames.
    """
    p = Path(path)
    report = ProvenanceReport(path=str(path))
    timings = report.timings_ms
    t0 = time.perf_counter()
    try:
        _inspect(p, frames, trust_anchors, max_file_bytes, report)
    except Exception as exc:
        report.notes.append(f"provenance inspection failed ({type(exc).__name__}): {str(exc)[:160]}")
    timings["total"] = round((time.perf_counter() - t0) * 1000.0, 2)
    return report


def _inspect(
    p: Path,
    frames: np.ndarray | None,
    trust_anchors: str | Path | None,
    max_file_bytes: int | None,
    report: ProvenanceReport,
) -> None:
    notes, timings = report.notes, report.timings_ms
    try:
        st = os.stat(p)
    except OSError as exc:
        notes.append(f"cannot access file ({type(exc).__name__})")
        report.c2pa = C2paResult(state="not_checked")
        return
    if not stat.S_ISREG(st.st_mode):
        notes.append("not a regular file (a directory or device): nothing inspected")
        report.c2pa = C2paResult(state="not_checked")
        return
    report.size_bytes = int(st.st_size)
    if st.st_size == 0:
        notes.append("empty file: nothing inspected")
        report.c2pa = C2paResult(state="not_checked")
        return
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        notes.append(f"file over the {max_file_bytes / 2**20:.0f} MB limit: nothing inspected")
        report.c2pa = C2paResult(state="not_checked")
        return
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        notes.append(f"cannot read file ({type(exc).__name__})")
        report.c2pa = C2paResult(state="not_checked")
        return
    ft: FileType = identify(head)
    # A container that may hold either is checked as video: the video checks read its audio tags too.
    kind = {"media": "video", None: "unknown"}.get(ft.kind, ft.kind)
    report.kind, report.mime = kind, ft.mime  # type: ignore[assignment]
    if kind == "unknown":
        notes.append("not a recognised image, audio or video file (its first bytes match no known format)")
        report.c2pa = C2paResult(state="not_checked")
        return

    report.c2pa = _timed(timings, "c2pa", lambda: check_c2pa(p, ft.mime, trust_anchors))
    if kind == "image":
        report.metadata, report.watermark = _timed(timings, "image", lambda: _image_checks(p, notes))
        if ft.fmt == "jpeg" and not report.c2pa.present:
            _note_orphan_jumbf(p, notes)
        return
    report.metadata = _timed(timings, "metadata", lambda: av_metadata(p))
    if kind == "video":
        report.watermark = _timed(timings, "watermark", lambda: _frame_checks(frames, p, notes))
    else:
        report.watermark.notes.append("no known invisible watermark is checked for audio")


def _note_orphan_jumbf(path: Path, notes: list[str]) -> None:
    """JPEG APP11 (JUMBF) segments without a readable manifest: stripped, broken or foreign data."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            n = sum(1 for marker, _ in getattr(im, "applist", []) if marker == "APP11")
    except Exception:
        return
    if n:
        notes.append(f"JPEG carries {n} APP11 (JUMBF) segment(s) but no readable C2PA manifest")
