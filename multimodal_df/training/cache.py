"""The prepared-data cache: each file decoded and its main face tracked once, reused every epoch.

The cache holds, per file, the main face track's crops, the 16 kHz waveform, optionally the mouth
motion for the sync measure, and metadata as plain ``.npy`` and JSON files (memory-mapped when read;
nothing is pickled). Entries are written to a temporary folder and renamed, so a crash never leaves
half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config, to_dict
from ..errors import MediaError
from ..fusion.sync import DENSE, MouthTrack, measure_mouth
from ..media.decode import decode
from ..vision.crops import resize_square
from ..vision.faces import FaceDetector
from ..vision.model import vision_args
from .manifests import ManifestRow

CACHE_VERSION = 4
"""Bumped whenever decoding or face tracking changes what a file prepares to (4: clips whose video timestamps all
repeat are decoded by frame index instead of failing), so entries prepared by older code are made again."""


@dataclass
class CachedClip:
    """Prepared data of one file. Arrays may be memory-mapped.

    ``crops`` uint8 [K, S, S, 3]; ``crop_times`` [K] s; ``boxes`` [K, 4]; ``landmarks`` [K, 5, 2];
    ``waveform`` float32 [T] at 16 kHz or None; ``error`` a one-line reason when the file failed;
    ``mouth`` the mouth motion along the face track (prepared only when fusion weighs sync).
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
    mouth: MouthTrack | None = None

    @staticmethod
    def failed(path: str, crop_size: int, reason: str) -> CachedClip:
        """The entry for a file that could not be prepared."""
        return CachedClip(
            path,
            np.zeros((0, crop_size, crop_size, 3), np.uint8),
            np.zeros(0),
            np.zeros((0, 4)),
            np.zeros((0, 5, 2)),
            0,
            None,
            0.0,
            reason,
        )


def crop_size(cfg: Config) -> int:
    """Side of the face crops the configured vision model takes, pixels."""
    return vision_args(cfg.vision).input_size


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
        "crop": crop_size(cfg),
        "sync": cfg.fusion.use_sync,
    }
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _write_entry(d: Path, clip: CachedClip) -> None:
    tmp = d.with_name(d.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "crops.npy", clip.crops)
    np.save(
        tmp / "track.npy",
        np.concatenate([clip.crop_times[:, None], clip.boxes, clip.landmarks.reshape(-1, 10)], axis=1),
    )
    if clip.waveform is not None:
        np.save(tmp / "wave.npy", (np.clip(clip.waveform, -1, 1) * 32767).astype(np.int16))
    if clip.mouth is not None:
        np.save(tmp / "mouth.npy", clip.mouth.motion)
    meta = {"path": clip.path, "num_frames": clip.num_frames, "duration": clip.duration, "error": clip.error}
    meta["mouth_start"] = clip.mouth.start if clip.mouth is not None else None
    (tmp / "meta.json").write_text(json.dumps(meta))
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)


def _read_entry(d: Path) -> CachedClip:
    meta = json.loads((d / "meta.json").read_text())
    crops = np.load(d / "crops.npy", mmap_mode="r", allow_pickle=False)
    track = np.load(d / "track.npy", allow_pickle=False)
    wave = None
    if (d / "wave.npy").exists():
        wave = np.load(d / "wave.npy", allow_pickle=False).astype(np.float32) / 32767.0
    mouth = None
    if (d / "mouth.npy").exists():
        mouth = MouthTrack(np.load(d / "mouth.npy", allow_pickle=False), float(meta["mouth_start"]))
    landmarks = track[:, 5:].reshape(-1, 5, 2)
    return CachedClip(
        meta["path"],
        crops,
        track[:, 0],
        track[:, 1:5],
        landmarks,
        meta["num_frames"],
        wave,
        meta["duration"],
        meta["error"],
        mouth,
    )


MIN_PHOTO_FACE = 40
"""Faces smaller than this (box height, pixels) in a photo are left out of training: a group photo's tiny
background faces are mostly blur and would teach the model that blur is a face."""
MAX_PHOTO_FACES = 16


def _image_faces(path: str, image: np.ndarray, cfg: Config, detector: FaceDetector) -> CachedClip:
    """Every face of a photo that is big enough (a group photo gives several people), most confident first.
    With none, the whole image as one face, as prediction does with tight crops."""
    d, crops = detector.faces_in_image(image)
    keep = [i for i in range(len(d)) if d.boxes[i, 3] - d.boxes[i, 1] >= MIN_PHOTO_FACE][:MAX_PHOTO_FACES]
    if not keep:
        h, w = image.shape[:2]
        crop = resize_square(image, crop_size(cfg))
        return CachedClip(
            path, crop[None], np.zeros(1), np.array([[0.0, 0.0, w, h]]), np.zeros((1, 5, 2)), 1, None, 0.0
        )
    k = np.asarray(keep)
    return CachedClip(path, crops[k], np.zeros(len(k)), d.boxes[k], d.landmarks[k], 1, None, 0.0)


def prepare_one(path: str, cfg: Config, detector: FaceDetector) -> CachedClip:
    """Decode ``path`` and track its main face (no cache involved). Bad files give ``error``, not an exception."""
    try:
        clip = decode(path, cfg.decode, DENSE if cfg.fusion.use_sync else None)
    except MediaError as exc:
        return CachedClip.failed(path, crop_size(cfg), exc.reason)
    if clip.info.kind == "image":
        return _image_faces(path, clip.frames[0], cfg, detector)  # type: ignore[index]
    track = detector.track(clip.frames, clip.frame_times)
    if len(track) == 0 and clip.info.kind == "image":
        # As at prediction time: a tight face crop (common in generated-face sets) is scored whole.
        img = clip.frames[0]  # type: ignore[index]
        crop = resize_square(img, crop_size(cfg))
        h, w = img.shape[:2]
        return CachedClip(
            path, crop[None], np.zeros(1), np.array([[0.0, 0.0, w, h]]), np.zeros((1, 5, 2)), 1, None, 0.0
        )
    mouth = measure_mouth(clip.dense, track.landmarks, track.times) if cfg.fusion.use_sync and len(track) else None
    return CachedClip(
        path,
        track.crops,
        track.times,
        track.boxes,
        track.landmarks,
        track.num_frames,
        clip.waveform,
        clip.duration,
        None,
        mouth,
    )


def prepare(
    rows: list[ManifestRow], cfg: Config, cache_dir: str | Path, device: str = "cpu", progress: bool = True
) -> dict[str, CachedClip]:
    """Decode and detect faces once per file, caching the result; returns path -> cached clip."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    detector = FaceDetector(cfg.faces, crop_size(cfg), device)
    out: dict[str, CachedClip] = {}
    for r in tqdm(rows, desc="prepare", unit="file", disable=not progress):
        try:
            key = cache_key(r.path, cfg)
        except OSError as exc:
            out[r.path] = CachedClip.failed(r.path, crop_size(cfg), f"cannot read: {exc.strerror}")
            continue
        d = cache_dir / key
        if not (d / "meta.json").exists():
            _write_entry(d, prepare_one(r.path, cfg, detector))
        out[r.path] = _read_entry(d)
    return out
