"""The provenance stage inside the product: ``predict --json``, the verdict policy, the REST API and the report.

Every file is made here; the C2PA manifests are signed by a throwaway CA, so their signer is untrusted unless
a test passes that CA with ``--trust-anchors``. The detector is the tiny one ``tests/conftest.py`` trains.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from multimodal_df import predict
from multimodal_df.provenance import decide, inspect_provenance
from multimodal_df.testing.fixtures import FixtureSpec, make_clip
from multimodal_df.testing.provenance_files import (
    IPTC,
    a1111_png,
    c2pa_sign,
    huge_xmp_png,
    make_test_certs,
    natural_rgb,
    sd_watermarked_png,
    tamper_jpeg,
    tamper_mp4,
    xmp_bomb_jpeg,
    xmp_declared_jpeg,
)

pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")


def run(argv: list[str]) -> tuple[int, list[str]]:
    buf = io.StringIO()
    code = predict.main([*argv, "--device", "cpu"], out=buf)
    return code, buf.getvalue().splitlines()


@pytest.fixture(scope="module")
def certs() -> dict[str, bytes]:
    return make_test_certs()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, certs: dict[str, bytes]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("provenance_media")
    f: dict[str, Path] = {
        "xmp": xmp_declared_jpeg(d / "xmp_declared.jpg"),
        "a1111": a1111_png(d / "a1111.png"),
        "huge_xmp": huge_xmp_png(d / "huge_xmp.png"),
        "xmp_bomb": xmp_bomb_jpeg(d / "xmp_bomb.jpg"),
    }
    f["marked"], f["clean"] = sd_watermarked_png(d / "sd_marked.png", d / "sd_clean.png")
    Image.fromarray(natural_rgb(256, 320, 20)).save(d / "photo.jpg", quality=90)
    f["c2pa_jpg"] = c2pa_sign(d / "photo.jpg", d / "c2pa_ai.jpg", "image/jpeg", certs, "trainedAlgorithmicMedia")
    f["c2pa_jpg_tampered"] = tamper_jpeg(f["c2pa_jpg"], d / "c2pa_ai_tampered.jpg")
    f["camera_jpg"] = c2pa_sign(d / "photo.jpg", d / "c2pa_camera.jpg", "image/jpeg", certs, "digitalCapture")
    # A face with speech, large enough (320x256) for the watermark check on the pipeline's own frames.
    clip = make_clip(d / "clip.mp4", FixtureSpec(seed=501, width=320, height=256))
    f["plain_mp4"] = clip
    f["c2pa_mp4"] = c2pa_sign(clip, d / "c2pa_ai.mp4", "video/mp4", certs, "trainedAlgorithmicMedia")
    f["c2pa_mp4_tampered"] = tamper_mp4(f["c2pa_mp4"], d / "c2pa_ai_tampered.mp4")
    # Under decode's 0.5 s minimum: the models refuse it, its manifest still speaks.
    short = make_clip(d / "short.mp4", FixtureSpec(seed=502, duration=0.3, width=320, height=256))
    f["c2pa_short_mp4"] = c2pa_sign(short, d / "c2pa_short.mp4", "video/mp4", certs, "trainedAlgorithmicMedia")
    anchors = d / "anchors.pem"
    anchors.write_bytes(certs["root"])
    f["anchors"] = anchors
    return f


BATCH = [
    "xmp",
    "a1111",
    "marked",
    "clean",
    "c2pa_jpg",
    "c2pa_jpg_tampered",
    "c2pa_mp4",
    "c2pa_mp4_tampered",
    "huge_xmp",
    "xmp_bomb",
    "plain_mp4",
    "c2pa_short_mp4",
]


@pytest.fixture(scope="module")
def records(detector_dir: Path, files: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """One batch scan with the provenance stage and one without: {"on" | "off": {name: JSON record}}."""
    out = {}
    for mode, extra in (("on", []), ("off", ["--no-provenance"])):
        code, lines = run([*(str(files[k]) for k in BATCH), "--checkpoint", str(detector_dir), "--json", *extra])
        assert code == 1  # the short clip cannot be scored; every other file is
        recs = [json.loads(line) for line in lines]
        assert [Path(r["path"]).name for r in recs] == [files[k].name for k in BATCH]
        out[mode] = dict(zip(BATCH, recs))
    return out


def ai_labelled(rec: dict, hint: str) -> None:
    """The label comes from provenance; the model's score and its own label are reported untouched."""
    assert rec["error"] is None and rec["label"] == "fake"
    ev = rec["evidence"]
    assert ev["label_from"] == "provenance" and ev["provenance_hint"] == hint and ev["provenance_strength"] == "strong"
    assert ev["model_label"] == ("fake" if rec["p_fake"] >= rec["threshold"] else "real")
    assert rec["provenance"]["evidence"]["hint"] == hint
    assert rec["provenance"]["evidence"]["reason"] in ev["reason"]
    assert any("decides the label" in n for n in rec["notes"])


def test_scores_never_change_and_switching_off_leaves_the_model_alone(records: dict) -> None:
    for name in BATCH:
        on, off = records["on"][name], records["off"][name]
        assert on["p_fake"] == off["p_fake"] and on["threshold"] == off["threshold"], name
        assert off["provenance"] is None and "provenance" not in off["timings"]
        if off["error"] is None:
            assert off["evidence"]["label_from"] == "model" and off["evidence"]["provenance_hint"] is None
            assert on["evidence"]["model_label"] == off["label"]
            assert on["timings"]["provenance"] > 0
            assert "path" not in on["provenance"]  # behind the API it would be a temporary file's name


def test_unsigned_declarations_decide_the_label(records: dict) -> None:
    xmp = records["on"]["xmp"]
    ai_labelled(xmp, "ai_declared")
    assert xmp["provenance"]["kind"] == "image" and xmp["provenance"]["c2pa"]["state"] == "absent"
    assert xmp["provenance"]["metadata"]["digital_source_types"] == [IPTC + "trainedAlgorithmicMedia"]
    assert "unsigned metadata" in xmp["evidence"]["reason"] and "trainedAlgorithmicMedia" in xmp["evidence"]["reason"]

    png = records["on"]["a1111"]
    ai_labelled(png, "ai_declared")
    decl = png["provenance"]["ai_declarations"][0]
    assert (decl["source"], decl["where"], decl["signed"]) == ("png_text", "PNG text 'parameters'", False)
    assert "AUTOMATIC1111" in png["evidence"]["reason"]


def test_sd_watermark_and_no_false_positive_on_the_same_image_unmarked(records: dict) -> None:
    marked = records["on"]["marked"]
    ai_labelled(marked, "ai_watermark")
    assert [s["scheme"] for s in marked["provenance"]["watermark"]["detected"]] == ["sd_v1"]
    assert "Stable Diffusion v1" in marked["evidence"]["reason"]

    clean, clean_off = records["on"]["clean"], records["off"]["clean"]
    wm = clean["provenance"]["watermark"]
    assert wm["checked"] and wm["images_checked"] == 1 and wm["detected"] == []
    assert clean["evidence"]["label_from"] == "model" and clean["evidence"]["provenance_hint"] == "none"
    assert clean["label"] == clean_off["label"]
    # Nothing found means nothing: the verdict's notes and reason do not mention provenance at all.
    assert clean["notes"] == clean_off["notes"]
    assert "provenance" not in clean["evidence"]["reason"] and "metadata" not in clean["evidence"]["reason"]


def test_c2pa_untrusted_signer_declaring_ai_is_a_declaration(records: dict) -> None:
    for name, kind in (("c2pa_jpg", "image"), ("c2pa_mp4", "video")):
        rec = records["on"][name]
        ai_labelled(rec, "ai_declared")
        c = rec["provenance"]["c2pa"]
        assert rec["provenance"]["kind"] == kind and c["present"] and c["state"] == "untrusted_signer"
        assert (c["signer"], c["signer_org"]) == ("Test Generator Signer", "Throwaway AI Lab")
        assert [a["action"] for a in c["actions"]] == ["c2pa.created"]
        assert c["ai_declarations"][0]["signed"] and c["ai_declarations"][0]["category"] == "ai_generated"
        reason = rec["evidence"]["reason"]
        assert "declares itself AI-generated" in reason and "untrusted signer" in reason
        assert any("anyone can make such a certificate" in n for n in rec["provenance"]["evidence"]["notes"])
    # The video's watermark check ran on three of the frames the pipeline had already decoded.
    wm = records["on"]["c2pa_mp4"]["provenance"]["watermark"]
    assert wm["checked"] and wm["images_checked"] == 3 and wm["detected"] == []
    assert not any("keyframe" in n for n in wm["notes"])
    assert all(s["frame_index"] is not None for s in wm["scores"])


def test_tampered_copies_are_invalid_never_valid(records: dict) -> None:
    for name, code in (("c2pa_jpg_tampered", "assertion.dataHash.mismatch"), ("c2pa_mp4_tampered", "Hash.mismatch")):
        rec = records["on"][name]
        c = rec["provenance"]["c2pa"]
        assert c["state"] == "invalid" and c["library_state"] == "Invalid"
        assert any(code in x for x in c["failure_codes"]), c["failure_codes"]
        # The AI label it carries is still the file's own claim; the reason says the manifest is broken.
        ai_labelled(rec, "ai_declared")
        assert "manifest no longer valid" in rec["evidence"]["reason"]
        assert "trusted signer" not in rec["evidence"]["reason"]
        assert any("C2PA failures" in n for n in rec["provenance"]["evidence"]["notes"])


def test_hostile_metadata_is_a_note_never_a_crash(records: dict) -> None:
    expected = {"huge_xmp": "not parsed", "xmp_bomb": "not parseable"}
    for name, note in expected.items():
        rec, off = records["on"][name], records["off"][name]
        assert rec["error"] is None and rec["label"] == off["label"]
        assert rec["evidence"]["label_from"] == "model"
        assert any(note in n for n in rec["provenance"]["metadata"]["notes"])
        assert any(note in n for n in rec["provenance"]["evidence"]["notes"])
        assert rec["timings"]["provenance"] < 10


def test_plain_clip_has_neutral_provenance(records: dict) -> None:
    rec = records["on"]["plain_mp4"]
    assert rec["error"] is None and rec["evidence"]["label_from"] == "model"
    assert rec["provenance"]["kind"] == "video" and rec["provenance"]["c2pa"]["state"] == "absent"
    assert rec["provenance"]["evidence"]["hint"] == "none"
    assert rec["notes"] == records["off"]["plain_mp4"]["notes"]


def test_a_file_the_models_cannot_read_still_reports_its_provenance(records: dict) -> None:
    rec = records["on"]["c2pa_short_mp4"]
    assert "at least 0.5 s" in rec["error"] and rec["label"] is None and rec["p_fake"] is None
    assert rec["provenance"]["c2pa"]["state"] == "untrusted_signer"
    assert rec["evidence"]["label_from"] is None and rec["evidence"]["provenance_hint"] == "ai_declared"
    assert any("declares itself AI-generated" in n for n in rec["notes"])
    assert records["off"]["c2pa_short_mp4"]["provenance"] is None


def test_trusted_camera_signature_is_a_note_not_a_verdict(
    detector_dir: Path, files: dict[str, Path], records: dict
) -> None:
    code, lines = run(
        [
            str(files["camera_jpg"]),
            "--checkpoint",
            str(detector_dir),
            "--json",
            "--trust-anchors",
            str(files["anchors"]),
        ]
    )
    rec = json.loads(lines[0])
    assert code == 0 and rec["provenance"]["c2pa"]["state"] == "valid"
    assert rec["evidence"]["provenance_hint"] == "capture_signed" and rec["evidence"]["label_from"] == "model"
    assert rec["label"] == rec["evidence"]["model_label"]
    assert any("does not override" in n and "not proof" in n for n in rec["notes"])


def test_text_output_says_what_decided(detector_dir: Path, files: dict[str, Path]) -> None:
    code, lines = run([str(files["c2pa_jpg"]), str(files["c2pa_short_mp4"]), "--checkpoint", str(detector_dir)])
    text = "\n".join(lines)
    assert code == 1 and lines[0].startswith("FAKE")
    assert "decides the label" in text and "untrusted signer" in text
    assert "ERROR" in text and text.count("declares itself AI-generated") == 2


def test_policy_capture_never_flips_fake_and_absence_says_nothing(tmp_path: Path, certs: dict[str, bytes]) -> None:
    src = tmp_path / "src.jpg"
    Image.fromarray(natural_rgb(256, 320, 21)).save(src, quality=90)
    camera = c2pa_sign(src, tmp_path / "camera.jpg", "image/jpeg", certs, "digitalCapture")
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(certs["root"])
    signed = inspect_provenance(camera, trust_anchors=anchors)
    assert signed.verdict_hint == "capture_signed"
    fake = decide(0.9, 0.5, signed)
    assert (fake.label, fake.label_from, fake.model_label) == ("fake", "model", "fake")
    assert fake.notes and "not proof" in fake.notes[0]
    real = decide(0.1, 0.5, signed)
    assert (real.label, real.label_from) == ("real", "model")

    bare = inspect_provenance(src)
    assert bare.verdict_hint == "none"
    for p in (0.1, 0.9):
        ev = decide(p, 0.5, bare)
        assert ev.label_from == "model" and ev.notes == () and ev.reason.startswith("the model's P(fake)")
    off = decide(0.9, 0.5, None)
    assert (off.label, off.provenance_hint, off.notes) == ("fake", None, ())
    # Tampered camera manifest: a neutral note, the model still decides.
    broken = inspect_provenance(tamper_jpeg(camera, tmp_path / "broken.jpg"), trust_anchors=anchors)
    ev = decide(0.1, 0.5, broken)
    assert broken.c2pa.state == "invalid" and ev.label == "real" and "no longer valid" in ev.notes[0]
    assert decide(None, None, bare).label is None


def test_api_and_report_show_provenance(detector_dir: Path, files: dict[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from multimodal_df.pipeline.detector import Detector
    from multimodal_df.server.app import create_app

    det = Detector.load(detector_dir, "cpu")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    client = TestClient(create_app(det, max_upload_mb=5.0, tmp_dir=str(uploads)), base_url="http://127.0.0.1")
    with open(files["c2pa_jpg"], "rb") as fh:
        r = client.post("/v1/predict?explain=true", files={"file": ("signed.jpg", fh, "image/jpeg")})
    assert r.status_code == 200
    rec = r.json()
    assert rec["label"] == "fake" and rec["evidence"]["label_from"] == "provenance"
    assert rec["provenance"]["c2pa"]["state"] == "untrusted_signer"
    assert str(uploads) not in json.dumps(rec)  # no server path leaks through the provenance block
    assert 'id="provenance"' in client.get("/").text

    # The self-contained report carries the same panel.
    analysis = det.analyze(files["c2pa_jpg"])
    page = det.explain(analysis).save(tmp_path / "report", analysis.prediction).read_text()
    assert "Provenance: what the file says about itself" in page
    assert "The label comes from provenance" in page and "Test Generator Signer" in page
    assert "c2pa.created (trainedAlgorithmicMedia)" in page
    clean = det.analyze(files["clean"])
    page = det.explain(clean).save(tmp_path / "clean_report", clean.prediction).read_text()
    assert "The label comes from the model" in page and "no known generator watermark found" in page


def test_the_stage_runs_beside_the_models_with_the_same_records(
    detector_dir: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # analyze() runs the stage on a second thread while faces and models run; the records must not change.
    import threading

    from multimodal_df.pipeline.detector import Detector

    det = Detector.load(detector_dir, "cpu")
    threads: list[str] = []
    real = Detector.run_provenance

    def spy(self, path, frames, pred):
        threads.append(threading.current_thread().name)
        real(self, path, frames, pred)

    monkeypatch.setattr(Detector, "run_provenance", spy)

    def strip(rec: dict) -> dict:
        rec = {k: v for k, v in rec.items() if k not in ("seconds", "timings")}
        rec["provenance"] = {k: v for k, v in rec["provenance"].items() if k != "timings_ms"}
        return rec

    names = ["c2pa_mp4", "plain_mp4", "c2pa_short_mp4"]
    beside = [det.predict(files[k]).to_json() for k in names]
    assert threads[:2] == ["provenance", "provenance"]  # the short clip fails to decode: checked in line
    assert list(beside[0]["timings"])[:2] == ["decode", "provenance"] and beside[0]["timings"]["provenance"] > 0

    def in_line(self, path, frames, pred):  # the stage in the caller's thread, before the models, as it was
        self.run_provenance(path, frames, pred)
        return lambda: None

    monkeypatch.setattr(Detector, "_provenance_beside", in_line)
    in_order = [det.predict(files[k]).to_json() for k in names]
    assert [strip(r) for r in beside] == [strip(r) for r in in_order]
    assert beside[0]["label"] == "fake" and beside[0]["evidence"]["label_from"] == "provenance"
