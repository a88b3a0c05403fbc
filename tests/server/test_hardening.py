"""The API under abuse: every answer is the documented JSON record, bombs are 4xx, security headers, allowed
Host names, cross-site requests, the API key, slow uploads and the analysis time limit."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from multimodal_df.pipeline.detector import Detector
from multimodal_df.server.app import ServerSettings, create_app, page_policy, script_hashes
from multimodal_df.testing.fixtures import FixtureSpec, make_clip

RECORD_KEYS = {"path", "p_fake", "label", "error"}
KEY = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def detector(detector_dir: Path) -> Detector:
    return Detector.load(detector_dir, "cpu")


@pytest.fixture(scope="module")
def upload_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


def client_for(detector: Detector, base_url: str = "http://127.0.0.1", **settings):
    from fastapi.testclient import TestClient

    return TestClient(create_app(detector, settings=ServerSettings(**settings)), base_url=base_url)


@pytest.fixture(scope="module")
def client(detector: Detector, upload_tmp: Path):
    return client_for(detector, max_upload_mb=2.0, tmp_dir=str(upload_tmp))


@pytest.fixture(scope="module")
def keyed(detector: Detector, upload_tmp: Path):
    return client_for(detector, max_upload_mb=2.0, tmp_dir=str(upload_tmp), api_key=KEY)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", FixtureSpec(seed=401, duration=1.0))


def upload(client, data: bytes, name: str = "x.bin", headers: dict | None = None):
    return client.post("/v1/predict", files={"file": (name, data, "application/octet-stream")}, headers=headers or {})


def is_record(r) -> bool:
    return r.headers["content-type"].startswith("application/json") and set(r.json()) >= RECORD_KEYS


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(193))) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 90, 60)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


# ------------------------------------------------------------------------------------------- records and statuses
@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("bomb.png", png_declaring(20000, 20000), "pixel limit"),
        ("sof.jpg", jpeg_declaring(65500, 65500), "pixel limit"),
        ("truncated.png", png_declaring(64, 64)[:40], "corrupt or unsupported image"),
    ],
)
def test_image_bombs_and_damaged_images_are_422_records(
    client, upload_tmp: Path, name: str, data: bytes, reason: str
) -> None:
    r = upload(client, data, name)
    assert r.status_code == 422 and is_record(r) and reason in r.json()["error"] and r.json()["path"] == name
    assert list(upload_tmp.iterdir()) == []


def test_a_small_jpeg_declaring_7000_pixels_is_decoded_small(client) -> None:
    r = upload(client, jpeg_declaring(7000, 7000, size=8), "big.jpg")
    rec = r.json()
    assert r.status_code == 200 and rec["media"]["width"] <= 4096, rec
    assert any("analysed at" in n for n in rec["notes"])


@pytest.mark.parametrize(
    "method, url, kwargs, status",
    [
        ("post", "/v1/predict", {}, 400),  # no file field at all
        ("post", "/v1/predict?explain=perhaps", {"files": {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}}, 400),
        (
            "post",
            "/v1/predict",
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
        ),
        ("get", "/v1/predict", {}, 405),
        ("get", "/no/such/page", {}, 404),
    ],
    ids=["missing-file", "bad-query", "broken-multipart", "wrong-method", "no-route"],
)
def test_request_errors_are_records(client, method: str, url: str, kwargs: dict, status: int) -> None:
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status and is_record(r), r.text
    assert r.json()["p_fake"] is None and r.json()["error"]


# ------------------------------------------------------------------------------------------- headers
def test_security_headers_everywhere(client) -> None:
    for r in (client.get("/"), client.get("/health"), client.get("/nope"), upload(client, b"")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    # The page runs its own inline script, by hash, and nothing else; JSON may load nothing at all.
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and script_hashes(page.text)[0] in script_src
    assert "img-src data:" in csp and "connect-src 'self'" in csp
    assert client.get("/health").headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_page_policy_hashes_exactly_the_inline_scripts() -> None:
    html = "<p>x</p><script>alert(1)</script><script src='/a.js'></script>"
    assert script_hashes(html) == ["'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"]
    assert "'sha256-" in page_policy(html) and "/a.js" not in page_policy(html)


# ------------------------------------------------------------------------------------------- who may ask
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""])
def test_other_host_names_are_refused(client, host: str) -> None:
    r = client.get("/health", headers={"host": host})
    assert r.status_code == 421 and is_record(r) and "not served here" in r.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"])
def test_loopback_names_are_answered(client, host: str) -> None:
    assert client.get("/health", headers={"host": host}).status_code == 200


def test_allowed_hosts_can_be_added(detector: Detector) -> None:
    c = client_for(detector, allowed_hosts=("127.0.0.1", "detector.lan"))
    assert c.get("/health", headers={"host": "detector.lan:8000"}).status_code == 200
    assert c.get("/health", headers={"host": "localhost"}).status_code == 421


def test_cross_site_requests_are_refused_before_the_upload(client, clip: Path, upload_tmp: Path) -> None:
    data = clip.read_bytes()
    r = upload(client, data, "clip.mp4", headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and is_record(r)
    r = upload(client, data, "clip.mp4", headers={"origin": "null"})
    assert r.status_code == 403
    same = upload(client, data, "clip.mp4", headers={"origin": "http://127.0.0.1"})
    assert same.status_code == 200 and same.json()["path"] == "clip.mp4"
    assert list(upload_tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------- the API key
def test_api_key_is_needed_for_the_api_only(keyed, clip: Path) -> None:
    data = clip.read_bytes()
    r = upload(keyed, data, "clip.mp4")
    assert r.status_code == 401 and is_record(r) and r.headers["www-authenticate"].startswith("Bearer")
    assert upload(keyed, data, "clip.mp4", headers={"x-api-key": "wrong"}).status_code == 401
    assert upload(keyed, data, "clip.mp4", headers={"authorization": "Bearer " + KEY[:-1]}).status_code == 401
    assert upload(keyed, data, "clip.mp4", headers={"x-api-key": KEY}).status_code == 200
    assert upload(keyed, data, "clip.mp4", headers={"authorization": "Bearer " + KEY}).status_code == 200
    # The page, its docs and the health check stay open, and say that a key is needed.
    assert keyed.get("/").status_code == 200 and 'id="apikey"' in keyed.get("/").text
    assert keyed.get("/health").json()["api_key_required"] is True
    assert keyed.get("/docs").status_code == 200 and keyed.get("/openapi.json").status_code == 200


def test_non_loopback_server_needs_a_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from multimodal_df import serve

    monkeypatch.delenv("MULTIMODAL_DF_API_KEY", raising=False)
    t = time.time()
    assert serve.main(["--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "API key" in err and len(err.strip().splitlines()) == 1 and time.time() - t < 5  # before any model loads
    args = serve.build_parser().parse_args(["--host", "192.168.1.5", "--api-key", "k", "--allowed-host", "box.lan"])
    settings = serve.settings_from_args(args)
    assert settings.api_key == "k" and {"box.lan", "192.168.1.5", "127.0.0.1"} <= set(settings.allowed_hosts)
    assert serve.is_loopback("127.0.0.2") and serve.is_loopback("::1") and not serve.is_loopback("0.0.0.0")


# ------------------------------------------------------------------------------------------- time limits
@pytest.fixture(scope="module")
def live(detector: Detector, upload_tmp: Path):
    """The app on a real HTTP server (uvicorn, in a thread): slow clients need real sockets."""
    import uvicorn

    app = create_app(
        detector,
        settings=ServerSettings(max_upload_mb=2.0, tmp_dir=str(upload_tmp), upload_timeout_s=4.0, idle_timeout_s=1.0),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _slow_post(port: int, chunks: list[tuple[float, bytes]], declared: int) -> tuple[int, dict, float]:
    """POST a multipart body in ``chunks`` (pause before each, bytes) from a thread, and read the answer meanwhile;
    returns (status, record, seconds until the answer)."""
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    t = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head)
        stop = threading.Event()

        def trickle() -> None:
            for pause, data in chunks:
                if stop.wait(pause):
                    return
                try:
                    s.sendall(data)
                except OSError:
                    return  # the server closed the connection: that is the point

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        seconds = time.time() - t
        stop.set()
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.split(b"\r\n\r\n", 1)[1]), seconds


PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\nContent-Type: video/mp4\r\n\r\n'


def test_a_stalled_upload_is_cut_off(live: int, upload_tmp: Path) -> None:
    status, rec, seconds = _slow_post(live, [(0, PART + b"\x00\x00\x00\x18ftypmp42"), (30, b"x")], 100_000)
    assert status == 408 and "did not arrive in time" in rec["error"] and seconds < 10
    assert list(upload_tmp.iterdir()) == []


def test_a_trickling_upload_meets_the_overall_deadline(live: int, upload_tmp: Path) -> None:
    # A byte every half second never stalls for a whole second, but the body never ends within 4 s.
    chunks = [(0, PART)] + [(0.5, b"\x00")] * 40
    status, rec, seconds = _slow_post(live, chunks, 100_000)
    assert status == 408 and "did not arrive in time" in rec["error"] and 3.5 < seconds < 12
    assert list(upload_tmp.iterdir()) == []


def test_analysis_time_limit_answers_504_and_keeps_the_queue_bounded(
    detector: Detector, clip: Path, tmp_path: Path
) -> None:
    c = client_for(detector, tmp_dir=str(tmp_path), analysis_timeout_s=0.001, max_waiting=1)
    data = clip.read_bytes()
    r = upload(c, data, "clip.mp4")
    assert r.status_code == 504 and is_record(r) and "no verdict within" in r.json()["error"]
    # The abandoned analysis still runs: it holds the only place until it ends, so the next request is turned away.
    assert upload(c, data, "clip.mp4").status_code == 503
    deadline = time.time() + 60
    while any(tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []  # its upload is deleted when it ends
    patient = client_for(detector, tmp_dir=str(tmp_path), analysis_timeout_s=120, max_waiting=1)
    assert upload(patient, data, "clip.mp4").status_code == 200
