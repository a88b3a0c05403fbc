"""Manifests (what to train on) and the prepared-data cache (decoded once, reused every epoch).

A manifest is a CSV with columns ``path,label`` and optionally ``video_label,audio_label,
split,category,group``. Paths are relative to the manifest's folder unless absolute. Labels
are 0/1 or real/fake; FAKE = 1. ``group`` (a speaker, a person, a source video) keeps related
files on one side of an automatic train/valid split.

The cache holds, per file, the main face track's crops, the 16 kHz waveform and metadata as
plain ``.npy`` and JSON files (memory-mapped when read; nothing is pickled).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, to_dict
from .decode import decode
from .errors import ConfigError, MediaError
from .vision.faces import FaceDetector, resize_square

CACHE_VERSION = 1
_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1, "bonafide": 0, "bona-fide": 0, "spoof": 1, "false": 0, "true": 1}
_SPLITS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "test": "test", "eval": "test"}


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
    from .decode import MEDIA_EXTENSIONS

    root = Path(root)

    def files(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)

    rows: list[ManifestRow] = []
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.lower() in _SPLITS]
    layouts = [(None, root)] if (root / "real").is_dir() or (root / "fake").is_dir() else [(_SPLITS[d.name.lower()], d) for d in split_dirs]
    for split, base in layouts:
        for name, label in (("real", 0), ("fake", 1)):
            if (base / name).is_dir():
                rows.extend(ManifestRow(str(p.resolve()), label, split=split, group=str(p.resolve())) for p in files(base / name))
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
                if split not in _SPLITS:
                    raise ConfigError(f"{where}: split {split!r} is not train/valid/test")
                split = _SPLITS[split]
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


@dataclass
class CachedClip:
    """Prepared data of one file. Arrays may be memory-mapped.

    ``crops`` uint8 [K, S, S, 3]; ``crop_times`` [K] s; ``boxes`` [K, 4]; ``landmarks`` [K, 5, 2];
    ``waveform`` float32 [T] at 16 kHz or None; ``error`` a one-line reason when the file failed.
    """

    path: str
    crops: np.ndarray
    crop_times: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    num_frames: int
    waveform: np.ndarray | None
    duration: float
    error: str | None = None

    @staticmethod
    def failed(path: str, crop_size: int, reason: str) -> "CachedClip":
        """The entry for a file that could not be prepared."""
        return CachedClip(path, np.zeros((0, crop_size, crop_size, 3), np.uint8), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 5, 2)), 0, None, 0.0, reason)


def cache_key(path: str, cfg: Config) -> str:
    """Changes when the file or anything that shapes its prepared data changes."""
    st = os.stat(path)
    ident = {
        "v": CACHE_VERSION,
        "path": os.path.abspath(path),
        "size": st.st_size,
        "mtime": st.st_mtime_ns,
        "decode": to_dict(cfg.decode),
        "faces": to_dict(cfg.faces),
        "crop": cfg.vision.input_size,
    }
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _write_entry(d: Path, clip: CachedClip) -> None:
    tmp = d.with_name(d.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "crops.npy", clip.crops)
    np.save(tmp / "track.npy", np.concatenate([clip.crop_times[:, None], clip.boxes, clip.landmarks.reshape(-1, 10)], axis=1))
    if clip.waveform is not None:
        np.save(tmp / "wave.npy", (np.clip(clip.waveform, -1, 1) * 32767).astype(np.int16))
    meta = {"path": clip.path, "num_frames": clip.num_frames, "duration": clip.duration, "error": clip.error}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if d.exists():
        import shutil

        shutil.rmtree(d)
    tmp.rename(d)


def _read_entry(d: Path) -> CachedClip:
    meta = json.loads((d / "meta.json").read_text())
    crops = np.load(d / "crops.npy", mmap_mode="r", allow_pickle=False)
    track = np.load(d / "track.npy", allow_pickle=False)
    wave = None
    if (d / "wave.npy").exists():
        wave = np.load(d / "wave.npy", allow_pickle=False).astype(np.float32) / 32767.0
    return CachedClip(meta["path"], crops, track[:, 0], track[:, 1:5], track[:, 5:].reshape(-1, 5, 2), meta["num_frames"], wave, meta["duration"], meta["error"])


def prepare_one(path: str, cfg: Config, detector: FaceDetector) -> CachedClip:
    """Decode ``path`` and track its main face (no cache involved). Bad files give ``error``, not an exception."""
    try:
        clip = decode(path, cfg.decode)
    except MediaError as exc:
        return CachedClip.failed(path, cfg.vision.input_size, exc.reason)
    track = detector.track(clip.frames, clip.frame_times)
    if len(track) == 0 and clip.info.kind == "image":
        # As at prediction time: a tight face crop (common in generated-face sets) is scored whole.
        img = clip.frames[0]  # type: ignore[index]
        crop = resize_square(img, cfg.vision.input_size)
        h, w = img.shape[:2]
        return CachedClip(path, crop[None], np.zeros(1), np.array([[0.0, 0.0, w, h]]), np.zeros((1, 5, 2)), 1, None, 0.0)
    return CachedClip(path, track.crops, track.times, track.boxes, track.landmarks, track.num_frames, clip.waveform, clip.duration)


def prepare(rows: list[ManifestRow], cfg: Config, cache_dir: str | Path, device: str = "cpu", progress: bool = True) -> dict[str, CachedClip]:
    """Decode and detect faces once per file, caching the result; returns path -> cached clip."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    detector = FaceDetector(cfg.faces, cfg.vision.input_size, device)
    out: dict[str, CachedClip] = {}
    for r in tqdm(rows, desc="prepare", unit="file", disable=not progress):
        try:
            key = cache_key(r.path, cfg)
        except OSError as exc:
            out[r.path] = CachedClip.failed(r.path, cfg.vision.input_size, f"cannot read: {exc.strerror}")
            continue
        d = cache_dir / key
        if not (d / "meta.json").exists():
            _write_entry(d, prepare_one(r.path, cfg, detector))
        out[r.path] = _read_entry(d)
    return out
