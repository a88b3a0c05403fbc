"""What fusion reads and how a fusion model is described: branch outputs stacked into :class:`FusionInputs`, and
:class:`FusionArgs`. NumPy only (PyTorch is imported only by :meth:`FusionInputs.tensors`), so the ONNX runtime
uses these without importing PyTorch; the models are in :mod:`.model` and :mod:`.numpy_fusion`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

FUSION_METHODS = ("stacking", "mlp", "noisy_or")


class BranchOutput(Protocol):
    """What fusion reads of a branch's output on one item: the pooled raw logit and the mean embedding [D]."""

    logit: float
    embedding: np.ndarray


class SyncFeatures(Protocol):
    """What fusion reads of the audio-visual sync measure (:class:`multimodal_df.fusion.sync.SyncOutput`)."""

    def features(self) -> np.ndarray: ...


@dataclass
class FusionInputs:
    """Branch outputs for N items (numpy). Embedding widths may be 0 when a branch does not exist.

    ``v_logit`` [N], ``v_emb`` [N, Dv], ``v_present`` [N] in {0, 1}; the same for audio;
    ``s_feat`` [N, S] sync features (S = 0 when fusion does not use sync) and ``s_present`` [N].
    """

    v_logit: np.ndarray
    v_emb: np.ndarray
    v_present: np.ndarray
    a_logit: np.ndarray
    a_emb: np.ndarray
    a_present: np.ndarray
    s_feat: np.ndarray
    s_present: np.ndarray

    def __len__(self) -> int:
        return len(self.v_logit)

    @staticmethod
    def from_outputs(
        outputs: list[
            tuple[BranchOutput | None, BranchOutput | None]
            | tuple[BranchOutput | None, BranchOutput | None, SyncFeatures | None]
        ],
        vision_dim: int,
        audio_dim: int,
        sync_dim: int = 0,
    ) -> FusionInputs:
        """Stack N (vision, audio[, sync]) outputs (branch outputs with ``.logit`` and ``.embedding``, a
        sync output with ``.features()``, or None when missing) into fusion inputs: zeros and
        present-flag 0 where something is missing. Sync is kept only when ``sync_dim`` > 0."""
        n = len(outputs)
        x = FusionInputs(
            np.zeros(n),
            np.zeros((n, vision_dim)),
            np.zeros(n),
            np.zeros(n),
            np.zeros((n, audio_dim)),
            np.zeros(n),
            np.zeros((n, sync_dim)),
            np.zeros(n),
        )
        for i, item in enumerate(outputs):
            v, a = item[0], item[1]
            s = item[2] if len(item) > 2 else None
            if v is not None:
                x.v_logit[i], x.v_emb[i], x.v_present[i] = v.logit, v.embedding, 1.0
            if a is not None:
                x.a_logit[i], x.a_emb[i], x.a_present[i] = a.logit, a.embedding, 1.0
            if s is not None and sync_dim and v is not None and a is not None:
                x.s_feat[i], x.s_present[i] = s.features(), 1.0
        return x

    def subset(self, idx: np.ndarray) -> FusionInputs:
        return FusionInputs(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[FusionInputs]) -> FusionInputs:
        return FusionInputs(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in FusionInputs.__dataclass_fields__)
        )

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """The eight fields as float32 tensors on ``device``, in field order (LateFusion's arguments)."""
        import torch

        return tuple(
            torch.as_tensor(np.asarray(getattr(self, f), dtype=np.float32), device=device)
            for f in self.__dataclass_fields__
        )


@dataclass
class FusionArgs:
    """Everything that defines a fusion model (what a checkpoint stores): the method and its input widths."""

    method: str
    vision_dim: int
    audio_dim: int
    sync_dim: int = 0
    hidden: int = 64
