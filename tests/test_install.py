"""The package works outside the checkout: a built wheel, installed into an empty folder, runs the examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_predicts_from_another_folder(tmp_path: Path) -> None:
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True, cwd=tmp_path
    )
    (wheel,) = wheels.glob("multimodal_df-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, cwd=tmp_path)
    pkg = target / "multimodal_df"
    for data in (
        "config/presets/tiny.yaml",
        "config/presets/shipped.yaml",
        "server/web/index.html",
        "shipped/config.json",
        "examples/real.mp4",
    ):
        assert (pkg / data).is_file(), data
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("MULTIMODAL_DF_CHECKPOINT", None)
    # The installed copy, not the checkout, must answer: same command a user runs, from an unrelated folder.
    where = subprocess.run(
        [sys.executable, "-c", "import multimodal_df; print(multimodal_df.__file__)"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "multimodal_df.predict",
            str(pkg / "examples" / "real.mp4"),
            "--json",
            "--device",
            "cpu",
        ],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec["error"] is None and 0 <= rec["p_fake"] <= 1
    # The console command is installed beside it and dispatches to the same code.
    script = target / "bin" / "multimodal-df"
    assert script.is_file()
    listing = subprocess.run(
        [sys.executable, str(script), "--help"], env=env, cwd=elsewhere, capture_output=True, text=True, check=True
    )
    assert "predict" in listing.stdout and "train" in listing.stdout
    presets = subprocess.run(
        [sys.executable, "-c", "from multimodal_df.config import list_presets; print(list_presets())"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "tiny" in presets.stdout
