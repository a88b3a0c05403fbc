"""Training learns: held-out fixture AUC > 0.9 for each branch and for fusion; resume; logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multimodal_df import evaluate, train
from multimodal_df.pipeline.detector import Detector

TINY = "tiny"


@pytest.fixture(scope="module")
def test_report(detector_dir: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(detector_dir),
                "--manifest",
                str(dataset),
                "--split",
                "test",
                "--out",
                str(out),
                "--bootstrap",
                "200",
                "--device",
                "cpu",
                "--trim-silence",
            ]
        )
        == 0
    )
    for f in ("report.json", "report.md", "roc.png", "predictions.jsonl", "report_trimmed.md"):
        assert (out / f).stat().st_size > 0, f
    return json.loads((out / "report.json").read_text())


def test_held_out_auc_per_branch_and_fused(test_report: dict) -> None:
    r = test_report
    assert r["scored"] == r["files"] == 24 and r["failed"] == []
    assert r["fused"]["auc"] > 0.9
    assert r["modalities"]["vision"]["on_video_label"]["auc"] > 0.9
    assert r["modalities"]["audio"]["on_audio_label"]["auc"] > 0.9
    assert r["fused"]["accuracy"] >= 0.75


def test_trim_silence_report(test_report: dict) -> None:
    t = test_report["trim_silence"]
    # The fixtures' fakes carry no silence shortcut, so trimming must not change the verdicts much.
    assert t["scored"] == 24 and abs(t["fused"]["auc"] - test_report["fused"]["auc"]) < 0.1
    assert t["modalities"]["audio"]["on_audio_label"]["auc"] > 0.9


def test_report_contents(test_report: dict) -> None:
    f = test_report["fused"]
    for key in (
        "auc",
        "auc_ci95",
        "ap",
        "eer",
        "ece",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "confusion",
        "threshold",
    ):
        assert key in f, key
    lo, hi = f["auc_ci95"]
    assert lo <= f["auc"] <= hi
    assert set(test_report["categories"]) == {"RVRA", "FVRA", "RVFA", "FVFA"}
    # Face fakes are caught by vision, voice fakes by audio: the per-category AUCs say so. Six fakes of a category
    # against the test split's reals: the tiny model trained once per session scored FVRA 1.0 in three partial runs and
    # 0.89 in one full run (which tests build it first changes its training a little), so assert a clear margin.
    cats = test_report["categories"]
    assert cats["FVRA"]["vision_auc"] > 0.8 and cats["RVFA"]["audio_auc"] > 0.8
    # The branch that cannot see the fake track ranks six real-looking items against six reals by chance: its AUC
    # spreads with sd of about 0.17 around 0.5 (0.83 was seen on one machine), so no fixed bound holds on every CPU.
    # What holds: it separates that category less well than the branch whose track was faked.
    assert cats["RVFA"]["vision_auc"] < cats["RVFA"]["audio_auc"], cats["RVFA"]
    assert cats["FVRA"]["audio_auc"] < cats["FVRA"]["vision_auc"], cats["FVRA"]


def test_branch_checkpoints_and_logs(trained: Path) -> None:
    for stage in ("vision", "audio"):
        d = trained / stage
        log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in log] == list(range(1, len(log) + 1))
        assert all({"train_loss", "auc", "loss", "lr", "best"} <= set(e) for e in log)
        cfg = json.loads((d / "config.json").read_text())
        assert cfg[stage]["metrics"]["val_auc"] > 0.9
        det = Detector.load(d, "cpu")  # a single-branch checkpoint is a usable detector
        assert (det.vision is not None) == (stage == "vision")
    full = json.loads((trained / "detector" / "config.json").read_text())
    assert full["format_version"] == 2
    assert full["fusion"]["args"]["method"] in ("stacking", "mlp")
    assert full["training"]["data"]["manifest"]["train"]["files"] == 48
    # Architecture and training settings are kept apart: the model args hold no training knob.
    assert "pretrained_path" not in full["vision"]["args"] and "epochs" not in full["fusion"]["args"]
    assert full["training"]["config"]["train"]["epochs"] == 10
    assert 0 < full["threshold"] < 1


def test_resume_continues_from_the_last_epoch(dataset: Path, trained: Path, tmp_path: Path) -> None:
    args = [
        "--config",
        str(TINY),
        "--manifest",
        str(dataset),
        "--out",
        str(tmp_path),
        "--cache-dir",
        str(trained / "cache"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert train.main(["--stage", "vision", *args, "--set", "train.epochs=2"]) == 0
    assert train.main(["--stage", "vision", *args, "--set", "train.epochs=3", "--resume"]) == 0
    log = [json.loads(line) for line in (tmp_path / "vision" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3]


def test_usage_errors_exit_2(dataset: Path, tmp_path: Path) -> None:
    assert train.main(["--stage", "vision", "--config", str(TINY), "--out", str(tmp_path)]) == 2  # no manifest
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    assert train.main(["--stage", "vision", "--config", str(bad), "--manifest", str(dataset)]) == 2
    assert (
        train.main(
            [
                "--stage",
                "fusion",
                "--config",
                str(TINY),
                "--manifest",
                str(dataset),
                "--out",
                str(tmp_path / "empty"),
                "--cache-dir",
                str(tmp_path / "c"),
                "--no-progress",
            ]
        )
        == 2
    )


def test_real_only_faces_train_the_vision_branch_with_self_blended_fakes(tmp_path: Path) -> None:
    """No fake in the manifest: SBI pseudo-fakes are the only positives, and the branch learns them."""
    import numpy as np

    from multimodal_df.testing.fixtures import FixtureSpec, make_clip
    from multimodal_df.training.manifests import read_manifest
    from multimodal_df.training.pseudofakes.faces import self_blend
    from multimodal_df.vision.crops import landmarks_to_crop

    lines = ["path,label,split"]
    for i in range(14):
        split = "train" if i < 10 else "valid"
        make_clip(tmp_path / f"r{i}.mp4", FixtureSpec(seed=500 + i, width=176, height=176, audio=False))
        lines.append(f"r{i}.mp4,0,{split}")
    (tmp_path / "real_only.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = [
        "--stage",
        "vision",
        "--config",
        str(TINY),
        "--manifest",
        str(tmp_path / "real_only.csv"),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert train.main([*args, "--set", "train.pseudo_fakes=true", "--set", "train.epochs=8"]) == 0
    cfg = json.loads((out / "vision" / "config.json").read_text())
    assert cfg["training"]["data"]["self_blended_crops"] > 0
    assert cfg["vision"]["metrics"]["val_auc"] > 0.8  # held-out real clips vs their self-blends
    # Fresh real clips and fresh self-blends of them, never seen in training:
    det = Detector.load(out / "vision", "cpu")
    rng = np.random.default_rng(7)
    real_scores, fake_scores = [], []
    for i in range(6):
        p = make_clip(tmp_path / f"new{i}.mp4", FixtureSpec(seed=900 + i, width=176, height=176, audio=False))
        from multimodal_df.media.decode import decode

        clip = decode(p, det.decode_cfg)
        tr = det.track_faces(clip)
        lms = [
            landmarks_to_crop(tr.landmarks[k], tr.boxes[k], det.face_cfg.margin, tr.crops.shape[1])
            for k in range(len(tr))
        ]
        blended = np.stack([self_blend(tr.crops[k], lms[k], rng).image for k in range(len(tr))])
        real_scores.append(det.vision_output(tr.crops, tr.times, tr.num_frames).logit)
        fake_scores.append(det.vision_output(blended, tr.times, tr.num_frames).logit)
    from multimodal_df.evaluation.metrics import roc_auc

    auc = roc_auc(np.r_[np.zeros(6), np.ones(6)], np.r_[real_scores, fake_scores])
    assert auc > 0.8, auc
    assert read_manifest(tmp_path / "real_only.csv")[0].label == 0


def test_speech_pseudo_fake_windows_are_balanced_and_drawn_from_every_generator() -> None:
    import numpy as np

    from multimodal_df.training.datasets import SpeechPseudoFakes

    rng = np.random.default_rng(0)
    reals = [rng.standard_normal(16000 * 3).astype(np.float32) * 0.05 for _ in range(4)]
    # Stand-in banks: a constant tone per generator, so each fake window says where it came from.
    banks = {g: [np.full(16000 * 3, v, np.float32)] for g, v in (("espeak", 0.11), ("flite", 0.22))}
    ds = SpeechPseudoFakes(
        reals, banks, ["espeak", "flite"], 8000, windows_per_utterance=3, augment=False, seed=0, sample_rate=16000
    )
    labels = [int(ds[i][1]) for i in range(len(ds))]
    assert len(ds) == 24 and labels.count(0) == labels.count(1) == 12
    seen = {round(float(ds[i][0][0]), 2) for i in range(12, 24) for _ in range(3)}
    assert seen == {0.11, 0.22}
    assert all(ds[i][0].shape == (8000,) for i in range(len(ds)))


def test_audio_generator_settings_are_checked(tmp_path: Path) -> None:
    from multimodal_df.config import load_config
    from multimodal_df.errors import ConfigError

    with pytest.raises(ConfigError, match="train.audio_generators\\[1\\]: 'wavenet' is not one of"):
        load_config(None, {"train.audio_generators": ["griffin_lim", "wavenet"]})
    with pytest.raises(ConfigError, match="audio_holdout"):
        load_config(None, {"train.audio_generators": ["griffin_lim", "espeak"], "train.audio_holdout": "world"})
    with pytest.raises(ConfigError, match="only generator"):
        load_config(None, {"train.audio_generators": ["world"], "train.audio_holdout": "world"})
