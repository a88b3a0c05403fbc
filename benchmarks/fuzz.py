"""Fuzzing: mutated media files and damaged checkpoints through ``predict``, counted.

    python benchmarks/fuzz.py --detector runs/x/detector --media 9500 --checkpoints 500 --seed 0
    python benchmarks/fuzz.py atheris --runs 20000          # coverage-guided, in-process, on media decoding

**Seeds** are generated in the work folder: the synthetic fixture clips (H.264 + AAC MP4), the bundled
examples, the same content in other containers and codecs (WebM/VP9 + Opus, Matroska/HEVC + FLAC, AVI/MPEG-4 +
PCM, MOV/MJPEG, MPEG-TS, FLV, OGG, MP3, FLAC, WAV, M4A), still images in every format Pillow reads here
(JPEG baseline/progressive/CMYK/EXIF-rotated, PNG 8/16-bit/palette/alpha, GIF, BMP, TIFF, WebP), tiny and
odd-sized ones, and files whose headers declare huge sizes. Checkpoint seeds are copies of ``--detector``.

**Mutations** (seeded: case ``i`` of seed ``s`` is the same file on every run) stack one to three of: byte
and bit flips, truncation, inserted / deleted / duplicated chunks, "interesting" integers written at random
offsets, splices of two seeds, and format-aware edits (ISO BMFF box sizes and types, PNG chunk fields with or
without a fixed CRC, JPEG frame-header sizes, WAV header fields). About 3% of the cases are special files: empty,
a FIFO, a folder or a link to a device named like media, a link loop, and odd names (a newline, a leading dash,
bytes that are not UTF-8, terminal escapes, 250 characters). Checkpoints get JSON-aware edits of
``config.json`` (values replaced by hostile ones: wrong types, NaN, 1e400, huge integers, hub ids; keys deleted),
byte edits of it, and safetensors edits (header length, header JSON, truncation, NaN-filled data).

**Running.** Media go through the real command line, many files per process, as a user would run them:
``python -m multimodal_df.predict --json --checkpoint D -- warmup f1 f2 ...``. Each line of output is matched
to its file; a file that gets no line within ``--file-timeout`` seconds (60) is a hang and its process is
killed, the rest of the batch going on in a new process. Resident memory is sampled every 50 ms from
``/proc``; the growth of each file is its peak over the resident size when it started (the warm-up file absorbs
the model loading). Checkpoint cases run ``predict.main`` in a worker process, one call per case, with every
socket connection refused and counted.

**Outcomes** per input: ``scored``; ``clean_error`` (its own one-line error, exit 2 for a checkpoint);
``internal_error`` (a per-file "internal error: Type", exit 3 for a checkpoint, or a record that breaks the
documented shape); ``traceback``; ``batch_abort`` (the process stopped early: that file's line and those after
it were missing); ``hang``; ``over_memory`` (killed past ``--rss-limit-mb``); ``network`` (a checkpoint that
tried to connect). Results go to ``benchmarks/results/fuzz.json``; inputs behind non-clean outcomes are kept
under ``WORK/findings/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import queue
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.json"
STATUSES = ("scored", "clean_error", "internal_error", "traceback", "batch_abort", "hang", "over_memory", "network")
INTERESTING = (
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    7000,
    20000,
    65500,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
)


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Outcome:
    """What happened to one input. ``seconds``: wall time it took; ``growth_mb``: its peak resident memory over
    the resident memory when it started; ``peak_mb``: the process's peak while it ran."""

    case: int
    kind: str
    status: str
    seed: str
    ops: list[str]
    seconds: float = 0.0
    growth_mb: float = 0.0
    peak_mb: float = 0.0
    detail: str = ""
    start_mb: float = 0.0
    """Resident memory of the process when the input started (after the model and a warm-up input)."""


@dataclass
class Case:
    """One fuzz input: a media file (or special file) to score, or a checkpoint folder to load."""

    case: int
    kind: str
    seed: str
    ops: list[str]
    path: str
    keep: list[str] = field(default_factory=list)
    """Paths to copy into findings/ when the outcome is not clean."""


# ---------------------------------------------------------------------------------------------- seeds
def make_media_seeds(folder: Path) -> dict[str, Path]:
    """Valid (and a few deliberately hostile) media files in many containers, codecs and image formats."""
    import av
    import numpy as np
    from PIL import Image

    from multimodal_df.testing.fixtures import FixtureSpec, make_audio, make_clip, render_frames, write_wav

    folder.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if path.is_file() and path.stat().st_size > 0:
            seeds[name] = path

    spec = FixtureSpec(seed=11, duration=1.5, width=128, height=128, fps=8)
    frames, _ = render_frames(spec)
    audio = make_audio(spec).astype(np.float32)
    add("fixture.mp4", make_clip(folder / "fixture.mp4", spec))
    add(
        "fixture_fake.mp4",
        make_clip(folder / "fixture_fake.mp4", FixtureSpec(seed=12, duration=1.5, vision_artifact=1.0)),
    )
    add("rotated.mp4", make_clip(folder / "rotated.mp4", FixtureSpec(seed=13, duration=1.0, rotation=90)))
    add("speech.wav", write_wav(folder / "speech.wav", audio))
    for ex in sorted((ROOT / "multimodal_df" / "examples").glob("*.mp4")):
        add(f"example_{ex.name}", Path(shutil.copy(ex, folder / f"example_{ex.name}")))

    def encode(
        name: str, fmt: str, vcodec: str | None, acodec: str | None, pix: str = "yuv420p", rate: int = 16000
    ) -> None:
        path = folder / name
        try:
            with av.open(str(path), "w", format=fmt) as out:
                vs = as_ = None
                if vcodec:
                    vs = out.add_stream(vcodec, rate=8)
                    vs.width, vs.height, vs.pix_fmt = 128, 128, pix
                if acodec:
                    as_ = out.add_stream(acodec, rate=rate, layout="mono")
                if vs is not None:
                    for i, f in enumerate(frames):
                        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:128, :128]), format="rgb24")
                        vf.pts = i
                        for p in vs.encode(vf):
                            out.mux(p)
                    for p in vs.encode(None):
                        out.mux(p)
                if as_ is not None:
                    fmt_s = as_.codec_context.format.name if as_.codec_context.format else "flt"
                    step = as_.codec_context.frame_size or 1024
                    wave = (
                        audio
                        if rate == 16000
                        else np.interp(
                            np.arange(int(len(audio) * rate / 16000)) * 16000 / rate, np.arange(len(audio)), audio
                        ).astype(np.float32)
                    )
                    for i in range(0, len(wave) - step + 1, step):
                        af = av.AudioFrame.from_ndarray(
                            np.ascontiguousarray(wave[None, i : i + step]), format="flt", layout="mono"
                        )
                        af.sample_rate = rate
                        af.pts = i
                        if fmt_s != "flt":
                            af = av.AudioResampler(format=fmt_s, layout="mono", rate=rate).resample(af)[0]
                        for p in as_.encode(af):
                            out.mux(p)
                    for p in as_.encode(None):
                        out.mux(p)
            add(name, path)
        except Exception as exc:  # an encoder missing from this build: that seed is skipped
            print(f"seed {name} skipped: {type(exc).__name__}: {exc}", file=sys.stderr)

    encode("vp9_opus.webm", "webm", "libvpx-vp9", "libopus", rate=48000)
    encode("hevc_flac.mkv", "matroska", "libx265", "flac")
    encode("mpeg4_pcm.avi", "avi", "mpeg4", "pcm_s16le")
    encode("mjpeg.mov", "mov", "mjpeg", None, pix="yuvj420p")
    encode("mpeg2_mp2.ts", "mpegts", "mpeg2video", "mp2", rate=44100)
    encode("flv_h264.flv", "flv", "libx264", "aac")
    encode("av1.mp4", "mp4", "libsvtav1", None)
    encode("vorbis.ogg", "ogg", None, "vorbis", rate=44100)
    encode("speech.mp3", "mp3", None, "libmp3lame", rate=44100)
    encode("speech.flac", "flac", None, "flac")
    encode("speech.m4a", "ipod", None, "aac")
    encode("ffv1.nut", "nut", "ffv1", "pcm_u8")
    add("switch_size.ts", _write(folder / "switch_size.ts", _size_switch(folder)))
    add("surround.wav", _multichannel_wav(folder / "surround.wav", audio))

    face = frames[0]
    im = Image.fromarray(face)
    im.save(folder / "face.jpg", quality=90)
    im.save(folder / "face_progressive.jpg", quality=80, progressive=True)
    im.convert("CMYK").save(folder / "face_cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(folder / "face_exif_rot.jpg", exif=exif.tobytes())
    im.save(folder / "face.png")
    im.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "face_palette.png")
    im.convert("RGBA").save(folder / "face_alpha.png")
    Image.fromarray(face[..., 0].astype(np.uint16) * 257).save(folder / "face_16bit.png")
    im.save(folder / "face.gif")
    im.save(folder / "face.bmp")
    im.save(folder / "face.tiff")
    im.save(folder / "face.webp")
    im.save(folder / "face.ppm")
    im.convert("L").save(folder / "face.pgm")
    Image.new("RGB", (1, 1)).save(folder / "one_pixel.png")
    Image.new("L", (17, 5)).save(folder / "sliver.jpg")
    Image.fromarray(np.tile(face, (1, 8, 1))[:, :2000]).save(folder / "wide.jpg")
    for name in (
        "face.jpg",
        "face_progressive.jpg",
        "face_cmyk.jpg",
        "face_exif_rot.jpg",
        "face.png",
        "face_palette.png",
        "face_alpha.png",
        "face_16bit.png",
        "face.gif",
        "face.bmp",
        "face.tiff",
        "face.webp",
        "face.ppm",
        "face.pgm",
        "one_pixel.png",
        "sliver.jpg",
        "wide.jpg",
    ):
        add(name, folder / name)
    # Headers that declare far more pixels than the data holds: the classic decompression bombs.
    add("bomb_png.png", _write(folder / "bomb_png.png", png_declaring(20000, 20000)))
    add(
        "bomb_sof.jpg",
        _write(folder / "bomb_sof.jpg", with_jpeg_size((folder / "face.jpg").read_bytes(), 65500, 65500)),
    )
    add("bomb_7000.jpg", _write(folder / "bomb_7000.jpg", with_jpeg_size(_tiny_jpeg(), 7000, 7000)))
    return seeds


def _size_switch(folder: Path) -> bytes:
    """Two H.264 transport streams back to back: the frame size changes midway (a new SPS in band)."""
    import av
    import numpy as np

    parts = []
    for k, (w, h) in enumerate(((96, 64), (160, 128))):
        path = folder / f"part{k}.ts"
        with av.open(str(path), "w", format="mpegts") as out:
            s = out.add_stream("libx264", rate=8, options={"preset": "ultrafast"})
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(8):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 30 * (i % 7), np.uint8), format="rgb24")
                frame.pts = 8 * k + i
                for pkt in s.encode(frame):
                    out.mux(pkt)
            for pkt in s.encode(None):
                out.mux(pkt)
        parts.append(path.read_bytes())
        path.unlink()
    return b"".join(parts)


def _multichannel_wav(path: Path, mono) -> Path:
    """6 channels of 8-bit audio at 44.1 kHz: layouts and sample formats the resampler must fold to mono."""
    import wave

    import numpy as np

    x = np.interp(np.arange(int(len(mono) * 44100 / 16000)) * 16000 / 44100, np.arange(len(mono)), mono)
    pcm = np.repeat(((x * 0.5 + 0.5) * 255).astype(np.uint8)[:, None], 6, axis=1)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(6)
        fh.setsampwidth(1)
        fh.setframerate(44100)
        fh.writeframes(pcm.tobytes())
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 90, 60)).save(buf, "JPEG", quality=5)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking RGB PNG whose header declares ``width`` x ``height`` but holds one short row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(1 + 3 * 64)))
        + png_chunk(b"IEND", b"")
    )


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its (first) baseline or progressive frame header declaring ``width`` x ``height``."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        i = data.find(marker)
        if i >= 0:
            struct.pack_into(">HH", data, i + 5, height, width)
            break
    return bytes(data)


# ---------------------------------------------------------------------------------------------- mutations
Mutator = Callable[[bytes, random.Random], bytes]


def _flip_bytes(d: bytes, rng: random.Random) -> bytes:
    b = bytearray(d)
    for _ in range(rng.choice((1, 2, 4, 16, 64))):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def _flip_bits(d: bytes, rng: random.Random) -> bytes:
    b = bytearray(d)
    for _ in range(rng.choice((1, 3, 8))):
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _head_flips(d: bytes, rng: random.Random) -> bytes:
    # Headers decide the most: flip within the first kilobyte.
    b = bytearray(d)
    for _ in range(rng.choice((1, 2, 4))):
        if b:
            b[rng.randrange(min(len(b), 1024))] = rng.randrange(256)
    return bytes(b)


def _truncate(d: bytes, rng: random.Random) -> bytes:
    return d[: rng.randrange(max(1, len(d)))]


def _insert(d: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(d) + 1)
    return d[:i] + rng.randbytes(rng.choice((1, 4, 64, 1024))) + d[i:]


def _delete(d: bytes, rng: random.Random) -> bytes:
    if len(d) < 2:
        return d
    i = rng.randrange(len(d))
    return d[:i] + d[i + rng.randrange(1, min(len(d) - i, 4096) + 1) :]


def _duplicate(d: bytes, rng: random.Random) -> bytes:
    if not d:
        return d
    i = rng.randrange(len(d))
    j = min(len(d), i + rng.randrange(1, 4096))
    k = rng.randrange(len(d) + 1)
    return d[:k] + d[i:j] * rng.choice((1, 2, 8)) + d[k:]


def _interesting_int(d: bytes, rng: random.Random) -> bytes:
    if len(d) < 4:
        return d
    b = bytearray(d)
    size = rng.choice((1, 2, 4))
    value = rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
    i = rng.randrange(len(b) - size + 1)
    b[i : i + size] = value.to_bytes(size, rng.choice(("big", "little")))
    return bytes(b)


def _bmff_boxes(d: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of the ISO BMFF boxes, walking into the usual container boxes."""
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"dinf", b"mvex", b"moof", b"traf"}
    out: list[tuple[int, int, bytes]] = []

    def walk(start: int, end: int, depth: int) -> None:
        i = start
        while i + 8 <= end and depth < 8:
            size = int.from_bytes(d[i : i + 4], "big")
            kind = d[i + 4 : i + 8]
            if size < 8 or i + size > end:
                return
            out.append((i, size, kind))
            if kind in containers:
                walk(i + 8, i + size, depth + 1)
            elif kind == b"stsd":
                walk(i + 16, i + size, depth + 1)  # version/flags + entry count, then sample entries
            i += size

    walk(0, len(d), 0)
    return out


def _bmff_edit(d: bytes, rng: random.Random) -> bytes:
    boxes = _bmff_boxes(d)
    if not boxes:
        return _interesting_int(d, rng)
    off, size, _ = rng.choice(boxes)
    b = bytearray(d)
    op = rng.randrange(4)
    if op == 0:  # a size that lies
        b[off : off + 4] = (rng.choice(INTERESTING) & 0xFFFFFFFF).to_bytes(4, "big")
    elif op == 1:  # an unknown type (a codec tag when the box is a sample entry)
        b[off + 4 : off + 8] = bytes(rng.randrange(97, 123) for _ in range(4))
    elif op == 2 and size > 12:  # a field inside: counts, durations, widths, time scales
        i = off + 8 + rng.randrange(size - 11) if size > 11 else off + 8
        b[i : i + 4] = (rng.choice(INTERESTING) & 0xFFFFFFFF).to_bytes(4, "big")
    else:  # the payload overwritten with noise
        for _ in range(rng.choice((1, 8, 32))):
            b[off + 8 + rng.randrange(max(1, size - 8)) if size > 8 else off] = rng.randrange(256)
    return bytes(b)


def _png_edit(d: bytes, rng: random.Random) -> bytes:
    if not d.startswith(b"\x89PNG"):
        return _interesting_int(d, rng)
    chunks = []
    i = 8
    while i + 12 <= len(d):
        n = int.from_bytes(d[i : i + 4], "big")
        if i + 12 + n > len(d):
            break
        chunks.append([d[i + 4 : i + 8], d[i + 8 : i + 8 + n]])
        i += 12 + n
    if not chunks:
        return _flip_bytes(d, rng)
    k = rng.randrange(len(chunks))
    kind, data = chunks[k]
    op = rng.randrange(3)
    if kind == b"IHDR" or op == 0:
        kind, data = b"IHDR", bytearray(chunks[0][1].ljust(13, b"\0"))
        field_at = rng.choice((0, 4, 8, 9, 10, 11, 12))
        if field_at < 8:
            data[field_at : field_at + 4] = rng.choice(INTERESTING).to_bytes(4, "big")
        else:
            data[field_at] = rng.randrange(256)
        k = 0
    elif op == 1:
        data = bytearray(data)
        for _ in range(rng.choice((1, 8))):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        kind = rng.choice((b"IDAT", b"tEXt", b"zTXt", b"iCCP", b"eXIf", b"PLTE", b"acTL", b"fcTL"))
    chunks[k] = [kind, bytes(data)]
    fix_crc = rng.random() < 0.7  # a wrong CRC stops Pillow early; a right one lets the damage reach the decoder
    body = b"".join(png_chunk(t, c) if fix_crc else struct.pack(">I", len(c)) + t + c + b"\0\0\0\0" for t, c in chunks)
    return b"\x89PNG\r\n\x1a\n" + body + d[i:]


def _jpeg_edit(d: bytes, rng: random.Random) -> bytes:
    if not d.startswith(b"\xff\xd8"):
        return _interesting_int(d, rng)
    op = rng.randrange(3)
    if op == 0:
        return with_jpeg_size(d, rng.choice(INTERESTING) & 0xFFFF, rng.choice(INTERESTING) & 0xFFFF)
    markers = [
        i for i in range(len(d) - 4) if d[i] == 0xFF and d[i + 1] not in (0x00, 0xFF) and 0xC0 <= d[i + 1] <= 0xFE
    ]
    if not markers:
        return _flip_bytes(d, rng)
    i = rng.choice(markers)
    b = bytearray(d)
    if op == 1:  # segment length
        b[i + 2 : i + 4] = (rng.choice(INTERESTING) & 0xFFFF).to_bytes(2, "big")
    else:  # bytes inside the segment (tables, component counts, sampling factors)
        for _ in range(rng.choice((1, 4))):
            j = i + 4 + rng.randrange(16)
            if j < len(b):
                b[j] = rng.randrange(256)
    return bytes(b)


def _wav_edit(d: bytes, rng: random.Random) -> bytes:
    if not d.startswith(b"RIFF"):
        return _interesting_int(d, rng)
    b = bytearray(d)
    # fmt fields: channels @22 (2 bytes), rate @24 (4), byte rate @28 (4), block align @32 (2), bits @34 (2),
    # data size @40 (4), RIFF size @4 (4).
    at, size = rng.choice(((4, 4), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4), (20, 2)))
    if at + size <= len(b):
        b[at : at + size] = (rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(b)


GENERIC: tuple[tuple[str, Mutator], ...] = (
    ("flip_bytes", _flip_bytes),
    ("flip_bits", _flip_bits),
    ("head_flips", _head_flips),
    ("truncate", _truncate),
    ("insert", _insert),
    ("delete", _delete),
    ("duplicate", _duplicate),
    ("interesting_int", _interesting_int),
)


def _structural(name: str) -> tuple[str, Mutator] | None:
    suffix = Path(name).suffix.lower()
    if suffix in (".mp4", ".mov", ".m4a"):
        return ("bmff_box", _bmff_edit)
    if suffix == ".png":
        return ("png_chunk", _png_edit)
    if suffix == ".jpg":
        return ("jpeg_marker", _jpeg_edit)
    if suffix == ".wav":
        return ("wav_header", _wav_edit)
    return None


def mutate(data: bytes, seed_name: str, seeds: dict[str, bytes], rng: random.Random) -> tuple[bytes, list[str]]:
    """One to three stacked mutations of ``data`` (a seed's bytes); returns the bytes and the operations' names."""
    ops: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        structural = _structural(seed_name)
        r = rng.random()
        if structural is not None and r < 0.45:
            name, fn = structural
        elif r < 0.5:
            other = rng.choice(sorted(seeds))
            cut, cut2 = rng.randrange(len(data) + 1), rng.randrange(len(seeds[other]) + 1)
            data, name = data[:cut] + seeds[other][cut2:], f"splice:{other}"
            ops.append(name)
            continue
        else:
            name, fn = rng.choice(GENERIC)
        try:
            data = fn(data, rng)
        except (IndexError, ValueError, struct.error, OverflowError):
            # A format-aware edit that earlier edits left nothing to work on: plain byte flips instead.
            name, data = "flip_bytes", _flip_bytes(data, rng)
        ops.append(name)
    return data, ops


ODD_NAMES = (
    "new\nline{ext}",
    "-starts-with-dash{ext}",
    "tab\there{ext}",
    "\x1b[31mred\x1b[0m{ext}",
    "spaces  and %s %n{ext}",
    "unicodé ✓ 名前{ext}",
    "{long}{ext}",
)


def media_case(i: int, seed: int, seeds: dict[str, Path], seed_bytes: dict[str, bytes], folder: Path) -> Case:
    """Write the input of media case ``i`` under ``folder`` (deterministic in ``seed`` and ``i``)."""
    rng = random.Random(seed * 1_000_003 + i)
    name = rng.choice(sorted(seeds))
    ext = Path(name).suffix
    r = rng.random()
    if r < 0.03:
        return _special_case(i, rng, name, seed_bytes[name], folder)
    data, ops = mutate(seed_bytes[name], name, seed_bytes, rng)
    # A mutated file keeps its seed's extension most of the time; sometimes another media one.
    if rng.random() < 0.1:
        ext = rng.choice((".mp4", ".jpg", ".png", ".wav", ".webm", ".mp3", ".gif"))
    path = folder / f"c{i:06d}{ext}"
    if rng.random() < 0.03:
        odd = rng.choice(ODD_NAMES).format(ext=f"_{i:06d}{ext}", long="x" * 236)
        path = folder / odd
        ops.append("odd_name")
    path.write_bytes(data)
    # Names are given to predict relative to the batch folder (its working directory): "-x.mp4" stays "-x.mp4".
    return Case(i, "media", name, ops, path.name, keep=[str(path)])


def _special_case(i: int, rng: random.Random, name: str, data: bytes, folder: Path) -> Case:
    kind = rng.choice(("empty", "fifo", "dir", "dev_link", "loop_link", "undecodable_name", "unreadable"))
    path = folder / f"c{i:06d}_{kind}{Path(name).suffix}"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "dev_link":
        path.symlink_to("/dev/zero")
    elif kind == "loop_link":
        path.symlink_to(path.name)
    elif kind == "undecodable_name":
        raw = b"c%06d_\xff\xfe%s" % (i, Path(name).suffix.encode())
        with open(os.fsencode(folder) + b"/" + raw, "wb") as fh:
            fh.write(data)
        path = folder / os.fsdecode(raw)
    else:
        path.write_bytes(data)
        path.chmod(0)
    return Case(i, "media", name, [f"special:{kind}"], path.name)


# ---------------------------------------------------------------------------------------------- checkpoints
HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    [],
    {},
    "",
    "x",
    "facebook/wav2vec2-base",
    True,
    0,
    -1,
    2**63,
    10**6,
    10**12,
    1e-300,
    -0.0,
    "NaN",
    [1],
    {"a": 1},
    "../../etc/passwd",
    "__RAW_1e400__",
    "__RAW_NaN__",
    "__RAW_-Infinity__",
)


def _json_paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for k, v in enumerate(node):
            yield from _json_paths(v, (*prefix, k))


def _json_edit(cfg: Any, rng: random.Random) -> tuple[Any, str]:
    paths = [p for p in _json_paths(cfg) if p]
    if not paths:
        return rng.choice(HOSTILE_VALUES), "replace_root"
    path = rng.choice(paths)
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    op = rng.randrange(4)
    where = ".".join(map(str, path))
    if op == 0 and isinstance(parent, dict):
        del parent[last]
        return cfg, f"delete:{where}"
    value = parent[last]
    if op == 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = value * rng.choice((-1, 0, 10, 1000, 10**6, 1e30)) + rng.choice((0, 1))
        return cfg, f"scale:{where}"
    if op == 2 and isinstance(parent, dict):
        parent[rng.choice(("extra", "__class__", "wav2vec_hf", "pretrained", "format"))] = rng.choice(HOSTILE_VALUES)
        return cfg, f"add_key:{where}"
    parent[last] = rng.choice(HOSTILE_VALUES)
    return cfg, f"set:{where}={parent[last]!r}"[:120]


def _json_text(cfg: Any) -> str:
    text = json.dumps(cfg)
    for token in ("1e400", "NaN", "-Infinity"):
        text = text.replace(f'"__RAW_{token}__"', token)
    return text


def _safetensors_edit(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if len(data) < 8:
        return "tiny"
    n = int.from_bytes(data[:8], "little")
    op = rng.randrange(5)
    if op == 0:
        path.write_bytes(bytes(data[: rng.randrange(len(data))]))
        return "truncate"
    if op == 1:
        data[:8] = rng.choice((0, 1, 2**31, 2**40, 2**63, len(data), n + 1)).to_bytes(8, "little")
        path.write_bytes(bytes(data))
        return "header_length"
    if op == 2 and 8 + n <= len(data):
        try:
            header = json.loads(bytes(data[8 : 8 + n]))
        except ValueError:
            header = {}
        names = [k for k in header if k != "__metadata__"]
        if names:
            k = rng.choice(names)
            f = rng.choice(("dtype", "shape", "data_offsets", "rename", "drop"))
            if f == "dtype":
                header[k]["dtype"] = rng.choice(("F16", "I64", "BOOL", "F8_E4M3", "XX", 3))
            elif f == "shape":
                header[k]["shape"] = rng.choice(([], [0], [2**31, 2**31], [-1], "x", [1] * 40))
            elif f == "data_offsets":
                header[k]["data_offsets"] = rng.choice(([0, 2**62], [10, 5], [0], "x", [-8, 0]))
            elif f == "rename":
                header[f"{k}.renamed"] = header.pop(k)
            else:
                header.pop(k)
            blob = json.dumps(header).encode()
            path.write_bytes(len(blob).to_bytes(8, "little") + blob + bytes(data[8 + n :]))
            return f"header_{f}:{k}"
    if op == 3 and len(data) > 8 + n + 8:
        # NaN bit patterns over part of the tensor data.
        start = 8 + n + rng.randrange(len(data) - 8 - n - 4) // 4 * 4
        for j in range(start, min(len(data) - 3, start + 4 * rng.choice((1, 64, 4096))), 4):
            data[j : j + 4] = struct.pack("<f", math.nan)
        path.write_bytes(bytes(data))
        return "nan_data"
    path.write_bytes(_flip_bytes(bytes(data), rng))
    return "flip_bytes"


def checkpoint_case(i: int, seed: int, detector: Path, folder: Path) -> Case:
    """Copy ``detector`` to ``folder/k{i}`` and damage it (deterministic in ``seed`` and ``i``)."""
    rng = random.Random(seed * 2_000_003 + i)
    d = folder / f"k{i:06d}"
    shutil.copytree(detector, d)
    ops: list[str] = []
    for _ in range(rng.choice((1, 1, 2))):
        try:
            ops.append(_damage_checkpoint(d, rng))
        except (IndexError, KeyError, TypeError, ValueError, AttributeError, OSError, struct.error) as exc:
            # An edit that an earlier edit left nothing to work on (a header that is no longer JSON...).
            ops.append(f"edit_skipped:{type(exc).__name__}")
    return Case(i, "checkpoint", "detector", ops, str(d), keep=[str(d)])


def _damage_checkpoint(d: Path, rng: random.Random) -> str:
    """One edit of the checkpoint folder ``d``; returns its name."""
    r = rng.random()
    cfg_path = d / "config.json"
    if r < 0.6 and cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text())
        except ValueError:
            cfg = None
        if cfg is not None:
            cfg, op = _json_edit(cfg, rng)
            cfg_path.write_text(_json_text(cfg))
            return op
    if r < 0.75 and cfg_path.is_file():
        name, fn = rng.choice(GENERIC)
        cfg_path.write_bytes(fn(cfg_path.read_bytes(), rng))
        return f"config_bytes:{name}"
    if r < 0.97:
        weights = sorted(d.glob("*.safetensors"))
        if not weights:
            return "no_weights_left"
        w = rng.choice(weights)
        return f"{w.stem}:{_safetensors_edit(w, rng)}"
    what = rng.choice(("no_config", "config_dir", "no_weights", "config_dev_link"))
    if what == "no_config":
        cfg_path.unlink(missing_ok=True)
    elif what == "config_dir":
        cfg_path.unlink(missing_ok=True)
        cfg_path.mkdir()
    elif what == "no_weights":
        for w in d.glob("*.safetensors"):
            w.unlink()
    else:
        cfg_path.unlink(missing_ok=True)
        cfg_path.symlink_to("/dev/zero")
    return f"special:{what}"


# ---------------------------------------------------------------------------------------------- running
def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB, from /proc; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line[:5]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@dataclass
class _Slot:
    """Bookkeeping for the input a process is working on: when it started, the resident memory and the peak
    (VmHWM) then, and the highest resident memory seen since (MB)."""

    index: int
    started: float
    rss_start: float
    hwm_start: float
    peak: float


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # No HF_HUB_OFFLINE: a checkpoint that reaches for a model hub must show up (as a hang or a refused connection).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("MULTIMODAL_DF_TRACEBACK", None)
    return env


def _stream(
    argv: list[str],
    cwd: Path,
    n_items: int,
    startup_s: float,
    item_s: float,
    rss_limit_mb: float,
    on_line: Callable[[int, str, _Slot, float], bool],
    stderr_path: Path,
) -> tuple[int | None, int, str]:
    """Run ``argv``, calling ``on_line(index, line, slot, now)`` for each stdout line (``True`` when it finished an
    item); kill the process when an item takes more than ``item_s`` (the first one: ``startup_s``) or its resident
    memory passes ``rss_limit_mb``. Returns (exit status or None when killed, items finished, why it was killed)."""
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, env=_child_env(), cwd=cwd, start_new_session=True
        )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    now = time.monotonic()
    slot = _Slot(0, now, 0.0, 0.0, 0.0)
    killed = ""
    eof = False
    while not eof:
        try:
            raw = lines.get(timeout=0.05)
        except queue.Empty:
            raw = b""
        now = time.monotonic()
        rss, hwm = _rss_mb(proc.pid)
        # The kernel's peak catches spikes between two samples, but it is the process's peak so far: it says
        # something about this input only once it has risen since the input started.
        slot.peak = max(slot.peak, rss, hwm if hwm > slot.hwm_start else 0.0)
        if raw is None:
            eof = True
        elif raw and on_line(slot.index, raw.decode("utf-8", "replace").rstrip("\n"), slot, now):
            rss, hwm = _rss_mb(proc.pid)
            slot = _Slot(slot.index + 1, now, rss, hwm, rss)
            if slot.index >= n_items:
                continue
        budget = startup_s if slot.index == 0 else item_s
        if not killed and now - slot.started > budget:
            killed = f"no answer within {budget:.0f} s"
        elif not killed and rss > rss_limit_mb:
            killed = f"resident memory {rss:.0f} MB over the {rss_limit_mb:.0f} MB limit"
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, slot.index, killed
    return proc.wait(), slot.index, ""


def _tracebacks(stderr_path: Path) -> int:
    try:
        return stderr_path.read_text(errors="replace").count("Traceback (most recent call last)")
    except OSError:
        return 0


def run_media_batch(
    cases: list[Case], folder: Path, detector: Path, warmup: Path, work: Path, file_s: float, rss_limit_mb: float
) -> list[Outcome]:
    """Score ``cases`` (names inside ``folder``) with one ``predict --json`` process per run (a new one after a
    hang, a kill or an abort)."""
    outcomes: list[Outcome] = []
    pending = list(cases)
    false_starts = 0
    while pending:
        argv = [sys.executable, "-m", "multimodal_df.predict", "--json", "--device", "cpu"]
        argv += ["--checkpoint", str(detector), "--", str(warmup), *[c.path for c in pending]]
        got: list[Outcome] = []

        def on_line(
            index: int, line: str, slot: _Slot, now: float, pending: list[Case] = pending, got: list[Outcome] = got
        ) -> bool:
            if index == 0:
                return True  # the warm-up file: model loading and first-call costs land here
            case = pending[index - 1]
            status, detail = _media_status(line, case.path)
            got.append(
                Outcome(
                    case.case,
                    "media",
                    status,
                    case.seed,
                    case.ops,
                    round(now - slot.started, 3),
                    round(max(0.0, slot.peak - slot.rss_start), 1),
                    round(slot.peak, 1),
                    detail,
                    round(slot.rss_start, 1),
                )
            )
            return True

        stderr_path = work / "stderr.txt"
        code, done, killed = _stream(
            argv, folder, len(pending) + 1, max(180.0, file_s), file_s, rss_limit_mb, on_line, stderr_path
        )
        tracebacks = _tracebacks(stderr_path)
        outcomes.extend(got)
        finished = max(0, done - 1)
        rest = pending[finished:]
        if not rest:
            if tracebacks:
                outcomes.append(
                    Outcome(-1, "media", "traceback", "", [], detail=f"{tracebacks} traceback(s) on stderr")
                )
            break
        culprit = rest[0]
        if killed:
            status = "hang" if killed.startswith("no answer") else "over_memory"
        else:
            status = "traceback" if tracebacks else "batch_abort"
            killed = f"exit status {code}; stderr: {stderr_path.read_text(errors='replace')[-300:]}"
        if done == 0:
            # Not even the warm-up file: the process could not start (or the machine is swamped); not an input's fault.
            false_starts += 1
            if false_starts > 2:
                raise RuntimeError(f"predict did not start: {killed}")
            continue
        outcomes.append(Outcome(culprit.case, "media", status, culprit.seed, culprit.ops, detail=killed[:400]))
        pending = rest[1:]
    return outcomes


def _media_status(line: str, path: str) -> tuple[str, str]:
    try:
        rec = json.loads(line)
    except ValueError:
        return "internal_error", f"not a JSON line: {line[:200]}"
    if not isinstance(rec, dict) or rec.get("path") != path:
        return "internal_error", f"record for another path: {str(rec.get('path'))[:100]!r}"
    err = rec.get("error")
    if err:
        return ("internal_error" if str(err).startswith("internal error") else "clean_error"), str(err)[:300]
    p, label, threshold = rec.get("p_fake"), rec.get("label"), rec.get("threshold")
    if not isinstance(p, (int, float)) or not 0 <= p <= 1 or label not in ("real", "fake"):
        return "internal_error", f"scored without a usable verdict: p_fake={p!r} label={label!r}"
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        return "internal_error", f"threshold {threshold!r}"
    return "scored", ""


def run_checkpoint_cases(
    cases: list[Case], media: Path, detector: Path, work: Path, case_s: float, rss_limit_mb: float
) -> list[Outcome]:
    """Run each damaged checkpoint through ``predict.main`` in a worker process (see :func:`checkpoint_worker`)."""
    outcomes: list[Outcome] = []
    pending = list(cases)
    while pending:
        listing = work / "checkpoint_cases.json"
        listing.write_text(json.dumps([asdict(c) for c in pending]))
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_checkpoint_worker",
            str(listing),
            str(media),
            str(detector),
        ]
        got: list[Outcome] = []

        def on_line(
            index: int, line: str, slot: _Slot, now: float, pending: list[Case] = pending, got: list[Outcome] = got
        ) -> bool:
            if line == "ready":
                return True
            try:
                rec = json.loads(line)
            except ValueError:
                return False  # stray output; the worker writes only its own lines
            case = pending[index - 1]
            got.append(
                Outcome(
                    case.case,
                    "checkpoint",
                    rec["status"],
                    case.seed,
                    case.ops,
                    round(now - slot.started, 3),
                    round(max(0.0, slot.peak - slot.rss_start), 1),
                    round(slot.peak, 1),
                    rec.get("detail", ""),
                    round(slot.rss_start, 1),
                )
            )
            return True

        code, done, killed = _stream(
            argv, work, len(pending) + 1, 180.0, case_s, rss_limit_mb, on_line, work / "checkpoint_stderr.txt"
        )
        outcomes.extend(got)
        finished = max(0, done - 1)
        rest = pending[finished:]
        if not rest:
            break
        if done == 0:
            raise RuntimeError(f"checkpoint worker did not start: {killed or code}")
        culprit = rest[0]
        status = ("hang" if killed.startswith("no answer") else "over_memory") if killed else "batch_abort"
        outcomes.append(
            Outcome(culprit.case, "checkpoint", status, culprit.seed, culprit.ops, detail=killed or f"exit {code}")
        )
        pending = rest[1:]
    return outcomes


def checkpoint_worker(listing: Path, media: Path, intact: Path) -> int:
    """Worker: for each case, ``predict.main([media, --checkpoint, dir, --json])`` as the command line runs it;
    one JSON line per case on stdout, after a warm-up run with the ``intact`` detector (so the first case is not
    charged for the imports). Every socket connection is refused and counted."""
    import socket

    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network access refused by the fuzz harness")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        from multimodal_df import predict

        cases = [Case(**c) for c in json.loads(listing.read_text())]
        stdout = sys.stdout
        with contextlib.redirect_stderr(io.StringIO()):
            predict.main([str(media), "--checkpoint", str(intact), "--json", "--device", "cpu"], out=io.StringIO())
        print("ready", file=stdout, flush=True)
        for case in cases:
            attempts.clear()
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code: int | str = predict.main(
                        [str(media), "--checkpoint", case.path, "--json", "--device", "cpu"], out=out
                    )
            except SystemExit as exc:
                code = f"SystemExit({exc.code})"
            except BaseException as exc:  # an exception escaping main() is what a traceback would show
                code = f"escaped {type(exc).__name__}: {exc}"
            status, detail = _checkpoint_status(code, out.getvalue(), err.getvalue(), bool(attempts))
            print(json.dumps({"status": status, "detail": detail}), file=stdout, flush=True)
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
    return 0


def _checkpoint_status(code: int | str, out: str, err: str, network: bool) -> tuple[str, str]:
    err_lines = err.strip().splitlines()
    if network:
        return "network", err[-300:]
    if isinstance(code, str):
        return "traceback", code[:300]
    if "Traceback (most recent call last)" in err:
        return "traceback", err[-300:]
    if code == 2:
        ok = len(err_lines) == 1 and err_lines[0].startswith("error: ") and out == ""
        return ("clean_error" if ok else "internal_error"), (err_lines[0] if err_lines else "no message")[:300]
    if code == 3:
        return "internal_error", err[-300:]
    if code not in (0, 1):
        return "internal_error", f"exit {code}: {err[-200:]}"
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(records) != 1:
        return "internal_error", f"{len(records)} records for one input"
    rec = records[0]
    if rec.get("error"):
        return ("internal_error" if str(rec["error"]).startswith("internal error") else "clean_error"), rec["error"][
            :300
        ]
    status, detail = _media_status(json.dumps(rec), rec.get("path"))
    return status, detail


# ---------------------------------------------------------------------------------------------- summary
def summarise(outcomes: list[Outcome], bound_mb: float) -> dict[str, Any]:
    """Counts per kind and status, time and memory extremes, and the findings (every non-clean outcome)."""
    out: dict[str, Any] = {}
    for kind in ("media", "checkpoint"):
        rows = [o for o in outcomes if o.kind == kind and o.case >= 0]
        counts = Counter(o.status for o in rows)
        extra_tb = sum(1 for o in outcomes if o.kind == kind and o.case < 0)
        slow = max(rows, key=lambda o: o.seconds, default=None)
        grow = max(rows, key=lambda o: o.growth_mb, default=None)
        out[kind] = {
            "inputs": len(rows),
            **{s: counts.get(s, 0) for s in STATUSES},
            "tracebacks_after_last_file": extra_tb,
            "slowest_s": slow.seconds if slow else 0.0,
            "slowest": f"case {slow.case} ({slow.seed}, {'+'.join(slow.ops)})" if slow else "",
            "peak_rss_mb": max((o.peak_mb for o in rows), default=0.0),
            "start_rss_mb_median": sorted(o.start_mb for o in rows)[len(rows) // 2] if rows else 0.0,
            "max_growth_mb": grow.growth_mb if grow else 0.0,
            "max_growth": f"case {grow.case} ({grow.seed}, {'+'.join(grow.ops)})" if grow else "",
            "over_bound": sum(o.peak_mb > bound_mb for o in rows),
        }
    out["inputs"] = sum(out[k]["inputs"] for k in ("media", "checkpoint"))
    out["memory_bound_mb"] = bound_mb
    bad = ("internal_error", "traceback", "batch_abort", "hang", "over_memory", "network")
    out["findings"] = [asdict(o) for o in outcomes if o.status in bad or o.peak_mb > bound_mb]
    for kind in ("media", "checkpoint"):
        # The clean errors, grouped by their wording up to the first parenthesis or colon: what users are told.
        reasons = Counter(_reason(o.detail) for o in outcomes if o.kind == kind and o.status == "clean_error")
        out[kind]["clean_error_reasons"] = dict(reasons.most_common(25))
    out["media"]["by_seed"] = {
        seed: dict(Counter(o.status for o in outcomes if o.kind == "media" and o.seed == seed))
        for seed in sorted({o.seed for o in outcomes if o.kind == "media" and o.case >= 0})
    }
    return out


def _reason(detail: str) -> str:
    """A clean error's wording without the parts that vary per input (paths, sizes, durations)."""
    import re

    text = re.sub(r"^error: cannot load checkpoint \S+: ", "", detail)
    text = re.sub(r"\S*/\S*|\b\d+(\.\d+)?\b", "#", text)
    return text.split("(")[0].strip()[:90]


@dataclass
class FuzzConfig:
    """One fuzz run: how many inputs of each kind, seeded; time and memory limits per input."""

    detector: Path
    work: Path
    media: int = 9500
    checkpoints: int = 500
    seed: int = 0
    batch: int = 100
    file_s: float = 60.0
    rss_limit_mb: float = 6144.0
    bound_mb: float = 2048.0
    progress: bool = True


def run(cfg: FuzzConfig) -> dict[str, Any]:
    """The whole fuzz run (see the module docstring); returns the summary."""
    t0 = time.time()
    work = cfg.work
    work.mkdir(parents=True, exist_ok=True)
    seeds = make_media_seeds(work / "seeds")
    seed_bytes = {k: v.read_bytes() for k, v in seeds.items()}
    warmup = seeds["fixture.mp4"]
    outcomes: list[Outcome] = []
    findings = work / "findings"
    for start in range(0, cfg.media, cfg.batch):
        folder = work / "batch"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        cases = [
            media_case(i, cfg.seed, seeds, seed_bytes, folder) for i in range(start, min(cfg.media, start + cfg.batch))
        ]
        got = run_media_batch(cases, folder, cfg.detector, warmup, work, cfg.file_s, cfg.rss_limit_mb)
        _keep_findings(got, cases, findings, cfg.bound_mb)
        _log(work, got)
        outcomes.extend(got)
        _cleanup(folder)
        if cfg.progress:
            c = Counter(o.status for o in outcomes)
            print(
                f"media {min(cfg.media, start + cfg.batch)}/{cfg.media}  {dict(c)}  [{time.time() - t0:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
    for start in range(0, cfg.checkpoints, cfg.batch):
        folder = work / "checkpoints"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        cases = [
            checkpoint_case(i, cfg.seed, cfg.detector, folder)
            for i in range(start, min(cfg.checkpoints, start + cfg.batch))
        ]
        got = run_checkpoint_cases(cases, warmup, cfg.detector, work, cfg.file_s, cfg.rss_limit_mb)
        _keep_findings(got, cases, findings, cfg.bound_mb)
        _log(work, got)
        outcomes.extend(got)
        _cleanup(folder)
        if cfg.progress:
            c = Counter(o.status for o in outcomes if o.kind == "checkpoint")
            print(
                f"checkpoints {min(cfg.checkpoints, start + cfg.batch)}/{cfg.checkpoints}  {dict(c)}  [{time.time() - t0:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(outcomes, cfg.bound_mb)
    summary["seeds"] = sorted(seeds)
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["cpu_count"] = os.cpu_count()
    return summary


def _log(work: Path, got: list[Outcome]) -> None:
    """Append every outcome to WORK/outcomes.jsonl (the summary keeps only counts and findings)."""
    with open(work / "outcomes.jsonl", "a") as fh:
        for o in got:
            fh.write(json.dumps(asdict(o)) + "\n")


def train_detector(work: Path) -> Path:
    """A tiny detector trained on synthetic fixtures with the real command line (once; about 5 minutes on 2 cores)."""
    out = work / "tiny_run"
    detector = out / "detector"
    if (detector / "config.json").is_file():
        return detector
    from multimodal_df.testing.fixtures import make_dataset

    manifest = make_dataset(work / "tiny_data", seed=0)
    cmd = [
        sys.executable,
        "-m",
        "multimodal_df.train",
        "--stage",
        "all",
        "--config",
        "tiny",
        "--manifest",
        str(manifest),
    ]
    cmd += ["--out", str(out), "--cache-dir", str(out / "cache"), "--no-progress", "--device", "cpu"]
    subprocess.run(cmd, check=True, env=_child_env())
    return detector


def _keep_findings(got: list[Outcome], cases: list[Case], findings: Path, bound_mb: float) -> None:
    """Copy the inputs behind non-clean outcomes into ``findings`` (links stay links: one points at /dev/zero)."""
    bad = {o.case for o in got if o.status not in ("scored", "clean_error") or o.peak_mb > bound_mb}
    for c in cases:
        if c.case not in bad:
            continue
        for p in map(Path, c.keep):
            dst = findings / f"{c.kind}_{c.case:06d}{''.join(p.suffixes[-1:])}"
            findings.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    shutil.copytree(p, dst, symlinks=True)
                elif p.is_file() and not p.is_symlink():
                    shutil.copyfile(p, dst)


def _cleanup(folder: Path) -> None:
    for p in folder.iterdir() if folder.exists() else []:
        with contextlib.suppress(OSError):
            if not p.is_symlink():
                p.chmod(0o700)
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- atheris
def run_atheris(argv: list[str], work: Path) -> int:
    """Coverage-guided fuzzing of media decoding in this process with atheris (libFuzzer): any exception other
    than MediaError from ``decode`` on the fuzzer's bytes is a crash that libFuzzer saves and reports."""
    import atheris

    with atheris.instrument_imports():
        from multimodal_df.errors import MediaError
        from multimodal_df.media.decode import decode
        from multimodal_df.media.sniff import identify

    corpus = work / "atheris_corpus"
    if not corpus.exists():
        seeds = make_media_seeds(work / "seeds")
        corpus.mkdir(parents=True)
        for name, p in seeds.items():
            if p.stat().st_size <= 200_000:
                shutil.copy(p, corpus / name)
    target = work / "atheris_input"

    def one(data: bytes) -> None:
        identify(data[:512])
        for suffix in (".bin", ".jpg"):
            path = target.with_suffix(suffix)
            path.write_bytes(data)
            try:
                decode(path)
            except MediaError:
                pass

    atheris.Setup([sys.argv[0], *argv, str(corpus)], one)
    atheris.Fuzz()
    return 0


# ---------------------------------------------------------------------------------------------- command
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_checkpoint_worker"]:
        return checkpoint_worker(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    if argv[:1] == ["atheris"]:
        p = argparse.ArgumentParser(prog="fuzz.py atheris", description=run_atheris.__doc__)
        p.add_argument("--runs", type=int, default=20000)
        p.add_argument("--max-total-time", type=int, default=3600, help="seconds")
        p.add_argument("--work", default="/tmp/mmdf_fuzz")
        a = p.parse_args(argv[1:])
        return run_atheris(
            [f"-runs={a.runs}", f"-max_total_time={a.max_total_time}", "-rss_limit_mb=4096", "-timeout=60"],
            Path(a.work),
        )
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--detector", help="a checkpoint directory (default: a tiny detector trained on fixtures into WORK, once)"
    )
    p.add_argument("--media", type=int, default=9500, help="mutated media inputs")
    p.add_argument("--checkpoints", type=int, default=500, help="damaged checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=100, help="inputs per predict process")
    p.add_argument("--file-timeout", type=float, default=60.0, help="seconds one input may take before it is a hang")
    p.add_argument("--rss-limit-mb", type=float, default=6144.0, help="kill a process past this resident memory")
    p.add_argument("--bound-mb", type=float, default=2048.0, help="the memory bound checked for every input")
    p.add_argument("--work", default="/tmp/mmdf_fuzz")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    detector = Path(a.detector).resolve() if a.detector else train_detector(Path(a.work))
    cfg = FuzzConfig(
        detector,
        Path(a.work),
        a.media,
        a.checkpoints,
        a.seed,
        a.batch,
        a.file_timeout,
        a.rss_limit_mb,
        a.bound_mb,
    )
    summary = run(cfg)
    summary["command"] = "python benchmarks/fuzz.py " + " ".join(argv)
    summary["detector"] = str(detector)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=2) + "\n")
    keys = (*STATUSES, "peak_rss_mb", "max_growth_mb", "slowest_s", "over_bound")
    for kind in ("media", "checkpoint"):
        print(kind, {k: summary[kind][k] for k in ("inputs", *keys)})
    print(f"{summary['inputs']} inputs in {summary['wall_s']:.0f} s; results in {a.out}")
    bad = sum(
        summary[k][s]
        for k in ("media", "checkpoint")
        for s in ("traceback", "batch_abort", "hang", "over_memory", "network")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
