"""Manifests: what to train or evaluate on.

A manifest is a CSV with columns ``path,label`` and optionally ``video_label,audio_label,
split,category,group``. Paths are relative to the manifest's folder unless absolute. Labels
are 0/1 or real/fake; FAKE = 1. ``group`` (a speaker, a person, a source video) keeps related
files on one side of an automatic train/valid split.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..media.sniff import MEDIA_EXTENSIONS

_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1, "bonafide": 0, "bona-fide": 0, "spoof": 1, "false": 0, "true": 1}
_SPLITS = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
    "eval": "test",
}


def normalize_split(name: str | None) -> str | None:
    """A dataset's split name (``val``, ``dev``, ``eval``, ...) as ``train``/``valid``/``test``; None when it is none of those."""
    return _SPLITS.get((name or "").strip().lower())


@dataclass
class ManifestRow:
    """One labelled file. ``video_label``/``audio_label`` are None when the manifest does not give them."""

    path: str
    label: int
    video_label: int | None = None
    audio_label: int | None = None
    split: str | None = None
    category: str | None = None
    group: str | None = None

    @property
    def vision_target(self) -> int:
        return self.label if self.video_label is None else self.video_label

    @property
    def audio_target(self) -> int:
        return self.label if self.audio_label is None else self.audio_label


def parse_label(value: str | None, where: str, required: bool = True) -> int | None:
    """'0'/'1'/'real'/'fake' (and ASVspoof's bonafide/spoof) -> 0/1; empty -> None unless required."""
    v = (value or "").strip().lower()
    if not v:
        if required:
            raise ConfigError(f"{where}: label is empty")
        return None
    if v not in _LABELS:
        raise ConfigError(f"{where}: label {value!r} is not 0/1/real/fake")
    return _LABELS[v]


def manifest_from_folders(root: str | Path) -> list[ManifestRow]:
    """Rows from an image (or media) folder tree labelled by folder name.

    Accepts ``ROOT/real`` + ``ROOT/fake`` (split later by hash), and ``ROOT/{train,valid,test}/{real,fake}``
    (the layout of the "140k real and fake faces" set; ``val`` works for ``valid``). Files are found
    recursively under each label folder; only media extensions count.
    """
    root = Path(root)

    def files(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)

    rows: list[ManifestRow] = []
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and normalize_split(d.name)]
    layouts = (
        [(None, root)]
        if (root / "real").is_dir() or (root / "fake").is_dir()
        else [(normalize_split(d.name), d) for d in split_dirs]
    )
    for split, base in layouts:
        for name, label in (("real", 0), ("fake", 1)):
            if (base / name).is_dir():
                rows.extend(
                    ManifestRow(str(p.resolve()), label, split=split, group=str(p.resolve()))
                    for p in files(base / name)
                )
    if not rows:
        raise ConfigError(f"{root}: no media under real/ and fake/ (or train|valid|test/real|fake) folders")
    return rows


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read and check a manifest CSV, or label a folder tree (:func:`manifest_from_folders`); paths come back absolute."""
    path = Path(path)
    if path.is_dir():
        return manifest_from_folders(path)
    if not path.is_file():
        raise ConfigError(f"manifest not found: {path}")
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"path", "label"} <= cols:
            raise ConfigError(f"{path}: a manifest needs columns path,label (has {sorted(cols)})")
        for i, r in enumerate(reader, start=2):
            where = f"{path.name}:{i}"
            p = (r.get("path") or "").strip()
            if not p:
                raise ConfigError(f"{where}: empty path")
            full = p if os.path.isabs(p) else str((path.parent / p).resolve())
            split = (r.get("split") or "").strip().lower() or None
            if split is not None:
                if normalize_split(split) is None:
                    raise ConfigError(f"{where}: split {split!r} is not train/valid/test")
                split = normalize_split(split)
            rows.append(
                ManifestRow(
                    full,
                    parse_label(r.get("label"), where),  # type: ignore[arg-type]
                    parse_label(r.get("video_label"), where, required=False),
                    parse_label(r.get("audio_label"), where, required=False),
                    split,
                    (r.get("category") or "").strip() or None,
                    (r.get("group") or "").strip() or None,
                )
            )
    if not rows:
        raise ConfigError(f"{path}: the manifest has no rows")
    return rows


def write_manifest(rows: list[ManifestRow], path: str | Path) -> Path:
    """Write rows as a manifest CSV (paths as given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["path", "label", "video_label", "audio_label", "split", "category", "group"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(fields)
        for r in rows:
            w.writerow(["" if getattr(r, f) is None else getattr(r, f) for f in fields])
    return path


def assign_splits(rows: list[ManifestRow], val_fraction: float, seed: int = 0) -> list[ManifestRow]:
    """Give rows without a split 'train' or 'valid' by a stable hash of their group (or path)."""
    for r in rows:
        if r.split is None:
            key = f"{seed}:{r.group or r.path}".encode()
            u = int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2**64
            r.split = "valid" if u < val_fraction else "train"
    return rows


def summarize(rows: list[ManifestRow]) -> dict[str, Any]:
    """Counts per split, label and category, for checkpoints and logs."""
    out: dict[str, Any] = {}
    for split in sorted({r.split or "unsplit" for r in rows}):
        sub = [r for r in rows if (r.split or "unsplit") == split]
        out[split] = {
            "files": len(sub),
            "fake": sum(r.label for r in sub),
            "real": sum(1 - r.label for r in sub),
            "groups": len({r.group or r.path for r in sub}),
            "categories": dict(Counter(r.category for r in sub if r.category)),
        }
    return out
