"""The Ray scan as users run it: predict's records for the same files, error lines, resume, exit codes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from multimodal_df import predict, scan
from multimodal_df.testing.fixtures import FixtureSpec, make_audio, make_clip, write_wav


def records(path: Path) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, path.read_text().splitlines())}


def comparable(rec: dict) -> dict:
    """A record without what depends on the machine's speed."""
    rec = dict(rec, seconds=None, timings=None)
    if rec.get("provenance"):
        rec["provenance"] = dict(rec["provenance"], timings_ms=None)
    return rec


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scan_media")
    first, later = d / "first", d / "later"
    first.mkdir()
    later.mkdir()
    m = {
        "real": make_clip(first / "real.mp4", FixtureSpec(seed=201)),
        "fake_face": make_clip(first / "fake_face.mp4", FixtureSpec(seed=202, vision_artifact=1.0)),
        "voice": write_wav(first / "voice.wav", make_audio(FixtureSpec(seed=203, audio_artifact=1.0))),
        "fake_voice": make_clip(later / "fake_voice.mp4", FixtureSpec(seed=204, audio_artifact=1.0)),
    }
    (first / "corrupt.mp4").write_text("not a video at all")
    m["corrupt"] = first / "corrupt.mp4"
    m["first"], m["later"] = first, later
    return m


def test_scan_matches_predict_and_resumes(detector_dir: Path, media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    common = ["--out", str(out), "--checkpoint", str(detector_dir), "--num-cpus", "2", "--batch-size", "2"]
    common += ["--no-progress", "--device", "cpu"]
    # A corrupt file is an error line and exit 1, never a failed job.
    assert scan.main([str(media["first"]), *common]) == 1
    first = records(out)
    assert len(first) == 4 and len(out.read_text().splitlines()) == 4
    assert first[str(media["corrupt"])]["error"] and first[str(media["corrupt"])]["p_fake"] is None
    assert all(first[str(media[k])]["error"] is None for k in ("real", "fake_face", "voice"))

    # A crash mid-line leaves a partial record: it is dropped, not glued to the next one.
    with open(out, "a") as fh:
        fh.write('{"path": "half a line')
    # Resume: a CSV manifest naming one done file and a new one, plus the new folder as a file:// URI.
    manifest = tmp_path / "more.csv"
    rel = os.path.relpath(media["real"], tmp_path)
    manifest.write_text(f"path,label\n{rel},0\n{media['fake_voice']},1\n")
    uri = "file://" + str(media["later"])
    assert scan.main([str(media["first"]), str(manifest), uri, *common]) == 1  # the corrupt file still counts
    lines = out.read_text().splitlines()
    assert len(lines) == 6, lines  # fake_voice by path and by URI; nothing done is scored twice
    after = records(out)
    assert set(after) == set(first) | {str(media["fake_voice"]), f"{uri}/fake_voice.mp4"}
    assert after[f"{uri}/fake_voice.mp4"]["p_fake"] == pytest.approx(after[str(media["fake_voice"])]["p_fake"])
    # Everything done: nothing to do, exit 0 when none of these inputs had an error.
    assert scan.main([str(media["later"]), *common]) == 0
    assert len(out.read_text().splitlines()) == 6

    # The same files through predict --json: the same records, p_fake within 1e-4.
    buf = io.StringIO()
    paths = [str(media[k]) for k in ("real", "fake_face", "voice", "corrupt", "fake_voice")]
    assert predict.main([*paths, "--json", "--checkpoint", str(detector_dir), "--device", "cpu"], out=buf) == 1
    for ref in map(json.loads, buf.getvalue().splitlines()):
        got = after[ref["path"]]
        if ref["p_fake"] is not None:
            assert abs(got["p_fake"] - ref["p_fake"]) <= 1e-4, ref["path"]
        assert comparable(got) == comparable(ref), ref["path"]


def test_bad_checkpoint_is_a_usage_error(media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert scan.main([str(media["first"]), "--out", str(out), "--checkpoint", str(tmp_path / "nope")]) == 2
    assert not out.exists()


def test_inputs_and_resume_bookkeeping(media: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    items = scan.expand_inputs([str(media["first"]), str(media["real"]), str(empty)])
    paths = [p for p, _ in items]
    assert len(paths) == len(set(paths)) == 5  # the file named twice is listed once
    assert dict(items)[str(empty)] == "no media files in this folder"
    out = tmp_path / "r.jsonl"
    out.write_text('{"path": "a", "error": null}\n{"path": "b"')
    assert set(scan.done_records(out)) == {"a"} and out.read_text().endswith("null}\n")
