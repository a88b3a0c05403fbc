"""Test-time augmentation of the face model, tried on evaluation manifests: every crop is scored as it is and
mirrored (``flip``), optionally also re-cropped tighter (``zoom``), and the logits averaged.

Run: python scripts/experiments/vision_tta.py MODE CHECKPOINT MANIFEST OUT  (MODE: none, flip, flipzoom)
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from multimodal_df import evaluate
from multimodal_df.vision.model import VisionModel


def main() -> None:
    mode, ckpt, manifest, out = sys.argv[1:5]
    plain = VisionModel.forward

    def views(x: torch.Tensor) -> list[torch.Tensor]:
        out = [x]
        if mode in ("flip", "flipzoom"):
            out.append(x.flip(-1))
        if mode == "flipzoom":
            s = x.shape[-1]
            m = int(round(s * 0.06))
            z = F.interpolate(x[..., m : s - m, m : s - m], size=(s, s), mode="bilinear", align_corners=False)
            out += [z, z.flip(-1)]
        return out

    def forward(self: VisionModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = [plain(self, v) for v in views(x)]
        return torch.stack([e for e, _ in res]).mean(0), torch.stack([lg for _, lg in res]).mean(0)

    VisionModel.forward = forward  # type: ignore[method-assign]
    evaluate.main(["--checkpoint", ckpt, "--manifest", manifest, "--out", out])


if __name__ == "__main__":
    main()
