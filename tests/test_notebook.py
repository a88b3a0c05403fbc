"""The walkthrough notebook runs top to bottom against a trained detector."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def test_notebook_runs(
    detector_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("MULTIMODAL_DF_CHECKPOINT", str(detector_dir))
    monkeypatch.chdir(tmp_path)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    scope: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}", "exec"), scope)
    out = capsys.readouterr().out
    assert "fused P(fake)" in out and "video only" in out and "audio only" in out
    pred = scope["pred"]
    assert pred.error is None and pred.vision is not None
    # The example's face is manipulated: its face score must rank above the untouched example's (a ranking, not
    # a label at a threshold, which a tiny model trained on another CPU may put either side of).
    import multimodal_df as mdf

    real = mdf.load(detector_dir, device="cpu").predict(NOTEBOOK.parents[1] / "multimodal_df" / "examples" / "real.mp4")
    assert real.vision is not None and pred.vision.p_fake > real.vision.p_fake
    assert os.environ["MULTIMODAL_DF_CHECKPOINT"] == str(detector_dir)
    assert (tmp_path / "runs" / "notebook_report" / "report.html").is_file()
