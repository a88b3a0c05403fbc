"""Configuration dataclasses: every setting of decoding, face detection, the models, fusion and training.

A YAML file (or a preset, see :func:`multimodal_df.config.load_config`) mirrors :class:`Config` field by
field. A checkpoint does not store these as they are: each model writes its own architecture
(``config()``) and the training settings are kept apart, for the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

AudioGenerator = Literal[
    "griffin_lim",
    "world",
    "espeak",
    "flite",
    "vocoder_hifigan",
    "vocoder_istft",
    "vocoder_upsample",
    "vocoder_subpixel",
    "kokoro",  # last: a generator's position seeds its fakes, so earlier ones keep theirs
]
"""Names of the audio pseudo-fake generators (see :mod:`multimodal_df.training.pseudofakes.speech`). The
``vocoder_*`` ones are small neural vocoders trained on the real speech first (``train.generators_dir``)."""
AUDIO_GENERATORS: tuple[str, ...] = get_args(AudioGenerator)


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
    small_faces: bool = True
    """Look closer when the downscaled pass misses faces (see :class:`multimodal_df.vision.faces.FaceDetector`)."""
    small_face_trigger: float = 0.75
    """Look closer when the first pass found a face in fewer than this share of the frames."""
    small_face_min_size: int = 16
    """Smallest face the closer look searches for, in pixels of the window it searches."""
    small_face_max_side: int = 1920
    """Resolution cap (longer side, pixels) of the probe frames when the first pass found no face at all."""
    small_face_probe_frames: int = 4
    size_probe_frames: int = 4
    """Frames (spread over the clip) searched first for every face size; 0 searches every frame for every size."""
    size_probe_ratio: float = 0.5
    """When every probe frame has a face, the other frames are searched only for faces at least this share of the
    smallest main face the probes found (never below ``min_face_size``): the pyramid levels for smaller faces are
    most of MTCNN's work on a close-up, and a face that small would not be the main track. Frames where that
    misses fall to the closer look (``small_faces``)."""
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
    """A backbone from :func:`multimodal_df.list_models`: ``tiny_cnn``, ``efficientnet_lite0`` or a torchvision classifier."""
    input_size: int | None = None
    """Side of the square face crops, pixels; None takes the architecture's own."""
    mean: list[float] | None = None
    """Per-channel normalisation of RGB in [0, 1]; None (the usual) takes the architecture's own."""
    std: list[float] | None = None
    pretrained_path: str | None = None
    """Training only: local ImageNet weights (safetensors, or a state-dict .pth read with weights_only=True), or
    ``efficientnet_lite0_imagenet``. A checkpoint does not keep it: its weights already hold what was loaded."""
    dropout: float = 0.2
    pool: Literal["mean", "max", "topk"] = "mean"
    """How per-crop logits become the video logit."""
    topk_frac: float = 0.25
    taps: list[int] = field(default_factory=list)
    """EfficientNet-Lite0 blocks (0-15) whose pooled activation statistics join the embedding (see ``VisionArgs.taps``)."""


@dataclass
class Wav2VecConfig:
    """wav2vec 2.0 encoder. With ``pretrained`` set, the architecture fields are ignored."""

    enabled: bool = True
    pretrained: str | None = None
    """Training only: a Hugging Face model id or a local directory holding config.json + weights. A checkpoint
    stores the encoder's full architecture instead, so loading one never reaches a model hub."""
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
    """Training only: freeze the whole encoder (only pooling and heads train)."""
    freeze_feature_encoder: bool = True
    """Training only: freeze the convolutional feature encoder."""


@dataclass
class AudioConfig:
    """Speech classifier over fixed-length windows."""

    window_s: float = 2.0
    hop_s: float = 1.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    mel_norm: Literal["global", "band"] = "global"
    """Log-mel standardisation per window: "global" (one mean and spread) or "band" (each mel band's mean
    removed first, so a fixed channel or timbre tilt is not the tell)."""
    frequency_scale: Literal["mel", "linear"] = "mel"
    """Band spacing of the spectrogram front end: "mel" (fine at low frequencies, like hearing) or "linear"
    (equal bands up to Nyquist, as LFCC front ends in spoofing detection: vocoder and upsampling artefacts sit in the
    upper bands, which the mel scale lumps together)."""
    use_mel: bool = True
    mel_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    mel_pool: Literal["global", "band"] = "global"
    """Pooling of the spectrogram CNN: "global" (mean and max over time and frequency) or "band" (over time only,
    the coarse frequency rows kept apart, so where in the spectrum a trace sits reaches the head)."""
    wav2vec: Wav2VecConfig = field(default_factory=Wav2VecConfig)
    embed_dim: int = 128
    dropout: float = 0.2


@dataclass
class FusionConfig:
    """Late fusion over branch outputs, trained after the branches."""

    methods: list[Literal["stacking", "mlp", "noisy_or"]] = field(default_factory=lambda: ["stacking", "mlp"])
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
    calibration_prior: float | None = 0.5
    """Share of fakes the calibrated P(fake) assumes (branches and fusion alike); None: the validation set's own share.
    With pseudo-fakes that share is ours to choose (one fake per generator family per real item: 5-8 fakes per real),
    and a fit to it would report every real item as likely fake; 0.5 states even odds instead."""
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
    audio_generators: list[AudioGenerator] = field(default_factory=lambda: ["griffin_lim", "world", "espeak", "flite"])
    audio_holdout: AudioGenerator | None = "world"
    """One of ``audio_generators`` kept out of training and out of model selection; its AUC is reported."""
    audio_epoch_windows: int = 4
    """Audio pseudo-fake training: windows drawn per real utterance per epoch (at random offsets), and as many fakes."""
    channel_prob: float = 0.0
    """Audio: chance that a training window (real or fake alike) goes through a random recording channel
    (codec, telephone band, reverberation, noise, resampling, EQ), so that conditions are never the tell."""
    real_channel_prob: float | None = None
    """Audio: the channel chance for real windows alone (None: ``channel_prob``). Above ``channel_prob``, codec and
    channel loss is seen on real speech more often than on fakes, so that it cannot point to fake (as
    ``soft_real_prob`` does for faces)."""
    audio_partial_prob: float = 0.0
    """Audio: chance that a fake window from a copy-synthesis generator (Griffin-Lim, WORLD, the vocoders) is only
    partly fake: one stretch or the band above a random cut-off resynthesised, the rest its real source
    (``multimodal_df.training.pseudofakes.speech.partial_fake``)."""
    rawboost_prob: float = 0.0
    """Audio: chance that a training window (real or fake alike) first gets a RawBoost distortion (non-linear
    convolutive noise, impulsive noise or coloured noise: ``multimodal_df.training.augment.rawboost``)."""
    soft_real_prob: float = 0.0
    """Vision: chance that a real training crop is first softened by a 1.2-2x down/up-scale (label still real), so that
    softness, which the face decoders' fakes have more of than their sources, does not point to fake."""
    face_decoders: list[str] = field(default_factory=list)
    """Vision pseudo-fakes: face decoders (``tconv``, ``nearest``, ``bilinear``, ``pixelshuffle``) trained on the
    real faces first (``train.generators_dir``); real crops passed through them stand for generated faces."""
    face_holdout: str | None = None
    """A decoder kept out of training and model selection (made, validated and reported only)."""
    decoder_share: float = 0.5
    """Share of real training crops that also appear as a decoder reconstruction (label fake)."""
    decoder_spectrum_prob: float = 0.0
    """Vision: chance that a training decoder reconstruction gets its source crop's radial power spectrum
    (``pseudofakes.decoders.match_spectrum``) before blending: the small decoders are smoother than the faces they
    rebuild, and "less fine detail" is a cue that also fires on soft real video. Validation fakes stay as made."""
    generators_dir: str | None = None
    """Folder with the trained vocoders and face decoders (``vocoder_<arch>/``, ``decoder_<arch>/``)."""
    max_crops_per_video: int = 32
    freeze_backbone: bool = False
    """Vision: train only the head on the pretrained backbone's features (a linear probe)."""
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
