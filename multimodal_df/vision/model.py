"""Face-crop classifier: a backbone from the registry (:mod:`.backbones`) with an embedding and a logit head.

Preprocessing is owned by the model: it takes float RGB in [0, 1] and normalises with its own
mean and std, so exported graphs and callers never have to know them. The model describes itself
(:meth:`VisionModel.config`) and is rebuilt from that description (:meth:`VisionModel.from_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..config import VisionConfig
from ..errors import CheckpointError
from .backbones import backbone_spec


class TinyCNN(nn.Module):
    """A four-block CNN for tests and debugging (about 100 k parameters)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 8):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@dataclass
class VisionArgs:
    """Everything that defines a face model's architecture and input (what a checkpoint stores)."""

    arch: str
    input_size: int
    """Side of the square crops, pixels."""
    mean: list[float]
    std: list[float]
    dropout: float = 0.2
    pool: Literal["mean", "max", "topk"] = "mean"
    """How per-crop logits become the video logit."""
    topk_frac: float = 0.25
    taps: list[int] = field(default_factory=list)
    """Backbone blocks whose activations, pooled to their spatial mean and standard deviation per channel, join
    the embedding (EfficientNet-Lite0 only). Generator traces live in early, local statistics that the last
    layer's global pool averages away; a head on several depths generalises better to unseen generators."""


def vision_args(cfg: VisionConfig) -> VisionArgs:
    """The architecture a config asks for, with the backbone's own preprocessing where the config leaves it open."""
    spec = backbone_spec(cfg.arch)
    return VisionArgs(
        arch=cfg.arch,
        input_size=cfg.input_size or spec.input_size,
        mean=list(cfg.mean or spec.mean),
        std=list(cfg.std or spec.std),
        dropout=cfg.dropout,
        pool=cfg.pool,
        topk_frac=cfg.topk_frac,
        taps=list(cfg.taps),
    )


class VisionModel(nn.Module):
    """Scores face crops.

    ``forward(x)``: x float [B, 3, S, S] in [0, 1] -> (embedding [B, D], logit [B]); logit > 0 leans fake.
    """

    def __init__(self, args: VisionArgs) -> None:
        super().__init__()
        self.args = args
        self.backbone, self.embed_dim = backbone_spec(args.arch).build()
        self.taps = tuple(args.taps)
        if self.taps:
            if not hasattr(self.backbone, "forward_taps"):
                raise CheckpointError(
                    f"vision.taps needs a backbone with tapped blocks (efficientnet_lite0), not {args.arch}"
                )
            widths = self.backbone.block_channels()
            if not all(0 <= i < len(widths) for i in self.taps):
                raise CheckpointError(f"vision.taps {list(self.taps)}: blocks are numbered 0-{len(widths) - 1}")
            self.embed_dim += 2 * sum(widths[i] for i in self.taps)
            # Pooled statistics of different depths differ in scale by orders of magnitude: standardise them
            # (running statistics, so inference and the exported graph need no batch).
            self.norm: nn.Module = nn.BatchNorm1d(self.embed_dim, affine=False)
        else:
            self.norm = nn.Identity()
        self.frozen_backbone = False
        self.dropout = nn.Dropout(args.dropout)
        self.head = nn.Linear(self.embed_dim, 1)
        self.register_buffer("mean", torch.tensor(args.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(args.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def config(self) -> VisionArgs:
        """The architecture, as a checkpoint stores it."""
        return self.args

    @classmethod
    def from_config(cls, args: VisionArgs) -> VisionModel:
        """A model of the architecture ``args`` (weights untrained: load them next)."""
        return cls(args)

    @property
    def input_size(self) -> int:
        return self.args.input_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        if self.taps:
            emb, acts = self.backbone.forward_taps(x, self.taps)
            parts = [emb]
            for a in acts:
                parts += [a.mean(dim=(2, 3)), a.std(dim=(2, 3))]
            emb = self.norm(torch.cat(parts, dim=1))
        else:
            emb = self.backbone(x)
        return emb, self.head(self.dropout(emb)).squeeze(-1)

    def freeze_backbone(self) -> None:
        """Train only the head (a probe on the pretrained features): the backbone's weights and its batch-norm
        statistics stay as loaded. Fine-tuning a pretrained network on pseudo-fakes fits their particular
        artefacts; frozen features keep what ImageNet taught and transfer better to unseen generators."""
        self.frozen_backbone = True
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> VisionModel:
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    @staticmethod
    def to_input(crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 RGB crops [K, S, S, 3] -> float [K, 3, S, S] in [0, 1] on ``device``."""
        t = torch.from_numpy(np.array(crops, dtype=np.uint8)).to(
            device
        )  # a copy: cached crops are read-only memory maps
        return t.permute(0, 3, 1, 2).float().div_(255.0)

    def pool(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-crop logits [K] -> one video logit (scalar tensor)."""
        if self.args.pool == "max":
            return logits.max()
        if self.args.pool == "topk":
            k = max(1, int(round(self.args.topk_frac * logits.numel())))
            return logits.topk(k).values.mean()
        return logits.mean()

    def load_pretrained(self, path: str | Path) -> tuple[int, int]:
        """Load ImageNet (or other) backbone weights from a local file; returns (loaded, skipped) tensor counts.

        Accepts safetensors, or a plain state dict saved by torch (read with ``weights_only=True``,
        never unpickling arbitrary objects). Keys may carry a ``backbone.`` prefix; the classifier
        and any tensor whose shape differs are skipped.
        """
        from .efficientnet_lite import IMAGENET_WEIGHTS_BY_NAME, imagenet_weights_path

        if str(path) in IMAGENET_WEIGHTS_BY_NAME:
            try:
                path = imagenet_weights_path(IMAGENET_WEIGHTS_BY_NAME[str(path)])
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
            raise CheckpointError(f"{path}: no tensor matches the {self.args.arch} backbone; wrong architecture?")
        self.backbone.load_state_dict(matched, strict=False)
        return len(matched), len(own) - len(matched)


def create_vision_model(cfg: VisionConfig) -> VisionModel:
    """Build the vision model a config describes, loading ``cfg.pretrained_path`` when set."""
    model = VisionModel(vision_args(cfg))
    if cfg.pretrained_path:
        model.load_pretrained(cfg.pretrained_path)
    return model
