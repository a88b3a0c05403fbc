"""Loading configs: strict conversion of plain data into the dataclasses of :mod:`.schema`, presets, overrides.

Unknown keys and values of the wrong type are rejected with the dotted path of the offending key,
so a typo never silently falls back to a default. The same conversion checks checkpoint configs.
"""

from __future__ import annotations

import dataclasses
import math
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ..errors import ConfigError
from .schema import Config

T = TypeVar("T")


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
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)  # JSON writers may print 3 as 3.0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML writes 1e-3 as a string unless it has a dot; accept ints and numeric strings for floats.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        # NaN compares false with every bound and inf overflows whatever it scales: neither is a setting.
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
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


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def list_presets() -> list[str]:
    """Names of the configs shipped with the package (``tiny``, ``default``, ``shipped``, ...)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """A preset name (``"tiny"``) -> its YAML inside the package; any other value is taken as a file path."""
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml")):
        p = PRESETS_DIR / f"{text}.yaml"
        if not p.is_file():
            raise ConfigError(
                f"unknown preset {text!r}; presets: {', '.join(list_presets())} (or give a YAML file path)"
            )
        return p
    return Path(text)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a preset by name (``load_config("tiny")``) or a YAML file (or the defaults when ``path`` is
    None) and apply dotted overrides.

    ``overrides`` maps dotted keys (``"train.epochs"``) to values, as given on a command line.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = preset_path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
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
    t = cfg.train
    if t.audio_holdout is not None and t.audio_holdout not in t.audio_generators:
        raise ConfigError(
            f"train.audio_holdout: {t.audio_holdout!r} is not one of train.audio_generators {t.audio_generators}"
        )
    if t.audio_holdout is not None and len(t.audio_generators) < 2:
        raise ConfigError("train.audio_holdout: holding out the only generator leaves nothing to train on")
    archs = ("tconv", "nearest", "bilinear", "pixelshuffle")  # the face decoders' upsampling layers
    bad = [d for d in [*t.face_decoders, t.face_holdout] if d is not None and d not in archs]
    if bad:
        raise ConfigError(f"train.face_decoders / face_holdout: unknown decoder(s) {bad}; choose from {archs}")
    if t.face_holdout is not None and t.face_holdout in t.face_decoders:
        raise ConfigError("train.face_holdout: the held-out decoder must not also be in train.face_decoders")
    for name in (
        "channel_prob",
        "real_channel_prob",
        "rawboost_prob",
        "audio_partial_prob",
        "soft_real_prob",
        "decoder_share",
        "decoder_spectrum_prob",
    ):
        value = getattr(t, name)  # only real_channel_prob may be None (the same as channel_prob)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"train.{name} must be in [0, 1]")
    prior = cfg.fusion.calibration_prior
    if prior is not None and not 0.0 < prior < 1.0:
        raise ConfigError(
            "fusion.calibration_prior must be strictly between 0 and 1 (or null: the validation set's own)"
        )


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)
