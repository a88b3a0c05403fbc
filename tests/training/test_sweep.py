"""Sweeps: a 2-trial grid on the tiny config trains two runs, ranks them by validation AUC, plots them, and
a second run of the same sweep starts no new trial."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from multimodal_df import sweep
from multimodal_df.config import PRESETS_DIR
from multimodal_df.errors import ConfigError

SHIPPED = PRESETS_DIR.parent / "sweeps" / "tiny_grid.yaml"


def test_grid_sweep_ranks_plots_and_resumes(dataset: Path, trained: Path, tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(
        "name: test_grid\nbase: tiny\nstages: [vision]\nsampler: grid\n"
        "overrides: {train.epochs: 1}\nspace:\n  train.lr: [0.001, 0.003]\n"
    )
    out = tmp_path / "sweep"
    argv = [str(spec), "--manifest", str(dataset), "--out", str(out), "--cache-dir", str(trained / "cache")]
    argv += ["--device", "cpu"]
    assert sweep.main(argv) == 0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 2 and {float(r["train.lr"]) for r in rows} == {0.001, 0.003}
    aucs = [float(r["val_auc"]) for r in rows]
    assert aucs == sorted(aucs, reverse=True)
    for r in rows:
        # Each trial is a normal run directory, and its objective is the AUC its checkpoint reports.
        ckpt = json.loads((Path(r["run_dir"]) / "vision" / "config.json").read_text())
        assert ckpt["vision"]["metrics"]["val_auc"] == pytest.approx(float(r["val_auc"]))
    md = (out / "runs.md").read_text()
    assert md.count("| complete |") == 2
    assert (out / "runs.png").stat().st_size > 1000 and (out / "study.db").is_file()

    # Resume: the grid is finished, so nothing new is trained and the table is the same.
    before = sorted(p.name for p in (out / "trials").iterdir())
    assert sweep.main(argv) == 0
    assert sorted(p.name for p in (out / "trials").iterdir()) == before == ["trial-0000", "trial-0001"]
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 2


def test_sweep_files_are_checked(tmp_path: Path) -> None:
    spec = sweep.load_spec(SHIPPED)
    assert spec.sampler == "grid" and sweep.n_trials_of(spec) == 2 and spec.target == "fusion"
    bad = tmp_path / "bad.yaml"
    for text in (
        "name: x\nbase: tiny\nspace: {train.lr: {low: 0.001, high: 0.01}}\n",  # a range in a grid
        "name: x\nbase: tiny\nspace: {train.nope: [1, 2]}\n",  # not a config key
        "name: x\nbase: tiny\nsampler: tpe\nspace: {train.lr: [0.1]}\n",  # tpe needs n_trials
        "name: x\nbase: tiny\nstages: [vision]\nobjective: fusion\nspace: {train.lr: [0.1]}\n",
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            sweep.n_trials_of(sweep.load_spec(bad))
    bad.write_text("name: x\nbase: tiny\nspace: {train.lr: [0.1]}\n")
    assert sweep.main([str(bad), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
