"""Speech classifier: a log-mel CNN and attentive pooling over wav2vec 2.0 hidden states.

Both sub-branches see the same window; their embeddings are concatenated, projected to one
embedding, and a linear head gives the window's logit. Either sub-branch can be switched off.
The model owns its windowing and describes itself (:meth:`AudioModel.config`): a checkpoint stores
the complete wav2vec 2.0 architecture, so loading one never needs a model hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import AudioConfig, Wav2VecConfig
from ..errors import CheckpointError
from .features import window_samples


class LogMel(nn.Module):
    """Waveform [B, L] -> log-mel [B, n_mels, frames], standardised per example.

    Per-example standardisation removes overall loudness, which says nothing about authenticity
    and differs between datasets (a classic shortcut). With ``norm="band"`` each mel band's mean over the
    window is removed first (cepstral mean normalisation): a fixed spectral tilt, i.e. the microphone, room
    EQ and much of the speaker's timbre, then cannot be the tell, while what changes within the window
    (vocoder buzz, smeared harmonics, band edges that come and go) is kept.

    ``scale="linear"`` spaces the ``n_mels`` triangular bands evenly from 0 Hz to Nyquist instead of on the mel scale
    (a linear filterbank, as the LFCC front ends of spoofing countermeasures): the same module and maths, only the
    filterbank differs, so the ONNX export (which reads the filterbank) needs nothing else.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        norm: str = "global",
        scale: str = "mel",
    ) -> None:
        super().__init__()
        import torchaudio

        if norm not in ("global", "band"):
            raise ValueError(f"audio mel_norm must be 'global' or 'band', not {norm!r}")
        if scale not in ("mel", "linear"):
            raise ValueError(f"audio frequency_scale must be 'mel' or 'linear', not {scale!r}")
        self.norm = norm
        self.scale = scale

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0
        )
        if scale == "linear":
            fb = torchaudio.functional.linear_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
            self.mel.mel_scale.fb.copy_(fb)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # The STFT runs in float32 even under autocast: fp16 power spectra underflow.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = torch.log(self.mel(wave.float()) + 1e-6)
        return standardise_logmel(spec, self.norm)


def standardise_logmel(spec: torch.Tensor, norm: str = "global") -> torch.Tensor:
    """Log-mel [B, n_mels, frames] -> zero mean, unit spread per example; ``norm="band"`` removes each band's
    mean over the frames first (see :class:`LogMel`). Shared with the ONNX export, so both stay the same maths."""
    if norm == "band":
        spec = spec - spec.mean(dim=2, keepdim=True)
    mu = spec.mean(dim=(1, 2), keepdim=True)
    sd = spec.std(dim=(1, 2), keepdim=True)
    return (spec - mu) / (sd + 1e-5)


class MelCNN(nn.Module):
    """Log-mel [B, n_mels, frames] -> embedding [B, 2C] (``pool="global"``: mean+max over time and frequency) or
    [B, 2C x bands] (``pool="band"``: over time only, each of the ``n_mels / 2^blocks`` remaining bands kept apart, so
    the head knows in which band a trace sits, as spoofing countermeasures that flatten their frequency axis do)."""

    def __init__(self, channels: list[int], pool: str = "global", n_mels: int = 64) -> None:
        super().__init__()
        if pool not in ("global", "band"):
            raise ValueError(f"pool must be 'global' or 'band', not {pool!r}")
        self.pool = pool
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        bands = n_mels // 2 ** len(channels)  # each block's 2x2 max-pool halves the bands (floored)
        if pool == "band" and bands < 1:
            raise ValueError(f"pool='band' needs n_mels >= 2^{len(channels)} (have {n_mels})")
        self.out_dim = 2 * c_in * (bands if pool == "band" else 1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        h = self.net(spec.unsqueeze(1))
        if self.pool == "band":
            return torch.cat([h.mean(dim=3).flatten(1), h.amax(dim=3).flatten(1)], dim=1)
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

    Built from ``hf_config`` (a transformers ``Wav2Vec2Config`` as a dict: the complete architecture).
    :meth:`from_pretrained` instead loads weights from a Hugging Face id or a local directory (training only).
    """

    def __init__(self, hf_config: dict[str, Any], layer: int = -1, encoder: nn.Module | None = None) -> None:
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        self.encoder = encoder if encoder is not None else Wav2Vec2Model(Wav2Vec2Config.from_dict(hf_config))
        # LayerDrop skips whole layers in training, and transformers then returns fewer hidden states
        # (none at all when every layer is skipped), so pooling a fixed layer would index past the end.
        self.encoder.config.layerdrop = 0.0
        self.hf_config: dict[str, Any] = self.encoder.config.to_dict()
        self.layer = layer
        self.frozen = False
        n_states = self.encoder.config.num_hidden_layers + 1
        if not -n_states <= layer < n_states:
            raise ValueError(f"audio.wav2vec.layer={layer} but the encoder has {n_states} hidden states")
        hidden = self.encoder.config.hidden_size
        self.pool = AttentivePool(hidden)
        self.out_dim = 2 * hidden

    @classmethod
    def from_pretrained(cls, name_or_dir: str, layer: int = -1) -> Wav2VecBranch:
        """Load a pretrained encoder (a Hugging Face id, or a local directory with config.json and weights)."""
        from transformers import Wav2Vec2Model

        try:
            encoder = Wav2Vec2Model.from_pretrained(name_or_dir)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot load wav2vec 2.0 weights {name_or_dir!r}: give a local directory with config.json and "
                f"model weights, or a Hugging Face id reachable from this machine ({' '.join(str(exc).split())[:200]})"
            ) from None
        return cls(encoder.config.to_dict(), layer, encoder)

    def freeze(self, whole: bool, feature_encoder: bool) -> None:
        """Training: freeze the whole encoder (only pooling and heads train) or just its convolutional front end."""
        if whole:
            self.encoder.requires_grad_(False)
            self.frozen = True
        elif feature_encoder:
            self.encoder.freeze_feature_encoder()

    def train(self, mode: bool = True) -> Wav2VecBranch:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a frozen encoder keeps its dropout and SpecAugment off
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # wav2vec 2.0 expects zero-mean, unit-variance input per example.
        x = (wave - wave.mean(dim=1, keepdim=True)) / (wave.std(dim=1, keepdim=True) + 1e-5)
        out = self.encoder(x, output_hidden_states=True)
        return self.pool(out.hidden_states[self.layer])


@dataclass
class AudioArgs:
    """Everything that defines a speech model's architecture and input (what a checkpoint stores)."""

    sample_rate: int = 16000
    window_s: float = 2.0
    """Window length scored at once, seconds."""
    hop_s: float = 1.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    mel_norm: str = "global"
    """"global" (one mean and spread per window) or "band" (each band's mean removed first: :class:`LogMel`)."""
    frequency_scale: str = "mel"
    """"mel" or "linear" band spacing of the front end (:class:`LogMel`)."""
    use_mel: bool = True
    mel_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    mel_pool: str = "global"
    """How the spectrogram CNN pools (:class:`MelCNN`): "global" or "band" (over time only)."""
    embed_dim: int = 128
    dropout: float = 0.2
    wav2vec: dict[str, Any] | None = None
    """The wav2vec 2.0 encoder's complete transformers config, or None without that sub-branch."""
    wav2vec_layer: int = -1


class AudioModel(nn.Module):
    """Scores audio windows.

    ``forward(wave)``: float [B, L] at ``sample_rate`` in [-1, 1] -> (embedding [B, E], logit [B]).
    """

    def __init__(self, args: AudioArgs, wav2vec: Wav2VecBranch | None = None) -> None:
        super().__init__()
        if not args.use_mel and args.wav2vec is None:
            raise ValueError("audio: enable at least one of use_mel and wav2vec.enabled")
        self.args = args
        self.sample_rate = args.sample_rate
        dims = 0
        self.logmel: LogMel | None = None
        self.mel_cnn: MelCNN | None = None
        self.wav2vec: Wav2VecBranch | None = None
        if args.use_mel:
            self.logmel = LogMel(
                args.sample_rate, args.n_fft, args.hop_length, args.n_mels, args.mel_norm, args.frequency_scale
            )
            self.mel_cnn = MelCNN(args.mel_channels, args.mel_pool, args.n_mels)
            dims += self.mel_cnn.out_dim
        if args.wav2vec is not None:
            self.wav2vec = wav2vec if wav2vec is not None else Wav2VecBranch(args.wav2vec, args.wav2vec_layer)
            dims += self.wav2vec.out_dim
        self.proj = nn.Sequential(nn.Linear(dims, args.embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(args.dropout)
        self.head = nn.Linear(args.embed_dim, 1)
        self.embed_dim = args.embed_dim

    def config(self) -> AudioArgs:
        """The architecture, as a checkpoint stores it (with the wav2vec 2.0 config actually built)."""
        if self.wav2vec is not None:
            self.args.wav2vec = self.wav2vec.hf_config
        return self.args

    @classmethod
    def from_config(cls, args: AudioArgs) -> AudioModel:
        """A model of the architecture ``args`` (weights untrained: load them next). Never reaches a model hub."""
        return cls(args)

    @property
    def window_samples(self) -> int:
        return window_samples(self.args.window_s, self.sample_rate)

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


def audio_args(cfg: AudioConfig, sample_rate: int = 16000, wav2vec: dict[str, Any] | None = None) -> AudioArgs:
    """The architecture a config asks for; ``wav2vec`` is the encoder's transformers config when it is enabled."""
    return AudioArgs(
        sample_rate=sample_rate,
        window_s=cfg.window_s,
        hop_s=cfg.hop_s,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        mel_norm=cfg.mel_norm,
        frequency_scale=cfg.frequency_scale,
        use_mel=cfg.use_mel,
        mel_channels=list(cfg.mel_channels),
        mel_pool=cfg.mel_pool,
        embed_dim=cfg.embed_dim,
        dropout=cfg.dropout,
        wav2vec=wav2vec,
        wav2vec_layer=cfg.wav2vec.layer,
    )


def create_audio_model(cfg: AudioConfig, sample_rate: int = 16000) -> AudioModel:
    """Build the speech model a config describes (for training): a pretrained wav2vec 2.0 is loaded from
    ``cfg.wav2vec.pretrained`` when set, else the encoder is built from the config's architecture; freezing applied."""
    w = cfg.wav2vec
    if not cfg.use_mel and not w.enabled:
        raise ValueError("audio: enable at least one of use_mel and wav2vec.enabled")
    if w.enabled and w.pretrained:
        branch = Wav2VecBranch.from_pretrained(w.pretrained, w.layer)
        model = AudioModel(audio_args(cfg, sample_rate, branch.hf_config), branch)
    else:
        model = AudioModel(audio_args(cfg, sample_rate, wav2vec_hf_config(w) if w.enabled else None))
    if model.wav2vec is not None:
        model.wav2vec.freeze(w.freeze, w.freeze_feature_encoder)
    return model
