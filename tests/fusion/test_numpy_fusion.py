"""NumPy fusion (the ONNX runtime's) gives LateFusion's logits from the same safetensors, for every method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df.errors import CheckpointError
from multimodal_df.fusion.inputs import FusionInputs
from multimodal_df.fusion.model import LateFusion, fusion_logits
from multimodal_df.fusion.numpy_fusion import NumpyFusion
from multimodal_df.pipeline.calibration import Calibration
from multimodal_df.pipeline.files import save_weights


def _inputs(n: int, dv: int, da: int, ds: int, seed: int = 0) -> FusionInputs:
    rng = np.random.default_rng(seed)
    # Every presence pattern: both, vision only, audio only; sync present on some.
    vp = np.tile([1.0, 1.0, 0.0], n)[:n]
    ap = np.tile([1.0, 0.0, 1.0], n)[:n]
    return FusionInputs(
        rng.normal(0, 3, n) * vp,
        rng.normal(size=(n, dv)) * vp[:, None],
        vp,
        rng.normal(0, 3, n) * ap,
        rng.normal(size=(n, da)) * ap[:, None],
        ap,
        rng.normal(size=(n, ds)),
        (rng.random(n) < 0.5).astype(float),
    )


@pytest.mark.parametrize(
    ("method", "sync_dim"), [("noisy_or", 0), ("stacking", 0), ("stacking", 3), ("mlp", 0), ("mlp", 3)]
)
def test_numpy_fusion_matches_late_fusion(method: str, sync_dim: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LateFusion(method, 6, 4, hidden=8, sync_dim=sync_dim).eval()
    x = _inputs(30, 6, 4, sync_dim)
    model.fit_scaler(x)
    model.set_calibrations(Calibration(1.3, -0.4, 0.01, 0.99), Calibration(0.8, 0.2, 0.02, 0.98))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)  # not the initial weights: a mismatch in any of them would show
    path = tmp_path / "fusion.safetensors"
    save_weights(model, path)
    ours = NumpyFusion.load(model.config(), path)
    want = fusion_logits(model, x)
    got = ours.logits(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_wrong_or_damaged_weights_are_refused(tmp_path: Path) -> None:
    model = LateFusion("stacking", 6, 4).eval()
    path = tmp_path / "fusion.safetensors"
    save_weights(model, path)
    with pytest.raises(CheckpointError, match="net.weight"):
        NumpyFusion.load(LateFusion("stacking", 6, 4, sync_dim=2).config(), path)  # other architecture
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not readable"):
        NumpyFusion.load(model.config(), tmp_path / "bad.safetensors")
