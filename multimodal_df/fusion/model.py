"""Late fusion of branch outputs.

Fusion sees, per item, each branch's raw logit and embedding plus a 0/1 "present" flag; a
missing modality has zeros and flag 0, so one model serves video+audio, video-only and
audio-only inputs. Optionally it also sees the audio-visual sync features
(:meth:`multimodal_df.sync.SyncOutput.features`), which exist only when both modalities do. Two methods:

* ``stacking``: logistic regression on the branch logits with separate weights for each
  presence pattern (both / vision only / audio only) and the presence indicators;
* ``mlp``: a one-hidden-layer MLP on standardised embeddings, logits and flags;
* ``noisy_or``: nothing learned. The branches' own calibrated P(fake) combine as "fake if either track is
  fake": ``1 - (1 - p_vision) * (1 - p_audio)`` (the present one alone when the other is missing). The fused
  score is therefore explainable from the branch scores a user sees: never below the larger of them, never
  above their sum. A face at 0.70 and a voice at 0.00 fuse to 0.70.

Both are trained with modality dropout (a present modality is hidden at random), so they
have seen every missing-modality pattern they will meet.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# The data types live in .inputs (no PyTorch there, so the ONNX runtime can use them); re-exported from here.
from .inputs import FUSION_METHODS, BranchOutput, FusionArgs, FusionInputs, SyncFeatures

__all__ = [
    "FUSION_METHODS",
    "BranchOutput",
    "FusionArgs",
    "FusionInputs",
    "LateFusion",
    "SyncFeatures",
    "fusion_logits",
    "single_modality_variants",
    "stratified_folds",
    "train_fusion",
]


class LateFusion(nn.Module):
    """Branch outputs -> fused logit [B]. ``method`` is ``stacking`` or ``mlp``."""

    def __init__(
        self, method: str, vision_dim: int, audio_dim: int, hidden: int = 64, dropout: float = 0.1, sync_dim: int = 0
    ) -> None:
        super().__init__()
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {method!r}")
        self.method, self.hidden = method, hidden
        self.vision_dim, self.audio_dim, self.sync_dim = vision_dim, audio_dim, sync_dim
        n_sync = sync_dim + 1 if sync_dim else 0  # features and their present flag
        # Standardisation of embeddings, fitted on the fusion training data (saved with the model).
        self.register_buffer("v_mu", torch.zeros(vision_dim))
        self.register_buffer("v_sd", torch.ones(vision_dim))
        self.register_buffer("a_mu", torch.zeros(audio_dim))
        self.register_buffer("a_sd", torch.ones(audio_dim))
        if method == "noisy_or":
            # Each branch's calibration [a, b, p_min, p_max] (see pipeline.calibration.Calibration).
            self.register_buffer("v_cal", torch.tensor([1.0, 0.0, 0.0, 1.0]))
            self.register_buffer("a_cal", torch.tensor([1.0, 0.0, 0.0, 1.0]))
            self.net = nn.Identity()
        elif method == "stacking":
            self.net = nn.Linear(7 + n_sync, 1)
        else:
            self.net = nn.Sequential(
                nn.Linear(vision_dim + audio_dim + 4 + n_sync, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, 1),
            )

    def config(self) -> FusionArgs:
        """The architecture, as a checkpoint stores it."""
        return FusionArgs(self.method, self.vision_dim, self.audio_dim, self.sync_dim, self.hidden)

    @classmethod
    def from_config(cls, args: FusionArgs) -> LateFusion:
        """A fusion model of the architecture ``args`` (weights untrained: load them next)."""
        return cls(args.method, args.vision_dim, args.audio_dim, args.hidden, sync_dim=args.sync_dim)

    def set_calibrations(self, vision: object | None, audio: object | None) -> None:
        """Copy the branch calibrations (objects with ``a``, ``b``, ``p_min``, ``p_max``) that ``noisy_or`` applies."""
        if self.method != "noisy_or":
            return
        for cal, buf in ((vision, self.v_cal), (audio, self.a_cal)):
            if cal is not None:
                buf.copy_(torch.tensor([cal.a, cal.b, cal.p_min, cal.p_max], dtype=torch.float32))  # type: ignore[attr-defined]

    def fit_scaler(self, x: FusionInputs) -> None:
        """Set the embedding standardisation from items where each modality is present."""
        for emb, present, mu, sd in (
            (x.v_emb, x.v_present, self.v_mu, self.v_sd),
            (x.a_emb, x.a_present, self.a_mu, self.a_sd),
        ):
            rows = emb[present > 0.5]
            if emb.shape[1] and len(rows) > 1:
                mu.copy_(torch.as_tensor(rows.mean(0), dtype=torch.float32))
                sd.copy_(torch.as_tensor(rows.std(0) + 1e-4, dtype=torch.float32))

    def forward(
        self,
        v_logit: torch.Tensor,
        v_emb: torch.Tensor,
        v_present: torch.Tensor,
        a_logit: torch.Tensor,
        a_emb: torch.Tensor,
        a_present: torch.Tensor,
        s_feat: torch.Tensor | None = None,
        s_present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.method == "noisy_or":
            return _noisy_or(v_logit, v_present, self.v_cal, a_logit, a_present, self.a_cal)
        vp, ap = v_present.unsqueeze(1), a_present.unsqueeze(1)
        v, a = v_logit.unsqueeze(1) * vp, a_logit.unsqueeze(1) * ap
        both = vp * ap
        sync: list[torch.Tensor] = []
        if self.sync_dim:
            if s_feat is None or s_present is None:
                s_feat, s_present = (
                    torch.zeros(len(v), self.sync_dim, device=v.device),
                    torch.zeros(len(v), device=v.device),
                )
            # Sync means nothing once either modality is hidden (modality dropout, missing audio).
            sp = s_present.unsqueeze(1) * both
            sync = [s_feat * sp, sp]
        if self.method == "stacking":
            # A logit's weight may differ when it is the only evidence, so each pattern gets its own.
            feats = torch.cat([v * both, a * both, v * (1 - ap), a * (1 - vp), vp, ap, both, *sync], dim=1)
            return self.net(feats).squeeze(-1)
        logits = torch.cat([v, a, vp, ap], dim=1)
        ve = (v_emb - self.v_mu) / self.v_sd * vp
        ae = (a_emb - self.a_mu) / self.a_sd * ap
        return self.net(torch.cat([ve, ae, logits, *sync], dim=1)).squeeze(-1)


def _noisy_or(
    v_logit: torch.Tensor,
    v_present: torch.Tensor,
    v_cal: torch.Tensor,
    a_logit: torch.Tensor,
    a_present: torch.Tensor,
    a_cal: torch.Tensor,
) -> torch.Tensor:
    """Logit of 1 - (1 - p_v)(1 - p_a) from branch logits [B] and their calibrations; an absent branch counts as 0."""

    def prob(z: torch.Tensor, cal: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid((z.double() * cal[0] + cal[1]).clamp(-60, 60)).clamp(cal[2], cal[3])
        return p * (present > 0.5)

    keep = (1 - prob(v_logit, v_cal, v_present)) * (1 - prob(a_logit, a_cal, a_present))
    keep = keep.clamp(1e-12, 1 - 1e-12)
    # Double precision so that probabilities near 0 or 1 survive the round trip through the logit.
    return (torch.log1p(-keep) - torch.log(keep)).to(v_logit.dtype)


def _known(y_mod: np.ndarray | None, y: np.ndarray) -> np.ndarray:
    """Per-modality targets where known (>= 0), else the overall label."""
    if y_mod is None:
        return np.asarray(y, dtype=np.float32)
    y_mod = np.asarray(y_mod, dtype=np.float32)
    return np.where(y_mod >= 0, y_mod, y).astype(np.float32)


def single_modality_variants(
    x: FusionInputs, y: np.ndarray, y_v: np.ndarray | None = None, y_a: np.ndarray | None = None
) -> tuple[FusionInputs, np.ndarray, np.ndarray]:
    """``x`` plus, for items with both modalities, a vision-only and an audio-only copy.

    A hidden modality cannot be what made the file fake, so a vision-only copy is labelled with
    the video label and an audio-only copy with the audio label (the overall label where those are
    unknown). Returns inputs, targets and a pattern id per row (0 both/as-is, 1 vision only, 2 audio only).
    """
    both = np.flatnonzero((x.v_present > 0.5) & (x.a_present > 0.5))
    v_only, a_only = x.subset(both), x.subset(both)
    v_only.a_present = np.zeros(len(both))
    a_only.v_present = np.zeros(len(both))
    yv, ya = _known(y_v, y), _known(y_a, y)
    xs = FusionInputs.concat([x, v_only, a_only])
    ys = np.concatenate([np.asarray(y, np.float32), yv[both], ya[both]])
    pattern = np.concatenate([np.zeros(len(x)), np.ones(len(both)), np.full(len(both), 2)]).astype(np.int64)
    return xs, ys, pattern


def train_fusion(
    method: str,
    x: FusionInputs,
    y: np.ndarray,
    *,
    y_v: np.ndarray | None = None,
    y_a: np.ndarray | None = None,
    hidden: int,
    modality_dropout: float,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int = 0,
    calibrations: tuple[object | None, object | None] = (None, None),
) -> LateFusion:
    """Fit a :class:`LateFusion` on all of ``x`` (full-batch AdamW; the data is one validation set).

    Modality dropout: each step, every item with both modalities is seen with one of them hidden
    with probability ``modality_dropout``; its target is then the remaining modality's label
    (``y_v`` / ``y_a``, -1 where unknown, falling back to ``y``). ``calibrations`` (vision, audio) are the
    branch calibrations ``noisy_or`` combines; that method learns nothing.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LateFusion(method, x.v_emb.shape[1], x.a_emb.shape[1], hidden, sync_dim=x.s_feat.shape[1])
    model.fit_scaler(x)
    model.set_calibrations(*calibrations)
    if method == "noisy_or":
        return model.eval()
    v_logit, v_emb, vp, a_logit, a_emb, ap, s_feat, sp = x.tensors()
    yt = torch.as_tensor(y, dtype=torch.float32)
    yv = torch.as_tensor(_known(y_v, y))
    ya = torch.as_tensor(_known(y_a, y))
    both = (vp > 0.5) & (ap > 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        drop = both & (torch.rand(vp.shape, generator=gen) < modality_dropout)
        drop_v = drop & (torch.rand(vp.shape, generator=gen) < 0.5)
        drop_a = drop & ~drop_v
        target = torch.where(drop_v, ya, torch.where(drop_a, yv, yt))
        opt.zero_grad()
        out = model(v_logit, v_emb, vp * (~drop_v).float(), a_logit, a_emb, ap * (~drop_a).float(), s_feat, sp)
        loss = loss_fn(out, target)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def fusion_logits(model: LateFusion, x: FusionInputs) -> np.ndarray:
    """Fused logits [N] for ``x``."""
    model.eval()
    return model(*x.tensors(model.v_mu.device)).cpu().numpy()


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold id in [0, k) per item, balanced per class."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold
