"""Speech classifier: a log-mel CNN and attentive pooling over wav2vec 2.0 hidden states.

Both sub-branches see the same window; their embeddings are concatenated, projected to one
embedding, and a linear head gives the window's logit. Either sub-branch can be switched off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import AudioConfig, Wav2VecConfig
from ..errors import CheckpointError
from .features import LogMel


class MelCNN(nn.Module):
    """Log-mel [B, n_mels, frames] -> embedding [B, C]: conv blocks, then mean+max over time and frequency."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_dim = 2 * c_in

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        h = self.net(spec.unsqueeze(1))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


class AttentivePool(nn.Module):
    """Hidden states [B, T, H] -> [B, 2H]: attention-weighted mean and standard deviation over time."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2 or 1), nn.Tanh(), nn.Linear(dim // 2 or 1, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(h).squeeze(-1).float(), dim=1).unsqueeze(-1)
        h = h.float()
        mean = (w * h).sum(dim=1)
        var = (w * (h - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


def wav2vec_hf_config(cfg: Wav2VecConfig) -> dict[str, Any]:
    """The transformers ``Wav2Vec2Config`` (as a dict) for a model built from scratch."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        conv_dim=tuple(cfg.conv_dim),
        conv_kernel=tuple(cfg.conv_kernel),
        conv_stride=tuple(cfg.conv_stride),
        num_conv_pos_embeddings=cfg.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=cfg.num_conv_pos_embedding_groups,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        mask_time_prob=0.05,
    ).to_dict()


class Wav2VecBranch(nn.Module):
    """Waveform [B, L] -> pooled embedding [B, 2H] from one wav2vec 2.0 hidden layer.

    Built from ``hf_config`` when given (loading a checkpoint: weights follow), else from
    ``cfg.pretrained`` (a Hugging Face id or a local directory), else from ``cfg``'s architecture.
    """

    def __init__(self, cfg: Wav2VecConfig, hf_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        self.cfg = cfg
        if hf_config is not None:
            self.encoder = Wav2Vec2Model(Wav2Vec2Config.from_dict(hf_config))
        elif cfg.pretrained:
            try:
                self.encoder = Wav2Vec2Model.from_pretrained(cfg.pretrained)
            except (OSError, ValueError) as exc:
                raise CheckpointError(
                    f"cannot load wav2vec 2.0 weights {cfg.pretrained!r}: give a local directory with config.json and "
                    f"model weights, or a Hugging Face id reachable from this machine ({' '.join(str(exc).split())[:200]})"
                ) from None
        else:
            self.encoder = Wav2Vec2Model(Wav2Vec2Config.from_dict(wav2vec_hf_config(cfg)))
        # LayerDrop skips whole layers in training, and transformers then returns fewer hidden states
        # (none at all when every layer is skipped), so pooling a fixed layer would index past the end.
        self.encoder.config.layerdrop = 0.0
        self.hf_config: dict[str, Any] = self.encoder.config.to_dict()
        n_states = self.encoder.config.num_hidden_layers + 1
        if not -n_states <= cfg.layer < n_states:
            raise ValueError(f"audio.wav2vec.layer={cfg.layer} but the encoder has {n_states} hidden states")
        hidden = self.encoder.config.hidden_size
        self.pool = AttentivePool(hidden)
        self.out_dim = 2 * hidden
        if cfg.freeze:
            self.encoder.requires_grad_(False)
        elif cfg.freeze_feature_encoder:
            self.encoder.freeze_feature_encoder()

    def train(self, mode: bool = True) -> "Wav2VecBranch":
        super().train(mode)
        if self.cfg.freeze:
            self.encoder.eval()  # a frozen encoder keeps its dropout and SpecAugment off
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # wav2vec 2.0 expects zero-mean, unit-variance input per example.
        x = (wave - wave.mean(dim=1, keepdim=True)) / (wave.std(dim=1, keepdim=True) + 1e-5)
        out = self.encoder(x, output_hidden_states=True)
        return self.pool(out.hidden_states[self.cfg.layer])


class AudioModel(nn.Module):
    """Scores audio windows.

    ``forward(wave)``: float [B, L] at 16 kHz in [-1, 1] -> (embedding [B, E], logit [B]).
    """

    def __init__(self, cfg: AudioConfig, sample_rate: int = 16000, wav2vec_hf: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not cfg.use_mel and not cfg.wav2vec.enabled:
            raise ValueError("audio: enable at least one of use_mel and wav2vec.enabled")
        self.cfg = cfg
        self.sample_rate = sample_rate
        dims = 0
        self.logmel: LogMel | None = None
        self.mel_cnn: MelCNN | None = None
        self.wav2vec: Wav2VecBranch | None = None
        if cfg.use_mel:
            self.logmel = LogMel(sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels)
            self.mel_cnn = MelCNN(cfg.mel_channels)
            dims += self.mel_cnn.out_dim
        if cfg.wav2vec.enabled:
            self.wav2vec = Wav2VecBranch(cfg.wav2vec, wav2vec_hf)
            dims += self.wav2vec.out_dim
        self.proj = nn.Sequential(nn.Linear(dims, cfg.embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embed_dim, 1)
        self.embed_dim = cfg.embed_dim

    @property
    def window_samples(self) -> int:
        return int(round(self.cfg.window_s * self.sample_rate))

    def features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate representations, for explanations: ``logmel`` [B, M, F] when the mel path is on."""
        return {"logmel": self.logmel(wave)} if self.logmel is not None else {}

    def forward(self, wave: torch.Tensor, logmel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``logmel`` [B, M, F], when given, replaces the model's own log-mel (saliency maps need it as a leaf)."""
        parts = []
        if self.mel_cnn is not None and self.logmel is not None:
            parts.append(self.mel_cnn(self.logmel(wave) if logmel is None else logmel))
        if self.wav2vec is not None:
            parts.append(self.wav2vec(wave))
        emb = self.proj(torch.cat(parts, dim=1).float())
        return emb, self.head(self.dropout(emb)).squeeze(-1)

    @staticmethod
    def to_input(windows: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """float windows [W, L] -> tensor on ``device``."""
        return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(device)

    def extra_config(self) -> dict[str, Any]:
        """What a checkpoint must store beyond ``AudioConfig`` to rebuild this model offline."""
        return {"wav2vec_hf": self.wav2vec.hf_config if self.wav2vec is not None else None}


def create_audio_model(cfg: AudioConfig, sample_rate: int = 16000) -> AudioModel:
    """Build the audio model; a pretrained wav2vec 2.0 is loaded from ``cfg.wav2vec.pretrained`` when set."""
    return AudioModel(cfg, sample_rate)
