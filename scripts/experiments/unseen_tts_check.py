"""Experiment: how a voice model does on a neural TTS family it never saw, against one trained with it.

Scores the validation and test speakers' real utterances (first 6 s, standardised) and one Kokoro-82M and one
espeak-ng fake per real utterance (the recipe's validation/test seeds; Kokoro's fakes are a pool of 96 per split)
with the audio branch of each detector given, and prints AUC per family. Kokoro's five voice styles and the
sentence list are shared by every split (speakers are mixtures of the styles drawn per fake), so for a model trained
with Kokoro this AUC is in-family, not held out.

Run: MDF_RUN=RUN python scripts/experiments/unseen_tts_check.py NAME=DETECTOR [NAME=DETECTOR ...]
(RUN: a recipe run with manifests and caches; e.g. old=runs/v3/detector new=runs/v4/detector.)
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from multimodal_df.audio.features import frame_windows
from multimodal_df.pipeline.checkpoint import load
from multimodal_df.training.branches import speech_validation_items, usable
from multimodal_df.training.cache import prepare
from multimodal_df.training.manifests import read_manifest
from multimodal_df.training.recipe import recipe_config

FAMILIES = ("kokoro", "espeak")


def main() -> None:
    torch.set_num_threads(2)
    run = Path(os.environ.get("MDF_RUN", "runs/shipped"))
    detectors = dict(a.split("=", 1) for a in sys.argv[1:])
    cfg = recipe_config("shipped", [], False, run)
    cfg.train.progress = False
    rows = read_manifest(run / "manifests" / "speech.csv")
    cache = prepare(rows, cfg, run / "cache" / "speech", progress=False)
    for split, offset in (("valid", 1), ("test", 2)):
        c = copy.deepcopy(cfg)
        c.train.audio_generators = list(FAMILIES)
        waves, kinds = speech_validation_items(
            c, usable(rows, cache, split, "audio"), run / "cache" / "speech" / "pseudo_audio", seed_offset=offset
        )
        kind = np.array(kinds)
        for name, path in detectors.items():
            model = load(path, device="cpu").audio.eval()
            z = []
            with torch.no_grad():
                for w in waves:
                    win, _ = frame_windows(w, 16000, model.args.window_s, model.args.hop_s)
                    z.append(float(model(torch.from_numpy(win))[1].mean()))
            score = np.array(z)
            real = score[kind == "real"]
            auc = {
                f: round(
                    roc_auc_score(
                        np.r_[np.zeros(len(real)), np.ones((kind == f).sum())], np.r_[real, score[kind == f]]
                    ),
                    3,
                )
                for f in FAMILIES
            }
            print(f"{split} {name}: {len(real)} real, AUC {auc}", flush=True)


if __name__ == "__main__":
    main()
