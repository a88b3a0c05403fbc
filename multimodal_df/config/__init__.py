"""Settings: the dataclasses (:mod:`.schema`) and how they are read (:mod:`.loading`), with the presets
shipped as package data (``load_config("tiny")``, ``"default"``, ``"lite0"``, ``"shipped"``, ``"wav2vec2_base"``)."""

from .loading import PRESETS_DIR, from_dict, list_presets, load_config, parse_override, preset_path, to_dict
from .schema import (
    AUDIO_GENERATORS,
    AudioConfig,
    AudioGenerator,
    Config,
    DecodeConfig,
    FaceConfig,
    FusionConfig,
    TrainConfig,
    VisionConfig,
    Wav2VecConfig,
)

__all__ = [
    "AUDIO_GENERATORS",
    "PRESETS_DIR",
    "AudioConfig",
    "AudioGenerator",
    "Config",
    "DecodeConfig",
    "FaceConfig",
    "FusionConfig",
    "TrainConfig",
    "VisionConfig",
    "Wav2VecConfig",
    "from_dict",
    "list_presets",
    "load_config",
    "parse_override",
    "preset_path",
    "to_dict",
]
