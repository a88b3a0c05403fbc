"""The branch stages: train the face model or the speech model on a prepared manifest, select the best
epoch on validation, calibrate, and write a single-branch checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio.features import window_samples
from ..audio.model import create_audio_model
from ..config import Config, FusionConfig, to_dict
from ..errors import ConfigError
from ..evaluation.metrics import auc_by_kind, clean, roc_auc
from ..pipeline.calibration import choose_threshold, fit_calibration
from ..pipeline.detector import Detector
from ..pipeline.schema import BranchMeta
from ..vision.crops import landmarks_to_crop
from ..vision.model import create_vision_model
from . import distributed
from .cache import CachedClip, crop_size
from .datasets import CropDataset, SpeechPseudoFakes, WindowDataset
from .loop import bce, fit
from .manifests import ManifestRow, summarize
from .pseudofakes.faces import cross_blend, self_blend
from .pseudofakes.speech import make_speech_fakes, standardize_speech

DECODER_MIX = {"strength": (0.5, 1.0), "partial_prob": 0.5, "work_scale": (0.75, 1.5), "colour_match": True}
"""How a decoder reconstruction becomes a generated-face pseudo-fake: blended at 50-100 % (whole crop, or a soft
face region half the time, as talking-head and inpainting pipelines paste a generated face into a real frame),
reconstructed at 0.75-1.5x the crop's pitch, colour matched so colour cast is not the tell."""


def face_decoders(cfg: Config, held_out: bool = True) -> dict[str, Any]:
    """The trained face decoders named by ``train.face_decoders`` (and ``face_holdout`` when ``held_out``),
    arch -> :class:`~.pseudofakes.decoders.FaceDecoder`; empty when the config names none."""
    tc = cfg.train
    names = [*tc.face_decoders, *([tc.face_holdout] if held_out and tc.face_holdout else [])]
    if not names:
        return {}
    from .pseudofakes.decoders import FaceDecoder

    root = Path(tc.generators_dir or "")
    missing = [n for n in names if not (root / f"decoder_{n}" / "decoder.json").exists()]
    if missing:
        raise ConfigError(
            f"face decoders {missing} are not trained in train.generators_dir={tc.generators_dir!r} "
            "(the recipe's 'generators' stage trains them)"
        )
    return {n: FaceDecoder.load(root / f"decoder_{n}") for n in names}


def decoder_fakes(decoder: Any, crops: np.ndarray, rng: np.random.Generator, spectrum_prob: float = 0.0) -> np.ndarray:
    """Generated-face pseudo-fakes of uint8 crops [N, S, S, 3] (same shape) by one face decoder; with probability
    ``spectrum_prob`` a reconstruction first gets its source's radial power spectrum (``train.decoder_spectrum_prob``)."""
    from .pseudofakes.decoders import ReconstructionMix, decoder_pseudofakes

    mix = ReconstructionMix(**{**DECODER_MIX, "spectrum_prob": spectrum_prob})
    return decoder_pseudofakes(decoder, np.asarray(crops), rng, mix)


BANK_SECONDS = 4.0
"""Training fakes are made from the first seconds of each real utterance (two training windows' worth)."""
VALID_SECONDS = 6.0
"""Validation and test utterances (real and their fakes) are cut to their first seconds, so that making one fake per
generator stays affordable and real and fake items have the same lengths."""


def _head(wave: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    return wave[: int(seconds * sample_rate)]


def metrics_by_kind(z: np.ndarray, kind: np.ndarray) -> dict[str, Any]:
    """Checkpoint metrics: validation AUC of real items against each kind of fake (``val_auc_<kind>``) and the counts."""
    table = auc_by_kind(z, kind)
    out: dict[str, Any] = {"val_counts": {g: v["n"] for g, v in table.items()}}
    out.update({f"val_auc_{g}": v["auc"] for g, v in table.items() if "auc" in v and table["real"]["n"]})
    return clean(out)


def finish_branch(logits: np.ndarray, y: np.ndarray, fc: FusionConfig) -> BranchMeta:
    """Calibration (kind and share of fakes from ``fc``), threshold and validation metrics of a trained branch from its
    validation logits."""
    cal = fit_calibration(logits, y, fc.calibration, fc.calibration_prior)
    p = cal(logits)
    thr = choose_threshold(p, y, fc.threshold_rule, fc.threshold)
    return BranchMeta(cal, thr, clean({"val_auc": roc_auc(y, p), "val_n": len(y), "val_loss": bce(logits, y)}))


def usable(
    rows: list[ManifestRow], cache: dict[str, CachedClip], split: str, need: str
) -> list[tuple[ManifestRow, CachedClip]]:
    out = []
    for r in rows:
        c = cache[r.path]
        if r.split != split or c.error:
            continue
        if need == "vision" and len(c.crops) == 0:
            continue
        if need == "audio" and c.waveform is None:
            continue
        out.append((r, c))
    return out


def _subsample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.linspace(0, n - 1, k).round().astype(int)


def _crop_landmarks(cfg: Config, c: CachedClip, i: int) -> np.ndarray | None:
    # Images scored whole (no face found) have no landmarks to build a blend mask from.
    lm = c.landmarks[i]
    return landmarks_to_crop(lm, c.boxes[i], cfg.faces.margin, crop_size(cfg)) if np.abs(lm).sum() > 0 else None


def vision_validation_sets(
    cfg: Config, valid: list[tuple[ManifestRow, CachedClip]], pseudo: bool
) -> tuple[list[tuple[np.ndarray, np.ndarray, int, int]], list[str]]:
    """Validation clips as (crops, times, frames searched, label), and a kind per clip.

    The clips as given ("real"/"fake"), plus with ``pseudo`` a fixed self-blended copy of every real
    clip ("self_blend") and a copy blended with the faces of the next validation clip ("cross_blend").
    With trained face decoders (``train.face_decoders`` and ``face_holdout``), a reconstruction of every real
    clip per decoder ("decoder_<arch>"). Seeded by ``train.seed``: the same sets in training, fusion and the report.
    """
    val_sets = [(np.asarray(c.crops), c.crop_times, c.num_frames, r.vision_target) for r, c in valid]
    kinds = ["real" if r.vision_target == 0 else "fake" for r, _ in valid]
    if not pseudo:
        return val_sets, kinds
    rng = np.random.default_rng(cfg.train.seed + 1)
    blendable = []
    for r, c in valid:
        lms = [_crop_landmarks(cfg, c, i) for i in range(len(c.crops))]
        if r.vision_target == 0 and lms and all(lm is not None for lm in lms):
            blendable.append((c, lms))
    for j, (c, lms) in enumerate(blendable):
        blended = np.stack([self_blend(np.asarray(c.crops[i]), lms[i], rng).image for i in range(len(c.crops))])
        val_sets.append((blended, c.crop_times, c.num_frames, 1))
        kinds.append("self_blend")
        if len(blendable) > 1 and cfg.train.cross_blend_prob > 0:
            d, dl = blendable[(j + 1) % len(blendable)]
            swapped = [
                cross_blend(
                    np.asarray(c.crops[i]), lms[i], np.asarray(d.crops[i % len(d.crops)]), dl[i % len(d.crops)], rng
                ).image
                for i in range(len(c.crops))
            ]
            val_sets.append((np.stack(swapped), c.crop_times, c.num_frames, 1))
            kinds.append("cross_blend")
    # Generated-face pseudo-fakes of every real validation clip, one set per decoder (the held-out one included).
    for arch, dec in face_decoders(cfg).items():
        drng = np.random.default_rng([cfg.train.seed + 1, sum(map(ord, arch))])
        for r, c in valid:
            if r.vision_target == 0 and len(c.crops):
                val_sets.append((decoder_fakes(dec, np.asarray(c.crops), drng), c.crop_times, c.num_frames, 1))
                kinds.append(f"decoder_{arch}")
    return val_sets, kinds


def speech_validation_items(
    cfg: Config, valid: list[tuple[ManifestRow, CachedClip]], fake_cache: Path | None = None, seed_offset: int = 1
) -> tuple[list[np.ndarray], list[str]]:
    """Validation utterances and a kind per item: each real one standardised ("real"), fakes as given
    ("fake"), and with ``train.pseudo_fakes`` one fake per real utterance from every generator in
    ``train.audio_generators`` (the held-out one included), kind = generator name."""
    sr, tc = cfg.decode.sample_rate, cfg.train
    if not tc.pseudo_fakes:
        return [c.waveform for _, c in valid], ["real" if r.audio_target == 0 else "fake" for r, _ in valid]  # type: ignore[misc]
    reals = [_head(standardize_speech(c.waveform, sr), VALID_SECONDS, sr) for r, c in valid if r.audio_target == 0]  # type: ignore[arg-type]
    waves = list(reals) + [c.waveform for r, c in valid if r.audio_target == 1]
    kinds = ["real"] * len(reals) + ["fake"] * (len(waves) - len(reals))
    for g in tc.audio_generators:
        fakes = make_speech_fakes(reals, g, sr, tc.seed + seed_offset, tc.progress, fake_cache, tc.generators_dir)
        waves += fakes
        kinds += [g] * len(fakes)
    return waves, kinds  # type: ignore[return-value]


def train_vision(
    cfg: Config, rows: list[ManifestRow], cache: dict[str, CachedClip], out: Path, device: torch.device, resume: bool
) -> Path:
    """Train the face-crop classifier; returns the checkpoint directory."""
    train = usable(rows, cache, "train", "vision")
    valid = usable(rows, cache, "valid", "vision")
    if not train or not valid:
        raise ConfigError(
            f"vision: need clips with faces in train and valid splits (have {len(train)} and {len(valid)})"
        )
    pseudo = cfg.train.pseudo_fakes

    items: list[tuple[np.ndarray, int, np.ndarray | None, int]] = []
    decoders = list(face_decoders(cfg, held_out=False).values()) if pseudo else []
    drng = np.random.default_rng(cfg.train.seed + 7)
    n_decoded = 0
    for k, (r, c) in enumerate(train):
        picked = _subsample(len(c.crops), cfg.train.max_crops_per_video)
        for i in picked:
            items.append((c.crops[i], r.vision_target, None, k))
            lm = _crop_landmarks(cfg, c, i) if pseudo and r.vision_target == 0 else None
            if lm is not None:
                items.append((c.crops[i], 1, lm, k))
        if decoders and r.vision_target == 0:
            # Made once (a reconstruction costs tens of ms), one decoder per clip, drawn in turn.
            chosen = [i for i in picked if drng.random() < cfg.train.decoder_share]
            if chosen:
                dec = decoders[k % len(decoders)]
                sources = np.stack([np.asarray(c.crops[i]) for i in chosen])
                for img in decoder_fakes(dec, sources, drng, cfg.train.decoder_spectrum_prob):
                    items.append((img, 1, None, k))
                n_decoded += len(chosen)
    val_sets, val_kind = vision_validation_sets(cfg, valid, pseudo)
    # The held-out decoder is made and reported but never picks the epoch nor fits the calibration.
    vsel = np.array(val_kind) != (f"decoder_{cfg.train.face_holdout}" if cfg.train.face_holdout else None)
    model = create_vision_model(cfg.vision)
    if cfg.train.freeze_backbone:
        model.freeze_backbone()
    det = Detector(cfg.decode, cfg.faces, vision=model, device=device, batch_size=cfg.train.batch_size)
    y_val = np.array([v[3] for v in val_sets])

    def val_logits(m: nn.Module) -> np.ndarray:
        return np.array([det.vision_output(crops, times, n).logit for crops, times, n, _ in val_sets])  # type: ignore[union-attr]

    def evaluate(m: nn.Module) -> dict[str, float]:
        z = val_logits(m)[vsel]
        return {"auc": roc_auc(y_val[vsel], z), "loss": bce(z, y_val[vsel])}

    n_blend = sum(1 for it in items if it[2] is not None)
    print(
        f"vision: {len(items)} crops ({n_blend} blends, {n_decoded} decoder reconstructions) from {len(train)} train "
        f"clips; {len(val_sets)} valid clips",
        file=sys.stderr,
    )
    ds = CropDataset(
        items,
        cfg.train.augment,
        cfg.train.seed,
        cfg.train.degrade_prob,
        cfg.train.cross_blend_prob if pseudo else 0.0,
        cfg.train.soft_real_prob,
    )
    best = fit(model, ds, evaluate, cfg.train, out, device, resume)
    if not distributed.is_main():
        return out  # under torchrun only rank 0 calibrates and writes the checkpoint
    z = val_logits(model)
    det.vision_meta = finish_branch(z[vsel], y_val[vsel], cfg.fusion)
    det.vision_meta.metrics.update(best)
    det.vision_meta.metrics.update(metrics_by_kind(z, np.array(val_kind)))
    det.training_data = {
        "manifest": summarize(rows),
        "stage": "vision",
        "train_crops": len(items),
        "self_blended_crops": n_blend,
        "decoder_crops": n_decoded,
        "face_decoders": list(cfg.train.face_decoders),
        "face_holdout": cfg.train.face_holdout,
        "pseudo_fakes": pseudo,
    }
    det.training_config = to_record(cfg)
    return det.save(out)


def train_audio(
    cfg: Config,
    rows: list[ManifestRow],
    cache: dict[str, CachedClip],
    out: Path,
    device: torch.device,
    resume: bool,
    fake_cache: Path | None = None,
) -> Path:
    """Train the speech classifier; returns the checkpoint directory.

    With ``train.pseudo_fakes`` the real utterances of the train split are matched by fakes from
    ``train.audio_generators`` (less the held-out one); validation has each real utterance and one fake
    per generator, model selection looks only at the training generators, and the AUC on each
    generator (the held-out one included) is stored in the checkpoint's metrics.
    """
    train = usable(rows, cache, "train", "audio")
    valid = usable(rows, cache, "valid", "audio")
    if not train or not valid:
        raise ConfigError(
            f"audio: need clips with audio in train and valid splits (have {len(train)} and {len(valid)})"
        )
    sr = cfg.decode.sample_rate
    tc = cfg.train
    model = create_audio_model(cfg.audio, sr)
    det = Detector(cfg.decode, cfg.faces, audio=model, device=device, batch_size=tc.batch_size)
    length, hop = window_samples(cfg.audio.window_s, sr), window_samples(cfg.audio.hop_s, sr)
    info: dict[str, Any] = {}
    if tc.pseudo_fakes:
        used = [g for g in tc.audio_generators if g != tc.audio_holdout]
        reals = [standardize_speech(c.waveform, sr) for r, c in train if r.audio_target == 0]  # type: ignore[arg-type]
        t0 = time.time()
        # Fakes are made once per (shortened) utterance: the training windows are a few seconds long, and
        # neural vocoders and TTS run near real time on a CPU.
        sources = [_head(w, BANK_SECONDS, sr) for w in reals]
        banks = {
            g: make_speech_fakes(sources, g, sr, tc.seed, tc.progress, fake_cache, tc.generators_dir)
            for g in used
            if g != "griffin_lim"
        }
        ds: torch.utils.data.Dataset = SpeechPseudoFakes(
            reals,
            banks,
            used,
            length,
            tc.audio_epoch_windows,
            tc.augment,
            tc.seed,
            sr,
            tc.channel_prob,
            tc.rawboost_prob,
            tc.real_channel_prob,
            tc.audio_partial_prob,
            sources,
        )
        print(
            f"audio: pseudo-fakes {used} made in {time.time() - t0:.0f} s; held out: {tc.audio_holdout}",
            file=sys.stderr,
        )
        info = {"audio_generators": used, "audio_holdout": tc.audio_holdout, "real_utterances": len(reals)}
    else:
        ds = WindowDataset([(c.waveform, r.audio_target) for r, c in train], length, hop, tc.augment, tc.seed)  # type: ignore[misc]
    val_waves, val_kind = speech_validation_items(cfg, valid, fake_cache)
    kinds = np.array(val_kind)
    y_val = (kinds != "real").astype(int)
    select = kinds != (tc.audio_holdout if tc.pseudo_fakes else None)  # the held-out generator never picks the epoch

    def val_logits(m: nn.Module) -> np.ndarray:
        return np.array([det.audio_output(w, sr).logit for w in val_waves])  # type: ignore[union-attr]

    def evaluate(m: nn.Module) -> dict[str, float]:
        z = val_logits(m)[select]
        return {"auc": roc_auc(y_val[select], z), "loss": bce(z, y_val[select])}

    print(f"audio: {len(ds)} windows from {len(train)} train clips; {len(val_waves)} valid items", file=sys.stderr)
    best = fit(model, ds, evaluate, tc, out, device, resume)
    if not distributed.is_main():
        return out  # under torchrun only rank 0 calibrates and writes the checkpoint
    z = val_logits(model)
    # Calibration and threshold from the training generators only: the held-out one stays unseen.
    det.audio_meta = finish_branch(z[select], y_val[select], cfg.fusion)
    det.audio_meta.metrics.update(best)
    det.audio_meta.metrics.update(metrics_by_kind(z, kinds))
    det.training_data = {"manifest": summarize(rows), "stage": "audio", "train_windows": len(ds), **info}
    det.training_config = to_record(cfg)
    return det.save(out)


def to_record(cfg: Config) -> dict[str, Any]:
    """The training configuration as a checkpoint keeps it, for the record."""
    return to_dict(cfg)
