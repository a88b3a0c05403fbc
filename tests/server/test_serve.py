"""The REST API through FastAPI's test client: same JSON as predict, limits, sniffing, nothing kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.pipeline.detector import Detector
from multimodal_df.server.app import create_app
from multimodal_df.testing.fixtures import FixtureSpec, make_audio, make_clip, render_frames, write_wav


@pytest.fixture(scope="module")
def upload_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(detector_dir: Path, upload_tmp: Path):
    from fastapi.testclient import TestClient

    app = create_app(
        Detector.load(detector_dir, "cpu"), max_upload_mb=1.0, tmp_dir=str(upload_tmp), checkpoint=str(detector_dir)
    )
    return TestClient(app, base_url="http://127.0.0.1")  # a Host the server answers (loopback by default)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("api_media")
    from PIL import Image

    Image.fromarray(render_frames(FixtureSpec(seed=201))[0][0]).save(d / "face.png")
    return {
        "fake_face": make_clip(d / "fake.mp4", FixtureSpec(seed=202, vision_artifact=1.0)),
        "real": make_clip(d / "real.mp4", FixtureSpec(seed=203)),
        "speech": write_wav(d / "speech.wav", make_audio(FixtureSpec(seed=204))),
        "image": d / "face.png",
    }


def post(client, path: Path, name: str | None = None, explain: bool = False):
    with open(path, "rb") as fh:
        return client.post(
            f"/v1/predict?explain={str(explain).lower()}",
            files={"file": (name or path.name, fh, "application/octet-stream")},
        )


def test_health_and_docs(client) -> None:
    r = client.get("/health")
    assert (
        r.status_code == 200
        and r.json()["status"] == "ok"
        and r.json()["modalities"] == {"vision": True, "audio": True}
    )
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="analyze"' in page.text and "1 MB" in page.text


def test_predict_matches_the_cli_record(client, files: dict[str, Path], detector_dir: Path, upload_tmp: Path) -> None:
    import io
    import json

    from multimodal_df import predict

    r = post(client, files["fake_face"])
    assert r.status_code == 200
    rec = r.json()
    buf = io.StringIO()
    predict.main([str(files["fake_face"]), "--checkpoint", str(detector_dir), "--json", "--device", "cpu"], out=buf)
    cli = json.loads(buf.getvalue())
    assert set(rec) == set(cli)
    assert rec["label"] == cli["label"] == "fake" and rec["p_fake"] == pytest.approx(cli["p_fake"], abs=1e-4)
    assert rec["path"] == "fake.mp4"  # the upload's name, never a server path
    assert list(upload_tmp.iterdir()) == []  # nothing kept after the response


def test_audio_and_image_uploads(client, files: dict[str, Path]) -> None:
    a = post(client, files["speech"]).json()
    assert a["modalities"]["vision"] is None and a["modalities"]["audio"]["windows"] >= 1
    im = post(client, files["image"]).json()
    assert im["modalities"]["audio"] is None and len(im["faces"]) == 1
    x1, y1, x2, y2 = im["faces"][0]["box"]
    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 160 and 0 <= im["faces"][0]["p_fake"] <= 1


def test_explanations_inline(client, files: dict[str, Path]) -> None:
    rec = post(client, files["fake_face"], explain=True).json()
    images = rec["explanation"]["images"]
    assert {"timeline.png", "face_0.png", "frame_0.png", "audio.png"} <= set(images)
    assert all(v.startswith("data:image/png;base64,") for v in images.values())


@pytest.mark.parametrize(
    "content, status, reason",
    [
        (b"", 400, "empty"),
        (b"just some text, not media at all" * 10, 415, "not a video, audio file or image"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(2000), 422, "not a readable video or audio file"),
    ],
    ids=["empty", "text", "corrupt-mp4"],
)
def test_bad_uploads(client, tmp_path: Path, upload_tmp: Path, content: bytes, status: int, reason: str) -> None:
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    r = post(client, p)
    assert r.status_code == status and reason in r.json()["error"]
    assert list(upload_tmp.iterdir()) == []


def test_oversize_upload_is_413_and_not_kept(client, tmp_path: Path, upload_tmp: Path) -> None:
    p = tmp_path / "big.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3 * 1024 * 1024))
    r = post(client, p)
    assert r.status_code == 413 and "MB limit" in r.json()["error"]
    assert list(upload_tmp.iterdir()) == []


def test_path_tricks_in_file_names_are_harmless(client, files: dict[str, Path], upload_tmp: Path) -> None:
    r = post(client, files["real"], name="../../etc/passwd")
    assert r.status_code == 200 and r.json()["path"] == "passwd"
    assert list(upload_tmp.iterdir()) == []


def test_sniffing() -> None:
    from multimodal_df.media.sniff import sniff_bytes as sniff_media

    assert sniff_media(b"\x00\x00\x00\x20ftypisom") == "media"
    assert sniff_media(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio"
    assert sniff_media(b"\xff\xd8\xff\xe0") == "image"
    assert sniff_media(b"fLaC\x00") == "audio"
    assert sniff_media(b"hello world!") is None
    assert sniff_media(np.zeros(16, np.uint8).tobytes()) is None


def test_busy_server_answers_503(detector_dir: Path, files: dict[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Detector.load(detector_dir, "cpu"), max_waiting=0, tmp_dir=str(tmp_path))
    r = post(TestClient(app, base_url="http://127.0.0.1"), files["real"])
    assert r.status_code == 503 and "busy" in r.json()["error"]
    assert list(tmp_path.iterdir()) == []


def test_chunked_upload_without_length_is_cut_off(client, upload_tmp: Path) -> None:
    # No Content-Length: the server must count bytes as they arrive, not trust a header.
    boundary = b"xyz"

    def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n\x00\x00\x00\x18ftypmp42'
        for _ in range(40):
            yield bytes(100 * 1024)
        yield b"\r\n--xyz--\r\n"

    r = client.post(
        "/v1/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=" + boundary.decode()}
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert list(upload_tmp.iterdir()) == []
