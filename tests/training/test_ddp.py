"""Data-parallel training under torchrun: two gloo processes on the CPU train the tiny config, rank 0 alone
writes one checkpoint per stage that loads and predicts, and --resume continues under torchrun too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import multimodal_df as mdf


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "multimodal_df.train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def epochs_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_torchrun_two_processes(dataset: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    # The session's prepared cache: this test is about training, not decoding.
    common = ["--config", "tiny", "--manifest", str(dataset), "--out", str(out), "--cache-dir", str(trained / "cache")]
    common += ["--no-progress", "--device", "cpu"]
    r = torchrun("--stage", "all", *common, "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr[-3000:]
    # One writer: one log line per epoch (not one per rank), one state, one checkpoint per stage.
    assert sorted(p.name for p in out.iterdir()) == ["audio", "detector", "vision"]
    for stage in ("vision", "audio"):
        assert epochs_logged(out / stage) == [1]
        assert [p.name for p in (out / stage / "state").iterdir() if p.is_dir()] == ["epoch-0000"]
    assert r.stderr.count("detector in ") == 1  # "fusion: wrote .../detector in N s", from rank 0 only
    det = mdf.load(out / "detector", device="cpu")
    clip = next(p for p in sorted(dataset.parent.rglob("*.mp4")))
    pred = det.predict(clip)
    assert pred.error is None and 0.0 <= pred.p_fake <= 1.0

    # Resume under torchrun: the vision stage continues at epoch 2 from the state rank 0 wrote.
    r = torchrun("--stage", "vision", *common, "--resume", "--set", "train.epochs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming at epoch 2/2" in r.stderr
    assert epochs_logged(out / "vision") == [1, 2]
    assert mdf.load(out / "vision", device="cpu").predict(clip).error is None
