"""Checkpoints: the one module that reads and writes them.

A checkpoint is a directory holding ``config.json`` and one safetensors file per model. Nothing in it
is ever unpickled, and loading one never reaches the network: every model is rebuilt from the
architecture it wrote about itself (``config()`` / ``from_config()``).

``config.json`` (format version 2) keeps the architecture apart from how it was trained, as nanoGPT
keeps ``model_args`` beside its ``config``::

    {"format": "multimodal_df/detector", "format_version": 2, "package_version": ..., "created_utc": ...,
     "decode": {...}, "faces": {...},                 # how inputs are sampled and faces found
     "threshold": 0.5,                                 # the detector's decision threshold on P(fake)
     "vision": {"args": {...}, "calibration": {...}, "threshold": ..., "metrics": {...}} | null,
     "audio":  {...} | null, "fusion": {...} | null,
     "training": {"config": {...} | null, "data": {...}}}   # for the record; never read to build a model

Version 1 checkpoints (the branch's training config stored as its architecture) are converted on load.
Everything is validated before any model is built (:mod:`.schema`); files are written atomically and
weights are safetensors (:mod:`.files`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..config import to_dict
from ..errors import CheckpointError
from .files import load_weights, one_line, save_weights, write_atomic, write_text_atomic
from .schema import FORMAT, FORMAT_VERSION, BranchMeta, CheckpointSpec, read_config, read_spec

if TYPE_CHECKING:
    from .detector import Detector

__all__ = [
    "CHECKPOINT_ENV",
    "FORMAT",
    "FORMAT_VERSION",
    "SHIPPED",
    "BranchMeta",
    "CheckpointSpec",
    "default_checkpoint",
    "load",
    "load_detector",
    "load_weights",
    "read_config",
    "read_spec",
    "save_detector",
    "save_weights",
    "write_atomic",
    "write_text_atomic",
]

CHECKPOINT_ENV = "MULTIMODAL_DF_CHECKPOINT"
SHIPPED = Path(__file__).resolve().parent.parent / "shipped"


def load_detector(directory: str | Path, device: str = "auto", batch_size: int = 32) -> Detector:
    """Rebuild a detector from a checkpoint directory: validated, no network, no pickle."""
    from ..audio.model import AudioModel
    from ..fusion.model import LateFusion
    from ..vision.model import VisionModel
    from .detector import Detector, resolve_device

    d = Path(directory)
    spec = read_spec(d)

    def weights(name: str) -> str:
        p = d / f"{name}.safetensors"
        if not p.is_file():
            raise CheckpointError(f"{d}: {p.name} is missing")
        return str(p)

    built: dict[str, Any] = {"vision": None, "audio": None, "fusion": None}
    for name, cls in (("vision", VisionModel), ("audio", AudioModel), ("fusion", LateFusion)):
        part = getattr(spec, name)
        if part is None:
            continue
        try:
            model = cls.from_config(part[0])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"config.json: cannot build the {name} model ({one_line(exc, 200)})") from None
        load_weights(model, weights(name))
        built[name] = model
    return Detector(
        spec.decode,
        spec.faces,
        vision=built["vision"],
        audio=built["audio"],
        fusion=built["fusion"],
        vision_meta=spec.vision[1] if spec.vision else None,
        audio_meta=spec.audio[1] if spec.audio else None,
        fusion_meta=spec.fusion[1] if spec.fusion else None,
        training_data=spec.training.get("data") if isinstance(spec.training.get("data"), dict) else {},
        training_config=spec.training.get("config") if isinstance(spec.training.get("config"), dict) else None,
        device=resolve_device(device),
        batch_size=batch_size,
    )


def _meta_json(m: BranchMeta) -> dict[str, Any]:
    return {"calibration": dataclasses.asdict(m.calibration), "threshold": m.threshold, "metrics": m.metrics}


def save_detector(det: Detector, directory: str | Path) -> Path:
    """Write ``det`` as a checkpoint: weights first, then ``config.json`` (each atomically), so a directory
    with a config.json always has the weights it names."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "decode": to_dict(det.decode_cfg),
        "faces": to_dict(det.face_cfg),
        "threshold": det.threshold,
        "vision": None,
        "audio": None,
        "fusion": None,
        "training": {"config": det.training_config, "data": det.training_data},
    }
    for name, model, meta in (
        ("vision", det.vision, det.vision_meta),
        ("audio", det.audio, det.audio_meta),
        ("fusion", det.fusion, det.fusion_meta),
    ):
        if model is None:
            continue
        save_weights(model, d / f"{name}.safetensors")
        cfg[name] = {"args": dataclasses.asdict(model.config()), **_meta_json(meta)}
    write_text_atomic(d / "config.json", json.dumps(cfg, indent=2, default=_json_default, allow_nan=False))
    return d


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        v = o.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def default_checkpoint() -> str | None:
    """``$MULTIMODAL_DF_CHECKPOINT``, else the model shipped inside the package, else None."""
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return env
    return str(SHIPPED) if (SHIPPED / "config.json").is_file() else None


def load(checkpoint: str | Path | None = None, device: str = "auto") -> Detector:
    """The detector at ``checkpoint`` (default: :func:`default_checkpoint`, the shipped model).

    Raises :class:`CheckpointError` with a one-line reason for anything that cannot be loaded.
    """
    ckpt = str(checkpoint) if checkpoint is not None else default_checkpoint()
    if ckpt is None:
        raise CheckpointError(
            "no checkpoint. Pass --checkpoint DIR (a directory written by `python -m multimodal_df.train`) "
            f"or set ${CHECKPOINT_ENV} (the model that ships in multimodal_df/shipped/ is missing from this install)."
        )
    try:
        return load_detector(ckpt, device)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot load checkpoint {ckpt}: {exc}") from None
    except (RuntimeError, ValueError, OSError, MemoryError) as exc:
        raise CheckpointError(f"cannot load checkpoint {ckpt}: {type(exc).__name__}: {one_line(exc, 300)}") from None
