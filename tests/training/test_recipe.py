"""The shipped-model recipe end to end on a small slice of ../shared/data, with tiny models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from multimodal_df import recipe
from multimodal_df.pipeline.detector import Detector
from multimodal_df.training.recipe import speaker_split

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "multimodal_df" / "examples"


def _slice(tmp: Path) -> Path:
    """faces: 2 train and 2 valid people; speech: 16 train-clean-100 speakers and 2 test-other utterances per speaker of 3."""
    data = tmp / "data"
    (data / "faces").mkdir(parents=True)
    for name in ("d0", "d3", "d18", "d13"):  # d18, d13 are validation people (recipe.FACE_VALID)
        (data / "faces" / f"{name}.mp4").symlink_to(SHARED / "faces" / f"{name}.mp4")
    tr = data / "librispeech" / "train-clean-100"
    te = data / "librispeech" / "test-other"
    tr.mkdir(parents=True)
    te.mkdir(parents=True)
    picked = sorted((SHARED / "librispeech" / "train-clean-100").glob("*.flac"))
    # Enough speakers that the stable speaker hash puts some in validation.
    valid = [p for p in picked if speaker_split(p.stem.split("-")[0]) == "valid"][:5]
    train = [p for p in picked if speaker_split(p.stem.split("-")[0]) == "train"][:12]
    for p in valid + train:
        (tr / p.name).symlink_to(p)
    spk: dict[str, int] = {}
    for p in sorted((SHARED / "librispeech" / "test-other").glob("*.flac")):
        s = p.stem.split("-")[0]
        if spk.get(s, 0) < 2 and (len(spk) < 3 or s in spk):
            spk[s] = spk.get(s, 0) + 1
            (te / p.name).symlink_to(p)
    return data


MISSING_TTS = (shutil.which("espeak-ng") is None or shutil.which("flite") is None) and os.environ.get(
    "MULTIMODAL_DF_REQUIRE_TOOLS"
) != "1"


@pytest.mark.skipif(not SHARED.is_dir() or MISSING_TTS, reason="needs ../shared/data, espeak-ng and flite")
def test_recipe_trains_fuses_reports_and_installs(tmp_path: Path) -> None:
    data = _slice(tmp_path)
    out = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--config",
        "tiny",
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        "train.epochs=2",
    ]
    assert recipe.main(args) == 0
    faces = (out / "manifests" / "faces.csv").read_text().splitlines()
    assert sum(",valid," in line for line in faces) == 2 and sum(",train," in line for line in faces) == 2
    res = json.loads((out / "validation.json").read_text())
    assert res["holdout_generator"] == "world"
    assert set(res["vision_valid"]) >= {"self_blend", "cross_blend"}
    assert set(res["audio_valid"]) >= {"griffin_lim", "world", "espeak", "flite"}
    # Formant TTS is far from LibriSpeech: even two tiny epochs separate it on never-seen speakers.
    assert res["audio_test_speakers"]["espeak"]["auc"] > 0.9
    assert json.loads((out / "audio_choice.json").read_text())["kept"] in ("mel", "mel_wav2vec")
    det = Detector.load(out / "detector", "cpu")
    assert det.fusion is not None and det.training_data["composites"] > 0
    assert det.audio_meta is not None and "val_auc_world" in det.audio_meta.metrics
    pred = det.predict(EXAMPLES / "real.mp4")
    assert pred.error is None and 0.0 <= pred.p_fake <= 1.0
    assert "Validation of the shipped model" in (out / "validation.md").read_text()


def test_recipe_refuses_unknown_stage_and_missing_data(tmp_path: Path) -> None:
    assert recipe.main(["--stages", "vision,nope", "--out", str(tmp_path)]) == 2
    assert recipe.main(["--stages", "manifests", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
