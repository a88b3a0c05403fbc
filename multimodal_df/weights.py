"""Model weights as safetensors: no pickle, so a checkpoint from anyone is safe to load."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module.state_dict()`` to ``path``.

    Each tensor is copied into its own storage: safetensors refuses tensors that share memory
    (torchaudio's window buffers, tied weights), and a copy is what a file holds anyway.
    """
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def load_weights(module: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights written by :func:`save_weights`; every key must match the module exactly."""
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise CheckpointError(f"{path}: unreadable weights ({' '.join(str(exc).split())[:200]})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the model in config.json ({' '.join(str(exc).split())[:300]})") from None
