"""Long files in chunks: a line per chunk as soon as it is scored, then the verdict, from the CLI, Python and the API."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest

from multimodal_df import predict
from multimodal_df.errors import ExitCode
from multimodal_df.pipeline.detector import Detector
from multimodal_df.pipeline.stream import ChunkResult, StreamVerdict, chunk_bounds
from multimodal_df.server.app import create_app
from multimodal_df.server.settings import ServerSettings
from multimodal_df.testing.fixtures import FixtureSpec, make_clip, make_clip_without_timestamps

CHUNK_KEYS = {"path", "chunk", "start_s", "end_s", "p_fake", "vision", "audio"}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stream_media")
    (d / "notes.mp4").write_text("not a video")
    return {
        # About a minute at 160x120 and 10 fps: cheap to write and to decode.
        "long": make_clip(d / "long.mp4", FixtureSpec(seed=401, duration=60.0, width=160, height=120, fps=10)),
        "short": make_clip(d / "short.mp4", FixtureSpec(seed=402, vision_artifact=1.0)),
        "text": d / "notes.mp4",
    }


def run(argv: list[str]) -> tuple[int, list[str]]:
    buf = io.StringIO()
    code = predict.main(argv, out=buf)
    return code, buf.getvalue().splitlines()


def test_chunk_lines_then_the_verdict(detector_dir: Path, media: dict[str, Path]) -> None:
    code, lines = run(
        [str(media["long"]), "--stream", "--chunk-seconds", "15", "--json", "--checkpoint", str(detector_dir)]
    )
    assert code == ExitCode.OK
    recs = [json.loads(line) for line in lines]
    chunks, final = recs[:-1], recs[-1]
    assert len(chunks) == 4 and all(set(c) >= CHUNK_KEYS for c in chunks)
    assert [c["chunk"] for c in chunks] == [0, 1, 2, 3]
    assert chunks[0]["start_s"] == 0 and chunks[-1]["end_s"] == pytest.approx(60.0, abs=0.2)
    assert all(a["end_s"] == b["start_s"] for a, b in itertools.pairwise(chunks))
    assert all(c["error"] is None and 0 <= c["p_fake"] <= 1 and c["vision"] is not None for c in chunks)
    # The final line is the ordinary predict --json record, over the whole file.
    assert set(final) >= {"path", "p_fake", "label", "threshold", "modalities", "segments", "error", "media"}
    assert final["error"] is None and final["label"] in ("real", "fake")
    assert final["stream"]["chunks"] == final["stream"]["scored"] == 4
    assert final["segments"][-1]["end"] == pytest.approx(60.0, abs=0.2) and not final["media"]["truncated"]
    assert final["modalities"]["audio"]["windows"] > 100


def test_no_max_seconds_cap_in_stream_mode(detector_dir: Path, media: dict[str, Path]) -> None:
    det = Detector.load(detector_dir, "cpu")
    det.decode_cfg.max_seconds = 20.0
    items = list(det.stream(media["long"], chunk_s=30.0))
    assert [type(i) for i in items] == [ChunkResult, ChunkResult, StreamVerdict]
    verdict = items[-1].prediction
    assert verdict.info.duration == pytest.approx(60.0, abs=0.2) and not verdict.info.truncated
    assert verdict.vision.times.max() > 50  # face crops from the last chunk count


def test_a_clip_shorter_than_a_chunk_gives_the_predict_verdict(detector_dir: Path, media: dict[str, Path]) -> None:
    det = Detector.load(detector_dir, "cpu")
    whole = det.predict(media["short"])
    items = list(det.stream(media["short"], chunk_s=30.0))
    assert len(items) == 2
    streamed = items[-1].prediction
    assert streamed.label == whole.label and streamed.p_fake == pytest.approx(whole.p_fake, abs=1e-6)


def test_a_clip_whose_timestamps_all_repeat_streams_like_predict(detector_dir: Path, tmp_path: Path) -> None:
    clip = make_clip_without_timestamps(
        tmp_path / "all_pts_zero.mp4", FixtureSpec(seed=404, duration=3.0, width=176, height=144, fps=12)
    )
    det = Detector.load(detector_dir, "cpu")
    whole = det.predict(clip)
    items = list(det.stream(clip, chunk_s=30.0))
    streamed = items[-1].prediction
    assert whole.error is None and streamed.error is None and len(items) == 2
    assert streamed.p_fake == pytest.approx(whole.p_fake, abs=1e-6)
    assert streamed.info is not None and abs(streamed.info.duration - 3.0) < 0.1
    assert any("timestamps repeat or are missing" in n for n in streamed.info.notes)


def test_bad_input_is_one_error_line_and_exit_1(detector_dir: Path, media: dict[str, Path]) -> None:
    code, lines = run([str(media["text"]), "--stream", "--json", "--checkpoint", str(detector_dir)])
    assert code == ExitCode.INPUT_ERRORS and len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["error"] and rec["p_fake"] is None and "chunk" not in rec


def test_text_mode_and_usage_errors(detector_dir: Path, media: dict[str, Path], capsys) -> None:
    code, lines = run([str(media["long"]), "--stream", "--chunk-seconds", "30", "--checkpoint", str(detector_dir)])
    assert code == 0 and len(lines) >= 3 and lines[0].startswith("chunk   0") and "P(fake)=" in lines[0]
    for argv in (["--chunk-seconds", "0.5"], ["--explain", "out"]):
        assert run([str(media["short"]), "--stream", *argv, "--checkpoint", str(detector_dir)])[0] == ExitCode.USAGE
        assert capsys.readouterr().err.startswith("error:")


def test_chunk_plan() -> None:
    assert chunk_bounds(60.0, 15.0) == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert chunk_bounds(40.0, 30.0) == [0.0, 40.0]  # one chunk rather than a 10 s stub
    assert chunk_bounds(None, 30.0) == [0.0]  # no duration: the reader goes on in 30 s steps


@pytest.fixture(scope="module")
def api(detector_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient

    settings = ServerSettings(max_upload_mb=5.0, tmp_dir=str(tmp_path_factory.mktemp("uploads")), api_key="k" * 24)
    app = create_app(Detector.load(detector_dir, "cpu"), settings=settings)
    return TestClient(app, base_url="http://127.0.0.1"), Path(settings.tmp_dir)  # type: ignore[arg-type]


def post(client, path: Path, query: str = "stream=true&chunk_seconds=15", **headers: str):
    with open(path, "rb") as fh:
        return client.post(
            f"/v1/predict?{query}", files={"file": (path.name, fh, "application/octet-stream")}, headers=headers
        )


def test_api_streams_ndjson(api, media: dict[str, Path]) -> None:
    client, uploads = api
    key = {"x-api-key": "k" * 24}
    url = "/v1/predict?stream=true&chunk_seconds=15"
    with (
        open(media["long"], "rb") as fh,
        client.stream("POST", url, files={"file": ("long.mp4", fh)}, headers=key) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        assert r.headers["x-content-type-options"] == "nosniff"
        recs = [json.loads(line) for line in r.iter_lines() if line]
    assert [c["chunk"] for c in recs[:-1]] == [0, 1, 2, 3] and recs[-1]["stream"]["chunks"] == 4
    assert all(rec["path"] == "long.mp4" for rec in recs) and recs[-1]["error"] is None
    bad = post(client, media["text"], **key)
    assert bad.status_code == 415  # sniffed before any analysis, as without stream
    assert list(uploads.iterdir()) == []  # nothing kept


def test_api_stream_keeps_the_protections(api, media: dict[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    client, uploads = api
    key = {"x-api-key": "k" * 24}
    assert post(client, media["short"]).status_code == 401  # no API key
    other = TestClient(client.app, base_url="http://evil.example")
    assert post(other, media["short"], **key).status_code == 421  # a Host the server does not answer
    big = tmp_path / "big.mp4"
    big.write_bytes(media["long"].read_bytes() + bytes(6 * 2**20))
    assert post(client, big, **key).status_code == 413  # over the 5 MB upload limit
    r = post(client, media["short"], "stream=true&explain=true", **key)
    assert r.status_code == 400 and r.json()["error"]
    assert list(uploads.iterdir()) == []
