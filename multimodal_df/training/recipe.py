"""The recipe of the shipped model: real media only, pseudo-fakes, one command
(``python -m multimodal_df.recipe --data ../shared/data --out runs/shipped [--install]``).

1. Manifests from ``DATA/faces`` (talking-face clips, split by person) and ``DATA/librispeech``
   (split by speaker; ``test-other`` is a separate test set of other speakers and harder conditions).
   Every file is real; the trainer makes the fakes (``train.pseudo_fakes``).
2. Vision branch on the face clips: self-blended and cross-person blended faces.
3. Audio branch on LibriSpeech, twice: log-mel CNN alone, and with a small wav2vec 2.0 beside it;
   the one with the higher validation AUC (training generators only) is kept.
4. Fusion on composites of validation faces and validation speech (real or pseudo-fake each).
5. ``OUT/validation.json`` and ``OUT/validation.md``: AUC per pseudo-fake type, on the held-out
   generator, on the test speakers, and the calibration error; ``--install`` copies the detector
   into ``multimodal_df/shipped/``.

Stages can be run one at a time with ``--stages``; each reads what the earlier ones wrote.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from ..config import Config, load_config, parse_override
from ..errors import ConfigError
from ..pipeline.checkpoint import SHIPPED
from .run import run_training

CONFIG = "shipped"
"""The preset the recipe trains with (``multimodal_df/config/presets/shipped.yaml``)."""
FACE_VALID = ("d6", "d13", "d18", "d20")
"""Face clips held out for validation (each clip is a different person)."""
STAGES = ("manifests", "vision", "audio", "fusion", "report")


def speaker_split(speaker: str, valid_share: int = 5) -> str:
    """'valid' for about 1 in ``valid_share`` speakers (stable hash of the id), else 'train'."""
    h = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    return "valid" if h % valid_share == 0 else "train"


def write_manifests(data: Path, out: Path) -> tuple[Path, Path]:
    """``OUT/manifests/faces.csv`` and ``speech.csv`` (path,label,split,group); every file is real (label 0)."""
    faces = sorted((data / "faces").glob("*.mp4"))
    speech_train = sorted((data / "librispeech" / "train-clean-100").glob("*.flac"))
    speech_test = sorted((data / "librispeech" / "test-other").glob("*.flac"))
    if not faces or not speech_train:
        raise ConfigError(
            f"{data}: expected faces/*.mp4 and librispeech/train-clean-100/*.flac (see ../shared/data/README.md)"
        )
    d = out / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    f_csv, s_csv = d / "faces.csv", d / "speech.csv"
    lines = ["path,label,split,group"]
    for p in faces:
        lines.append(f"{p.resolve()},0,{'valid' if p.stem in FACE_VALID else 'train'},{p.stem}")
    f_csv.write_text("\n".join(lines) + "\n")
    lines = ["path,label,split,group"]
    for p in speech_train:
        spk = p.stem.split("-")[0]
        lines.append(f"{p.resolve()},0,{speaker_split(spk)},{spk}")
    for p in speech_test:
        lines.append(f"{p.resolve()},0,test,{p.stem.split('-')[0]}")
    s_csv.write_text("\n".join(lines) + "\n")
    return f_csv, s_csv


def recipe_config(config: str | Path = CONFIG, overrides: list[str] | None = None, progress: bool = True) -> Config:
    """The recipe's configuration: every file is real, so the fakes come from the pseudo-fake generators whatever it says."""
    cfg = load_config(config, {**dict(parse_override(s) for s in overrides or []), "train.pseudo_fakes": True})
    cfg.train.progress = progress
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
) -> dict[str, float]:
    """Run the recipe's ``stages`` (default: all of :data:`STAGES`) and return the seconds each took.

    With ``install``, the detector is copied into the package as the shipped model.
    """
    from .recipe_report import fuse_composites, report

    out, data = Path(out), Path(data)
    stages = list(stages or STAGES)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {bad}; choose from {STAGES}")
    cfg = recipe_config(config, overrides, progress)
    faces_csv, speech_csv = out / "manifests" / "faces.csv", out / "manifests" / "speech.csv"
    times: dict[str, float] = {}
    for stage in stages:
        t0 = time.time()
        print(f"recipe: {stage}", file=sys.stderr)
        if stage == "manifests":
            write_manifests(data, out)
        elif stage == "vision":
            run_training(cfg, ["vision"], faces_csv, out, out / "cache" / "faces", device)
        elif stage == "audio":
            train_audio_variants(cfg, out, speech_csv, device)
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


def train_audio_variants(cfg: Config, out: Path, speech_csv: Path, device: str = "auto") -> str:
    """Train the log-mel CNN alone and with wav2vec 2.0; keep the better one as OUT/audio; returns its name."""
    import copy

    scores = {}
    for name, w2v in (("mel", False), ("mel_wav2vec", True)):
        variant = copy.deepcopy(cfg)
        variant.audio.wav2vec.enabled = w2v
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
