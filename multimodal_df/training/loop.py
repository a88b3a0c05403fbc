"""The training loop shared by the branch stages: AdamW, warm-up + cosine, AMP on CUDA, best epoch by
validation AUC, and a training state that survives being killed at any instant.

State on disk (``RUN/``):

* ``log.jsonl``: one JSON object per finished epoch;
* ``best.safetensors``: the weights of the best epoch so far;
* ``state/epoch-NNNN/``: the weights, optimizer, scheduler and random states after epoch NNNN;
* ``state/last.json``: which ``epoch-NNNN`` is the last complete one.

Every file is written to a temporary name, flushed and renamed. An epoch's state folder is complete
before its log line is written, and ``last.json`` moves to it only after that, so whatever instant a
crash hits, ``last.json`` names a complete state and the log holds no epoch beyond it that survives a
resume (a resume drops log lines past the state it resumes from). ``resume`` continues from that state
or fails with a clear message; it never starts again silently.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import CheckpointError
from ..evaluation.metrics import clean
from ..pipeline.files import load_weights, save_weights, write_atomic, write_text_atomic
from . import distributed


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
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


def bce(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits [N] against labels [N]."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    return float(nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(y, dtype=torch.float64)))


def last_state(run_dir: Path) -> tuple[int, Path] | None:
    """(epoch index, folder) of the last complete training state in ``run_dir``, or None when there is none."""
    pointer = run_dir / "state" / "last.json"
    if not pointer.is_file():
        return None
    try:
        info = json.loads(pointer.read_text())
        epoch, folder = int(info["epoch"]), run_dir / "state" / str(info["dir"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(
            f"{pointer}: unreadable training state ({exc}); delete {run_dir / 'state'} to start again"
        ) from None
    if not (folder / "model.safetensors").is_file() or not (folder / "state.pt").is_file():
        raise CheckpointError(f"{folder}: incomplete training state; delete {run_dir / 'state'} to start again")
    return epoch, folder


def _save_state(
    run_dir: Path, epoch: int, model: nn.Module, extra: dict[str, Any], dataset_rng: dict[str, Any] | None
) -> Path:
    folder = run_dir / "state" / f"epoch-{epoch:04d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_weights(model, folder / "model.safetensors")
    write_atomic(folder / "state.pt", lambda tmp: torch.save(extra, tmp))
    if dataset_rng is not None:
        write_text_atomic(folder / "dataset_rng.json", json.dumps(dataset_rng))
    return folder


def _point_to(run_dir: Path, epoch: int, folder: Path) -> None:
    write_text_atomic(run_dir / "state" / "last.json", json.dumps({"epoch": epoch, "dir": folder.name}))
    # Older states are only deleted once the pointer no longer names them.
    for old in (run_dir / "state").glob("epoch-*"):
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _truncate_log(log_path: Path, last_epoch: int) -> None:
    """Keep the log lines of epochs up to ``last_epoch`` (0-based): later ones were not saved and will run again."""
    if not log_path.exists():
        return
    keep = []
    for line in log_path.read_text().splitlines():
        try:
            if int(json.loads(line)["epoch"]) <= last_epoch + 1:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    write_text_atomic(log_path, "".join(f"{line}\n" for line in keep))


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

    Writes the state described in the module docstring and returns ``{"best_epoch": k}`` (1-based), with the
    best weights loaded into ``model``. ``resume`` continues from the last complete state in ``run_dir``.

    Under ``torchrun`` (see :mod:`.distributed`) each rank trains on its shard of ``train_ds`` through
    DistributedDataParallel, rank 0 validates and alone writes the state; the other ranks return without
    loading the best weights (only rank 0 builds the checkpoint).
    """
    from tqdm import tqdm

    main = distributed.is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    gen = torch.Generator().manual_seed(tcfg.seed)
    sampler = distributed.train_sampler(train_ds, tcfg.seed)  # None in a single process: the loader shuffles
    shard = len(sampler) if sampler is not None else len(train_ds)
    loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=tcfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=shard > tcfg.batch_size,
        generator=gen,
        num_workers=tcfg.num_workers,  # type: ignore[arg-type]
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    total = max(1, tcfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(total, tcfg.warmup_frac))
    use_amp = tcfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = nn.BCEWithLogitsLoss()
    start_epoch, best = 0, {"epoch": -1, "score": (-math.inf, -math.inf)}
    log_path = run_dir / "log.jsonl"
    ds_rng: np.random.Generator | None = getattr(train_ds, "rng", None)
    if resume:
        found = last_state(run_dir)
        if found is None:
            raise CheckpointError(
                f"--resume: no complete training state in {run_dir / 'state'}; run without --resume to start afresh"
            )
        done, folder = found
        load_weights(model, folder / "model.safetensors", device)
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if ds_rng is not None and (folder / "dataset_rng.json").is_file():
            ds_rng.bit_generator.state = json.loads((folder / "dataset_rng.json").read_text())
        start_epoch = done + 1
        best = {"epoch": int(state["best_epoch"]), "score": tuple(float(v) for v in state["best_score"].tolist())}
        # Every rank has read the state before rank 0 may touch the log.
        distributed.barrier()
        if main:
            _truncate_log(log_path, done)
            print(
                f"resuming at epoch {start_epoch + 1}/{tcfg.epochs} (best so far: epoch {best['epoch'] + 1})",
                file=sys.stderr,
            )
    elif main:
        for stale in (log_path, run_dir / "best.safetensors"):
            stale.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "state", ignore_errors=True)

    net = distributed.wrap(model, device)  # the model itself in a single process
    for epoch in range(start_epoch, tcfg.epochs):
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.time()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False, disable=not (tcfg.progress and main))
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                _, logit = net(x)
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
        # Rank 0 validates; every rank gets its metrics, so all agree on the best epoch.
        val = distributed.broadcast(evaluate(model) if main else None)
        # Higher AUC wins; ties (common once validation is separable) go to the lower loss, which
        # keeps better-separated scores. With one class in validation only the loss counts.
        auc = val.get("auc", float("nan"))
        score = (round(auc, 4) if math.isfinite(auc) else -1.0, -val.get("loss", 0.0))
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else None,
            "lr": sched.get_last_lr()[0],
            "seconds": round(time.time() - t0, 2),
            **val,
        }
        improved = score > best["score"]
        if improved:
            best = {"epoch": epoch, "score": score}
            if main:
                save_weights(model, run_dir / "best.safetensors")
        record["best"] = improved
        if not main:
            continue
        extra = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch,
            "best_epoch": best["epoch"],
            "best_score": torch.tensor(best["score"], dtype=torch.float64),
        }
        folder = _save_state(run_dir, epoch, model, extra, ds_rng.bit_generator.state if ds_rng is not None else None)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(clean(record)) + "\n")
            fh.flush()
        _point_to(run_dir, epoch, folder)
        print(
            f"epoch {epoch + 1}/{tcfg.epochs}  loss {record['train_loss']:.4f}  val auc {val.get('auc', float('nan')):.4f}  "
            f"val loss {val.get('loss', float('nan')):.4f}{'  *' if improved else ''}",
            file=sys.stderr,
        )
    if not main:
        return {"best_epoch": best["epoch"] + 1}
    if not (run_dir / "best.safetensors").exists():
        raise CheckpointError(f"{run_dir}: no epoch finished, nothing to keep")
    load_weights(model, run_dir / "best.safetensors", device)
    model.eval()
    return {"best_epoch": best["epoch"] + 1}
