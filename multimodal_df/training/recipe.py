"""The recipe of the shipped model: real media only, pseudo-fakes, one command
(``python -m multimodal_df.recipe --data ../shared/data --out runs/shipped [--install]``).

1. Manifests of every real file in ``DATA`` (:mod:`.real_data`): photos, face clips and talking clips for
   the face model; LibriSpeech, the speech collection and the talking clips' voices for the speech model;
   split 70/15/15 by person or speaker (test people and speakers take no part in training or selection).
   Every file is real; the trainer makes the fakes (``train.pseudo_fakes``).
2. Generators (:mod:`.generators`): small neural vocoders and face decoders trained on the train split.
3. Vision branch: self-blended, cross-person blended and decoder-reconstructed faces (one decoder held out).
4. Audio branch, twice: log-mel CNN alone, and with a small wav2vec 2.0 beside it; the one with the higher
   validation AUC (training generators only) is kept. Pseudo-fakes from vocoders, WORLD, Griffin-Lim and
   two TTS engines (one vocoder held out), every window through the same random recording channel.
5. Fusion on composites of validation faces and validation speech (real or pseudo-fake each).
6. ``OUT/validation.json`` and ``OUT/validation.md``: AUC per pseudo-fake type, on the held-out
   generators, on the test people and speakers, and the calibration error; ``--install`` copies the
   detector into ``multimodal_df/shipped/``.

Stages can be run one at a time with ``--stages``; each reads what the earlier ones wrote.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from ..config import Config, load_config, parse_override
from ..errors import ConfigError
from ..pipeline.checkpoint import SHIPPED
from ..pipeline.detector import resolve_device
from .generators import train_generators
from .real_data import write_real_manifests
from .run import run_training

CONFIG = "shipped"
"""The preset the recipe trains with (``multimodal_df/config/presets/shipped.yaml``)."""
STAGES = ("manifests", "generators", "vision", "audio", "fusion", "report")
AUDIO_VARIANTS = {"mel": False, "mel_wav2vec": True}
"""Audio branches the recipe can train (name -> with wav2vec 2.0); it keeps the one that validates better."""


def recipe_config(
    config: str | Path = CONFIG,
    overrides: list[str] | None = None,
    progress: bool = True,
    out: str | Path | None = None,
) -> Config:
    """The recipe's configuration: every file is real, so the fakes come from the pseudo-fake generators whatever
    it says; trained generators live in ``OUT/generators`` unless the config names another folder."""
    cfg = load_config(config, {**dict(parse_override(s) for s in overrides or []), "train.pseudo_fakes": True})
    cfg.train.progress = progress
    if out is not None and not cfg.train.generators_dir:
        cfg.train.generators_dir = str(Path(out) / "generators")
    return cfg


def run_recipe(
    data: str | Path,
    out: str | Path,
    config: str | Path = CONFIG,
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
    device: str = "auto",
    progress: bool = True,
    install: bool = False,
    audio_variants: list[str] | None = None,
) -> dict[str, float]:
    """Run the recipe's ``stages`` (default: all of :data:`STAGES`) and return the seconds each took.

    With ``install``, the detector is copied into the package as the shipped model. ``audio_variants`` (default
    both of :data:`AUDIO_VARIANTS`) are the audio branches trained and chosen from.
    """
    from .recipe_report import fuse_composites, report

    out, data = Path(out), Path(data)
    stages = list(stages or STAGES)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {bad}; choose from {STAGES}")
    cfg = recipe_config(config, overrides, progress, out)
    faces_csv, speech_csv = out / "manifests" / "faces.csv", out / "manifests" / "speech.csv"
    times: dict[str, float] = {}
    for stage in stages:
        t0 = time.time()
        print(f"recipe: {stage}", file=sys.stderr)
        if stage == "manifests":
            write_real_manifests(data, out)
        elif stage == "generators":
            train_generators(cfg, speech_csv, faces_csv, out, str(resolve_device(device)))
        elif stage == "vision":
            run_training(cfg, ["vision"], faces_csv, out, out / "cache" / "faces", device)
        elif stage == "audio":
            train_audio_variants(cfg, out, speech_csv, device, audio_variants)
        elif stage == "fusion":
            fuse_composites(cfg, out, faces_csv, speech_csv, device)
        else:
            report(cfg, out, faces_csv, speech_csv, device)
        times[stage] = time.time() - t0
        print(f"recipe: {stage} done in {times[stage]:.0f} s", file=sys.stderr)
    if install:
        install_detector(out / "detector")
    return times


def install_detector(detector_dir: str | Path) -> Path:
    """Copy a trained detector into the package as the shipped model."""
    src = Path(detector_dir)
    if not (src / "config.json").exists():
        raise ConfigError(f"{src} has no detector to install")
    if SHIPPED.exists():
        shutil.rmtree(SHIPPED)
    shutil.copytree(src, SHIPPED)
    print(f"recipe: installed {src} as {SHIPPED}", file=sys.stderr)
    return SHIPPED


def train_audio_variants(
    cfg: Config, out: Path, speech_csv: Path, device: str = "auto", variants: list[str] | None = None
) -> str:
    """Train the log-mel CNN alone and with wav2vec 2.0 (or the ``variants`` named); keep the better one as
    OUT/audio; returns its name. A variant trained before (its checkpoint exists) is not trained again."""
    import copy

    names = list(variants or AUDIO_VARIANTS)
    bad = [v for v in names if v not in AUDIO_VARIANTS]
    if bad:
        raise ConfigError(f"unknown audio variant(s) {bad}; choose from {list(AUDIO_VARIANTS)}")
    scores = {}
    for name in names:
        w2v = AUDIO_VARIANTS[name]
        variant = copy.deepcopy(cfg)
        variant.audio.wav2vec.enabled = w2v
        if not (out / "variants" / name / "audio" / "config.json").exists():
            run_training(variant, ["audio"], speech_csv, out / "variants" / name, out / "cache" / "speech", device)
        ck = json.loads((out / "variants" / name / "audio" / "config.json").read_text())
        m, held = ck["audio"]["metrics"], ck["training"]["data"].get("audio_holdout")
        scores[name] = (round(m["val_auc"], 3), -round(m["val_loss"], 4))
        print(
            f"recipe: audio {name}: val AUC {m['val_auc']:.4f} (training generators), held out {held}: {m.get(f'val_auc_{held}', 'n/a')}",
            file=sys.stderr,
        )
    # Higher AUC (to 3 decimals) wins; on a tie the lower validation loss; on a full tie the first (simpler) one.
    best = max(scores, key=lambda k: scores[k])
    if (out / "audio").exists():
        shutil.rmtree(out / "audio")
    shutil.copytree(out / "variants" / best / "audio", out / "audio")
    (out / "audio_choice.json").write_text(
        json.dumps(
            {"kept": best, "scores": {k: {"val_auc": v[0], "val_loss": -v[1]} for k, v in scores.items()}}, indent=2
        )
    )
    print(f"recipe: audio keeps {best}", file=sys.stderr)
    return best
