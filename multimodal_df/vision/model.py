"""Face-crop classifier: a torchvision CNN (or a tiny debug CNN) with an embedding and a logit head.

Preprocessing is owned by the model: it takes float RGB in [0, 1] and normalises with its own
mean and std, so exported graphs and callers never have to know them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import VisionConfig
from ..errors import CheckpointError


class TinyCNN(nn.Module):
    """A four-block CNN for tests and debugging (about 100 k parameters)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def _strip_classifier(model: nn.Module) -> int:
    """Replace the last Linear layer of a torchvision classifier with Identity; return its in_features."""
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


def build_backbone(arch: str) -> tuple[nn.Module, int]:
    """A feature extractor by name and its output width: ``tiny_cnn``, ``efficientnet_lite0`` or any torchvision classifier."""
    if arch == "tiny_cnn":
        m = TinyCNN()
        return m, m.out_dim
    if arch == "efficientnet_lite0":
        from .efficientnet_lite import EfficientNetLite0

        lite = EfficientNetLite0()
        return lite, _strip_classifier(lite)
    import torchvision

    try:
        m = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        names = ", ".join(sorted(torchvision.models.list_models(module=torchvision.models))[:12])
        raise ValueError(f"unknown vision arch {arch!r}; use tiny_cnn or a torchvision classifier ({names}, ...)") from None
    return m, _strip_classifier(m)


class VisionModel(nn.Module):
    """Scores face crops.

    ``forward(x)``: x float [B, 3, S, S] in [0, 1] -> (embedding [B, D], logit [B]); logit > 0 leans fake.
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone, self.embed_dim = build_backbone(cfg.arch)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.embed_dim, 1)
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.backbone((x - self.mean) / self.std)
        return emb, self.head(self.dropout(emb)).squeeze(-1)

    @staticmethod
    def to_input(crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 RGB crops [K, S, S, 3] -> float [K, 3, S, S] in [0, 1] on ``device``."""
        t = torch.from_numpy(np.array(crops, dtype=np.uint8)).to(device)  # a copy: cached crops are read-only memory maps
        return t.permute(0, 3, 1, 2).float().div_(255.0)

    def pool(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-crop logits [K] -> one video logit (scalar tensor)."""
        if self.cfg.pool == "max":
            return logits.max()
        if self.cfg.pool == "topk":
            k = max(1, int(round(self.cfg.topk_frac * logits.numel())))
            return logits.topk(k).values.mean()
        return logits.mean()

    def load_pretrained(self, path: str | Path) -> tuple[int, int]:
        """Load ImageNet (or other) backbone weights from a local file; returns (loaded, skipped) tensor counts.

        Accepts safetensors, or a plain state dict saved by torch (read with ``weights_only=True``,
        never unpickling arbitrary objects). Keys may carry a ``backbone.`` prefix; the classifier
        and any tensor whose shape differs are skipped.
        """
        from .efficientnet_lite import IMAGENET_WEIGHTS, imagenet_weights_path

        if str(path) == IMAGENET_WEIGHTS:
            try:
                path = imagenet_weights_path()
            except FileNotFoundError as exc:
                raise CheckpointError(str(exc)) from None
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"pretrained weights not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
        own = self.backbone.state_dict()
        matched = {}
        for k, v in state.items():
            k2 = k.removeprefix("backbone.")
            if k2 in own and own[k2].shape == v.shape:
                matched[k2] = v
        if not matched:
            raise CheckpointError(f"{path}: no tensor matches the {self.cfg.arch} backbone; wrong architecture?")
        self.backbone.load_state_dict(matched, strict=False)
        return len(matched), len(own) - len(matched)


def create_vision_model(cfg: VisionConfig) -> VisionModel:
    """Build the vision model, loading ``cfg.pretrained_path`` when set."""
    model = VisionModel(cfg)
    if cfg.pretrained_path:
        model.load_pretrained(cfg.pretrained_path)
    return model
