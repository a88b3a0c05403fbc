"""What a checkpoint's ``config.json`` may hold, checked before any model is built (layout: see
:mod:`multimodal_df.pipeline.checkpoint`).

Types, required keys, finite numbers and bounded architecture sizes are all checked, so a damaged or
hostile ``config.json`` is a one-line :class:`CheckpointError`, never a traceback, a runaway allocation
or a download. Version-1 checkpoints (the branch's training config stored as its architecture) are
converted to the version-2 layout on reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DecodeConfig, FaceConfig, from_dict
from ..errors import CheckpointError, ConfigError
from ..fusion.inputs import FUSION_METHODS, FusionArgs
from .calibration import Calibration
from .files import one_line

if TYPE_CHECKING:
    # The branch architectures live beside their PyTorch models; read_spec imports them when it builds them, so
    # read_settings (what the ONNX runtime reads) never imports PyTorch.
    from ..audio.model import AudioArgs
    from ..vision.model import VisionArgs

FORMAT = "multimodal_df/detector"
FORMAT_VERSION = 2
MAX_CONFIG_BYTES = 4 * 2**20
"""A config.json larger than this is not one we wrote."""


@dataclass
class BranchMeta:
    """What a checkpoint stores about a trained model besides its architecture and weights."""

    calibration: Calibration = field(default_factory=Calibration)
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)


def _bounded(where: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise CheckpointError(f"{where} = {value!r} is outside [{lo:g}, {hi:g}]")


def _check_vision(args: VisionArgs, where: str) -> None:
    from ..vision.backbones import backbone_spec

    try:
        backbone_spec(args.arch)
    except ValueError as exc:
        raise CheckpointError(f"{where}.arch: {exc}") from None
    _bounded(f"{where}.input_size", args.input_size, 16, 1024)
    if len(args.mean) != 3 or len(args.std) != 3 or min(args.std) <= 0:
        raise CheckpointError(f"{where}: mean and std need 3 values each, std > 0")
    _bounded(f"{where}.dropout", args.dropout, 0, 1)
    _bounded(f"{where}.topk_frac", args.topk_frac, 0, 1)


# Bounds on the wav2vec 2.0 architecture a checkpoint may ask for: the base and large models fit well inside.
_W2V_INT_BOUNDS = {
    "hidden_size": (8, 2048),
    "num_hidden_layers": (1, 48),
    "num_attention_heads": (1, 64),
    "intermediate_size": (8, 16384),
    "num_conv_pos_embeddings": (2, 256),
    "num_conv_pos_embedding_groups": (1, 64),
}


# Optional parts of the wav2vec 2.0 architecture that add layers or widths of their own when switched on.
_W2V_OPTIONAL_BOUNDS = {
    "num_adapter_layers": (1, 8),
    "output_hidden_size": (8, 4096),
    "adapter_kernel_size": (1, 64),
    "adapter_stride": (1, 64),
    "adapter_attn_dim": (1, 4096),
}
MAX_WAV2VEC_PARAMETERS = 400_000_000
"""wav2vec 2.0 large has 317 M parameters; an architecture past this bound is not one we train."""


def _check_wav2vec(hf: dict[str, Any], where: str) -> None:
    for key, (lo, hi) in _W2V_INT_BOUNDS.items():
        v = hf.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"{where}.{key}: expected an integer, got {v!r}")
        _bounded(f"{where}.{key}", v, lo, hi)
    for key, (lo, hi) in _W2V_OPTIONAL_BOUNDS.items():
        v = hf.get(key)
        if v is None or (key != "adapter_attn_dim" and not hf.get("add_adapter")):
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"{where}.{key}: expected an integer, got {v!r}")
        _bounded(f"{where}.{key}", v, lo, hi)
    if hf["hidden_size"] % hf["num_attention_heads"]:
        raise CheckpointError(f"{where}: hidden_size must be a multiple of num_attention_heads")
    convs = [hf.get(k) for k in ("conv_dim", "conv_kernel", "conv_stride")]
    if not all(isinstance(c, list) and 1 <= len(c) <= 12 for c in convs) or len({len(c) for c in convs}) != 1:  # type: ignore[arg-type]
        raise CheckpointError(f"{where}: conv_dim, conv_kernel and conv_stride must be lists of equal length (1-12)")
    for k, c in zip(("conv_dim", "conv_kernel", "conv_stride"), convs):
        for v in c:  # type: ignore[union-attr]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2048:
                raise CheckpointError(f"{where}.{k}: {v!r} is not an integer in [1, 2048]")
    _check_wav2vec_size(hf, where)


def _check_wav2vec_size(hf: dict[str, Any], where: str) -> None:
    """Build the encoder on PyTorch's meta device (shapes only, no memory) and count its parameters: the one
    check that covers every field transformers reads, including those no bound above names."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    try:
        with torch.device("meta"):
            encoder = Wav2Vec2Model(Wav2Vec2Config.from_dict(hf))
    except Exception as exc:  # transformers raises ValueError, KeyError, TypeError... for settings it cannot use
        raise CheckpointError(
            f"{where}: not a usable wav2vec 2.0 architecture ({type(exc).__name__}: {one_line(exc, 200)})"
        ) from None
    n = sum(t.numel() for t in encoder.parameters()) + sum(t.numel() for t in encoder.buffers())
    if n > MAX_WAV2VEC_PARAMETERS:
        raise CheckpointError(f"{where}: {n} parameters, above the {MAX_WAV2VEC_PARAMETERS} a checkpoint may hold")


def _check_audio(args: AudioArgs, where: str) -> None:
    _bounded(f"{where}.sample_rate", args.sample_rate, 4000, 96000)
    _bounded(f"{where}.window_s", args.window_s, 0.05, 30)
    _bounded(f"{where}.hop_s", args.hop_s, 0.01, 30)
    _bounded(f"{where}.n_fft", args.n_fft, 16, 8192)
    _bounded(f"{where}.hop_length", args.hop_length, 1, 8192)
    _bounded(f"{where}.n_mels", args.n_mels, 4, 512)
    _bounded(f"{where}.embed_dim", args.embed_dim, 1, 4096)
    _bounded(f"{where}.dropout", args.dropout, 0, 1)
    if not 1 <= len(args.mel_channels) <= 8 or not all(1 <= c <= 1024 for c in args.mel_channels):
        raise CheckpointError(f"{where}.mel_channels: 1-8 layers of 1-1024 channels")
    if args.mel_norm not in ("global", "band"):
        raise CheckpointError(f"{where}.mel_norm: {args.mel_norm!r} is not 'global' or 'band'")
    if args.frequency_scale not in ("mel", "linear"):
        raise CheckpointError(f"{where}.frequency_scale: {args.frequency_scale!r} is not 'mel' or 'linear'")
    if args.mel_pool not in ("global", "band"):
        raise CheckpointError(f"{where}.mel_pool: {args.mel_pool!r} is not 'global' or 'band'")
    if args.wav2vec is not None:
        _check_wav2vec(args.wav2vec, f"{where}.wav2vec")
        layers = args.wav2vec["num_hidden_layers"]
        # Hidden states are the embedding output plus one per layer; negative indices count from the last.
        _bounded(f"{where}.wav2vec_layer", args.wav2vec_layer, -(layers + 1), layers)
    if not args.use_mel and args.wav2vec is None:
        raise CheckpointError(f"{where}: neither the log-mel nor the wav2vec 2.0 path is enabled")


def _check_fusion(args: FusionArgs, where: str) -> None:
    if args.method not in FUSION_METHODS:
        raise CheckpointError(f"{where}.method: {args.method!r} is not one of {', '.join(FUSION_METHODS)}")
    for name in ("vision_dim", "audio_dim", "sync_dim"):
        _bounded(f"{where}.{name}", getattr(args, name), 0, 8192)
    _bounded(f"{where}.hidden", args.hidden, 1, 4096)


def _check_decode(d: DecodeConfig) -> None:
    """Bounds on how inputs are sampled: each value sizes an allocation or a loop for every file scored."""
    _bounded("decode.num_frames", d.num_frames, 1, 1024)
    _bounded("decode.max_frames", d.max_frames, 1, 1024)
    if d.fps is not None:
        _bounded("decode.fps", d.fps, 0.01, 240)
    _bounded("decode.sample_rate", d.sample_rate, 4000, 96000)
    _bounded("decode.max_seconds", d.max_seconds, 0.1, 24 * 3600)
    _bounded("decode.min_seconds", d.min_seconds, 0, 60)
    _bounded("decode.max_file_mb", d.max_file_mb, 0.001, 1024 * 1024)
    _bounded("decode.max_image_pixels", d.max_image_pixels, 1, MAX_IMAGE_PIXELS)


MAX_IMAGE_PIXELS = 2**27
"""The largest ``decode.max_image_pixels`` a checkpoint may set (134 M pixels; the default is 50 M)."""


def _check_faces(f: FaceConfig) -> None:
    """Bounds on face detection: sizes of the images MTCNN runs on, and its pyramid."""
    _bounded("faces.detect_max_side", f.detect_max_side, 32, 4096)
    # MTCNN's image pyramid shrinks by 12 / min_face_size at its first step: 0 would divide by zero.
    _bounded("faces.min_face_size", f.min_face_size, 4, 1024)
    if len(f.thresholds) != 3 or not all(0 <= t <= 1 for t in f.thresholds):
        raise CheckpointError(f"faces.thresholds: expected 3 values in [0, 1], got {f.thresholds!r}")
    _bounded("faces.min_prob", f.min_prob, 0, 1)
    _bounded("faces.margin", f.margin, 0, 4)
    _bounded("faces.small_face_trigger", f.small_face_trigger, 0, 1)
    _bounded("faces.small_face_min_size", f.small_face_min_size, 4, 1024)
    _bounded("faces.small_face_max_side", f.small_face_max_side, 32, 8192)
    _bounded("faces.small_face_probe_frames", f.small_face_probe_frames, 1, 64)
    _bounded("faces.track_iou", f.track_iou, 0, 1)
    _bounded("faces.track_max_shift", f.track_max_shift, 0, 100)
    _bounded("faces.batch_size", f.batch_size, 1, 1024)


def _meta(d: dict[str, Any], where: str) -> BranchMeta:
    try:
        cal = from_dict(Calibration, d.get("calibration", {}), f"{where}.calibration")
        threshold = float(from_dict(_Threshold, {"value": d.get("threshold", 0.5)}, f"{where}.threshold").value)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if not 0 < abs(cal.a) < 1e6 or abs(cal.b) > 1e6 or not 0 <= cal.p_min < cal.p_max <= 1:
        raise CheckpointError(f"{where}.calibration: a, b out of range or p_min/p_max not in [0, 1]")
    _bounded(f"{where}.threshold", threshold, 0, 1)
    metrics = d.get("metrics", {})
    return BranchMeta(cal, threshold, metrics if isinstance(metrics, dict) else {})


@dataclass
class _Threshold:
    value: float


def _section(cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    v = cfg.get(name)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise CheckpointError(f"config.json: {name} must be a mapping or null, got {type(v).__name__}")
    return v


def _args(cls: type, data: Any, where: str) -> Any:
    try:
        return from_dict(cls, data, where)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    except TypeError as exc:  # a required field missing
        raise CheckpointError(f"{where}: {one_line(exc, 200)}") from None


def _upgrade_v1(cfg: dict[str, Any]) -> dict[str, Any]:
    """A version-1 config.json in the version-2 layout (the architecture picked out of each training config)."""
    out: dict[str, Any] = {k: cfg.get(k) for k in ("decode", "faces", "threshold", "package_version", "created_utc")}
    training_config: dict[str, Any] = {}
    v = _section(cfg, "vision")
    if v is not None:
        c = v.get("config")
        if not isinstance(c, dict):
            raise CheckpointError("config.json: vision.config must be a mapping")
        training_config["vision"] = c
        out["vision"] = {
            **v,
            "args": {k: c[k] for k in ("arch", "input_size", "mean", "std", "dropout", "pool", "topk_frac") if k in c},
        }
    a = _section(cfg, "audio")
    if a is not None:
        c = a.get("config")
        if not isinstance(c, dict):
            raise CheckpointError("config.json: audio.config must be a mapping")
        training_config["audio"] = c
        w2v = c.get("wav2vec", {}) if isinstance(c.get("wav2vec", {}), dict) else {}
        keys = ("window_s", "hop_s", "n_fft", "hop_length", "n_mels", "use_mel", "mel_channels", "embed_dim", "dropout")
        args = {k: c[k] for k in keys if k in c}
        args["sample_rate"] = a.get("sample_rate", 16000)
        args["wav2vec_layer"] = w2v.get("layer", -1)
        if w2v.get("enabled", True):
            if not isinstance(a.get("wav2vec_hf"), dict):
                raise CheckpointError(
                    "config.json: audio.wav2vec_hf (the wav2vec 2.0 architecture) is missing; loading never reaches a model hub"
                )
            args["wav2vec"] = a["wav2vec_hf"]
        out["audio"] = {**a, "args": args}
    f = _section(cfg, "fusion")
    if f is not None:
        c = f.get("config") if isinstance(f.get("config"), dict) else {}
        training_config["fusion"] = c
        out["fusion"] = {
            **f,
            "args": {k: f.get(k) for k in ("method", "vision_dim", "audio_dim", "sync_dim") if k in f}
            | {"hidden": c.get("hidden", 64)},
        }
    out["training"] = {"config": training_config, "data": cfg.get("training_data", {})}
    return out


def read_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint, parsed, checked and in the version-2 layout."""
    d = Path(directory)
    path = d / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{d} is not a checkpoint directory (no config.json)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes is too large for a checkpoint config")
    try:
        cfg = json.loads(path.read_text(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({one_line(exc, 200)})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a multimodal_df detector checkpoint")
    version = cfg.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer multimodal_df ({cfg.get('package_version')}); upgrade to load it"
        )
    if version < 1:
        raise CheckpointError(f"{path}: unknown format_version {version}")
    return _upgrade_v1(cfg) if version == 1 else cfg


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a checkpoint may hold")


@dataclass
class CheckpointSpec:
    """A checkpoint's content, checked, before any model is built."""

    decode: DecodeConfig
    faces: FaceConfig
    threshold: float | None
    vision: tuple[VisionArgs, BranchMeta] | None
    audio: tuple[AudioArgs, BranchMeta] | None
    fusion: tuple[FusionArgs, BranchMeta] | None
    training: dict[str, Any]


def _sampling(cfg: dict[str, Any]) -> tuple[DecodeConfig, FaceConfig]:
    """The ``decode`` and ``faces`` sections, checked."""
    try:
        decode = from_dict(DecodeConfig, cfg.get("decode") or {}, "decode")
        faces = from_dict(FaceConfig, cfg.get("faces") or {}, "faces")
    except ConfigError as exc:
        raise CheckpointError(f"config.json: {exc}") from None
    _check_decode(decode)
    _check_faces(faces)
    return decode, faces


def _threshold(cfg: dict[str, Any]) -> float | None:
    threshold = cfg.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1
    ):
        raise CheckpointError(f"config.json: threshold {threshold!r} is not a number in [0, 1]")
    return threshold


def _training(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg.get("training") if isinstance(cfg.get("training"), dict) else {}


@dataclass
class CheckpointSettings:
    """What a checkpoint says besides the branch architectures, checked: how inputs are sampled and faces found, the
    thresholds, each model's calibration (None for a model it does not have), the fusion architecture (it needs no
    PyTorch to describe) and the training record."""

    decode: DecodeConfig
    faces: FaceConfig
    threshold: float | None
    meta: dict[str, BranchMeta | None]
    fusion: FusionArgs | None
    training: dict[str, Any]


def read_settings(directory: str | Path, cfg: dict[str, Any] | None = None) -> CheckpointSettings:
    """Read and validate everything in ``config.json`` but the architectures (``cfg``: the file already read by
    :func:`read_config`). Imports no model code, so no PyTorch: the ONNX runtime takes the architectures from the
    graphs' ``onnx.json`` instead."""
    cfg = read_config(directory) if cfg is None else cfg
    decode, faces = _sampling(cfg)
    meta: dict[str, BranchMeta | None] = {}
    for name in ("vision", "audio", "fusion"):
        sec = _section(cfg, name)
        meta[name] = None if sec is None else _meta(sec, name)
    if meta["vision"] is None and meta["audio"] is None:
        raise CheckpointError("config.json: a detector needs at least one branch model")
    if meta["vision"] is not None and meta["audio"] is not None and meta["fusion"] is None:
        raise CheckpointError("config.json: a detector with both branches needs a fusion model")
    fusion = None
    sec = _section(cfg, "fusion")
    if sec is not None:
        fusion = _args(FusionArgs, sec.get("args"), "fusion.args")
        _check_fusion(fusion, "fusion.args")
        if (fusion.vision_dim > 0) != (meta["vision"] is not None) or (fusion.audio_dim > 0) != (
            meta["audio"] is not None
        ):
            raise CheckpointError("config.json: fusion's input widths do not match the branches present")
    threshold, training = _threshold(cfg), _training(cfg)
    return CheckpointSettings(decode, faces, threshold, meta, fusion, training)


def read_spec(directory: str | Path) -> CheckpointSpec:
    """Read and validate a checkpoint's ``config.json`` (see the module docstring); builds nothing."""
    from ..audio.model import AudioArgs
    from ..vision.model import VisionArgs

    cfg = read_config(directory)
    decode, faces = _sampling(cfg)
    parts: dict[str, Any] = {}
    for name, cls, check in (
        ("vision", VisionArgs, _check_vision),
        ("audio", AudioArgs, _check_audio),
        ("fusion", FusionArgs, _check_fusion),
    ):
        sec = _section(cfg, name)
        if sec is None:
            parts[name] = None
            continue
        args = _args(cls, sec.get("args"), f"{name}.args")
        check(args, f"{name}.args")
        parts[name] = (args, _meta(sec, name))
    if parts["vision"] is None and parts["audio"] is None:
        raise CheckpointError("config.json: a detector needs at least one branch model")
    if parts["vision"] is not None and parts["audio"] is not None and parts["fusion"] is None:
        raise CheckpointError("config.json: a detector with both branches needs a fusion model")
    fusion = parts["fusion"]
    if fusion is not None:
        fa = fusion[0]
        if (fa.vision_dim > 0) != (parts["vision"] is not None) or (fa.audio_dim > 0) != (parts["audio"] is not None):
            raise CheckpointError("config.json: fusion's input widths do not match the branches present")
    threshold, training = _threshold(cfg), _training(cfg)
    return CheckpointSpec(decode, faces, threshold, parts["vision"], parts["audio"], fusion, training)
