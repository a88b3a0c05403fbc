"""Configuration: plain dataclasses, loaded from YAML with strict checking.

A YAML file mirrors :class:`Config` field by field. Unknown keys and values of the wrong type
are rejected with the dotted path of the offending key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


@dataclass
class DecodeConfig:
    """How frames and audio are sampled from a file."""

    num_frames: int = 16
    """Frames sampled evenly over the analysed span (used when ``fps`` is null)."""
    fps: float | None = None
    """If set, sample frames at this rate instead, capped at ``max_frames``."""
    max_frames: int = 64
    sample_rate: int = 16000
    max_seconds: float = 600.0
    """Only the first ``max_seconds`` of a file are analysed; longer files are marked truncated."""
    min_seconds: float = 0.5
    """Shorter clips are refused with a clear error: too little evidence for a verdict."""
    max_file_mb: float = 4096.0
    max_image_pixels: int = 50_000_000


@dataclass
class FaceConfig:
    """MTCNN face detection and tracking."""

    detect_max_side: int = 640
    """Frames are downscaled so the longer side is at most this before detection."""
    min_face_size: int = 20
    """Smallest face MTCNN looks for, in pixels of the downscaled frame."""
    thresholds: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.7])
    min_prob: float = 0.9
    """Detections less confident than this are ignored."""
    margin: float = 0.3
    """The square crop's side is the face box's longer side times (1 + margin)."""
    track_iou: float = 0.3
    """Detections in consecutive frames with at least this IoU belong to one track."""
    track_max_shift: float = 1.0
    """Failing the IoU test, a detection still joins a track when its centre moved at most this many
    box sizes and its size changed at most 2x: sampled frames can be a second apart."""
    batch_size: int = 16


@dataclass
class VisionConfig:
    """Face-crop classifier."""

    arch: str = "efficientnet_b0"
    """A torchvision classification model name, or ``tiny_cnn`` (tests and debugging)."""
    input_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    pretrained_path: str | None = None
    """Local ImageNet weights (safetensors, or a state-dict .pth read with weights_only=True)."""
    dropout: float = 0.2
    pool: Literal["mean", "max", "topk"] = "mean"
    """How per-crop logits become the video logit."""
    topk_frac: float = 0.25


@dataclass
class Wav2VecConfig:
    """wav2vec 2.0 encoder. With ``pretrained`` set, the architecture fields are ignored."""

    enabled: bool = True
    pretrained: str | None = None
    """A Hugging Face model id or a local directory holding config.json + weights."""
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    conv_dim: list[int] = field(default_factory=lambda: [256, 256, 256, 256, 256])
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 2])
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2])
    num_conv_pos_embeddings: int = 64
    num_conv_pos_embedding_groups: int = 8
    layer: int = -1
    """Which hidden state to pool: -1 the last, 0 the CNN features, k the k-th transformer layer."""
    freeze: bool = False
    """Freeze the whole encoder (only pooling and heads train)."""
    freeze_feature_encoder: bool = True


@dataclass
class AudioConfig:
    """Speech classifier over fixed-length windows."""

    window_s: float = 2.0
    hop_s: float = 1.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    use_mel: bool = True
    mel_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    wav2vec: Wav2VecConfig = field(default_factory=Wav2VecConfig)
    embed_dim: int = 128
    dropout: float = 0.2


@dataclass
class FusionConfig:
    """Late fusion over branch outputs, trained after the branches."""

    methods: list[Literal["stacking", "mlp"]] = field(default_factory=lambda: ["stacking", "mlp"])
    """Every listed method is trained, simplest first; see ``min_gain``."""
    min_gain: float = 0.02
    """A later (more complex) method is kept only if its out-of-fold AUC beats the best earlier one
    by at least this much: on a small validation set, AUC differences below that are noise, and
    the simpler model extrapolates more safely to inputs unlike the validation data."""
    mlp_min_clips: int = 200
    """The embedding MLP is trained and reported on any data, but kept only with at least this many
    fusion (validation) clips: with fewer, a few hundred inputs per clip overfit whatever the
    out-of-fold AUC says, and it was seen to call real clips of an unseen frame size fake."""
    hidden: int = 64
    modality_dropout: float = 0.3
    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 0.001
    folds: int = 5
    use_sync: bool = False
    """Weigh audio-visual sync (mouth motion against speech loudness, ``multimodal_df.sync``). Needs
    validation clips of people speaking in sync; with ``train.pseudo_fakes`` their audio is also
    shifted and swapped between clips to make out-of-sync fakes."""
    calibration: Literal["temperature", "platt"] = "temperature"
    threshold_rule: Literal["youden", "fixed"] = "youden"
    threshold: float = 0.5


@dataclass
class TrainConfig:
    """Optimisation for one branch stage."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    seed: int = 0
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    num_workers: int = 0
    val_fraction: float = 0.2
    """Used when the manifest has no ``split`` column: fraction of groups held out for validation."""
    augment: bool = True
    degrade_prob: float = 0.3
    """Vision: chance of JPEG re-compression (and, separately, of down/up-scaling) per training crop."""
    pseudo_fakes: bool = False
    """Train from real media only. Vision: every real crop (train and valid) also appears self-blended
    (SBI) or blended with another person's face as a fake, drawn anew each time it is seen. Audio: every
    real utterance is matched by fakes from ``audio_generators`` (see ``multimodal_df.pseudofakes``)."""
    cross_blend_prob: float = 0.3
    """Vision pseudo-fakes: share of blends that take the face of another training clip instead of a copy of itself."""
    audio_generators: list[str] = field(default_factory=lambda: ["griffin_lim", "world", "espeak", "flite"])
    audio_holdout: str | None = "world"
    """One of ``audio_generators`` kept out of training and out of model selection; its AUC is reported."""
    audio_epoch_windows: int = 4
    """Audio pseudo-fake training: windows drawn per real utterance per epoch (at random offsets), and as many fakes."""
    max_crops_per_video: int = 32
    grad_clip: float = 1.0
    progress: bool = True


@dataclass
class Config:
    """Everything needed to prepare data, train, and run a detector."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    manifest: str | None = None
    cache_dir: str = "cache"
    out_dir: str = "runs/default"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: null is not allowed (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML writes 1e-3 as a string unless it has a dot; accept ints and numeric strings for floats.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp!r}")  # a bug in this module, not the user's


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON/YAML-ready data."""
    return dataclasses.asdict(obj)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides.

    ``overrides`` maps dotted keys (``"train.epochs"``) to values, as given on a command line.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
        node[parts[-1]] = value
    cfg = from_dict(Config, data)
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    """Cross-field rules the types cannot express."""
    from .pseudofakes import AUDIO_GENERATORS

    t = cfg.train
    for g in t.audio_generators:
        if g not in AUDIO_GENERATORS:
            raise ConfigError(f"train.audio_generators: unknown generator {g!r}; expected some of {list(AUDIO_GENERATORS)}")
    if t.audio_holdout is not None and t.audio_holdout not in t.audio_generators:
        raise ConfigError(f"train.audio_holdout: {t.audio_holdout!r} is not one of train.audio_generators {t.audio_generators}")
    if t.audio_holdout is not None and len(t.audio_generators) < 2:
        raise ConfigError("train.audio_holdout: holding out the only generator leaves nothing to train on")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


# Keep the names importable for type checkers that want the full set.
__all__ = [
    "AudioConfig",
    "Config",
    "DecodeConfig",
    "FaceConfig",
    "FusionConfig",
    "TrainConfig",
    "VisionConfig",
    "Wav2VecConfig",
    "from_dict",
    "load_config",
    "parse_override",
    "to_dict",
]
