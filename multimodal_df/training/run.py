"""Run training stages as functions: what ``python -m multimodal_df.train``, the recipe and the demo call.

>>> from multimodal_df.config import load_config
>>> from multimodal_df.training.run import run_training
>>> run_training(load_config("tiny"), ["vision", "audio", "fusion"], manifest="data.csv", out="runs/x")
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..config import Config
from ..errors import ConfigError
from ..pipeline.detector import resolve_device
from . import distributed
from .branches import train_audio, train_vision
from .cache import CachedClip, prepare
from .fusion_stage import train_fusion_stage
from .loop import seed_everything
from .manifests import ManifestRow, assign_splits, read_manifest

STAGES = ("prepare", "vision", "audio", "fusion")


def load_rows(cfg: Config, manifest: str | Path | None) -> list[ManifestRow]:
    """The manifest's rows with a split for each (by a stable hash of the group where the manifest gives none)."""
    path = manifest or cfg.manifest
    if not path:
        raise ConfigError("no manifest: pass --manifest or set `manifest:` in the config")
    return assign_splits(read_manifest(path), cfg.train.val_fraction, cfg.train.seed)


def report_failures(cache: dict[str, CachedClip]) -> None:
    """Print (to stderr) the files that could not be prepared, and why."""
    bad = [(p, c.error) for p, c in cache.items() if c.error]
    for p, e in bad[:20]:
        print(f"skipped {p}: {e}", file=sys.stderr)
    if len(bad) > 20:
        print(f"... and {len(bad) - 20} more unreadable files", file=sys.stderr)


def run_training(
    cfg: Config,
    stages: list[str],
    manifest: str | Path | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    vision_checkpoint: str | Path | None = None,
    audio_checkpoint: str | Path | None = None,
) -> dict[str, Path]:
    """Prepare the manifest's files (cached), then run ``stages`` in order; returns stage -> checkpoint directory.

    Branch stages write ``OUT/vision`` and ``OUT/audio``; fusion reads them (or the given checkpoints) and
    writes the full detector to ``OUT/detector``.

    Under ``torchrun`` with more than one process the branch stages train data-parallel (see
    :mod:`.distributed`); rank 0 prepares the cache first, and alone runs fusion and writes files.
    """
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {bad}; choose from {list(STAGES)}")
    dev, started = distributed.setup(resolve_device(device))
    try:
        written = _run_stages(cfg, stages, manifest, out, cache_dir, dev, resume, vision_checkpoint, audio_checkpoint)
    except BaseException:
        # No waiting for the other ranks: they may be inside a collective this rank will never join.
        distributed.teardown(started, wait=False)
        raise
    distributed.teardown(started)
    return written


def _run_stages(
    cfg: Config,
    stages: list[str],
    manifest: str | Path | None,
    out: str | Path | None,
    cache_dir: str | Path | None,
    dev: torch.device,
    resume: bool,
    vision_checkpoint: str | Path | None,
    audio_checkpoint: str | Path | None,
) -> dict[str, Path]:
    main = distributed.is_main()
    seed_everything(cfg.train.seed)
    out_dir = Path(out or cfg.out_dir)
    cache_root = Path(cache_dir or cfg.cache_dir)
    rows = load_rows(cfg, manifest)
    # Rank 0 fills the cache; the other ranks then only read it.
    with distributed.main_first():
        cache = prepare(rows, cfg, cache_root, str(dev), cfg.train.progress and main)
    if main:
        report_failures(cache)
    written: dict[str, Path] = {}
    for stage in stages:
        t0 = time.time()
        if stage == "fusion" and not main:
            continue  # fusion is small: rank 0 fits it alone while the others wait in teardown()
        if stage == "prepare":
            ok = sum(1 for c in cache.values() if not c.error)
            print(f"prepared {ok}/{len(cache)} files into {cache_root}", file=sys.stderr)
            continue
        seed_everything(cfg.train.seed)
        if stage == "vision":
            d = train_vision(cfg, rows, cache, out_dir / "vision", dev, resume)
        elif stage == "audio":
            d = train_audio(cfg, rows, cache, out_dir / "audio", dev, resume, cache_root / "pseudo_audio")
        else:
            vdir = Path(vision_checkpoint) if vision_checkpoint else out_dir / "vision"
            adir = Path(audio_checkpoint) if audio_checkpoint else out_dir / "audio"
            d = train_fusion_stage(
                cfg,
                rows,
                cache,
                out_dir / "detector",
                vdir if (vdir / "config.json").exists() else None,
                adir if (adir / "config.json").exists() else None,
                dev,
            )
        written[stage] = d
        if main:
            print(f"{stage}: wrote {d} in {time.time() - t0:.1f} s", file=sys.stderr)
    return written
