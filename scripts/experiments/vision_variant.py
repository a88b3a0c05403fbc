"""Experiment: the face branch retrained with some ``train`` / ``vision`` config keys changed (e.g.
``train.soft_real_prob=0.5``), scored on dev images and videos (../shared/data/dev: selection and reporting only,
never training) and by the quality-shift check on real test faces.

Trains the face model with the recipe's preset, data split, pseudo-fakes and decoders of a finished recipe run (same
cache), puts it in place of that run's face branch in a copy of its detector (the fusion is untouched, so read the
vision AUC columns, not the fused ones), runs ``evaluate`` on the dev images and videos, then
``quality_shift.py`` on the new detector.

Run: MDF_RUN=RUN MDF_DEV_CSV=dev.csv PYTHONPATH=scripts/experiments python scripts/experiments/vision_variant.py OUT
KEY=VALUE... [--seed S] (KEY a ``vision`` key, or SECTION.KEY such as ``train.soft_real_prob``). Compare two runs'
``OUT/dev/predictions.jsonl`` with ``paired_auc.py --key vision``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
from pathlib import Path

import torch

# This folder is not a package: the sibling scripts are found through sys.path (PYTHONPATH=scripts/experiments).
from audio_variant import _value, swap_branch
from quality_shift import main as quality_shift

from multimodal_df.evaluate import main as evaluate_main
from multimodal_df.training.recipe import recipe_config
from multimodal_df.training.run import run_training

RUN = Path(os.environ.get("MDF_RUN", "runs/shipped"))
DEV_CSV = Path(os.environ.get("MDF_DEV_CSV", "dev.csv"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("changes", nargs="*", help="KEY=VALUE: a vision key, or SECTION.KEY")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=None, help="training seed (draws, initialisation); default the preset's")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = copy.deepcopy(recipe_config("shipped", [], False, RUN))
    if a.seed is not None:
        cfg.train.seed = a.seed
    for change in a.changes:
        key, _, text = change.partition("=")
        section, _, name = key.rpartition(".")
        target = getattr(cfg, section) if section else cfg.vision
        if not hasattr(target, name):
            raise SystemExit(f"config has no key {key!r}")
        setattr(target, name, _value(text))
    out: Path = a.out
    if not (out / "vision" / "config.json").exists():
        run_training(cfg, ["vision"], RUN / "manifests" / "faces.csv", out, RUN / "cache" / "faces", "cpu")
    with DEV_CSV.open() as f:
        rows = [r for r in csv.DictReader(f) if "/image/" in r["path"] or "/video/" in r["path"]]
    with (out / "dev_faces.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    swap_branch(RUN / "detector", out / "vision", out / "detector", "vision")
    evaluate_main(
        ["--checkpoint", str(out / "detector"), "--manifest", str(out / "dev_faces.csv"), "--out", str(out / "dev")]
    )
    quality_shift([str(out / "detector")])


if __name__ == "__main__":
    main()
