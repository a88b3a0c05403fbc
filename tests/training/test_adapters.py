"""Each adapter on a tiny tree that mimics the dataset's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multimodal_df import datasets
from multimodal_df.errors import ConfigError
from multimodal_df.training import adapters
from multimodal_df.training.manifests import read_manifest


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x00")
    return p


def test_fakeavceleb(tmp_path: Path) -> None:
    for top in ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio"):
        touch(tmp_path / top / "African" / "men" / "id00076" / "00109.mp4")
    touch(tmp_path / "meta_data.csv")
    rows = {r.category: r for r in adapters.fakeavceleb(tmp_path)}
    assert set(rows) == {"RVRA", "RVFA", "FVRA", "FVFA"}
    assert (rows["RVFA"].label, rows["RVFA"].video_label, rows["RVFA"].audio_label) == (1, 0, 1)
    assert (rows["FVRA"].label, rows["FVRA"].video_label, rows["FVRA"].audio_label) == (1, 1, 0)
    assert rows["RVRA"].label == 0 and all(r.group == "id00076" for r in rows.values())


def test_dfdc(tmp_path: Path) -> None:
    part = tmp_path / "dfdc_train_part_0"
    touch(part / "a.mp4")
    touch(part / "b.mp4")
    (part / "metadata.json").write_text(
        json.dumps(
            {
                "a.mp4": {"label": "REAL", "split": "train", "original": None},
                "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
            }
        )
    )
    rows = sorted(adapters.dfdc(tmp_path), key=lambda r: r.path)
    assert [r.label for r in rows] == [0, 1] and rows[0].group == rows[1].group == "a.mp4"


@pytest.mark.parametrize("kind", ["lavdf", "avdeepfake1m"])
def test_segment_datasets(tmp_path: Path, kind: str) -> None:
    if kind == "lavdf":
        meta = [
            {
                "file": "train/000001.mp4",
                "split": "train",
                "modify_video": False,
                "modify_audio": False,
                "fake_periods": [],
                "original": None,
            },
            {
                "file": "dev/000002.mp4",
                "split": "dev",
                "modify_video": True,
                "modify_audio": False,
                "fake_periods": [[0.5, 1.0]],
                "original": "000001.mp4",
            },
            {
                "file": "test/000003.mp4",
                "split": "test",
                "modify_video": False,
                "modify_audio": True,
                "fake_periods": [[1.0, 1.4]],
                "original": "000001.mp4",
            },
        ]
        (tmp_path / "metadata.json").write_text(json.dumps(meta))
        rows = adapters.lavdf(tmp_path)
    else:
        (tmp_path / "train_metadata.json").write_text(
            json.dumps(
                [
                    {"file": "train/a.mp4", "original": None, "modify_type": "real", "fake_segments": []},
                    {
                        "file": "train/b.mp4",
                        "original": "train/a.mp4",
                        "modify_type": "both_modified",
                        "fake_segments": [[0.1, 0.4]],
                    },
                ]
            )
        )
        (tmp_path / "val_metadata.json").write_text(
            json.dumps(
                [
                    {
                        "file": "val/c.mp4",
                        "original": "x.mp4",
                        "modify_type": "audio_modified",
                        "fake_segments": [[2.0, 2.3]],
                    }
                ]
            )
        )
        rows = adapters.avdeepfake1m(tmp_path)
    got = [(Path(r.path).name, r.split, r.label, r.video_label, r.audio_label) for r in rows]
    if kind == "lavdf":
        assert got == [
            ("000001.mp4", "train", 0, 0, 0),
            ("000002.mp4", "valid", 1, 1, 0),
            ("000003.mp4", "test", 1, 0, 1),
        ]
    else:
        assert got == [("a.mp4", "train", 0, 0, 0), ("b.mp4", "train", 1, 1, 1), ("c.mp4", "valid", 1, 0, 1)]


def test_asvspoof_protocol(tmp_path: Path) -> None:
    touch(tmp_path / "flac" / "LA_T_1138215.flac")
    touch(tmp_path / "flac" / "LA_T_1271820.flac")
    (tmp_path / "proto.txt").write_text("LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n")
    rows = adapters.asvspoof(tmp_path / "proto.txt", tmp_path / "flac", "train")
    assert [(r.label, r.audio_label, r.category, r.group, r.split) for r in rows] == [
        (0, 0, "-", "LA_0079", "train"),
        (1, 1, "A01", "LA_0079", "train"),
    ]
    (tmp_path / "bad.txt").write_text("LA_0079 LA_T_0000001 - - bonafide\n")
    with pytest.raises(ConfigError, match="no audio file for LA_T_0000001"):
        adapters.asvspoof(tmp_path / "bad.txt", tmp_path / "flac")


def test_cli_writes_a_manifest_the_trainer_reads(tmp_path: Path) -> None:
    for top in ("RealVideo-RealAudio", "FakeVideo-FakeAudio"):
        touch(tmp_path / "fav" / top / "Asian (East)" / "women" / "id00001" / "1.mp4")
    out = tmp_path / "m.csv"
    assert datasets.main(["fakeavceleb", str(tmp_path / "fav"), "--out", str(out)]) == 0
    rows = read_manifest(out)
    assert sorted((r.category, r.label) for r in rows) == [("FVFA", 1), ("RVRA", 0)]
    assert datasets.main(["dfdc", str(tmp_path / "nothing_here"), "--out", str(out)]) == 2
