"""ONNX export and the ONNX Runtime branch forwards: same logits and verdicts as PyTorch, checked graph directories."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df import export, predict
from multimodal_df.audio.features import frame_windows
from multimodal_df.audio.model import AudioModel
from multimodal_df.errors import CheckpointError, ExitCode
from multimodal_df.media.decode import decode
from multimodal_df.pipeline import onnx_runtime
from multimodal_df.pipeline.detector import Detector
from multimodal_df.testing.fixtures import FixtureSpec, make_clip
from multimodal_df.vision.model import VisionModel


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Graphs exported on the fly go to a folder of this test, never the user's cache."""
    monkeypatch.setenv(onnx_runtime.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def exported(detector_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "detector"
    buf = io.StringIO()
    assert export.main([str(detector_dir), "--out", str(out)], out=buf) == ExitCode.OK
    assert "vision:" in buf.getvalue() and "audio:" in buf.getvalue()
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx_media")
    return {
        "real": make_clip(d / "real.mp4", FixtureSpec(seed=301)),
        "fake_face": make_clip(d / "fake_face.mp4", FixtureSpec(seed=302, vision_artifact=1.0)),
        "fake_voice": make_clip(d / "fake_voice.mp4", FixtureSpec(seed=303, audio_artifact=1.0, duration=4.0)),
    }


def test_export_writes_a_loadable_checkpoint_with_graphs(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "onnx.json", "vision.onnx", "audio.onnx", "vision.safetensors", "audio.safetensors"} <= names
    manifest = json.loads((exported / "onnx.json").read_text())
    assert manifest["format"] == "multimodal_df/onnx" and set(manifest["graphs"]) == {"vision", "audio"}
    assert all(g["max_abs_diff"] <= 1e-3 and g["input_shape"][0] == "batch" for g in manifest["graphs"].values())
    # Without --runtime onnx it is an ordinary checkpoint.
    assert Detector.load(exported, "cpu").runtime.runtime == "torch"


def test_onnx_logits_match_pytorch_on_fixtures(exported: Path, clips: dict[str, Path]) -> None:
    ref = Detector.load(exported, "cpu")
    det = Detector.load(exported, "cpu", runtime="onnx")
    assert det.runtime.runtime == "onnx" and det.runtime.providers["vision"] == ["CPUExecutionProvider"]
    for path in clips.values():
        clip = decode(path, ref.decode_cfg)
        track = ref.track_faces(clip)
        assert len(track) > 0
        crops = VisionModel.to_input(track.crops)
        windows, _ = frame_windows(clip.waveform, clip.sample_rate, ref.audio.args.window_s, ref.audio.args.hop_s)
        waves = AudioModel.to_input(windows)
        with torch.inference_mode():
            for branch, x in (("vision", crops), ("audio", waves)):
                want = [t.numpy() for t in getattr(ref, branch)(x)]
                got = [t.numpy() for t in det.branch_forward[branch](x)]
                for w, g in zip(want, got):
                    assert w.shape == g.shape
                    assert np.abs(w - g).max() <= 1e-3, (branch, path.name)


def test_vision_on_onnx_cpu_runs_small_batches_with_the_same_scores(
    exported: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from multimodal_df.pipeline import detector as detector_module

    cap = detector_module.ONNX_CPU_BATCH
    det = Detector.load(exported, "cpu", runtime="onnx")
    assert det.batch_for("vision") == cap < det.batch_size and det.batch_for("audio") == det.batch_size
    assert Detector.load(exported, "cpu").batch_for("vision") == det.batch_size  # PyTorch keeps its batches
    clip = decode(clips["real"], det.decode_cfg)
    track = det.track_faces(clip)
    n = len(track) - 1 if len(track) % cap == 0 else len(track)  # several batches and a short last one
    assert n > cap and n % cap != 0
    crops, times = track.crops[:n], track.times[:n]
    small = det.vision_output(crops, times, track.num_frames)
    monkeypatch.setattr(detector_module, "ONNX_CPU_BATCH", n)
    assert det.batch_for("vision") == n
    whole = det.vision_output(crops, times, track.num_frames)
    assert np.array_equal(small.crop_logits, whole.crop_logits) and np.array_equal(small.embedding, whole.embedding)


def run(argv: list[str]) -> tuple[int, list[dict]]:
    buf = io.StringIO()
    code = predict.main(argv, out=buf)
    return code, [json.loads(line) for line in buf.getvalue().splitlines()]


def test_predict_runtime_onnx_gives_the_torch_verdict(exported: Path, clips: dict[str, Path]) -> None:
    paths = [str(p) for p in clips.values()]
    common = ["--checkpoint", str(exported), "--json", "--device", "cpu"]
    code_t, torch_recs = run([*paths, *common])
    code_o, onnx_recs = run([*paths, *common, "--runtime", "onnx"])
    assert code_t == code_o == 0
    for t, o in zip(torch_recs, onnx_recs):
        assert o["error"] is None and o["label"] == t["label"]
        assert abs(o["p_fake"] - t["p_fake"]) <= 1e-3
        for m in ("vision", "audio"):
            assert abs(o["modalities"][m]["p_fake"] - t["modalities"][m]["p_fake"]) <= 1e-3


def test_a_checkpoint_without_graphs_is_exported_once_into_the_cache(
    detector_dir: Path, clips: dict[str, Path], cache: Path, capsys: pytest.CaptureFixture
) -> None:
    code, recs = run([str(clips["real"]), "--checkpoint", str(detector_dir), "--json", "--runtime", "onnx"])
    assert code == 0 and recs[0]["error"] is None
    assert "ONNX graphs exported once" in capsys.readouterr().err
    (entry,) = (cache / "onnx").iterdir()
    assert (entry / "onnx.json").is_file() and not (detector_dir / "onnx.json").exists()
    det = predict.load_checked(str(detector_dir), "cpu", runtime="onnx")
    assert det.runtime.graphs == str(entry) and not det.runtime.exported  # the second load reuses it


def test_damaged_or_stale_graphs_are_refused(exported: Path, clips: dict[str, Path], tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    data = bytearray((bad / "vision.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "vision.onnx").write_bytes(bytes(data))
    code, _ = run([str(clips["real"]), "--checkpoint", str(bad), "--runtime", "onnx"])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE and "vision.onnx does not match onnx.json" in err and "\n" not in err

    stale = tmp_path / "stale"
    shutil.copytree(exported, stale)
    w = (stale / "audio.safetensors").read_bytes()
    (stale / "audio.safetensors").write_bytes(w + b" ")  # other bytes than the graph was exported from
    with pytest.raises(CheckpointError, match="exported from other weights"):
        onnx_runtime.read_manifest(stale)


def test_python_api_and_runtime_names(exported: Path) -> None:
    import multimodal_df as mdf

    assert mdf.load(exported, device="cpu", runtime="onnx").runtime.runtime == "onnx"
    with pytest.raises(CheckpointError, match="unknown runtime"):
        mdf.load(exported, device="cpu", runtime="tensorflow")


def test_providers_prefer_the_gpu_only_on_cuda() -> None:
    have = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_runtime.choose_providers("cuda", have) == have
    assert onnx_runtime.choose_providers("cuda:0", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_runtime.choose_providers(torch.device("cpu"), have) == ["CPUExecutionProvider"]


def test_export_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert export.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    from multimodal_df import cli

    assert "export" in cli.COMMANDS
