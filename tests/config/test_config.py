from pathlib import Path

import pytest

from multimodal_df.config import PRESETS_DIR, Config, from_dict, list_presets, load_config, parse_override
from multimodal_df.errors import ConfigError


@pytest.mark.parametrize("name", list_presets())
def test_presets_load_by_name_and_by_path(name: str) -> None:
    assert isinstance(load_config(name), Config)
    assert load_config(name) == load_config(PRESETS_DIR / f"{name}.yaml")


def test_presets_ship_inside_the_package() -> None:
    assert {"tiny", "default", "lite0", "shipped", "wav2vec2_base"} <= set(list_presets())
    with pytest.raises(ConfigError, match="unknown preset 'tinny'"):
        load_config("tinny")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_rejected(tmp_path: Path, value: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"train:\n  lr: {value}\n")
    with pytest.raises(ConfigError, match="train.lr: expected a finite number"):
        load_config(p)


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("vision:\n  archh: resnet18\n")
    with pytest.raises(ConfigError, match=r"config\.vision: unknown key\(s\) \['archh'\]"):
        load_config(p)


@pytest.mark.parametrize(
    "yaml_text, match",
    [
        ("train:\n  epochs: ten\n", "train.epochs: expected an integer"),
        ("train:\n  epochs: 2.5\n", "train.epochs: expected an integer"),
        ("train:\n  amp: 1\n", "train.amp: expected true/false"),
        ("vision:\n  pool: median\n", "vision.pool: 'median' is not one of"),
        ("faces:\n  thresholds: 0.7\n", "faces.thresholds: expected a list"),
        ("audio:\n  wav2vec: 3\n", "audio.wav2vec: expected a mapping"),
        ("decode:\n  fps: [1]\n", "decode.fps"),
    ],
)
def test_wrong_types_are_rejected(tmp_path: Path, yaml_text: str, match: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_numbers_and_overrides() -> None:
    cfg = load_config(
        None,
        dict(
            [
                parse_override("train.lr=1e-3"),
                parse_override("decode.fps=2"),
                parse_override("audio.wav2vec.enabled=false"),
            ]
        ),
    )
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.decode.fps == 2.0 and isinstance(cfg.decode.fps, float)
    assert cfg.audio.wav2vec.enabled is False


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_from_dict_none_for_optional() -> None:
    from multimodal_df.config import VisionConfig

    assert from_dict(VisionConfig, {"pretrained_path": None}).pretrained_path is None
    with pytest.raises(ConfigError, match="config.arch: expected a string, got None"):
        from_dict(VisionConfig, {"arch": None})
