"""Late fusion's forward in NumPy, for the ONNX runtime (no PyTorch).

:class:`NumpyFusion` reads the same ``fusion.safetensors`` as :class:`multimodal_df.fusion.model.LateFusion`
and computes the same fused logit for each method (``noisy_or``, ``stacking``, ``mlp``): float32 as PyTorch
computes it, double precision where ``LateFusion`` uses it (the noisy-OR's probabilities). The model is a
handful of multiply-adds; a graph and a session for it would cost more than it does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .inputs import FUSION_METHODS, FusionArgs, FusionInputs


def _linear(x: np.ndarray, state: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


class NumpyFusion:
    """Branch outputs -> fused logit, as :class:`~multimodal_df.fusion.model.LateFusion` computes it.

    ``args``: the architecture (a checkpoint's ``fusion.args``); ``state``: its tensors by state-dict name, as
    NumPy arrays (:meth:`load` reads them from safetensors).
    """

    def __init__(self, args: FusionArgs, state: dict[str, np.ndarray]) -> None:
        if args.method not in FUSION_METHODS:
            raise CheckpointError(f"unknown fusion method {args.method!r}")
        self.args = args
        self.method, self.hidden = args.method, args.hidden
        self.vision_dim, self.audio_dim, self.sync_dim = args.vision_dim, args.audio_dim, args.sync_dim
        n_sync = self.sync_dim + 1 if self.sync_dim else 0
        shapes: dict[str, tuple[int, ...]] = {
            "v_mu": (self.vision_dim,),
            "v_sd": (self.vision_dim,),
            "a_mu": (self.audio_dim,),
            "a_sd": (self.audio_dim,),
        }
        if self.method == "noisy_or":
            shapes |= {"v_cal": (4,), "a_cal": (4,)}
        elif self.method == "stacking":
            shapes |= {"net.weight": (1, 7 + n_sync), "net.bias": (1,)}
        else:
            width = self.vision_dim + self.audio_dim + 4 + n_sync
            shapes |= {
                "net.0.weight": (self.hidden, width),
                "net.0.bias": (self.hidden,),
                "net.3.weight": (1, self.hidden),
                "net.3.bias": (1,),
            }
        for key, shape in shapes.items():
            t = state.get(key)
            if t is None or tuple(t.shape) != shape:
                got = "missing" if t is None else f"shape {tuple(t.shape)}"
                raise CheckpointError(f"fusion weights: {key} is {got}, expected {shape}")
            if not np.isfinite(t).all():
                raise CheckpointError(f"fusion weights: {key} holds non-finite values")
        self.state = {k: np.asarray(state[k], np.float32) for k in shapes}

    @classmethod
    def load(cls, args: FusionArgs, path: str | Path) -> NumpyFusion:
        """The fusion model of architecture ``args`` with the weights in safetensors file ``path``."""
        from safetensors.numpy import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{Path(path).name}: not readable safetensors ({type(exc).__name__})") from None
        return cls(args, state)

    def logits(self, x: FusionInputs) -> np.ndarray:
        """Fused logits [N] (float32) for N items."""
        f = {k: np.asarray(getattr(x, k), np.float32) for k in FusionInputs.__dataclass_fields__}
        s = self.state
        if self.method == "noisy_or":

            def prob(z: np.ndarray, cal: np.ndarray, present: np.ndarray) -> np.ndarray:
                c = cal.astype(np.float64)
                p = 1.0 / (1.0 + np.exp(-np.clip(z.astype(np.float64) * c[0] + c[1], -60, 60)))
                return np.clip(p, c[2], c[3]) * (present > 0.5)

            keep = (1 - prob(f["v_logit"], s["v_cal"], f["v_present"])) * (
                1 - prob(f["a_logit"], s["a_cal"], f["a_present"])
            )
            keep = np.clip(keep, 1e-12, 1 - 1e-12)
            # Double precision so that probabilities near 0 or 1 survive the round trip through the logit.
            return (np.log1p(-keep) - np.log(keep)).astype(np.float32)
        vp, ap = f["v_present"][:, None], f["a_present"][:, None]
        v, a = f["v_logit"][:, None] * vp, f["a_logit"][:, None] * ap
        both = vp * ap
        sync: list[np.ndarray] = []
        if self.sync_dim:
            # Sync means nothing once either modality is missing.
            sp = f["s_present"][:, None] * both
            sync = [f["s_feat"] * sp, sp]
        if self.method == "stacking":
            feats = np.concatenate([v * both, a * both, v * (1 - ap), a * (1 - vp), vp, ap, both, *sync], axis=1)
            return _linear(feats, s, "net")[:, 0].astype(np.float32)
        ve = (f["v_emb"] - s["v_mu"]) / s["v_sd"] * vp
        ae = (f["a_emb"] - s["a_mu"]) / s["a_sd"] * ap
        h = np.maximum(_linear(np.concatenate([ve, ae, v, a, vp, ap, *sync], axis=1), s, "net.0"), 0)
        return _linear(h, s, "net.3")[:, 0].astype(np.float32)
