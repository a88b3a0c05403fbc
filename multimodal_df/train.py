"""Train each modality, then fuse.

    python -m multimodal_df.train --stage prepare --config configs/x.yaml --manifest data.csv
    python -m multimodal_df.train --stage vision  --config configs/x.yaml
    python -m multimodal_df.train --stage audio   --config configs/x.yaml
    python -m multimodal_df.train --stage fusion  --config configs/x.yaml

Each branch stage writes a loadable single-branch checkpoint to ``OUT/vision`` or ``OUT/audio``
(best epoch by validation AUC, calibrated on validation), with ``log.jsonl`` (metrics per epoch)
and ``last/`` (resume state). The fusion stage reads both, trains fusion on the branches'
outputs for the validation split (data the branches did not train on) with k-fold
cross-fitting, calibrates and picks the threshold on the out-of-fold scores, and writes the
full detector to ``OUT/detector``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .config import Config, TrainConfig, load_config, parse_override
from .data import CachedClip, ManifestRow, assign_splits, prepare, read_manifest, summarize
from .detector import BranchMeta, Detector, resolve_device
from .errors import CheckpointError, ConfigError
from .weights import load_weights, save_weights
from .fusion.model import FusionInputs, choose_threshold, fit_calibration, fusion_logits, single_modality_variants, stratified_folds, train_fusion
from .metrics import auc_by_kind, clean, expected_calibration_error, roc_auc
from .sync import SYNC_FEATURES, measure_mouth, shift_audio, swap_audio, sync_output
from .pseudofakes import AUDIO_GENERATORS, cross_blend, fake_speech, griffin_lim_resynth, landmarks_to_crop, resample, self_blend, standardize_speech
from .audio.model import create_audio_model
from .vision.model import create_vision_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_schedule(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero."""
    warm = max(1, int(round(total_steps * warmup_frac)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


# ---------------------------------------------------------------------- datasets
class CropDataset(torch.utils.data.Dataset):
    """Face crops with labels.

    Augmentation: flip, small shift, brightness/contrast, and, on both classes alike, JPEG
    re-compression and down/up-scaling, so compression blocks and blur (everyday in real
    uploads) are not learned as signs of manipulation.
    """

    def __init__(
        self, items: list[tuple[np.ndarray, int, np.ndarray | None, int]], augment: bool, seed: int, degrade_prob: float = 0.3, cross_blend_prob: float = 0.0
    ) -> None:
        """``items``: (crop, label, landmarks, clip id). Landmarks (crop pixels, [5, 2]) mark a pseudo-fake:
        the crop is blended anew each time it is drawn (with a copy of itself, or with probability
        ``cross_blend_prob`` with a face from another clip) and the label is fake."""
        self.items, self.augment, self.degrade_prob, self.cross_blend_prob = items, augment, degrade_prob, cross_blend_prob
        self.rng = np.random.default_rng(seed)
        self.donors = [k for k, it in enumerate(items) if it[2] is not None]

    def __len__(self) -> int:
        return len(self.items)

    def _donor(self, clip: int) -> tuple[np.ndarray, np.ndarray] | None:
        for _ in range(8):
            crop, _, lm, other = self.items[self.donors[int(self.rng.integers(len(self.donors)))]]
            if other != clip and lm is not None:
                return np.asarray(crop), lm
        return None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        crop, label, blend_lm, clip = self.items[i]
        crop = np.asarray(crop)
        if blend_lm is not None:
            donor = self._donor(clip) if self.cross_blend_prob > 0 and self.rng.random() < self.cross_blend_prob else None
            crop = cross_blend(crop, blend_lm, *donor, self.rng).image if donor else self_blend(crop, blend_lm, self.rng).image
        if self.augment and self.degrade_prob > 0:
            crop = degrade(crop, self.rng, self.degrade_prob, self.degrade_prob)
        x = crop.astype(np.float32) / 255.0
        if self.augment:
            rng = self.rng
            if rng.random() < 0.5:
                x = x[:, ::-1]
            s = x.shape[0]
            pad = max(1, s // 16)
            dx, dy = rng.integers(-pad, pad + 1, size=2)
            x = np.roll(x, (int(dy), int(dx)), axis=(0, 1))
            x = np.clip((x - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.05, 0.05), 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.tensor(float(label))


def degrade(crop: np.ndarray, rng: np.random.Generator, p_jpeg: float = 0.4, p_rescale: float = 0.3) -> np.ndarray:
    """Everyday quality loss on a uint8 RGB crop: JPEG at quality 30-95 and/or a 1.2-2.5x down/up-scale."""
    import cv2

    s = crop.shape[0]
    if rng.random() < p_rescale:
        f = rng.uniform(1.2, 2.5)
        small = cv2.resize(crop, (max(4, int(s / f)), max(4, int(s / f))), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    if rng.random() < p_jpeg:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))])
        if ok:
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return crop


class WindowDataset(torch.utils.data.Dataset):
    """Audio windows with labels; training jitters each window's start and gain."""

    def __init__(self, waves: list[tuple[np.ndarray, int]], length: int, hop: int, augment: bool, seed: int) -> None:
        self.length, self.augment = length, augment
        self.rng = np.random.default_rng(seed)
        self.waves = waves
        self.index = []
        for w_idx, (w, _) in enumerate(waves):
            n = max(1, (len(w) - length) // hop + 1)
            self.index.extend((w_idx, k * hop) for k in range(n))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        w_idx, start = self.index[i]
        wave, label = self.waves[w_idx]
        jitter = self.augment and len(wave) > self.length
        x = _window(wave, self.length, None if jitter else start, self.rng)
        if self.augment:
            x = x * self.rng.uniform(0.5, 1.5)
        return torch.from_numpy(np.clip(x, -1, 1)), torch.tensor(float(label))


def _window(wave: np.ndarray, length: int, start: int | None, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples from ``start`` (random when None), zero-padded at the end."""
    if start is None:
        start = int(rng.integers(0, max(1, len(wave) - length + 1)))
    x = np.asarray(wave[start : start + length], dtype=np.float32)
    return np.pad(x, (0, length - len(x))) if len(x) < length else x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


class SpeechPseudoFakes(torch.utils.data.Dataset):
    """Real speech windows (label 0) and as many pseudo-fake windows (label 1), for real-only training.

    A fake window comes from a generator drawn at random each time: ``griffin_lim`` resynthesises a
    random real window on the fly; the others (slow: vocoder analysis, TTS processes) are drawn from
    ``banks``, fakes made once per real utterance. Both classes get the same augmentation (gain,
    band-limiting, light noise), so recording bandwidth and level cannot tell them apart.
    """

    def __init__(
        self, reals: list[np.ndarray], banks: dict[str, list[np.ndarray]], generators: list[str], length: int, windows_per_utterance: int, augment: bool, seed: int, sample_rate: int
    ) -> None:
        self.reals, self.banks, self.generators = reals, banks, generators
        self.length, self.augment, self.sr = length, augment, sample_rate
        self.rng = np.random.default_rng(seed)
        self.index: list[tuple[int, int, int]] = []
        for u, w in enumerate(reals):
            # Evenly spaced starts (used as they are without augmentation; redrawn at random with it).
            starts = np.linspace(0, max(0, len(w) - length), windows_per_utterance).astype(int)
            self.index.extend((0, u, int(s)) for s in starts)
        self.index.extend([(1, -1, -1)] * len(self.index))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        label, u, start = self.index[i]
        rng = self.rng
        if label == 0:
            x = _window(self.reals[u], self.length, None if self.augment else start, rng)
        else:
            g = self.generators[int(rng.integers(len(self.generators)))]
            if g == "griffin_lim":
                src = _window(self.reals[int(rng.integers(len(self.reals)))], self.length, None, rng)
                x = griffin_lim_resynth(src, self.sr, rng)
                x *= _rms(src) / _rms(x)
            else:
                bank = self.banks[g]
                x = _window(bank[int(rng.integers(len(bank)))], self.length, None, rng)
        if self.augment:
            x = augment_speech(x, self.sr, rng)
        return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32)), torch.tensor(float(label))


def augment_speech(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gain 0.5-1.5x; with p=0.3 band-limiting to 3.5-7 kHz (phone, web codecs); with p=0.2 white noise at 20-40 dB SNR."""
    x = np.asarray(x, dtype=np.float32) * rng.uniform(0.5, 1.5)
    if rng.random() < 0.3:
        low = int(rng.integers(7000, 14001)) // 100 * 100
        x = resample(resample(x, sample_rate, low), low, sample_rate)[: len(x)]
    if rng.random() < 0.2:
        snr = rng.uniform(20, 40)
        x = x + rng.standard_normal(len(x)).astype(np.float32) * _rms(x) * 10 ** (-snr / 20)
    return x.astype(np.float32)


def make_speech_fakes(reals: list[np.ndarray], generator: str, sample_rate: int, seed: int, progress: bool = False, cache: Path | None = None) -> list[np.ndarray]:
    """One pseudo-fake per real utterance from ``generator``, each seeded by (seed, utterance index).

    With ``cache``, each fake is kept as ``.npy`` under a key of the generator, seed, index and the
    real waveform's bytes, so a second training run (another audio variant) does not remake them.
    """
    import hashlib

    from tqdm import tqdm

    gi = AUDIO_GENERATORS.index(generator)
    out = []
    for k, w in enumerate(tqdm(reals, desc=f"fakes: {generator}", leave=False, disable=not progress)):
        path = None
        if cache is not None:
            key = hashlib.sha1(f"{generator}/{seed}/{k}/{sample_rate}/".encode() + np.ascontiguousarray(w, dtype=np.float32).tobytes()).hexdigest()
            path = cache / f"{key}.npy"
            if path.exists():
                out.append(np.load(path))
                continue
        y = fake_speech(generator, w, sample_rate, np.random.default_rng([seed, k, gi]))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, y)
        out.append(y)
    return out


# ---------------------------------------------------------------------- generic loop
def fit(
    model: nn.Module,
    train_ds: torch.utils.data.Dataset,
    evaluate: Callable[[nn.Module], dict[str, float]],
    tcfg: TrainConfig,
    run_dir: Path,
    device: torch.device,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``model`` (whose forward returns (embedding, logit)) with BCE; keep the best epoch by val AUC.

    Writes ``run_dir/log.jsonl`` (one JSON object per epoch), ``run_dir/best.safetensors`` and
    ``run_dir/last/`` (weights + optimizer state for ``resume``). Returns the best epoch's record.
    """
    from tqdm import tqdm

    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    gen = torch.Generator().manual_seed(tcfg.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=tcfg.batch_size, shuffle=True, drop_last=len(train_ds) > tcfg.batch_size, generator=gen, num_workers=tcfg.num_workers)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    total = max(1, tcfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(total, tcfg.warmup_frac))
    use_amp = tcfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = nn.BCEWithLogitsLoss()
    start_epoch, best = 0, {"epoch": -1, "score": (-math.inf, -math.inf)}
    last = run_dir / "last"
    log_path = run_dir / "log.jsonl"
    if resume and (last / "state.pt").exists():
        load_weights(model, last / "model.safetensors", device)
        state = torch.load(last / "state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        best = {"epoch": int(state["best_epoch"]), "score": tuple(float(v) for v in state["best_score"].tolist())}
        print(f"resuming at epoch {start_epoch + 1}/{tcfg.epochs} (best so far: epoch {best['epoch'] + 1})", file=sys.stderr)
    elif log_path.exists():
        log_path.unlink()

    for epoch in range(start_epoch, tcfg.epochs):
        model.train()
        t0 = time.time()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False, disable=not tcfg.progress)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                _, logit = model(x)
                loss = loss_fn(logit.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tcfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        model.eval()
        val = evaluate(model)
        # Higher AUC wins; ties (common once validation is separable) go to the lower loss, which
        # keeps better-separated scores. With one class in validation only the loss counts.
        auc = val.get("auc", float("nan"))
        score = (round(auc, 4) if math.isfinite(auc) else -1.0, -val.get("loss", 0.0))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None, "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 2), **val}
        improved = score > best["score"]
        if improved:
            best = {"epoch": epoch, "score": score}
            save_weights(model, run_dir / "best.safetensors")
        record["best"] = improved
        with open(log_path, "a") as fh:
            fh.write(json.dumps(clean(record)) + "\n")
        print(f"epoch {epoch + 1}/{tcfg.epochs}  loss {record['train_loss']:.4f}  val auc {val.get('auc', float('nan')):.4f}  val loss {val.get('loss', float('nan')):.4f}{'  *' if improved else ''}", file=sys.stderr)
        last.mkdir(exist_ok=True)
        save_weights(model, last / "model.safetensors")
        torch.save(
            {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "best_epoch": best["epoch"],
                "best_score": torch.tensor(best["score"], dtype=torch.float64),
            },
            last / "state.pt",
        )
    if not (run_dir / "best.safetensors").exists():
        raise CheckpointError(f"{run_dir}: no epoch finished, nothing to keep")
    load_weights(model, run_dir / "best.safetensors", device)
    model.eval()
    return {"best_epoch": best["epoch"] + 1}


def _bce(logits: np.ndarray, y: np.ndarray) -> float:
    z = torch.as_tensor(logits, dtype=torch.float64)
    return float(nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(y, dtype=torch.float64)))


def _auc_by_kind(z: np.ndarray, kind: np.ndarray) -> dict[str, Any]:
    """Checkpoint metrics: validation AUC of real items against each kind of fake (``val_auc_<kind>``) and the counts."""
    table = auc_by_kind(z, kind)
    out: dict[str, Any] = {"val_counts": {g: v["n"] for g, v in table.items()}}
    out.update({f"val_auc_{g}": v["auc"] for g, v in table.items() if "auc" in v and table["real"]["n"]})
    return clean(out)


def _finish_branch(logits: np.ndarray, y: np.ndarray, fusion_rule: tuple[str, float], calib: str) -> BranchMeta:
    """Calibration, threshold and validation metrics of a trained branch from its validation logits."""
    cal = fit_calibration(logits, y, calib)
    p = cal(logits)
    thr = choose_threshold(p, y, *fusion_rule)
    return BranchMeta(cal, thr, clean({"val_auc": roc_auc(y, p), "val_n": int(len(y)), "val_loss": _bce(logits, y)}))


# ---------------------------------------------------------------------- stages
def _load_rows(cfg: Config, manifest: str | None) -> list[ManifestRow]:
    path = manifest or cfg.manifest
    if not path:
        raise ConfigError("no manifest: pass --manifest or set `manifest:` in the config")
    return assign_splits(read_manifest(path), cfg.train.val_fraction, cfg.train.seed)


def _usable(rows: list[ManifestRow], cache: dict[str, CachedClip], split: str, need: str) -> list[tuple[ManifestRow, CachedClip]]:
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


def _report_failures(cache: dict[str, CachedClip]) -> None:
    bad = [(p, c.error) for p, c in cache.items() if c.error]
    for p, e in bad[:20]:
        print(f"skipped {p}: {e}", file=sys.stderr)
    if len(bad) > 20:
        print(f"... and {len(bad) - 20} more unreadable files", file=sys.stderr)


def _subsample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.linspace(0, n - 1, k).round().astype(int)


def _crop_landmarks(cfg: Config, c: CachedClip, i: int) -> np.ndarray | None:
    # Images scored whole (no face found) have no landmarks to build a blend mask from.
    lm = c.landmarks[i]
    return landmarks_to_crop(lm, c.boxes[i], cfg.faces.margin, cfg.vision.input_size) if np.abs(lm).sum() > 0 else None


def vision_validation_sets(cfg: Config, valid: list[tuple[ManifestRow, CachedClip]], pseudo: bool) -> tuple[list[tuple[np.ndarray, np.ndarray, int, int]], list[str]]:
    """Validation clips as (crops, times, frames searched, label), and a kind per clip.

    The clips as given ("real"/"fake"), plus with ``pseudo`` a fixed self-blended copy of every real
    clip ("self_blend") and a copy blended with the faces of the next validation clip ("cross_blend").
    Seeded by ``train.seed``: the same sets in training, fusion and the report.
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
            swapped = [cross_blend(np.asarray(c.crops[i]), lms[i], np.asarray(d.crops[i % len(d.crops)]), dl[i % len(d.crops)], rng).image for i in range(len(c.crops))]
            val_sets.append((np.stack(swapped), c.crop_times, c.num_frames, 1))
            kinds.append("cross_blend")
    return val_sets, kinds


def speech_validation_items(cfg: Config, valid: list[tuple[ManifestRow, CachedClip]], fake_cache: Path | None = None, seed_offset: int = 1) -> tuple[list[np.ndarray], list[str]]:
    """Validation utterances and a kind per item: each real one standardised ("real"), fakes as given
    ("fake"), and with ``train.pseudo_fakes`` one fake per real utterance from every generator in
    ``train.audio_generators`` (the held-out one included), kind = generator name."""
    sr, tc = cfg.decode.sample_rate, cfg.train
    if not tc.pseudo_fakes:
        return [c.waveform for _, c in valid], ["real" if r.audio_target == 0 else "fake" for r, _ in valid]  # type: ignore[misc]
    reals = [standardize_speech(c.waveform, sr) for r, c in valid if r.audio_target == 0]  # type: ignore[arg-type]
    waves = list(reals) + [c.waveform for r, c in valid if r.audio_target == 1]
    kinds = ["real"] * len(reals) + ["fake"] * (len(waves) - len(reals))
    for g in tc.audio_generators:
        fakes = make_speech_fakes(reals, g, sr, tc.seed + seed_offset, tc.progress, fake_cache)
        waves += fakes
        kinds += [g] * len(fakes)
    return waves, kinds  # type: ignore[return-value]


def train_vision(cfg: Config, rows: list[ManifestRow], cache: dict[str, CachedClip], out: Path, device: torch.device, resume: bool) -> Path:
    """Train the face-crop classifier; returns the checkpoint directory."""
    train = _usable(rows, cache, "train", "vision")
    valid = _usable(rows, cache, "valid", "vision")
    if not train or not valid:
        raise ConfigError(f"vision: need clips with faces in train and valid splits (have {len(train)} and {len(valid)})")
    pseudo = cfg.train.pseudo_fakes

    items: list[tuple[np.ndarray, int, np.ndarray | None, int]] = []
    for k, (r, c) in enumerate(train):
        for i in _subsample(len(c.crops), cfg.train.max_crops_per_video):
            items.append((c.crops[i], r.vision_target, None, k))
            lm = _crop_landmarks(cfg, c, i) if pseudo and r.vision_target == 0 else None
            if lm is not None:
                items.append((c.crops[i], 1, lm, k))
    val_sets, val_kind = vision_validation_sets(cfg, valid, pseudo)
    model = create_vision_model(cfg.vision)
    det = Detector(cfg.decode, cfg.faces, vision=model, device=device, batch_size=cfg.train.batch_size)
    y_val = np.array([v[3] for v in val_sets])

    def val_logits(m: nn.Module) -> np.ndarray:
        return np.array([det.vision_output(crops, times, n).logit for crops, times, n, _ in val_sets])  # type: ignore[union-attr]

    def evaluate(m: nn.Module) -> dict[str, float]:
        z = val_logits(m)
        return {"auc": roc_auc(y_val, z), "loss": _bce(z, y_val)}

    n_blend = sum(1 for it in items if it[2] is not None)
    print(f"vision: {len(items)} crops ({n_blend} pseudo-fakes) from {len(train)} train clips; {len(val_sets)} valid clips", file=sys.stderr)
    ds = CropDataset(items, cfg.train.augment, cfg.train.seed, cfg.train.degrade_prob, cfg.train.cross_blend_prob if pseudo else 0.0)
    best = fit(model, ds, evaluate, cfg.train, out, device, resume)
    z = val_logits(model)
    det.vision_meta = _finish_branch(z, y_val, (cfg.fusion.threshold_rule, cfg.fusion.threshold), cfg.fusion.calibration)
    det.vision_meta.metrics.update(best)
    det.vision_meta.metrics.update(_auc_by_kind(z, np.array(val_kind)))
    det.training_data = {"manifest": summarize(rows), "stage": "vision", "train_crops": len(items), "self_blended_crops": n_blend, "pseudo_fakes": pseudo}
    return det.save(out)


def train_audio(cfg: Config, rows: list[ManifestRow], cache: dict[str, CachedClip], out: Path, device: torch.device, resume: bool, fake_cache: Path | None = None) -> Path:
    """Train the speech classifier; returns the checkpoint directory.

    With ``train.pseudo_fakes`` the real utterances of the train split are matched by fakes from
    ``train.audio_generators`` (less the held-out one); validation has each real utterance and one fake
    per generator, model selection looks only at the training generators, and the AUC on each
    generator (the held-out one included) is stored in the checkpoint's metrics.
    """
    train = _usable(rows, cache, "train", "audio")
    valid = _usable(rows, cache, "valid", "audio")
    if not train or not valid:
        raise ConfigError(f"audio: need clips with audio in train and valid splits (have {len(train)} and {len(valid)})")
    sr = cfg.decode.sample_rate
    tc = cfg.train
    model = create_audio_model(cfg.audio, sr)
    det = Detector(cfg.decode, cfg.faces, audio=model, device=device, batch_size=tc.batch_size)
    length, hop = int(round(cfg.audio.window_s * sr)), int(round(cfg.audio.hop_s * sr))
    info: dict[str, Any] = {}
    if tc.pseudo_fakes:
        used = [g for g in tc.audio_generators if g != tc.audio_holdout]
        reals = [standardize_speech(c.waveform, sr) for r, c in train if r.audio_target == 0]  # type: ignore[arg-type]
        t0 = time.time()
        banks = {g: make_speech_fakes(reals, g, sr, tc.seed, tc.progress, fake_cache) for g in used if g != "griffin_lim"}
        ds: torch.utils.data.Dataset = SpeechPseudoFakes(reals, banks, used, length, tc.audio_epoch_windows, tc.augment, tc.seed, sr)
        print(f"audio: pseudo-fakes {used} made in {time.time() - t0:.0f} s; held out: {tc.audio_holdout}", file=sys.stderr)
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
        return {"auc": roc_auc(y_val[select], z), "loss": _bce(z, y_val[select])}

    print(f"audio: {len(ds)} windows from {len(train)} train clips; {len(val_waves)} valid items", file=sys.stderr)
    best = fit(model, ds, evaluate, tc, out, device, resume)
    z = val_logits(model)
    # Calibration and threshold from the training generators only: the held-out one stays unseen.
    det.audio_meta = _finish_branch(z[select], y_val[select], (cfg.fusion.threshold_rule, cfg.fusion.threshold), cfg.fusion.calibration)
    det.audio_meta.metrics.update(best)
    det.audio_meta.metrics.update(_auc_by_kind(z, kinds))
    det.training_data = {"manifest": summarize(rows), "stage": "audio", "train_windows": len(ds), **info}
    return det.save(out)


def train_fusion_stage(cfg: Config, rows: list[ManifestRow], cache: dict[str, CachedClip], out: Path, vision_dir: Path | None, audio_dir: Path | None, device: torch.device) -> Path:
    """Fit fusion on branch outputs for the validation split; returns the detector directory."""
    vdet = Detector.load(vision_dir, str(device)) if vision_dir else None
    adet = Detector.load(audio_dir, str(device)) if audio_dir else None
    if vdet is None and adet is None:
        raise ConfigError("fusion: no branch checkpoint found (train --stage vision / audio first, or pass --vision-checkpoint / --audio-checkpoint)")
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
            mouth = measure_mouth(r.path, c.landmarks, c.crop_times)
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
        for k, (r, c, mouth, v) in enumerate(synced):
            shifted = shift_audio(c.waveform, sr, float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.9)))  # type: ignore[arg-type]
            swapped = swap_audio(c.waveform, synced[(k + 1) % len(synced)][1].waveform)  # type: ignore[arg-type]
            for w in (shifted, swapped):
                outputs.append((v, adet.audio_output(w, sr), sync_output(mouth, w, sr)))  # type: ignore[union-attr]
                labels.append(1)
                lv.append(0)
                la.append(0)
        print(f"fusion: {2 * len(synced)} audio-visual pseudo-fakes (shifted, swapped) from {len(synced)} real clips", file=sys.stderr)
    training_data = {
        "manifest": summarize(rows),
        "stage": "fusion",
        "vision": vdet.training_data if vdet else None,
        "audio": adet.training_data if adet else None,
    }
    return fit_fusion_detector(cfg, outputs, np.array(labels), np.array(lv), np.array(la), vdet, adet, training_data, out, device)


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
    kw = dict(hidden=fc.hidden, modality_dropout=fc.modality_dropout, epochs=fc.epochs, lr=fc.lr, weight_decay=fc.weight_decay, seed=cfg.train.seed)
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
        results[method] = {"oof_auc": roc_auc(yy, z), **{f"oof_auc_{name}": roc_auc(yy[pat == i], z[pat == i]) for i, name in patterns.items()}}
        print(f"fusion {method}: out-of-fold AUC {results[method]['oof_auc']:.4f} on {len(yy)} items ({len(y)} clips and their single-modality views)", file=sys.stderr)
    eligible = [m for m in fc.methods if m != "mlp" or len(y) >= fc.mlp_min_clips] or list(fc.methods)
    best = eligible[0]
    for m in eligible[1:]:
        if np.nan_to_num(results[m]["oof_auc"], nan=-1) >= np.nan_to_num(results[best]["oof_auc"], nan=-1) + fc.min_gain:
            best = m
    if "mlp" in fc.methods and "mlp" not in eligible:
        print(f"fusion: mlp not eligible with {len(y)} < {fc.mlp_min_clips} clips (fusion.mlp_min_clips)", file=sys.stderr)
    print(f"fusion: keeping {best}", file=sys.stderr)
    z, yy, _ = oof[best]
    cal = fit_calibration(z, yy, fc.calibration)
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
            clean({"method": best, "methods": results, "oof_items": int(len(yy)), "clips": int(len(y)), "folds": int(len(np.unique(folds))), "oof_ece": expected_calibration_error(yy, cal(z))}),
        ),
        fusion_cfg=fc,
        training_data=training_data,
        device=device,
    )
    return detector.save(out)


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.train", description="Train the vision or audio branch, then fusion.")
    p.add_argument("--stage", required=True, choices=["prepare", "vision", "audio", "fusion", "all"], help="'all' runs prepare, vision, audio, fusion in order")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--manifest", help="CSV with path,label[,video_label,audio_label,split,category,group]")
    p.add_argument("--out", help="run directory (default: the config's out_dir)")
    p.add_argument("--cache-dir", help="prepared-data cache (default: the config's cache_dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue a branch stage from OUT/<stage>/last")
    p.add_argument("--vision-checkpoint", help="fusion: vision checkpoint (default OUT/vision)")
    p.add_argument("--audio-checkpoint", help="fusion: audio checkpoint (default OUT/audio)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.epochs=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
        if args.no_progress:
            cfg.train.progress = False
        device = resolve_device(args.device)
        seed_everything(cfg.train.seed)
        out = Path(args.out or cfg.out_dir)
        rows = _load_rows(cfg, args.manifest)
        cache = prepare(rows, cfg, args.cache_dir or cfg.cache_dir, str(device), cfg.train.progress)
        _report_failures(cache)
        stages = ["vision", "audio", "fusion"] if args.stage == "all" else [args.stage]
        for stage in stages:
            t0 = time.time()
            if stage == "prepare":
                ok = sum(1 for c in cache.values() if not c.error)
                print(f"prepared {ok}/{len(cache)} files into {args.cache_dir or cfg.cache_dir}", file=sys.stderr)
                continue
            seed_everything(cfg.train.seed)
            if stage == "vision":
                d = train_vision(cfg, rows, cache, out / "vision", device, args.resume)
            elif stage == "audio":
                d = train_audio(cfg, rows, cache, out / "audio", device, args.resume, Path(args.cache_dir or cfg.cache_dir) / "pseudo_audio")
            else:
                vdir = Path(args.vision_checkpoint) if args.vision_checkpoint else out / "vision"
                adir = Path(args.audio_checkpoint) if args.audio_checkpoint else out / "audio"
                d = train_fusion_stage(
                    cfg, rows, cache, out / "detector", vdir if (vdir / "config.json").exists() else None, adir if (adir / "config.json").exists() else None, device
                )
            print(f"{stage}: wrote {d} in {time.time() - t0:.1f} s", file=sys.stderr)
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
