"""The shipped-model recipe end to end on a small slice of ../shared/data, with tiny models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from multimodal_df import recipe
from multimodal_df.pipeline.detector import Detector
from multimodal_df.training.real_data import face_group, speech_group, split_of

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "multimodal_df" / "examples"


def _slice(tmp: Path) -> Path:
    """A few people and speakers of each split (by the recipe's own person / speaker hash): face clips and photos,
    LibriSpeech train-clean-100 utterances, and test-other (always a test set) for 3 speakers."""
    data = tmp / "data"
    (data / "faces").mkdir(parents=True)
    for name in ("d0", "d3", "d13", "d9"):  # train, train, valid, test people
        (data / "faces" / f"{name}.mp4").symlink_to(SHARED / "faces" / f"{name}.mp4")
    photos = sorted(p for p in (SHARED / "face_photos").rglob("*.jpg"))
    valid_photos = [p for p in photos if split_of(face_group(p)) == "valid"][:2]
    for p in valid_photos:
        dst = data / "face_photos" / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(p)
    tr = data / "librispeech" / "train-clean-100"
    te = data / "librispeech" / "test-other"
    tr.mkdir(parents=True)
    te.mkdir(parents=True)
    picked = sorted((SHARED / "librispeech" / "train-clean-100").glob("*.flac"))
    valid = [p for p in picked if split_of(speech_group(p)) == "valid"][:5]
    train = [p for p in picked if split_of(speech_group(p)) == "train"][:12]
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
    assert sum(",valid," in line for line in faces) == 3 and sum(",train," in line for line in faces) == 2
    assert sum(",test," in line for line in faces) == 1
    res = json.loads((out / "validation.json").read_text())
    assert res["holdout_generator"] == "world"
    assert set(res["vision_valid"]) >= {"self_blend", "cross_blend"}
    assert set(res["audio_valid"]) >= {"griffin_lim", "world", "espeak", "flite"}
    assert set(res["vision_test_people"]) >= {"real", "self_blend"}
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
