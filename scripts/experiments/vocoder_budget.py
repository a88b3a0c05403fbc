"""Experiment: the recipe's vocoders trained for longer, so that their copies of real speech come closer to it (a
vocoder trained for minutes leaves gross traces; today's voice cloners use well-trained ones). Writes a generators
folder whose vocoders replace the run's; point an experiment view's ``generators`` at it and retrain the voice model
with ``audio_variant.py`` to compare. Also prints each vocoder's log-mel distance to the real speech it copies, on
validation utterances (old and new), as the measure of how close the copies come.

Run: MDF_RUN=RUN python scripts/experiments/vocoder_budget.py OUT --scale 4 --archs hifigan,upsample [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from multimodal_df.config import Config
from multimodal_df.training.cache import prepare
from multimodal_df.training.generators import MAX_UTTERANCES, VOCODER_SECONDS
from multimodal_df.training.manifests import assign_splits, read_manifest
from multimodal_df.training.pseudofakes.speech import standardize_speech
from multimodal_df.training.pseudofakes.vocoders import Vocoder, budget_config, train_vocoder
from multimodal_df.training.recipe import recipe_config

RUN = Path(os.environ.get("MDF_RUN", "runs/shipped"))


def waves_of(cfg: Config, split: str) -> list[np.ndarray]:
    """Standardised real utterances of ``split`` from the run's speech manifest and cache."""
    rows = assign_splits(read_manifest(RUN / "manifests" / "speech.csv"), cfg.train.val_fraction, cfg.train.seed)
    rows = [r for r in rows if r.label == 0 and r.split == split]
    cache = prepare(rows, cfg, RUN / "cache" / "speech", "cpu", progress=False)
    clips = [cache[r.path] for r in rows if not cache[r.path].error and cache[r.path].waveform is not None]
    return [standardize_speech(c.waveform, cfg.decode.sample_rate) for c in clips]


def mel_distance(voc: Vocoder, waves: list[np.ndarray], sample_rate: int) -> float:
    """Mean absolute difference (dB) of 64-band log-mel spectra, copy against original, over ``waves``."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=64)
    out = []
    for w in waves:
        c = voc.resynthesize(w)
        a, b = (10 * torch.log10(mel(torch.from_numpy(x)) + 1e-8) for x in (w, c))
        out.append(float((a - b).abs().mean()))
    return float(np.mean(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--scale", type=float, default=4.0, help="steps and wall-clock cap, times the recipe's")
    p.add_argument("--archs", default="hifigan,istft,upsample,subpixel")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = recipe_config("shipped", [], False, RUN)
    rng = np.random.default_rng(cfg.train.seed + 11)
    train = waves_of(cfg, "train")
    train = [train[i] for i in sorted(rng.permutation(len(train))[:MAX_UTTERANCES])]
    val = [w[: 4 * cfg.decode.sample_rate] for w in waves_of(cfg, "valid")[:20]]
    for arch in a.archs.split(","):
        base = budget_config(arch)
        t0 = time.time()
        voc = train_vocoder(
            budget_config(
                arch,
                seed=cfg.train.seed,
                threads=a.threads,
                sample_rate=cfg.decode.sample_rate,
                steps=int(base.steps * a.scale),
                # Twice the scaled cap: the steps, not a busy machine, should end training.
                max_seconds=2 * VOCODER_SECONDS * a.scale,
            ),
            train,
        )
        voc.save(a.out / f"vocoder_{arch}")
        old = Vocoder.load(RUN / "generators" / f"vocoder_{arch}")
        print(
            f"{arch}: {voc.report.steps} steps in {time.time() - t0:.0f} s; log-mel distance to the real speech on "
            f"{len(val)} validation utterances {mel_distance(old, val, cfg.decode.sample_rate):.2f} dB (run's) -> "
            f"{mel_distance(voc, val, cfg.decode.sample_rate):.2f} dB (longer)",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    main()
