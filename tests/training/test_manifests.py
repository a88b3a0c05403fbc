from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df import train
from multimodal_df.errors import ConfigError
from multimodal_df.training.manifests import assign_splits, read_manifest


def test_manifest_columns_labels_and_paths(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "path,label,video_label,audio_label,split,category,group\na.mp4,fake,0,1,val,RVFA,p1\n/abs/b.wav,0,,,,,\n"
    )
    rows = read_manifest(tmp_path / "m.csv")
    assert rows[0].path == str(tmp_path / "a.mp4") and rows[0].label == 1 and rows[0].split == "valid"
    assert rows[0].vision_target == 0 and rows[0].audio_target == 1 and rows[0].category == "RVFA"
    assert rows[1].path == "/abs/b.wav" and rows[1].video_label is None and rows[1].vision_target == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ("file,label\na,1\n", "needs columns path,label"),
        ("path,label\na,maybe\n", "not 0/1/real/fake"),
        ("path,label,split\na,1,holdout\n", "not train/valid/test"),
        ("path,label\n", "no rows"),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_manifest(tmp_path / "m.csv")


def test_auto_split_keeps_groups_together(tmp_path: Path) -> None:
    lines = ["path,label,group"] + [f"f{i}.mp4,{i % 2},speaker{i // 5}" for i in range(200)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    rows = assign_splits(read_manifest(tmp_path / "m.csv"), 0.25, seed=0)
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in by_group.values())
    frac = np.mean([r.split == "valid" for r in rows])
    assert 0.1 < frac < 0.45


def _faces(d: Path, n: int, seed: int, fake: bool) -> None:
    from PIL import Image

    from multimodal_df.testing.fixtures import FixtureSpec, render_frames

    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        frame = render_frames(FixtureSpec(seed=seed + i, duration=0.1, vision_artifact=1.0 if fake else 0.0))[0][0]
        Image.fromarray(frame).save(d / f"{i}.png")


def test_image_folder_layouts(tmp_path: Path) -> None:
    _faces(tmp_path / "flat" / "real", 2, 0, False)
    _faces(tmp_path / "flat" / "fake" / "gan", 3, 10, True)
    rows = read_manifest(tmp_path / "flat")
    assert sorted(r.label for r in rows) == [0, 0, 1, 1, 1] and all(r.split is None for r in rows)
    for split in ("train", "valid", "test"):
        _faces(tmp_path / "140k" / split / "real", 1, 20, False)
        _faces(tmp_path / "140k" / split / "fake", 1, 30, True)
    rows = read_manifest(tmp_path / "140k")
    assert sorted((r.split, r.label) for r in rows) == [
        ("test", 0),
        ("test", 1),
        ("train", 0),
        ("train", 1),
        ("valid", 0),
        ("valid", 1),
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no media under real/ and fake/"):
        read_manifest(tmp_path / "empty")


def test_train_vision_on_an_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for split, n in (("train", 6), ("valid", 3)):
        _faces(root / split / "real", n, 100 + n, False)
        _faces(root / split / "fake", n, 200 + n, True)
    tiny = "tiny"
    code = train.main(
        [
            "--stage",
            "vision",
            "--config",
            str(tiny),
            "--manifest",
            str(root),
            "--out",
            str(tmp_path / "run"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
            "--device",
            "cpu",
            "--set",
            "train.epochs=2",
        ]
    )
    assert code == 0 and (tmp_path / "run" / "vision" / "config.json").exists()
