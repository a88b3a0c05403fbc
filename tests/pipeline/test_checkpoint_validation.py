"""Damaged and hostile checkpoints: each is refused with one line and exit status 2 before any model is built,
never with a traceback, a download, a runaway allocation or a confident verdict from broken numbers."""

from __future__ import annotations

import io
import json
import math
import resource
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multimodal_df import predict

EXAMPLE = Path(__file__).resolve().parents[2] / "multimodal_df" / "examples" / "real.mp4"


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """Edit of config.json: set the dotted ``path`` to ``value``."""

    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        del node[last]

    return edit


def _raw(text: str) -> Callable[[Path], None]:
    """Replace config.json with ``text`` as it is (not valid as a Python object: NaN literals, 1e400)."""

    def write(d: Path) -> None:
        (d / "config.json").write_text(text)

    return write


def _hub_id(cfg: dict) -> None:
    # The wav2vec 2.0 architecture replaced by a model hub name, as a training config would hold it.
    cfg["audio"]["args"]["wav2vec"] = "facebook/wav2vec2-base"


def _adapter(cfg: dict) -> None:
    # A transformers option that no bound on the usual sizes names: 3000 adapter layers of 100 000 channels.
    cfg["audio"]["args"]["wav2vec"].update(add_adapter=True, num_adapter_layers=3000, output_hidden_size=100_000)


CASES: dict[str, tuple[Callable[[dict], None] | Callable[[Path], None], str, str]] = {
    # name: (edit of the parsed config or raw writer, "json" | "raw", expected words in the error)
    "config is a list": (_raw("[]"), "raw", "expected a JSON object"),
    "format_version is a list": (_set("format_version", [1]), "json", "format_version"),
    "format_version 1e400": (
        _raw('{"format": "multimodal_df/detector", "format_version": 1e400}'),
        "raw",
        "format_version",
    ),
    "decode is a list": (_set("decode", [1, 2]), "json", "decode"),
    "vision is a list": (_set("vision", []), "json", "vision"),
    "vision.args is a list": (_set("vision.args", ["tiny_cnn"]), "json", "vision.args"),
    "calibration is a list": (_set("fusion.calibration", [1.0, 0.0]), "json", "calibration"),
    "calibration is a string": (_set("audio.calibration", "temperature"), "json", "calibration"),
    "calibration a is a string": (_set("audio.calibration.a", "big"), "json", "calibration"),
    "missing format": (_drop("format"), "json", "not a multimodal_df detector"),
    "missing vision.args": (_drop("vision.args"), "json", "vision.args"),
    "missing arch": (_drop("vision.args.arch"), "json", "vision.args"),
    "missing fusion": (_drop("fusion"), "json", "fusion"),
    "threshold NaN": (None, "nan", "not a number a checkpoint may hold"),  # written below: NaN is not JSON
    "threshold as string NaN": (_set("threshold", "NaN"), "json", "threshold"),
    "branch threshold 7": (_set("vision.threshold", 7), "json", "vision.threshold"),
    "wav2vec is a string": (_hub_id, "json", "wav2vec"),
    "wav2vec hidden_size is text": (_set("audio.args.wav2vec.hidden_size", "32"), "json", "hidden_size"),
    "wav2vec 100000 layers": (_set("audio.args.wav2vec.num_hidden_layers", 100_000), "json", "num_hidden_layers"),
    "wav2vec adapter explosion": (_adapter, "json", "wav2vec"),
    "wav2vec unknown activation": (_set("audio.args.wav2vec.hidden_act", "no_such_fn"), "json", "wav2vec"),
    "wav2vec_layer out of range": (_set("audio.args.wav2vec_layer", 50), "json", "wav2vec_layer"),
    "architecture is a hub id": (_set("vision.args.arch", "google/vit-base-patch16-224"), "json", "arch"),
    "num_frames 1e9": (_set("decode.num_frames", 10**9), "json", "decode.num_frames"),
    "min_face_size 0": (_set("faces.min_face_size", 0), "json", "faces.min_face_size"),
    "margin 1e6": (_set("faces.margin", 1e6), "json", "faces.margin"),
    "max_image_pixels 1e12": (_set("decode.max_image_pixels", 10**12), "json", "max_image_pixels"),
    "huge integer literal": (
        _raw('{"format": "multimodal_df/detector", "format_version": ' + "9" * 5000 + "}"),
        "raw",
        "JSON",
    ),
    "deeply nested": (_raw("[" * 100_000 + "]" * 100_000), "raw", "JSON"),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail any attempt to open a connection, and record it."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network access attempted during a checkpoint test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _run(argv: list[str]) -> tuple[int, str, str]:
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = predict.main(argv, out=out)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_config_is_one_line_and_exit_2(name: str, detector_dir: Path, tmp_path: Path, no_network: list) -> None:
    edit, how, expected = CASES[name]
    d = tmp_path / "ck"
    shutil.copytree(detector_dir, d)
    if how == "raw":
        edit(d)  # type: ignore[arg-type,call-arg]
    elif how == "nan":
        text = (d / "config.json").read_text()
        cfg = json.loads(text)
        (d / "config.json").write_text(text.replace(json.dumps(cfg["threshold"]), "NaN", 1))
    else:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)  # type: ignore[arg-type,call-arg]
        (d / "config.json").write_text(json.dumps(cfg))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = _run([str(EXAMPLE), "--checkpoint", str(d), "--json", "--device", "cpu"])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert code == 2, (name, code, out, err)
    assert out == ""  # nothing was scored with it
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert no_network == []
    assert grown_mb < 300, f"{name}: loading grew the process by {grown_mb:.0f} MB"


def test_nan_weights_are_refused(detector_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    d = tmp_path / "ck"
    shutil.copytree(detector_dir, d)
    state = load_file(str(d / "fusion.safetensors"))
    save_file(
        {k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in state.items()},
        str(d / "fusion.safetensors"),
    )
    code, out, err = _run([str(EXAMPLE), "--checkpoint", str(d), "--json", "--device", "cpu"])
    assert code == 2 and out == "" and "NaN or infinite" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated", "header length", "header text", "empty"])
def test_damaged_weights_are_refused(damage: str, detector_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "ck"
    shutil.copytree(detector_dir, d)
    w = d / "vision.safetensors"
    data = bytearray(w.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "header length":
        data[:8] = (2**62).to_bytes(8, "little")  # a header "larger than the file": must not be allocated
    elif damage == "header text":
        n = int.from_bytes(data[:8], "little")
        data[8 : 8 + n] = b"{" + b" " * (n - 1)
    else:
        data = bytearray()
    w.write_bytes(bytes(data))
    code, out, err = _run([str(EXAMPLE), "--checkpoint", str(d), "--json", "--device", "cpu"])
    assert code == 2 and out == "" and "vision.safetensors" in err and "Traceback" not in err


def test_an_intact_copy_still_scores(detector_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "ck"
    shutil.copytree(detector_dir, d)
    code, out, err = _run([str(EXAMPLE), "--checkpoint", str(d), "--json", "--device", "cpu"])
    rec = json.loads(out)
    assert code == 0 and 0 <= rec["p_fake"] <= 1 and rec["label"] in ("real", "fake") and "Traceback" not in err


def _as_v1(cfg: dict) -> dict:
    """The same detector in the version-1 layout of 0.1 (each branch's training config stored as its architecture)."""
    v, a, f = cfg["vision"], cfg["audio"], cfg["fusion"]
    aa = dict(a["args"])
    hf = aa.pop("wav2vec")
    layer = aa.pop("wav2vec_layer")
    sample_rate = aa.pop("sample_rate")
    meta = ("calibration", "threshold", "metrics")
    return {
        "format": cfg["format"],
        "format_version": 1,
        "decode": cfg["decode"],
        "faces": cfg["faces"],
        "threshold": cfg["threshold"],
        "vision": {"config": dict(v["args"]), **{k: v[k] for k in meta}},
        "audio": {
            "config": {**aa, "wav2vec": {"enabled": True, "pretrained": None, "layer": layer}},
            "sample_rate": sample_rate,
            "wav2vec_hf": hf,
            **{k: a[k] for k in meta},
        },
        "fusion": {
            "config": {"hidden": f["args"]["hidden"]},
            **{k: f["args"][k] for k in ("method", "vision_dim", "audio_dim", "sync_dim")},
            **{k: f[k] for k in meta},
        },
    }


def _hub_instead_of_architecture(v1: dict) -> None:
    del v1["audio"]["wav2vec_hf"]
    v1["audio"]["config"]["wav2vec"]["pretrained"] = "facebook/wav2vec2-base"


V1_CASES: dict[str, tuple[Callable[[dict], None] | None, str | None]] = {
    "intact": (None, None),
    "hub id instead of the architecture": (_hub_instead_of_architecture, "never reaches a model hub"),
    "wav2vec_hf is a string": (_set("audio.wav2vec_hf", "facebook/wav2vec2-base"), "wav2vec_hf"),
    "wav2vec_hf 100000 layers": (_set("audio.wav2vec_hf.num_hidden_layers", 100_000), "num_hidden_layers"),
    "audio.config is a list": (_set("audio.config", [1]), "audio.config"),
}


@pytest.mark.parametrize("name", list(V1_CASES))
def test_version_1_checkpoints(name: str, detector_dir: Path, tmp_path: Path, no_network: list) -> None:
    edit, expected = V1_CASES[name]
    d = tmp_path / "ck"
    shutil.copytree(detector_dir, d)
    v1 = _as_v1(json.loads((d / "config.json").read_text()))
    if edit is not None:
        edit(v1)
    (d / "config.json").write_text(json.dumps(v1))
    code, out, err = _run([str(EXAMPLE), "--checkpoint", str(d), "--json", "--device", "cpu"])
    assert no_network == [] and "Traceback" not in err
    if expected is None:
        assert code == 0 and 0 <= json.loads(out)["p_fake"] <= 1
    else:
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and expected in err, err
