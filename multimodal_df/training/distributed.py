"""Data-parallel training under ``torchrun``: one process per GPU (NCCL) or per CPU slot (gloo).

    torchrun --standalone --nproc_per_node 2 -m multimodal_df.train --stage all --config tiny --manifest data.csv

Nothing here does anything in a single process (``WORLD_SIZE`` unset or 1): every helper falls back to
what single-process training did before, so that path is unchanged. Under ``torchrun``:

* :func:`setup` joins the process group from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
  ``MASTER_ADDR`` / ``MASTER_PORT`` and pins each rank to ``cuda:LOCAL_RANK`` on GPUs;
* :func:`train_sampler` shards the training set per rank and reshuffles it every epoch (``train.batch_size``
  is per process: the global batch is ``batch_size * WORLD_SIZE``);
* :func:`wrap` puts the model in DistributedDataParallel for the training steps;
* validation runs on rank 0 and :func:`broadcast` hands its metrics to every rank, so all ranks agree on
  the best epoch; only rank 0 (:func:`is_main`) writes checkpoints, training state and logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is up."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def info() -> DistInfo:
    """Rank and world size of the running job (rank 0 of 1 outside torchrun)."""
    import torch.distributed as dist

    if not is_distributed():
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return info().rank == 0


def setup(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group when torchrun started more than one process.

    Returns (the device this rank trains on, whether this call started the group and should
    :func:`teardown` it). NCCL on CUDA with one GPU per local rank, gloo on CPU.
    """
    import torch.distributed as dist

    if env_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return device, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device, True


def teardown(started: bool, wait: bool = True) -> None:
    """Leave the process group (only where :func:`setup` joined it), first waiting for every rank when ``wait``."""
    import torch.distributed as dist

    if started and dist.is_initialized():
        if wait:
            barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Every rank waits here for the others (nothing in a single process)."""
    import torch.distributed as dist

    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks: caches it fills are then only read by them,
    never written by several processes at once."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (picklable Python objects, e.g. a metrics dict)."""
    import torch.distributed as dist

    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_sampler(dataset: torch.utils.data.Dataset, seed: int) -> torch.utils.data.DistributedSampler | None:
    """This rank's shard of the training set, shuffled by ``seed`` and the epoch; None in a single process."""
    if not is_distributed():
        return None
    d = info()
    return torch.utils.data.DistributedSampler(dataset, d.world_size, d.rank, shuffle=True, seed=seed)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun, else itself.

    ``find_unused_parameters``: some models have parameters a training step does not reach (wav2vec's
    mask embedding when nothing is masked), which DDP would otherwise wait for forever.
    """
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
