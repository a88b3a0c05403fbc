"""What a file is, from its first bytes and its name: one table of magic numbers for the whole package.

Content decides, never the name: an upload called ``photo.jpg`` that holds an MP4 is an MP4, and
text named ``clip.mp4`` is refused before any decoder sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SniffedKind = Literal["image", "video", "audio", "media"]
"""``media``: a container that may hold video or audio (MP4/MOV, Matroska/WebM, MPEG-TS/PS)."""

HEAD_BYTES = 512
"""How many leading bytes :func:`identify` wants (MPEG-TS needs 189; 512 leaves room)."""


@dataclass(frozen=True)
class FileType:
    """What the first bytes say a file is: ``kind`` (None: not media), a short format name, and the MIME type
    where one is standard (the C2PA reader needs it)."""

    kind: SniffedKind | None
    fmt: str
    mime: str | None = None


UNKNOWN = FileType(None, "unknown")
# ISO BMFF major brands that hold still images or audio rather than video.
_BMFF_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis"}
_BMFF_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A "}
_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")

IMAGE_MAGIC: tuple[tuple[int, bytes, FileType], ...] = (
    (0, b"\xff\xd8\xff", FileType("image", "jpeg", "image/jpeg")),
    (0, b"\x89PNG\r\n\x1a\n", FileType("image", "png", "image/png")),
    (0, b"GIF87a", FileType("image", "gif", "image/gif")),
    (0, b"GIF89a", FileType("image", "gif", "image/gif")),
    (0, b"BM", FileType("image", "bmp", "image/bmp")),
    (0, b"II*\x00", FileType("image", "tiff", "image/tiff")),
    (0, b"MM\x00*", FileType("image", "tiff", "image/tiff")),
    (8, b"WEBP", FileType("image", "webp", "image/webp")),
    # Netpbm (PGM / PPM, binary), as old face sets (AT&T) store their photos.
    *((0, b"P" + k + sep, FileType("image", "netpbm")) for k in (b"5", b"6") for sep in (b"\n", b" ", b"\r", b"\t")),
)
"""Still-image formats, read with Pillow instead of FFmpeg."""

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".ts", ".3gp"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma"}
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def is_image_head(head: bytes) -> bool:
    """Whether the leading bytes are those of a still image Pillow reads."""
    return any(head[off : off + len(magic)] == magic for off, magic, _ in IMAGE_MAGIC)


def _bmff(head: bytes) -> FileType:
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if brand in _BMFF_IMAGE_BRANDS:
        return FileType("image", "heif", "image/avif" if brand.startswith(b"avi") else "image/heif")
    if brand in _BMFF_AUDIO_BRANDS:
        return FileType("audio", "m4a", "audio/mp4")
    if brand == b"qt  ":
        return FileType("media", "mov", "video/quicktime")
    return FileType("media", "mp4", "video/mp4")


def identify(head: bytes) -> FileType:
    """What the first bytes of a file (:data:`HEAD_BYTES` of them, or all of a shorter file) say it is."""
    for off, magic, ft in IMAGE_MAGIC:
        if head[off : off + len(magic)] == magic:
            return ft
    if head[4:8] in _BMFF_BOXES:
        return _bmff(head)
    if head[:4] == b"RIFF":
        sub = head[8:12]
        return {b"WAVE": FileType("audio", "wav", "audio/wav"), b"AVI ": FileType("video", "avi", "video/avi")}.get(
            sub, UNKNOWN
        )
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return FileType("media", "matroska")
    if head[:4] == b"\x00\x00\x01\xba" or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47):
        return FileType("media", "mpeg")
    if head[:3] == b"FLV":
        return FileType("video", "flv")
    if head[:4] == b"fLaC":
        return FileType("audio", "flac", "audio/flac")
    if head[:4] == b"OggS":
        return FileType("audio", "ogg")
    if head[:3] == b"ID3":
        return FileType("audio", "mp3", "audio/mpeg")
    if head[:5] == b"#!AMR":
        return FileType("audio", "amr")
    if head[:4] == b"\x30\x26\xb2\x75":
        return FileType("audio", "asf")
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio / ADTS AAC frame sync
        return FileType("audio", "mp3", "audio/mpeg")
    return UNKNOWN


def sniff_bytes(head: bytes) -> SniffedKind | None:
    """The kind of media the first bytes of a file say it is (see :func:`identify`); None for anything else."""
    return identify(head).kind


def read_head(path: str | Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file."""
    with open(path, "rb") as fh:
        return fh.read(n)


def iter_inputs(paths: list[str]) -> Iterator[tuple[str, str | None]]:
    """Expand folders (recursively, media extensions only, sorted); yield (path, error-or-None).

    A folder without media yields itself with a reason, so a batch reports it instead of skipping it silently.
    """
    for p in paths:
        if os.path.isdir(p):
            found = False
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in MEDIA_EXTENSIONS:
                        found = True
                        yield os.path.join(root, f), None
            if not found:
                yield p, "no media files in this folder"
        else:
            yield p, None
