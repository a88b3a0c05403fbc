"""Experiment: the audio branch trained with per-band log-mel mean normalisation (``audio.mel_norm: band``) against
the recipe's audio branch (``global``), on dev voices (../shared/data/dev: selection and reporting only, never training).

Trains the log-mel CNN with the recipe's preset, data split and pseudo-fakes of a finished recipe run (same cache), puts
it in place of that run's audio branch in a copy of its detector (the fusion is untouched: the audio AUC on audio files
is the branch's own), and runs ``evaluate`` on a manifest of the dev audio files.

Run: MDF_RUN=RUN python scripts/experiments/audio_mel_norm.py OUT [band|global] [THREADS]
(RUN from ``python -m multimodal_df.recipe --data ../shared/data --out RUN``; the dev manifest from
``python -m multimodal_df.datasets prefixed ../shared/data/dev --out dev.csv``, given as MDF_DEV_CSV.)
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from multimodal_df.evaluate import main as evaluate_main
from multimodal_df.training.recipe import recipe_config
from multimodal_df.training.run import run_training

RUN = Path(os.environ.get("MDF_RUN", "runs/shipped"))
DEV_CSV = Path(os.environ.get("MDF_DEV_CSV", "dev.csv"))


def swap_audio(detector: Path, audio: Path, out: Path) -> None:
    """A copy of ``detector`` whose audio branch (weights and its config section) comes from checkpoint ``audio``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(detector, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["audio"] = json.loads((audio / "config.json").read_text())["audio"]
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(audio / "audio.safetensors", out / "audio.safetensors")


def main() -> None:
    out = Path(sys.argv[1])
    norm = sys.argv[2] if len(sys.argv) > 2 else "band"
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    cfg = copy.deepcopy(recipe_config("shipped", [], False, RUN))
    cfg.audio.wav2vec.enabled = False
    cfg.audio.mel_norm = norm
    if not (out / "audio" / "config.json").exists():
        run_training(cfg, ["audio"], RUN / "manifests" / "speech.csv", out, RUN / "cache" / "speech", "cpu")
    with DEV_CSV.open() as f:
        rows = [r for r in csv.DictReader(f) if "/audio/" in r["path"]]
    with (out / "dev_audio.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    swap_audio(RUN / "detector", out / "audio", out / "detector")
    evaluate_main(
        ["--checkpoint", str(out / "detector"), "--manifest", str(out / "dev_audio.csv"), "--out", str(out / "dev")]
    )


if __name__ == "__main__":
    main()
