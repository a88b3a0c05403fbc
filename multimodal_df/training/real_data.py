"""The real media in ``../shared/data`` as manifests, split by person or speaker (never by file or frame).

Every file here is real; the trainer makes the fakes. Who is who comes from each source's file names
(documented per folder in ``../shared/data/README.md``): a speaker id, a person id, or the file itself where
a source names nobody. Files of one person in two folders share a group (the LRS2 clips in ``talking/`` and
their audio in ``speech/``; LibriSpeech speakers in ``speech/`` and ``librispeech/``), so they land in one split.

A group goes to ``train``, ``valid`` or ``test`` by a stable hash of its name: ``test`` people and speakers
take no part in training or model selection and give the held-out figures of the model card.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..media.sniff import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

VALID_SHARE = 0.15
TEST_SHARE = 0.15


def split_of(group: str, valid: float = VALID_SHARE, test: float = TEST_SHARE) -> str:
    """``train``, ``valid`` or ``test`` for a group, by a stable hash of its name (the same on every machine)."""
    u = int.from_bytes(hashlib.sha1(f"split:{group}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "valid" if u < test + valid else "train"


def _libri(speaker: str) -> str:
    return f"librispeech:{speaker}"


def face_group(path: Path) -> str:
    """The person in a face photo or clip (a file of its own where the source names nobody)."""
    folder, name = path.parent.name, path.stem
    if folder == "att_selfcollected":
        return f"att:{name.split('_')[1]}"  # attfaces_s1_7 -> person s1
    if folder == "lrs2_deepavsr":
        return f"lrs2:{name.split('_')[1]}"
    if folder == "mead_eamm":
        return "mead"  # three MEAD actors, not named per file: one group keeps them on one side
    if folder == "visualvoice" and "interview" in name:
        return "visualvoice:interview"  # two parts of one interview
    return f"{folder}:{name}"


def speech_group(path: Path) -> str:
    """The speaker of a recording (a file of its own where the source names nobody)."""
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return face_group(path)  # a talking clip: its speaker is its person
    folder, name = path.parent.name, path.name.split(".")[0]
    parts = name.split("_")
    if folder in ("train-clean-100", "test-other"):
        return _libri(name.split("-")[0])
    if folder == "librispeech":  # librosadata_198-209-0000, rtvc_1320_00000
        return _libri(parts[1].split("-")[0])
    if folder == "misc_asr" and "librispeech" in name:
        return _libri(name.split("-")[1])
    if folder == "emodb":
        return f"emodb:{parts[1][:2]}"
    if folder == "urdu":
        return f"urdu:{parts[1]}"
    if folder == "fsdd":
        return f"fsdd:{parts[2]}"
    if folder == "spanish_emo":
        return f"spanish:{parts[1]}"
    if folder == "ravdess":
        return "ravdess:01"
    if folder == "lrs2":
        return f"lrs2:{parts[1]}"
    if folder == "speechbrain":
        if name.startswith("speechbrain_HeStutters"):
            return "speechbrain:hestutters"
        if name.startswith("speechbrain_common_voice"):
            return f"speechbrain:cv{parts[-1]}"
        if re.fullmatch(r"speechbrain_\d_\d+_\d+", name):  # AudioMNIST digit_speaker_index
            return f"speechbrain:audiomnist{parts[2]}"
    return f"{folder}:{name}"


@dataclass
class RealManifests:
    """Paths of the manifests the recipe trains on."""

    faces: Path
    speech: Path


def _rows(files: list[Path], group_of: object, fixed_test: set[str] | None = None) -> list[str]:
    lines = ["path,label,split,group,category"]
    for p in files:
        g = group_of(p)  # type: ignore[operator]
        split = "test" if fixed_test and p.parent.name in fixed_test else split_of(g)
        lines.append(f"{p.resolve()},0,{split},{g},{p.parent.name}")
    return lines


def write_real_manifests(data: str | Path, out: str | Path) -> RealManifests:
    """``OUT/manifests/faces.csv`` (photos, silent clips, talking clips) and ``speech.csv`` (LibriSpeech, the speech
    collection, the talking clips' audio), columns ``path,label,split,group,category``; every file real (label 0)."""
    data, d = Path(data), Path(out) / "manifests"
    video_ext, image_ext, audio_ext = VIDEO_EXTENSIONS, IMAGE_EXTENSIONS | {".pgm"}, AUDIO_EXTENSIONS
    face_files = sorted(p for p in (data / "face_photos").rglob("*") if p.suffix.lower() in image_ext)
    for sub in ("faces", "face_clips", "talking"):
        face_files += sorted(p for p in (data / sub).rglob("*") if p.suffix.lower() in video_ext)
    speech_files = sorted(p for p in (data / "librispeech").rglob("*") if p.suffix.lower() in audio_ext)
    speech_files += sorted(p for p in (data / "speech").rglob("*") if p.suffix.lower() in audio_ext)
    # The talking clips' own voices: real speech in sync with a face, a source like no other.
    speech_files += sorted(p for p in (data / "talking").rglob("*") if p.suffix.lower() in video_ext)
    if not face_files or not speech_files:
        raise ConfigError(
            f"{data}: expected face_photos/, faces/, talking/, speech/ and librispeech/ (see ../shared/data/README.md)"
        )
    d.mkdir(parents=True, exist_ok=True)
    faces, speech = d / "faces.csv", d / "speech.csv"
    faces.write_text("\n".join(_rows(face_files, face_group)) + "\n")
    # LibriSpeech's test-other is a test set by construction: other speakers, harder conditions.
    speech.write_text("\n".join(_rows(speech_files, speech_group, {"test-other"})) + "\n")
    return RealManifests(faces, speech)
