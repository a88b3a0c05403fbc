"""Dataset adapters: public deepfake datasets' layouts -> the manifest the trainer reads.

Used by ``python -m multimodal_df.datasets KIND ROOT --out manifest.csv`` (its help lists the layouts).

Every adapter keeps what keeps the evaluation honest: per-modality labels where the dataset has
them, the source identity as ``group`` (so a person or source video is never on both sides of a
split), and the dataset's own split where it has one. Paths in the manifest are absolute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..media.sniff import MEDIA_EXTENSIONS
from .manifests import ManifestRow, manifest_from_folders, normalize_split

_FAKEAVCELEB = {
    "realvideo-realaudio": ("RVRA", 0, 0),
    "realvideo-fakeaudio": ("RVFA", 0, 1),
    "fakevideo-realaudio": ("FVRA", 1, 0),
    "fakevideo-fakeaudio": ("FVFA", 1, 1),
}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read metadata ({exc})") from None


def fakeavceleb(root: str | Path) -> list[ManifestRow]:
    """FakeAVCeleb: ``{RealVideo-RealAudio,...}/<ethnicity>/<gender>/<id>/*.mp4``; category from the top folder.

    ``group`` is the identity folder (``idXXXXX``), shared by a real clip and the fakes made from it.
    """
    root = Path(root)
    rows = []
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        key = top.name.lower().replace("_", "-")
        if key not in _FAKEAVCELEB:
            continue
        cat, vl, al = _FAKEAVCELEB[key]
        for f in sorted(top.rglob("*.mp4")):
            ident = next(
                (part for part in f.relative_to(top).parts[:-1] if part.lower().startswith("id")), f.parent.name
            )
            rows.append(ManifestRow(str(f.resolve()), int(vl or al), vl, al, None, cat, ident))
    if not rows:
        raise ConfigError(f"{root}: no FakeAVCeleb category folders (RealVideo-RealAudio, ...) with MP4s")
    return rows


def dfdc(root: str | Path) -> list[ManifestRow]:
    """DFDC: part folders with ``metadata.json`` mapping file -> {label: REAL|FAKE, original}.

    DFDC labels the file only (no per-modality labels); ``group`` is the original video.
    """
    root = Path(root)
    metas = sorted(root.glob("**/metadata.json"))
    rows = []
    for meta in metas:
        for name, info in _read_json(meta).items():
            f = meta.parent / name
            label = str(info.get("label", "")).upper()
            if label not in ("REAL", "FAKE"):
                raise ConfigError(f"{meta}: {name} has label {info.get('label')!r}")
            y = int(label == "FAKE")
            split = {"train": None, "test": "test"}.get(str(info.get("split", "train")).lower())
            rows.append(ManifestRow(str(f.resolve()), y, None, None, split, None, info.get("original") or name))
    if not rows:
        raise ConfigError(f"{root}: no DFDC metadata.json found")
    return rows


def _segments_meta(root: Path, files: list[str]) -> list[ManifestRow]:
    rows = []
    for name in files:
        meta = root / name
        if not meta.exists():
            continue
        for item in _read_json(meta):
            f = root / item["file"]
            if "modify_type" in item:  # AV-Deepfake1M
                mt = str(item["modify_type"]).lower()
                vl, al = int(mt in ("visual_modified", "both_modified")), int(mt in ("audio_modified", "both_modified"))
                category = mt
            else:  # LAV-DF
                vl, al = int(bool(item.get("modify_video"))), int(bool(item.get("modify_audio")))
                category = {
                    (0, 0): "real",
                    (1, 0): "visual_modified",
                    (0, 1): "audio_modified",
                    (1, 1): "both_modified",
                }[(vl, al)]
            split = normalize_split(str(item.get("split", "")))
            if split is None and "train" in name:
                split = "train"
            elif split is None and "val" in name:
                split = "valid"
            rows.append(
                ManifestRow(
                    str(f.resolve()), int(vl or al), vl, al, split, category, item.get("original") or item["file"]
                )
            )
    return rows


def lavdf(root: str | Path) -> list[ManifestRow]:
    """LAV-DF: ``metadata.json`` (or ``metadata.min.json``) listing file, split, modify_video, modify_audio."""
    root = Path(root)
    rows = _segments_meta(root, ["metadata.json"]) or _segments_meta(root, ["metadata.min.json"])
    if not rows:
        raise ConfigError(f"{root}: no LAV-DF metadata.json")
    return rows


def avdeepfake1m(root: str | Path) -> list[ManifestRow]:
    """AV-Deepfake1M: ``train_metadata.json`` / ``val_metadata.json`` with modify_type per file."""
    root = Path(root)
    rows = _segments_meta(root, ["train_metadata.json", "val_metadata.json", "test_metadata.json"])
    if not rows:
        raise ConfigError(f"{root}: no AV-Deepfake1M *_metadata.json")
    return rows


def asvspoof(protocol: str | Path, audio_dir: str | Path, split: str | None = None) -> list[ManifestRow]:
    """ASVspoof-style protocol lines (``SPEAKER FILE_ID ... ATTACK ... bonafide|spoof``) -> audio rows.

    The label is the ``bonafide``/``spoof`` token; ``category`` is the attack id (``-`` for bona fide);
    ``group`` the speaker. Audio is looked up as ``audio_dir/FILE_ID.<ext>``.
    """
    protocol, audio_dir = Path(protocol), Path(audio_dir)
    by_stem = {p.stem: p for p in audio_dir.rglob("*") if p.suffix.lower() in MEDIA_EXTENSIONS}
    rows = []
    for n, line in enumerate(protocol.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        key = next((t for t in parts if t.lower() in ("bonafide", "spoof")), None)
        if key is None or len(parts) < 2:
            raise ConfigError(f"{protocol}:{n}: no bonafide/spoof key in {line!r}")
        file_id = parts[1]
        if file_id not in by_stem:
            raise ConfigError(f"{protocol}:{n}: no audio file for {file_id} under {audio_dir}")
        attack = next((t for t in parts[2:] if t.upper().startswith("A") and t[1:].isdigit()), "-")
        y = int(key.lower() == "spoof")
        rows.append(ManifestRow(str(by_stem[file_id].resolve()), y, None, y, split, attack, parts[0]))
    if not rows:
        raise ConfigError(f"{protocol}: empty protocol")
    return rows


def prefixed(root: str | Path) -> list[ManifestRow]:
    """Files labelled by name: ``real_<source>_...`` or ``fake_<source>_...`` anywhere under ``root``.

    The category is ``<first folder>:<source>`` (e.g. ``video:vexpress-emo``), so each source is compared with the
    real files of its own folder; the group is the file itself. This is the layout of ``../shared/data/dev``.
    """
    root = Path(root)
    rows = []
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS):
        label, _, rest = f.name.partition("_")
        if label not in ("real", "fake") or not rest:
            continue
        rel = f.relative_to(root)
        domain = rel.parts[0] if len(rel.parts) > 1 else "media"
        source = rest.split("_", 1)[0]
        rows.append(
            ManifestRow(str(f.resolve()), int(label == "fake"), None, None, None, f"{domain}:{source}", str(rel))
        )
    if not rows:
        raise ConfigError(f"{root}: no files named real_* or fake_*")
    return rows


ADAPTERS: dict[str, Callable[[str | Path], list[ManifestRow]]] = {
    "fakeavceleb": fakeavceleb,
    "dfdc": dfdc,
    "lavdf": lavdf,
    "avdeepfake1m": avdeepfake1m,
    "folders": manifest_from_folders,
    "prefixed": prefixed,
}
"""Adapters that need only the dataset's root folder (ASVspoof also needs its protocol: :func:`asvspoof`)."""
