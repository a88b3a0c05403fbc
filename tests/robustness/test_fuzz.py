"""A seeded, bounded slice of the fuzz harness (``benchmarks/fuzz.py``): mutated media through ``predict`` in
batches, and damaged checkpoints. Nothing may abort a batch, show a traceback, hang, or pass the memory bound."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("mmdf_fuzz", ROOT / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_seeded_slice_of_the_fuzz_harness(fuzz, detector_dir: Path, tmp_path: Path) -> None:
    cfg = fuzz.FuzzConfig(detector_dir, tmp_path, media=480, checkpoints=40, seed=7, batch=160, progress=False)
    summary = fuzz.run(cfg)
    for kind, n in (("media", 480), ("checkpoint", 40)):
        s = summary[kind]
        assert s["inputs"] == n, s
        bad = {k: s[k] for k in ("traceback", "batch_abort", "hang", "over_memory", "network", "internal_error")}
        assert not any(bad.values()), (kind, bad, summary["findings"][:5])
        assert s["tracebacks_after_last_file"] == 0
        assert s["over_bound"] == 0 and s["peak_rss_mb"] < cfg.bound_mb
        # The mutations are not all rejected at the door: some still decode and get a verdict.
        assert s["scored"] > 0 and s["clean_error"] > 0
    assert summary["media"]["slowest_s"] < cfg.file_s


def test_mutations_are_deterministic(fuzz, tmp_path: Path) -> None:
    seeds = {"a.png": tmp_path / "a.png", "b.wav": tmp_path / "b.wav"}
    seeds["a.png"].write_bytes(fuzz.png_declaring(64, 48))
    seeds["b.wav"].write_bytes(b"RIFF" + bytes(40) + bytes(range(256)) * 4)
    data = {k: v.read_bytes() for k, v in seeds.items()}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for i in range(40):
        a = fuzz.media_case(i, 3, seeds, data, tmp_path / "one")
        b = fuzz.media_case(i, 3, seeds, data, tmp_path / "two")
        assert (a.seed, a.ops, a.path) == (b.seed, b.ops, b.path)
        pa, pb = tmp_path / "one" / a.path, tmp_path / "two" / b.path
        if pa.is_file() and not pa.is_symlink():
            assert pa.read_bytes() == pb.read_bytes()
    fuzz._cleanup(tmp_path / "one")
    fuzz._cleanup(tmp_path / "two")
