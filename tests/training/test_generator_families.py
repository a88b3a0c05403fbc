"""Neural generator families end to end on the fixture data: the generators stage trains tiny vocoders and face
decoders, the branch stages make pseudo-fakes with them, hold one out, and report it; noisy-OR fusion on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.config import load_config
from multimodal_df.errors import ConfigError
from multimodal_df.pipeline.detector import Detector
from multimodal_df.training import generators
from multimodal_df.training.pseudofakes.speech import make_speech_fakes, standardize_speech
from multimodal_df.training.run import run_training

TINY_VOCODER = dict(width=8, steps=2, batch_size=2, segment_s=(0.25, 0.3), convnext_blocks=1, resblock_kernels=(3,))
TINY_DECODER = dict(size=32, latent_channels=4, latent_stride=4, width=4, max_width=8, steps=2, batch=2)


def _config(out: Path):
    return load_config(
        "tiny",
        {
            "train.pseudo_fakes": True,
            "train.epochs": 1,
            "train.progress": False,
            "train.audio_generators": ["griffin_lim", "vocoder_hifigan", "vocoder_istft"],
            "train.audio_holdout": "vocoder_istft",
            "train.channel_prob": 0.5,
            "train.face_decoders": ["nearest"],
            "train.face_holdout": "tconv",
            "train.generators_dir": str(out / "generators"),
            "fusion.methods": ["noisy_or"],
        },
    )


def test_config_refuses_unknown_or_overlapping_decoders() -> None:
    with pytest.raises(ConfigError, match="unknown decoder"):
        load_config("tiny", {"train.face_decoders": ["upconv"]})
    with pytest.raises(ConfigError, match="must not also be"):
        load_config("tiny", {"train.face_decoders": ["nearest"], "train.face_holdout": "nearest"})


def test_vocoder_fakes_need_a_trained_vocoder(tmp_path: Path) -> None:
    reals = [standardize_speech(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)]
    with pytest.raises(ValueError, match="generators_dir"):
        make_speech_fakes(reals, "vocoder_hifigan", 16000, 0, generators_dir=tmp_path)


def test_generators_stage_then_branches_use_and_hold_out_them(dataset: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    tiny = dict(threads=1, vocoder_overrides=TINY_VOCODER, decoder_overrides=TINY_DECODER)
    written = generators.train_generators(cfg, dataset, dataset, tmp_path, "cpu", **tiny)
    assert set(written) == {"vocoder_hifigan", "vocoder_istft", "decoder_nearest", "decoder_tconv"}
    # A second run finds them all and trains nothing.
    assert generators.train_generators(cfg, dataset, dataset, tmp_path, "cpu", **tiny) == {}

    run_training(cfg, ["vision", "audio", "fusion"], dataset, tmp_path, tmp_path / "cache", "cpu")
    vision = Detector.load(tmp_path / "vision", "cpu")
    assert vision.training_data["decoder_crops"] > 0 and vision.training_data["face_holdout"] == "tconv"
    assert {"val_auc_decoder_nearest", "val_auc_decoder_tconv"} <= set(vision.vision_meta.metrics)
    audio = Detector.load(tmp_path / "audio", "cpu")
    assert audio.training_data["audio_holdout"] == "vocoder_istft"
    assert "vocoder_istft" not in audio.training_data["audio_generators"]
    assert {"val_auc_vocoder_hifigan", "val_auc_vocoder_istft"} <= set(audio.audio_meta.metrics)

    det = Detector.load(tmp_path / "detector", "cpu")
    assert det.fusion is not None and det.fusion.method == "noisy_or"
    an = det.analyze(sorted(dataset.parent.rglob("*.mp4"))[0])
    v, a = an.prediction.vision, an.prediction.audio
    assert v is not None and a is not None
    assert abs(an.prediction.p_fake - (1 - (1 - v.p_fake) * (1 - a.p_fake))) < 1e-4
