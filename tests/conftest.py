"""Shared fixtures: a synthetic labelled dataset and a detector trained on it once per session.

Tests are grouped like the package: ``tests/media`` for ``multimodal_df/media``, and so on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "multimodal_df" / "examples"

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of 96 fixture clips: train/valid/test x RVRA/FVRA/RVFA/FVFA."""
    from multimodal_df.testing.fixtures import make_dataset

    return make_dataset(tmp_path_factory.mktemp("fixtures"), seed=0)


@pytest.fixture(scope="session")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory with vision/, audio/ and detector/ trained by the real CLI on the fixtures."""
    from multimodal_df import train

    out = tmp_path_factory.mktemp("run")
    code = train.main(
        [
            "--stage",
            "all",
            "--config",
            "tiny",
            "--manifest",
            str(dataset),
            "--out",
            str(out),
            "--cache-dir",
            str(out / "cache"),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def detector_dir(trained: Path) -> Path:
    return trained / "detector"
