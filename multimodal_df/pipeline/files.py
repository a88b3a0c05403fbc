"""Files that survive a crash: atomic writes, and model weights as safetensors (nothing to unpickle)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, one_line

if TYPE_CHECKING:
    import torch
    from torch import nn


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write a file so that a crash at any instant leaves either the old file or the new one, never a part.

    ``write(tmp_path)`` fills a temporary file in the same folder; it is flushed to disk and renamed over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for text."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module.state_dict()`` to ``path`` as safetensors, atomically.

    Each tensor is copied into its own storage: safetensors refuses tensors that share memory
    (torchaudio's window buffers, tied weights), and a copy is what a file holds anyway.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    write_atomic(path, lambda tmp: save_file(state, tmp))


def load_weights(module: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights written by :func:`save_weights`; every key must match the module and every value be finite."""
    import torch
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise CheckpointError(f"{path}: unreadable weights ({one_line(exc, 200)})") from None
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the model in config.json ({one_line(exc, 300)})") from None
