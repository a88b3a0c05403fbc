"""The ONNX runtime without PyTorch: ``predict --runtime onnx`` imports none of the heavy libraries, and gives the
PyTorch runtime's verdict; graph directories from older exports still load; a changed config.json is refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_df import export
from multimodal_df.errors import CheckpointError, ExitCode
from multimodal_df.pipeline import onnx_runtime
from multimodal_df.pipeline.checkpoint import SHIPPED

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "multimodal_df" / "examples" / "real.mp4"
HEAVY = ["torch", "torchvision", "torchaudio", "transformers", "facenet_pytorch"]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SHIPPED / "config.json").is_file() or not CLIP.is_file():
        pytest.skip("the shipped model or its example clips are not in this install")
    out = tmp_path_factory.mktemp("onnx") / "shipped"
    buf = io.StringIO()
    assert export.main([str(SHIPPED), "--out", str(out)], out=buf) == ExitCode.OK
    assert {"pnet.onnx", "rnet.onnx", "onet.onnx"} <= {p.name for p in out.iterdir()}
    return out


def test_predict_on_onnx_imports_no_pytorch(graphs: Path) -> None:
    script = (
        "import json, sys\n"
        "from multimodal_df import predict\n"
        f"code = predict.main([{str(CLIP)!r}, '--checkpoint', {str(graphs)!r}, '--runtime', 'onnx', '--json'])\n"
        f"print(json.dumps({{'code': code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record, status = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert record["error"] is None and record["label"] in ("real", "fake")
    assert status == {"code": 0, "heavy": []}


def test_onnx_verdict_is_the_torch_verdict(graphs: Path) -> None:
    det_t = onnx_runtime.load(graphs, "cpu", "torch")
    det_o = onnx_runtime.load(graphs, "cpu", "onnx")
    assert det_o.torch_free and det_o.runtime.providers["faces"] == ["CPUExecutionProvider"]
    t, o = det_t.predict(CLIP), det_o.predict(CLIP)
    assert o.error is None and o.label == t.label
    assert abs(o.p_fake - t.p_fake) <= 1e-3
    assert o.vision.faces == t.vision.faces and o.vision.frames == t.vision.frames
    assert abs(o.vision.p_fake - t.vision.p_fake) <= 1e-3 and abs(o.audio.p_fake - t.audio.p_fake) <= 1e-3


def test_graphs_exported_before_the_face_graphs_still_load(graphs: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(graphs, old)
    manifest = json.loads((old / "onnx.json").read_text())
    for key in ("faces", "runtime", "config_sha256"):
        del manifest[key]
    (old / "onnx.json").write_text(json.dumps(manifest))
    for net in ("pnet", "rnet", "onet"):
        (old / f"{net}.onnx").unlink()
    det = onnx_runtime.load(old, "cpu", "onnx")
    # Branch graphs on ONNX Runtime, MTCNN and fusion on PyTorch, as before.
    assert not det.torch_free and det.runtime.runtime == "onnx" and det.faces.mtcnn_graphs is None
    assert det.predict(CLIP).error is None


def test_a_changed_config_or_face_graph_is_refused(graphs: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(graphs, changed)
    cfg = json.loads((changed / "config.json").read_text())
    cfg["threshold"] = 0.5
    (changed / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config.json changed since the graphs were exported"):
        onnx_runtime.load(changed, "cpu", "onnx")
    damaged = tmp_path / "damaged"
    shutil.copytree(graphs, damaged)
    (damaged / "rnet.onnx").write_bytes((damaged / "rnet.onnx").read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="rnet.onnx does not match onnx.json"):
        onnx_runtime.load(damaged, "cpu", "onnx")


def test_scan_workers_find_faces_as_the_onnx_detector_does(graphs: Path) -> None:
    import dataclasses

    from multimodal_df.scan import Prepare, settings_of

    settings = settings_of(onnx_runtime.load(graphs, "cpu", "onnx"))
    assert settings.mtcnn_graphs == str(graphs)
    assert Prepare(dataclasses.asdict(settings)).faces.mtcnn_graphs == str(graphs)
    assert settings_of(onnx_runtime.load(graphs, "cpu", "torch")).mtcnn_graphs is None
