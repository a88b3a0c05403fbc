"""Provenance stage: C2PA, unsigned metadata, invisible watermarks, hostile files.

Every file is made here in tmp_path: a throwaway test CA signs the C2PA manifests, so their signer is
untrusted unless the test passes that CA as a trust anchor.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from multimodal_df.provenance import ProvenanceReport, inspect_provenance, provenance_evidence
from multimodal_df.testing.provenance_files import (
    C2PA_UUID,
    IPTC,
    XMP_UUID,
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
    xmp_packet,
)
from multimodal_df.testing.provenance_files import write_natural_mp4 as write_mp4

c2pa = pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")


@pytest.fixture(scope="module")
def certs() -> dict[str, bytes]:
    """Throwaway CA and signing certificate (see :func:`make_test_certs`)."""
    return make_test_certs()


def check_json(report: ProvenanceReport) -> dict:
    out = report.to_json()
    json.dumps(out)  # must not raise
    assert out["evidence"]["hint"] == report.verdict_hint
    return out


# ---------------------------------------------------------------- unsigned metadata


def test_jpeg_xmp_digital_source_type_declares_ai(tmp_path: Path) -> None:
    r = inspect_provenance(xmp_declared_jpeg(tmp_path / "gen.jpg"))
    assert r.kind == "image" and r.c2pa.state == "absent"
    assert r.metadata.digital_source_types == [IPTC + "trainedAlgorithmicMedia"]
    assert r.verdict_hint == "ai_declared"
    assert "unsigned metadata" in r.verdict_reason and "trainedAlgorithmicMedia" in r.verdict_reason
    check_json(r)


def test_xmp_capture_source_type_and_camera_exif_are_not_ai(tmp_path: Path) -> None:
    p = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Canon", "EOS R5", "Firmware 1.8.1"
    body = f"<Iptc4xmpExt:DigitalSourceType>{IPTC}digitalCapture</Iptc4xmpExt:DigitalSourceType>"
    Image.fromarray(natural_rgb(96, 128, 2)).save(p, "JPEG", exif=exif, xmp=xmp_packet(body))
    r = inspect_provenance(p)
    assert (r.metadata.make, r.metadata.model, r.metadata.software) == ("Canon", "EOS R5", "Firmware 1.8.1")
    assert r.metadata.digital_source_types == [IPTC + "digitalCapture"]
    ev = provenance_evidence(r)
    assert ev.hint == "none" and ev.strength == "none"
    assert any("not evidence of capture" in n for n in ev.notes)


def test_png_automatic1111_parameters_chunk(tmp_path: Path) -> None:
    r = inspect_provenance(a1111_png(tmp_path / "a1111.png"))
    assert r.verdict_hint == "ai_declared"
    decl = r.metadata.ai_declarations[0]
    assert (decl.source, decl.where, decl.signed) == ("png_text", "PNG text 'parameters'", False)

    # The same web UI saves JPEGs with the settings in EXIF UserComment (UNICODE prefix, UTF-16).
    jpg = tmp_path / "a1111.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + "a cat\nSteps: 20, Sampler: Euler a, Seed: 1".encode("utf-16-be")
    Image.fromarray(natural_rgb(96, 128, 3)).save(jpg, exif=exif)
    r = inspect_provenance(jpg)
    assert r.verdict_hint == "ai_declared" and r.metadata.ai_declarations[0].where == "EXIF UserComment"


def test_png_comfyui_and_generator_software(tmp_path: Path) -> None:
    p = tmp_path / "comfy.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 5}}}))
    info.add_text("Software", "NovelAI")
    info.add_text("Comment", "just a comment, parameters: none")  # not generator-shaped
    Image.fromarray(natural_rgb(96, 128, 4)).save(p, pnginfo=info)
    r = inspect_provenance(p)
    values = {d.value for d in r.metadata.ai_declarations}
    assert "ComfyUI (prompt graph)" in values
    assert any(v.startswith("NovelAI") for v in values)
    assert all(d.where != "PNG text 'Comment'" for d in r.metadata.ai_declarations)


def test_mp4_xmp_in_uuid_box(tmp_path: Path) -> None:
    src = write_mp4(tmp_path / "plain.mp4")
    body = f"<Iptc4xmpExt:DigitalSourceType>{IPTC}compositeWithTrainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>"
    xmp = xmp_packet(body)
    p = tmp_path / "xmp.mp4"
    p.write_bytes(src.read_bytes() + struct.pack(">I", 24 + len(xmp)) + b"uuid" + XMP_UUID + xmp)
    r = inspect_provenance(p)
    assert r.kind == "video" and "xmp" in r.metadata.read
    assert r.verdict_hint == "ai_declared"
    assert r.metadata.ai_declarations[0].category == "ai_edited"
    plain = inspect_provenance(src)
    assert plain.verdict_hint == "none" and "container_tags" in plain.metadata.read


# ---------------------------------------------------------------- invisible watermarks


def test_stable_diffusion_watermark_found_and_no_false_positive(tmp_path: Path) -> None:
    # As the SD reference scripts do: RGB -> BGR, encode, back to RGB; saved losslessly.
    marked, clean_png = sd_watermarked_png(tmp_path / "marked.png", tmp_path / "clean.png")
    r = inspect_provenance(marked)
    assert r.verdict_hint == "ai_watermark", r.watermark.scores
    assert [s.scheme for s in r.watermark.detected] == ["sd_v1"]
    assert r.watermark.detected[0].bit_accuracy >= 0.75 and r.watermark.detected[0].chance < 1e-9
    assert r.watermark.required["sd_v1"] == "102/136"

    clean = inspect_provenance(clean_png)
    assert clean.watermark.checked and clean.verdict_hint == "none"
    assert max(s.bit_accuracy for s in clean.watermark.scores) < 0.75


def test_sdxl_watermark_on_video_frames_and_unmarked_frames(tmp_path: Path) -> None:
    from imwatermark import WatermarkEncoder

    bits = [int(b) for b in bin(0xB3EC907BB19E)[2:]]
    enc = WatermarkEncoder()
    enc.set_watermark("bits", bits)
    clean = np.stack([natural_rgb(288, 352, s) for s in (6, 7, 8, 9)])
    # diffusers encodes the RGB array as it is (no BGR flip).
    marked = np.stack([enc.encode(f.copy(), "dwtDct") for f in clean])
    video = write_mp4(tmp_path / "v.mp4")
    r = inspect_provenance(video, frames=marked)
    assert r.verdict_hint == "ai_watermark"
    det = r.watermark.detected
    assert det and det[0].scheme == "sdxl" and det[0].channel_order == "rgb" and det[0].frame_index is not None
    assert r.watermark.images_checked == 3
    r_clean = inspect_provenance(video, frames=clean)
    assert r_clean.verdict_hint == "none" and not r_clean.watermark.detected
    # Without frames, the video's own keyframes are decoded and checked.
    r_self = inspect_provenance(video)
    assert r_self.watermark.checked and not r_self.watermark.detected


def test_vectorised_votes_equal_the_library_decoder() -> None:
    # The block votes are computed for all blocks at once; the library's per-block loop is the reference.
    from imwatermark import WatermarkEncoder

    from multimodal_df.provenance.watermark import FRAME_BLOCK_BUDGET, _block_votes, _crop_rows, _library_block_votes

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((256, 256), (257, 259), (263, 301))]
    images += [natural_rgb(288, 352, s) for s in (3, 4)]
    enc = WatermarkEncoder()
    enc.set_watermark("bits", [int(b) for b in bin(0xB3EC907BB19E)[2:]])
    images += [enc.encode(natural_rgb(288, 352, 5).copy(), "dwtDct")]
    images += [_crop_rows(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), FRAME_BLOCK_BUDGET)]
    for img in images:
        for arr in (img[:, :, ::-1], img):
            ours, library = _block_votes(arr), _library_block_votes(arr)
            assert ours.shape == library.shape and np.array_equal(ours, library), img.shape
    with pytest.raises(RuntimeError, match="too small"):
        _block_votes(images[0][:200, :200])


def test_clean_images_do_not_trigger_watermarks() -> None:
    from multimodal_df.provenance.watermark import check_watermarks

    rng = np.random.default_rng(0)
    images = [natural_rgb(320, 480, s) for s in range(10, 16)]
    images += [np.full((300, 300, 3), 128, np.uint8), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)]
    try:  # real photographs bundled with scikit-image, when it is installed
        from skimage import data

        images += [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    except ImportError:
        pass
    res = check_watermarks(images)
    assert res.images_checked == len(images)
    assert not res.detected and max(s.bit_accuracy for s in res.scores) < 0.8


# ---------------------------------------------------------------- C2PA


def test_c2pa_jpeg_ai_declared_untrusted_then_tampered(tmp_path: Path, certs: dict[str, bytes]) -> None:
    src = tmp_path / "src.jpg"
    Image.fromarray(natural_rgb(256, 320, 20)).save(src, quality=90)
    signed = c2pa_sign(src, tmp_path / "signed.jpg", "image/jpeg", certs, "trainedAlgorithmicMedia")

    r = inspect_provenance(signed)
    c = r.c2pa
    assert c.present and c.state == "untrusted_signer" and c.library_state == "Valid"
    assert "signingCredential.untrusted" in c.failure_codes
    assert (c.signer, c.signer_org) == ("Test Generator Signer", "Throwaway AI Lab")
    assert c.claim_generator.startswith("provenance-test-generator 1.0")
    assert [a.action for a in c.actions] == ["c2pa.created"]
    assert c.actions[0].digital_source_type == IPTC + "trainedAlgorithmicMedia"
    assert c.ai_declarations and c.ai_declarations[0].signed
    ev = r.evidence()
    assert ev.hint == "ai_declared" and ev.strength == "strong"
    assert "C2PA manifest signed by Test Generator Signer" in ev.reason and "trust list" in ev.reason
    out = check_json(r)
    assert out["c2pa"]["state"] == "untrusted_signer"

    # Flip bytes near the end of the image data (just before EOI): the content hash no longer matches.
    t = inspect_provenance(tamper_jpeg(signed, tmp_path / "tampered.jpg"))
    assert t.c2pa.state == "invalid" and "assertion.dataHash.mismatch" in t.c2pa.failure_codes
    assert t.verdict_hint == "ai_declared" and "no longer valid" in t.verdict_reason


def test_c2pa_trusted_capture_and_missing_anchor_file(tmp_path: Path, certs: dict[str, bytes]) -> None:
    src = tmp_path / "src.jpg"
    Image.fromarray(natural_rgb(256, 320, 21)).save(src, quality=90)
    signed = c2pa_sign(src, tmp_path / "camera.jpg", "image/jpeg", certs, "digitalCapture")
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(certs["root"])

    r = inspect_provenance(signed, trust_anchors=anchors)
    assert r.c2pa.state == "valid" and r.c2pa.library_state == "Trusted" and not r.c2pa.ai_declarations
    ev = r.evidence()
    assert ev.hint == "capture_signed" and ev.strength == "supporting"
    assert "digitalCapture" in ev.reason and "not proof" in ev.reason

    untrusted = inspect_provenance(signed)
    assert untrusted.c2pa.state == "untrusted_signer" and untrusted.verdict_hint == "none"
    missing = inspect_provenance(signed, trust_anchors=tmp_path / "nope.pem")
    assert missing.c2pa.state == "not_checked" and missing.c2pa.notes


def test_c2pa_mp4_ai_declared_then_tampered(tmp_path: Path, certs: dict[str, bytes]) -> None:
    src = write_mp4(tmp_path / "src.mp4")
    signed = c2pa_sign(src, tmp_path / "signed.mp4", "video/mp4", certs, "trainedAlgorithmicMedia")
    r = inspect_provenance(signed)
    assert r.kind == "video" and r.c2pa.state == "untrusted_signer"
    assert r.verdict_hint == "ai_declared" and r.c2pa.signer == "Test Generator Signer"

    t = inspect_provenance(tamper_mp4(signed, tmp_path / "tampered.mp4"))
    assert t.c2pa.state == "invalid"
    assert any("Hash.mismatch" in code for code in t.c2pa.failure_codes), t.c2pa.failure_codes
    check_json(t)


# ---------------------------------------------------------------- hostile and broken input


def test_broken_manifests_become_notes(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jpg"
    Image.fromarray(natural_rgb(64, 64, 30)).save(plain)
    data = plain.read_bytes()
    # APP11 segment: JPEG-XT "JP" header, then a JUMBF superbox labelled c2pa full of random bytes.
    rng = np.random.default_rng(1)
    jumbf = struct.pack(">I", 400) + b"jumb" + struct.pack(">I", 17) + b"jumdc2pa" + rng.bytes(300)
    seg = b"JP\x00\x01\x00\x00\x00\x01" + jumbf
    bad = tmp_path / "bad_jumbf.jpg"
    bad.write_bytes(data[:2] + b"\xff\xeb" + struct.pack(">H", len(seg) + 2) + seg + data[2:])
    r = inspect_provenance(bad)
    assert r.c2pa.present and r.c2pa.state == "unreadable" and r.verdict_hint == "none"
    assert any("C2PA data present but unreadable" in n for n in r.evidence().notes)
    check_json(r)

    mp4 = write_mp4(tmp_path / "v.mp4")
    payload = b"\x00\x00\x00\x00manifest\x00" + struct.pack(">Q", 0) + rng.bytes(500)
    box = struct.pack(">I", 24 + len(payload)) + b"uuid" + C2PA_UUID + payload
    bad_mp4 = tmp_path / "bad_c2pa.mp4"
    bad_mp4.write_bytes(mp4.read_bytes() + box)
    r = inspect_provenance(bad_mp4)
    assert r.c2pa.state == "unreadable" and r.verdict_hint == "none"
    assert any("C2PA data present but unreadable" in n for n in r.evidence().notes)


def test_hostile_metadata(tmp_path: Path) -> None:
    img = Image.fromarray(natural_rgb(64, 64, 31))
    # XMP far over the parse limit, as an uncompressed PNG iTXt chunk.
    r = inspect_provenance(huge_xmp_png(tmp_path / "huge_xmp.png"))
    assert any("not parsed" in n for n in r.metadata.notes)

    # Entity-expansion bomb in JPEG XMP: defusedxml refuses it.
    r = inspect_provenance(xmp_bomb_jpeg(tmp_path / "bomb.jpg"))
    assert any("not parseable" in n for n in r.metadata.notes)

    # Terminal control sequences in a tag never reach the output as such: every string from a file is escaped.
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "Stable Diffusion\x1b[2J\x1b]0;pwned\x07\nsecond line")
    img.save(tmp_path / "ansi.png", pnginfo=info)
    r = inspect_provenance(tmp_path / "ansi.png")
    text = json.dumps(r.to_json(), ensure_ascii=False)
    assert r.verdict_hint == "ai_declared" and "\\u001b" not in text and "\\u0007" not in text
    assert "\\x1b[2J" in r.metadata.generator_hints[0].value and r.verdict_reason.isprintable()

    # A 50 MB tEXt chunk: read once by Pillow, only its head is searched.
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * (50 * 2**20))
    img.save(tmp_path / "text50.png", pnginfo=info)
    r = inspect_provenance(tmp_path / "text50.png")
    assert any("52.4 MB" in n for n in r.metadata.notes) and r.verdict_hint == "none"
    assert r.timings_ms["total"] < 10_000


def test_not_media_and_odd_paths(tmp_path: Path) -> None:
    rand = tmp_path / "random.jpg"
    rand.write_bytes(np.random.default_rng(2).bytes(4096))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    Image.fromarray(natural_rgb(300, 300, 32)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    cases = {
        rand: "not a recognised",
        empty: "empty file",
        tmp_path: "not a regular file",
        tmp_path / "missing.png": "cannot access",
        truncated: "",
    }
    for path, note in cases.items():
        r = inspect_provenance(path)
        assert r.verdict_hint == "none"
        assert any(note in n for n in r.notes + r.c2pa.notes + r.metadata.notes + r.watermark.notes), path
        check_json(r)
    r = inspect_provenance(write_mp4(tmp_path / "v.mp4"), frames=np.zeros((2, 8, 8), np.float32))
    assert any("frames must be uint8" in n for n in r.notes)


def test_audio_file(tmp_path: Path) -> None:
    import av

    def write(path: Path, codec: str, tags: dict[str, str]) -> Path:
        with av.open(str(path), "w") as out:
            out.metadata.update(tags)  # before the header is written; FFmpeg replaces any 'encoder' tag
            stream = out.add_stream(codec, rate=16000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in [*stream.encode(frame), *stream.encode()]:
                out.mux(packet)
        return path

    wav = inspect_provenance(write(tmp_path / "a.wav", "pcm_s16le", {}))
    assert wav.kind == "audio" and wav.c2pa.state == "absent" and wav.verdict_hint == "none"
    assert "encoder" in wav.metadata.container_tags
    flac = inspect_provenance(write(tmp_path / "a.flac", "flac", {"software": "ElevenLabs TTS v2"}))
    assert flac.kind == "audio" and flac.metadata.container_tags.get("software") == "ElevenLabs TTS v2"
    assert flac.verdict_hint == "ai_declared" and "ElevenLabs" in flac.verdict_reason


def test_missing_libraries_are_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "img.png"
    Image.fromarray(natural_rgb(300, 300, 33)).save(p)
    for mod in ("c2pa", "imwatermark", "defusedxml"):
        monkeypatch.setitem(sys.modules, mod, None)  # import now raises ImportError
    r = inspect_provenance(p)
    assert r.c2pa.state == "not_checked" and not r.watermark.checked
    notes = " ".join(r.c2pa.notes + r.watermark.notes)
    assert "c2pa-python is not installed" in notes and "invisible-watermark is not installed" in notes
