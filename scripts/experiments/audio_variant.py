"""Experiment: the audio branch retrained with some config keys changed (e.g. ``frequency_scale=linear``), scored on
dev voices (../shared/data/dev: selection and reporting only, never training). Compare two such runs with
``paired_auc.py``; for a family held out of training, ``unseen_tts_check.py`` on ``OUT/detector``.

Trains the log-mel CNN with the recipe's preset, data split and pseudo-fakes of a finished recipe run (same cache),
puts it in place of that run's audio branch in a copy of its detector (the fusion is untouched: the audio AUC on
audio files is the branch's own), and runs ``evaluate`` on a manifest of the dev audio files.

Run: MDF_RUN=RUN MDF_DEV_CSV=dev.csv python scripts/experiments/audio_variant.py OUT KEY=VALUE... [--seed S]
(KEY an ``audio`` key, or SECTION.KEY such as ``train.audio_generators``; RUN from ``python -m multimodal_df.recipe
--data ../shared/data --out RUN``; the dev manifest from
``python -m multimodal_df.datasets prefixed ../shared/data/dev --out dev.csv``.) Values are parsed as JSON when they
can be (numbers, lists), else kept as strings.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shutil
from pathlib import Path

import torch

from multimodal_df.evaluate import main as evaluate_main
from multimodal_df.training.recipe import recipe_config
from multimodal_df.training.run import run_training

RUN = Path(os.environ.get("MDF_RUN", "runs/shipped"))
DEV_CSV = Path(os.environ.get("MDF_DEV_CSV", "dev.csv"))


def swap_branch(detector: Path, stage: Path, out: Path, branch: str = "audio") -> None:
    """A copy of ``detector`` whose ``branch`` (weights and its config section) comes from the checkpoint ``stage``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(detector, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg[branch] = json.loads((stage / "config.json").read_text())[branch]
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(stage / f"{branch}.safetensors", out / f"{branch}.safetensors")


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def variant_config(argv: list[str] | None, branch: str, description: str = __doc__ or ""):
    """Parse ``OUT KEY=VALUE... [--seed S] [--threads N]``: the output folder and the recipe's config of RUN with the
    changes (a bare KEY is a key of the ``branch`` section; SECTION.KEY reaches another section). ``description``: the
    calling script's docstring, for ``--help``."""
    p = argparse.ArgumentParser(description=description.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("changes", nargs="*", help=f"KEY=VALUE: a {branch} key, or SECTION.KEY")
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
        target = getattr(cfg, section) if section else getattr(cfg, branch)
        if not hasattr(target, name):
            raise SystemExit(f"config has no key {key!r}")
        setattr(target, name, _value(text))
    return a.out, cfg


def dev_subset(out: Path, name: str, folders: tuple[str, ...]) -> Path:
    """``out/name``: the rows of the dev manifest whose files lie in one of ``folders`` (e.g. ``("audio",)``)."""
    with DEV_CSV.open() as f:
        rows = [r for r in csv.DictReader(f) if any(f"/{d}/" in r["path"] for d in folders)]
    path = out / name
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> None:
    out, cfg = variant_config(argv, "audio")
    cfg.audio.wav2vec.enabled = False
    if not (out / "audio" / "config.json").exists():
        run_training(cfg, ["audio"], RUN / "manifests" / "speech.csv", out, RUN / "cache" / "speech", "cpu")
    dev = dev_subset(out, "dev_audio.csv", ("audio",))
    swap_branch(RUN / "detector", out / "audio", out / "detector")
    evaluate_main(["--checkpoint", str(out / "detector"), "--manifest", str(dev), "--out", str(out / "dev")])


if __name__ == "__main__":
    main()
