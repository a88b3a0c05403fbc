"""The fusion stage: fit late fusion on the branches' outputs for validation data they did not train on,
with k-fold cross-fitting; calibrate and pick the threshold on out-of-fold scores; write the full detector."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..errors import ConfigError
from ..evaluation.metrics import clean, expected_calibration_error, roc_auc
from ..fusion.model import FusionInputs, fusion_logits, single_modality_variants, stratified_folds, train_fusion
from ..fusion.sync import SYNC_FEATURES, sync_output
from ..pipeline.calibration import Calibration, choose_threshold, fit_calibration
from ..pipeline.detector import Detector
from ..pipeline.schema import BranchMeta
from .branches import to_record
from .cache import CachedClip
from .manifests import ManifestRow, summarize
from .pseudofakes.av import shift_audio, swap_audio


def train_fusion_stage(
    cfg: Config,
    rows: list[ManifestRow],
    cache: dict[str, CachedClip],
    out: Path,
    vision_dir: Path | None,
    audio_dir: Path | None,
    device: torch.device,
) -> Path:
    """Fit fusion on branch outputs for the validation split; returns the detector directory."""
    vdet = Detector.load(vision_dir, str(device)) if vision_dir else None
    adet = Detector.load(audio_dir, str(device)) if audio_dir else None
    if vdet is None and adet is None:
        raise ConfigError(
            "fusion: no branch checkpoint found (train --stage vision / audio first, or pass --vision-checkpoint / --audio-checkpoint)"
        )
    valid = [(r, cache[r.path]) for r in rows if r.split == "valid" and not cache[r.path].error]
    sr = cfg.decode.sample_rate
    use_sync = cfg.fusion.use_sync and vdet is not None and adet is not None
    rng = np.random.default_rng(cfg.train.seed + 3)
    outputs: list[tuple[Any, ...]] = []
    labels, lv, la = [], [], []
    synced = []  # (row, clip, mouth track, vision output): real-audio clips usable for AV pseudo-fakes
    for r, c in valid:
        v = vdet.vision_output(np.asarray(c.crops), c.crop_times, c.num_frames) if vdet and len(c.crops) else None
        a = adet.audio_output(c.waveform, sr) if adet else None
        if v is None and a is None:
            continue
        s = None
        if use_sync and v is not None and a is not None and np.abs(c.landmarks).sum() > 0:
            mouth = c.mouth
            s = sync_output(mouth, c.waveform, sr) if mouth is not None else None  # type: ignore[arg-type]
            if mouth is not None and r.label == 0:
                synced.append((r, c, mouth, v))
        outputs.append((v, a, s))
        labels.append(r.label)
        lv.append(-1 if r.video_label is None else r.video_label)
        la.append(-1 if r.audio_label is None else r.audio_label)
    if use_sync and cfg.train.pseudo_fakes and len(synced) > 1:
        # Audio-visual pseudo-fakes from real clips: the audio shifted by 0.3-0.9 s either way, and the
        # audio of the next clip. Each modality is still real on its own, so both per-modality labels stay 0.
        for k, (_, c, mouth, v) in enumerate(synced):
            shifted = shift_audio(c.waveform, sr, float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.9)))  # type: ignore[arg-type]
            swapped = swap_audio(c.waveform, synced[(k + 1) % len(synced)][1].waveform)  # type: ignore[arg-type]
            for w in (shifted, swapped):
                outputs.append((v, adet.audio_output(w, sr), sync_output(mouth, w, sr)))  # type: ignore[union-attr]
                labels.append(1)
                lv.append(0)
                la.append(0)
        print(
            f"fusion: {2 * len(synced)} audio-visual pseudo-fakes (shifted, swapped) from {len(synced)} real clips",
            file=sys.stderr,
        )
    training_data = {
        "manifest": summarize(rows),
        "stage": "fusion",
        "vision": vdet.training_data if vdet else None,
        "audio": adet.training_data if adet else None,
    }
    return fit_fusion_detector(
        cfg, outputs, np.array(labels), np.array(lv), np.array(la), vdet, adet, training_data, out, device
    )


def fit_fusion_detector(
    cfg: Config,
    outputs: list[tuple[Any, ...]],
    y: np.ndarray,
    y_v: np.ndarray,
    y_a: np.ndarray,
    vdet: Detector | None,
    adet: Detector | None,
    training_data: dict[str, Any],
    out: Path,
    device: torch.device,
) -> Path:
    """Cross-fit every fusion method on branch ``outputs`` [(vision, audio)] with labels ``y`` and
    per-modality labels (-1 unknown), keep one, calibrate and threshold on out-of-fold scores, and
    save the full detector to ``out``."""
    vision = vdet.vision if vdet else None
    audio = adet.audio if adet else None
    if len(y) < 4 or len(np.unique(y)) < 2:
        raise ConfigError(f"fusion: need at least 4 validation clips of both classes (have {len(y)})")
    sync_dim = SYNC_FEATURES if cfg.fusion.use_sync and vision is not None and audio is not None else 0
    x = FusionInputs.from_outputs(outputs, vision.embed_dim if vision else 0, audio.embed_dim if audio else 0, sync_dim)
    fc = cfg.fusion
    k = int(min(fc.folds, np.bincount(y).min()))
    folds = stratified_folds(y, max(2, k), cfg.train.seed)
    kw = dict(
        hidden=fc.hidden,
        modality_dropout=fc.modality_dropout,
        epochs=fc.epochs,
        lr=fc.lr,
        weight_decay=fc.weight_decay,
        seed=cfg.train.seed,
        calibrations=(
            vdet.vision_meta.calibration if vdet and vdet.vision_meta else None,
            adet.audio_meta.calibration if adet and adet.audio_meta else None,
        ),
    )
    # Out-of-fold scores for every input pattern (both / vision only / audio only), so the chosen
    # method, the calibration and the threshold are right for missing modalities too.
    results: dict[str, dict[str, Any]] = {}
    oof: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    patterns = {0: "as_given", 1: "vision_only", 2: "audio_only"}
    for method in fc.methods:
        zs, ys, ps = [], [], []
        for f in np.unique(folds):
            tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            m = train_fusion(method, x.subset(tr), y[tr], y_v=y_v[tr], y_a=y_a[tr], **kw)  # type: ignore[arg-type]
            xv, yv_, pv = single_modality_variants(x.subset(te), y[te], y_v[te], y_a[te])
            zs.append(fusion_logits(m, xv))
            ys.append(yv_)
            ps.append(pv)
        z, yy, pat = np.concatenate(zs), np.concatenate(ys), np.concatenate(ps)
        oof[method] = (z, yy, pat)
        results[method] = {
            "oof_auc": roc_auc(yy, z),
            **{f"oof_auc_{name}": roc_auc(yy[pat == i], z[pat == i]) for i, name in patterns.items()},
        }
        print(
            f"fusion {method}: out-of-fold AUC {results[method]['oof_auc']:.4f} on {len(yy)} items ({len(y)} clips and their single-modality views)",
            file=sys.stderr,
        )
    eligible = [m for m in fc.methods if m != "mlp" or len(y) >= fc.mlp_min_clips] or list(fc.methods)
    best = eligible[0]
    for m in eligible[1:]:
        if (
            np.nan_to_num(results[m]["oof_auc"], nan=-1)
            >= np.nan_to_num(results[best]["oof_auc"], nan=-1) + fc.min_gain
        ):
            best = m
    if "mlp" in fc.methods and "mlp" not in eligible:
        print(
            f"fusion: mlp not eligible with {len(y)} < {fc.mlp_min_clips} clips (fusion.mlp_min_clips)", file=sys.stderr
        )
    print(f"fusion: keeping {best}", file=sys.stderr)
    z, yy, _ = oof[best]
    # noisy_or combines probabilities that are calibrated already; recalibrating would break the rule that
    # the fused score lies between the larger branch score and the sum of both.
    cal = Calibration() if best == "noisy_or" else fit_calibration(z, yy, fc.calibration, fc.calibration_prior)
    thr = choose_threshold(cal(z), yy, fc.threshold_rule, fc.threshold)
    final = train_fusion(best, x, y, y_v=y_v, y_a=y_a, **kw)  # type: ignore[arg-type]
    detector = Detector(
        cfg.decode,
        cfg.faces,
        vision=vision,
        audio=audio,
        fusion=final,
        vision_meta=vdet.vision_meta if vdet else None,
        audio_meta=adet.audio_meta if adet else None,
        fusion_meta=BranchMeta(
            cal,
            thr,
            clean(
                {
                    "method": best,
                    "methods": results,
                    "oof_items": len(yy),
                    "clips": len(y),
                    "folds": len(np.unique(folds)),
                    "oof_ece": expected_calibration_error(yy, cal(z)),
                }
            ),
        ),
        training_data=training_data,
        training_config=to_record(cfg),
        device=device,
    )
    return detector.save(out)
