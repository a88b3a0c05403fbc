"""The recipe of the shipped model: real media only, pseudo-fakes, one command.

    python -m multimodal_df.recipe --data ../shared/data --out runs/shipped [--install]

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

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path

from .errors import CheckpointError, ConfigError

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "shipped.yaml"
SHIPPED = Path(__file__).resolve().parent / "shipped"
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
        raise ConfigError(f"{data}: expected faces/*.mp4 and librispeech/train-clean-100/*.flac (see ../shared/data/README.md)")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.recipe", description="Train the shipped model from real media only.")
    p.add_argument("--data", default="../shared/data", help="folder with faces/ and librispeech/ (default ../shared/data)")
    p.add_argument("--out", default="runs/shipped", help="run directory")
    p.add_argument("--config", default=str(CONFIG), help="YAML config (default configs/shipped.yaml)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, passed to every stage")
    p.add_argument("--install", action="store_true", help="copy OUT/detector into multimodal_df/shipped/")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from . import train

    args = build_parser().parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"error: unknown stage(s) {bad}; choose from {STAGES}", file=sys.stderr)
        return 2
    # Every file is real: the fakes come from the pseudo-fake generators, whatever the config says.
    common = ["--config", args.config, "--device", args.device, *sum((["--set", s] for s in args.set), []), "--set", "train.pseudo_fakes=true"]
    if args.no_progress:
        common.append("--no-progress")
    faces_csv, speech_csv = out / "manifests" / "faces.csv", out / "manifests" / "speech.csv"
    times: dict[str, float] = {}
    try:
        for stage in stages:
            t0 = time.time()
            print(f"recipe: {stage}", file=sys.stderr)
            if stage == "manifests":
                write_manifests(data, out)
                rc = 0
            elif stage == "vision":
                rc = train.main(["--stage", "vision", "--manifest", str(faces_csv), "--out", str(out), "--cache-dir", str(out / "cache" / "faces"), *common])
            elif stage == "audio":
                rc = _audio(out, speech_csv, common)
            elif stage == "fusion":
                from .recipe_fusion import fuse_composites

                rc = fuse_composites(out, faces_csv, speech_csv, args.config, args.set, args.device)
            else:
                from .recipe_fusion import report

                rc = report(out, faces_csv, speech_csv, args.config, args.set, args.device)
            times[stage] = time.time() - t0
            print(f"recipe: {stage} done in {times[stage]:.0f} s", file=sys.stderr)
            if rc != 0:
                return rc
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.install:
        if not (out / "detector" / "config.json").exists():
            print(f"error: {out / 'detector'} has no detector to install", file=sys.stderr)
            return 2
        if SHIPPED.exists():
            shutil.rmtree(SHIPPED)
        shutil.copytree(out / "detector", SHIPPED)
        print(f"recipe: installed {out / 'detector'} as {SHIPPED}", file=sys.stderr)
    print(f"recipe: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())}; total {sum(times.values()) / 60:.1f} min", file=sys.stderr)
    return 0


def _audio(out: Path, speech_csv: Path, common: list[str]) -> int:
    """Train the log-mel CNN alone and with wav2vec 2.0; keep the better one as OUT/audio."""
    import json

    from . import train

    scores = {}
    for name, w2v in (("mel", "false"), ("mel_wav2vec", "true")):
        rc = train.main(
            ["--stage", "audio", "--manifest", str(speech_csv), "--out", str(out / "variants" / name), "--cache-dir", str(out / "cache" / "speech"), *common, "--set", f"audio.wav2vec.enabled={w2v}"]
        )
        if rc != 0:
            return rc
        ck = json.loads((out / "variants" / name / "audio" / "config.json").read_text())
        m, held = ck["audio"]["metrics"], ck["training_data"].get("audio_holdout")
        scores[name] = (round(m["val_auc"], 3), -round(m["val_loss"], 4))
        print(f"recipe: audio {name}: val AUC {m['val_auc']:.4f} (training generators), held out {held}: {m.get(f'val_auc_{held}', 'n/a')}", file=sys.stderr)
    # Higher AUC (to 3 decimals) wins; on a tie the lower validation loss; on a full tie the first (simpler) one.
    best = max(scores, key=lambda k: scores[k])
    if (out / "audio").exists():
        shutil.rmtree(out / "audio")
    shutil.copytree(out / "variants" / best / "audio", out / "audio")
    (out / "audio_choice.json").write_text(json.dumps({"kept": best, "scores": {k: {"val_auc": v[0], "val_loss": -v[1]} for k, v in scores.items()}}, indent=2))
    print(f"recipe: audio keeps {best}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
