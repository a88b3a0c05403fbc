"""End to end: the real server on 127.0.0.1, the page driven in headless Chromium (Debian's package).

Skipped when no Chromium is installed, unless MULTIMODAL_DF_REQUIRE_BROWSER=1 (CI sets it), which
makes a missing browser a failure instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from multimodal_df.testing.fixtures import FixtureSpec, make_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("MULTIMODAL_DF_REQUIRE_BROWSER") == "1":
        raise RuntimeError("MULTIMODAL_DF_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)")
    pytest.skip("no chromium installed (apt-get install chromium)", allow_module_level=True)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(detector_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "multimodal_df.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--checkpoint",
                str(detector_dir),
                "--device",
                "cpu",
                "--max-upload-mb",
                "2",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("server did not start:\n" + log.read_text())
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_upload_a_video_and_read_the_verdict(server: str, browser, tmp_path: Path) -> None:
    video = make_clip(
        tmp_path / "suspicious_clip.mp4",
        FixtureSpec(seed=301, duration=3.0, width=240, height=200, vision_artifact=1.0),
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server + "/")
    assert page.is_disabled("#analyze")
    page.set_input_files("#file", str(video))
    page.click("#analyze")
    page.wait_for_selector("#verdict", state="visible", timeout=120_000)
    text = page.inner_text("#verdict")
    assert "Likely FAKE" in text and "suspicious_clip.mp4" in text
    # The heat maps and the timeline are real, loaded images.
    page.wait_for_selector(".heatmap img")
    sizes = page.eval_on_selector_all(
        ".heatmap img, .timeline img, .audio img", "els => els.map(e => [e.alt, e.naturalWidth])"
    )
    names = {n for n, _ in sizes}
    assert {"timeline.png", "face_0.png", "frame_0.png", "audio.png"} <= names and all(w > 0 for _, w in sizes)
    assert "face" in page.inner_text("#modalities") and "voice" in page.inner_text("#modalities")
    # Nothing in the file says where it came from: the panel says the model decided.
    assert page.get_attribute("#label-from", "data-from") == "model"
    assert "Content Credentials (C2PA)" in page.inner_text("#provenance")
    # The slider re-labels the verdict against the displayed probability.
    p_text = text.split(":")[1].split("%")[0]
    p = float(p_text) / 100
    for t in ("0.01", "0.5", "0.99"):
        page.fill("#threshold", t)
        page.dispatch_event("#threshold", "input")
        assert page.get_attribute("#verdict", "data-label") == ("fake" if p >= float(t) else "real")
    page.click("#reset")
    page.screenshot(path=str(tmp_path / "verdict.png"), full_page=True)
    assert (tmp_path / "verdict.png").stat().st_size > 10_000
    page.close()


def test_provenance_panel_for_a_file_that_declares_itself_ai(server: str, browser, tmp_path: Path) -> None:
    pytest.importorskip("c2pa")
    from PIL import Image

    from multimodal_df.testing.provenance_files import c2pa_sign, make_test_certs, natural_rgb

    Image.fromarray(natural_rgb(256, 320, 40)).save(tmp_path / "photo.jpg", quality=90)
    signed = c2pa_sign(
        tmp_path / "photo.jpg", tmp_path / "declared.jpg", "image/jpeg", make_test_certs(), "trainedAlgorithmicMedia"
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server + "/")
    page.set_input_files("#file", str(signed))
    page.uncheck("#explain")
    page.click("#analyze")
    page.wait_for_selector("#provenance", state="visible", timeout=120_000)
    panel = page.inner_text("#provenance")
    assert "Provenance" in panel and "The label comes from provenance" in panel
    assert "declares itself AI-generated" in panel and "untrusted signer" in panel
    assert "Test Generator Signer" in panel and "c2pa.created (trainedAlgorithmicMedia)" in panel
    assert "inside a signed C2PA manifest" in panel and "not on any trust list" in panel
    assert page.get_attribute("#label-from", "data-from") == "provenance"
    # No threshold undoes the file's own declaration; the model's score is still shown.
    for t in ("0.01", "0.99"):
        page.fill("#threshold", t)
        page.dispatch_event("#threshold", "input")
        assert page.get_attribute("#verdict", "data-label") == "fake"
        assert "FAKE by its own provenance" in page.inner_text("#verdict")
    page.close()


@pytest.mark.parametrize(
    "name, content, shown",
    [
        ("empty.mp4", b"", "Empty file"),
        ("notes.mp4", b"this is a text file, not a video" * 20, "Not a supported file"),
        ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(4000), "Could not analyze this file"),
        ("huge.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(3 * 1024 * 1024), "File too large"),
    ],
)
def test_bad_uploads_show_a_clear_error(
    server: str, browser, tmp_path: Path, name: str, content: bytes, shown: str
) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    page = browser.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(f))
    page.click("#analyze")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    assert shown in page.inner_text("#error")
    assert not page.is_visible("#result") and not page.is_visible("#provenance")
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    page.close()


@pytest.fixture(scope="module")
def keyed_server(detector_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server with an API key (from the environment, as the README recommends)."""
    port = free_port()
    log = tmp_path_factory.mktemp("keyed") / "server.log"
    env = {**os.environ, "MULTIMODAL_DF_API_KEY": "page-test-key"}
    argv = [sys.executable, "-m", "multimodal_df.serve", "--port", str(port), "--checkpoint", str(detector_dir)]
    with open(log, "w") as fh:
        proc = subprocess.Popen([*argv, "--device", "cpu"], stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # a loaded 2-core machine takes a while to import and load
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("server did not start:\n" + log.read_text())
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_the_page_asks_for_the_api_key_and_sends_it(keyed_server: str, browser, tmp_path: Path) -> None:
    video = make_clip(tmp_path / "clip.mp4", FixtureSpec(seed=302, duration=1.5, width=160, height=160))
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(keyed_server + "/")
    page.wait_for_selector("#apikey", state="visible")  # /health said a key is needed
    page.set_input_files("#file", str(video))
    page.fill("#apikey", "wrong")
    page.click("#analyze")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    assert "API key needed" in page.inner_text("#error")
    page.fill("#apikey", "page-test-key")
    page.click("#analyze")
    page.wait_for_selector("#verdict", state="visible", timeout=120_000)
    assert "clip.mp4" in page.inner_text("#verdict")
    # Nothing the page needs was blocked by its Content-Security-Policy.
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.close()
