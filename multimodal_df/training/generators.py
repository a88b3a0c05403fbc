"""The recipe's generator stage: small neural vocoders and face decoders trained here on the real training split,
so that the branch stages can make pseudo-fakes that carry a neural generator's upsampling fingerprints.

Only people and speakers of the ``train`` split are used: validation and test people never meet a generator
that has seen them. Each generator is written to ``train.generators_dir`` as ``vocoder_<arch>/`` or
``decoder_<arch>/`` and skipped when already there, so the stage resumes after an interruption.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ConfigError
from .cache import prepare
from .manifests import assign_splits, read_manifest
from .pseudofakes.speech import VOCODER_PREFIX, standardize_speech

MAX_UTTERANCES = 240
"""Real utterances a vocoder learns from: enough speakers for its fingerprint, not its voice, to dominate."""
MAX_CROPS = 1500
"""Real face crops a decoder learns from (drawn evenly over the training people)."""
DECODER_STEPS = 900
"""Adam steps per face decoder (about 4 CPU-minutes at the default size and width)."""
VOCODER_SECONDS = 180.0
DECODER_SECONDS = 120.0
"""Wall-clock cap per generator (s). A generator is a fingerprint source, not a product: a few minutes give
its upsampling path's traces. The cap keeps the recipe within its time on a busy 2-core machine, at the
price of weights that depend on the machine's speed (the seed fixes everything else)."""


def _train_split(manifest: Path, cfg: Config, cache_dir: Path, device: str) -> list:
    rows = [r for r in assign_splits(read_manifest(manifest), cfg.train.val_fraction, cfg.train.seed) if r.label == 0]
    rows = [r for r in rows if r.split == "train"]
    cache = prepare(rows, cfg, cache_dir, device, progress=False)
    return [cache[r.path] for r in rows if not cache[r.path].error]


def train_generators(
    cfg: Config,
    speech_csv: Path,
    faces_csv: Path,
    out: Path,
    device: str = "cpu",
    threads: int | None = None,
    vocoder_overrides: dict[str, Any] | None = None,
    decoder_overrides: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Train every ``vocoder_*`` generator of ``train.audio_generators`` and every face decoder of
    ``train.face_decoders`` + ``face_holdout`` that ``train.generators_dir`` lacks; returns name -> folder.

    Vocoders use :func:`~.pseudofakes.vocoders.budget_config` (about 4-5 CPU-minutes each), decoders
    :data:`DECODER_STEPS` steps, each capped at :data:`VOCODER_SECONDS` / :data:`DECODER_SECONDS`; the
    ``*_overrides`` replace config fields (tests use tiny ones)."""
    from .pseudofakes.decoders import DecoderConfig, train_decoder
    from .pseudofakes.vocoders import budget_config, train_vocoder

    tc = cfg.train
    if not tc.generators_dir:
        raise ConfigError("train.generators_dir is not set: nowhere to write the generators")
    root = Path(tc.generators_dir)
    rng = np.random.default_rng(tc.seed + 11)
    written: dict[str, Path] = {}
    vocoders = [g for g in tc.audio_generators if g.startswith(VOCODER_PREFIX)]
    todo = [g for g in vocoders if not (root / g / "vocoder.json").exists()]
    if todo:
        clips = _train_split(speech_csv, cfg, out / "cache" / "speech", device)
        waves = [standardize_speech(c.waveform, cfg.decode.sample_rate) for c in clips if c.waveform is not None]
        waves = [waves[i] for i in sorted(rng.permutation(len(waves))[:MAX_UTTERANCES])]
        for g in todo:
            t0 = time.time()
            voc = train_vocoder(
                budget_config(
                    g[len(VOCODER_PREFIX) :],
                    **{
                        "seed": tc.seed,
                        "threads": threads,
                        "sample_rate": cfg.decode.sample_rate,
                        "max_seconds": VOCODER_SECONDS,
                        **(vocoder_overrides or {}),
                    },
                ),
                waves,
            )
            written[g] = voc.save(root / g)
            print(f"generators: {g} trained on {len(waves)} utterances in {time.time() - t0:.0f} s", file=sys.stderr)
    decoders = [*tc.face_decoders, *([tc.face_holdout] if tc.face_holdout else [])]
    todo = [d for d in decoders if not (root / f"decoder_{d}" / "decoder.json").exists()]
    if todo:
        clips = _train_split(faces_csv, cfg, out / "cache" / "faces", device)
        per_clip = max(1, MAX_CROPS // max(1, len(clips)))
        crops = [np.asarray(c.crops[i]) for c in clips for i in range(min(per_clip, len(c.crops)))]
        crops = [crops[i] for i in sorted(rng.permutation(len(crops))[:MAX_CROPS])]
        for d in todo:
            t0 = time.time()
            dcfg = {
                "arch": d,
                "seed": tc.seed,
                "steps": DECODER_STEPS,
                "threads": threads,
                "max_seconds": DECODER_SECONDS,
                **(decoder_overrides or {}),
            }
            dec = train_decoder(DecoderConfig(**dcfg), crops)
            written[f"decoder_{d}"] = dec.save(root / f"decoder_{d}")
            print(f"generators: decoder_{d} trained on {len(crops)} crops in {time.time() - t0:.0f} s", file=sys.stderr)
    return written
