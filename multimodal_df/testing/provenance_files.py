"""Files that say where they came from, made on the spot for tests and benchmarks of the provenance stage.

* :func:`xmp_declared_jpeg`: a JPEG whose XMP says IPTC ``DigitalSourceType`` = ``trainedAlgorithmicMedia``;
* :func:`a1111_png`: a PNG with an AUTOMATIC1111 ``parameters`` text chunk;
* :func:`sd_watermarked_png`: a PNG with Stable Diffusion v1's invisible DWT-DCT mark, and the same
  pixels without it;
* :func:`make_test_certs` + :func:`c2pa_sign`: C2PA manifests signed by a throwaway CA made here, so their
  signer is untrusted unless that CA is passed as a trust anchor; :func:`flip` tampers with a copy;
* :func:`huge_xmp_png`, :func:`xmp_bomb_jpeg`: hostile metadata.

The optional libraries (``cryptography``, ``c2pa``, ``imwatermark``, ``av``) are imported by the makers
that need them, so importing this module costs nothing.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from pathlib import Path

import numpy as np

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
XMP_UUID = uuid.UUID("BE7ACFCB-97A9-42E8-9C71-999491E3AFAC").bytes
"""ISO BMFF ``uuid`` box type of an XMP packet in MP4/MOV."""
C2PA_UUID = uuid.UUID("D8FEC3D6-1B0E-483C-9297-5828877EC481").bytes
"""ISO BMFF ``uuid`` box type of a C2PA manifest store in MP4/MOV."""
A1111_PARAMETERS = (
    "a photo of a cat\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 128x96, Model hash: abc"
)
"""What the AUTOMATIC1111 web UI writes into a PNG's ``parameters`` text chunk."""


def natural_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """Photo-like RGB uint8 [h, w, 3]: smooth gradients, some texture, sensor-like noise.

    The watermark tests need content like a photograph's: flat or random images decode to odd bit patterns.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = rng.uniform(0.01, 0.05, 3)
    base = np.stack(
        [
            128 + 90 * np.sin(xx * f[0] + yy * f[1] * 0.5),
            110 + 70 * np.cos(yy * f[1]),
            100 + 60 * np.sin((xx + yy) * f[2]),
        ],
        -1,
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def xmp_packet(body: str) -> bytes:
    """A complete XMP packet whose one ``rdf:Description`` holds ``body`` (namespaces Iptc4xmpExt and xmp)."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/">{body}</rdf:Description></rdf:RDF></x:xmpmeta>'
        '<?xpacket end="w"?>'
    ).encode()


def write_natural_mp4(path: Path, seconds: float = 1.0, w: int = 320, h: int = 256, fps: int = 10) -> Path:
    """A silent H.264 MP4 of :func:`natural_rgb` scrolling sideways."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = np.roll(natural_rgb(h, w, 0), 4 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """(type, start, size in bytes) of each top-level ISO BMFF box."""
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        size = size or len(data) - pos
        boxes.append((kind.decode("latin-1"), pos, size))
        pos += size
    return boxes


def make_test_certs() -> dict[str, bytes]:
    """Throwaway ES256 CA and signing certificate meeting C2PA's certificate profile, valid for a week.

    Returns PEM bytes: ``chain`` (the signing certificate; C2PA wants the chain without the root), ``key``
    (its PKCS#8 private key) and ``root`` (the CA, to pass as a trust anchor).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def usage(sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign_certs,
            crl_sign=sign_certs,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Provenance Test Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Throwaway Test CA"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Test Generator Signer"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Throwaway AI Lab"),
        ]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "chain": leaf.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "root": ca.public_bytes(pem),
    }


def c2pa_sign(src: Path, dst: Path, mime: str, certs: dict[str, bytes], source_type: str) -> Path:
    """Copy ``src`` to ``dst`` with an embedded C2PA manifest whose ``c2pa.created`` action declares the IPTC
    digital source type ``source_type`` (e.g. ``trainedAlgorithmicMedia`` or ``digitalCapture``)."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "provenance-test-generator", "version": "1.0"}],
        "title": dst.name,
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]},
            }
        ],
    }
    ctx = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs["chain"], certs["key"], None))
    with c2pa.Builder(manifest, context=ctx) as builder, open(src, "rb") as s, open(dst, "w+b") as d:
        builder.sign(signer, mime, s, d)
    return dst


def flip(path: Path, dst: Path, start: int, n: int = 64) -> Path:
    """Copy ``path`` to ``dst`` with ``n`` bytes from offset ``start`` inverted (a tampered copy)."""
    data = bytearray(path.read_bytes())
    for i in range(start, start + n):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def tamper_jpeg(signed: Path, dst: Path) -> Path:
    """A copy of a C2PA-signed JPEG whose image data changed after signing (bytes just before EOI flipped)."""
    return flip(signed, dst, signed.stat().st_size - 200)


def tamper_mp4(signed: Path, dst: Path) -> Path:
    """A copy of a C2PA-signed MP4 with bytes flipped in the middle of its media data (``mdat``)."""
    _, start, size = next(b for b in top_level_boxes(signed.read_bytes()) if b[0] == "mdat")
    return flip(signed, dst, start + size // 2)


def xmp_declared_jpeg(path: Path, rgb: np.ndarray | None = None, source_type: str = "trainedAlgorithmicMedia") -> Path:
    """A JPEG whose XMP declares the IPTC digital source type ``source_type`` (as Google and Meta write it)."""
    from PIL import Image

    body = f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}{source_type}"/>'
    Image.fromarray(natural_rgb(96, 128, 1) if rgb is None else rgb).save(path, "JPEG", xmp=xmp_packet(body))
    return path


def a1111_png(path: Path, rgb: np.ndarray | None = None) -> Path:
    """A PNG with the AUTOMATIC1111 web UI's ``parameters`` text chunk."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    Image.fromarray(natural_rgb(96, 128, 3) if rgb is None else rgb).save(path, pnginfo=info)
    return path


def sd_watermark(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` uint8 [H, W, 3] (at least 256x256) marked as Stable Diffusion v1's reference scripts do:
    RGB -> BGR, DWT-DCT encode of the bytes ``StableDiffusionV1``, back to RGB."""
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bytes", b"StableDiffusionV1")
    return np.ascontiguousarray(enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1])


def sd_watermarked_png(marked: Path, clean: Path, rgb: np.ndarray | None = None) -> tuple[Path, Path]:
    """The same photo-like 512x512 picture (or ``rgb``) saved losslessly with the SD v1 mark (``marked``)
    and without it (``clean``)."""
    from PIL import Image

    rgb = natural_rgb(512, 512, 5) if rgb is None else rgb
    Image.fromarray(sd_watermark(rgb)).save(marked)
    Image.fromarray(rgb).save(clean)
    return marked, clean


def huge_xmp_png(path: Path, mb: float = 5.0) -> Path:
    """A PNG whose uncompressed iTXt XMP packet is ``mb`` megabytes (over the stage's parse limit)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet("<!--" + "A" * int(mb * 2**20) + "-->").decode(), zip=False)
    Image.fromarray(natural_rgb(64, 64, 31)).save(path, pnginfo=info)
    return path


def xmp_bomb_jpeg(path: Path) -> Path:
    """A JPEG whose XMP is an entity-expansion bomb (a DTD with nested entities)."""
    from PIL import Image

    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>'
    )
    Image.fromarray(natural_rgb(64, 64, 31)).save(path, xmp=bomb)
    return path
