"""Unsigned embedded metadata: EXIF, XMP (IPTC digital source type), PNG text chunks, container tags.

Images are read with Pillow's own readers (``getexif()``, ``info``), XMP is parsed with defusedxml (no
entity expansion, no DTDs), audio/video tags come from FFmpeg through PyAV, whose ``export_xmp`` option
also exposes XMP stored in an MP4/MOV ``uuid`` box. Every value is bounded before it is searched.
Nothing here is signed: anyone can add, change or strip it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import AiDeclaration, DeclarationSource, GeneratorHint, MetadataResult, printable
from .vocab import MAX_SCAN_CHARS, classify_source_type, known_generator

MAX_XMP_BYTES = 4 * 1024 * 1024
"""Larger XMP packets are not parsed (real ones are kilobytes; a hostile one can be anything)."""
MAX_JSON_CHARS = 2 * 1024 * 1024
_MAX_TAGS = 40
_MAX_TAG_CHARS = 200

_NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
_NS_XMP = "http://ns.adobe.com/xap/1.0/"
_NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

# EXIF tags (TIFF/EXIF 2.3 numbering).
_EXIF_MAKE, _EXIF_MODEL, _EXIF_SOFTWARE = 0x010F, 0x0110, 0x0131
_EXIF_IFD, _EXIF_USER_COMMENT = 0x8769, 0x9286

# PNG text keys that only image generators write.
_GENERATOR_PNG_KEYS = {
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI (legacy)",
    "fooocus_scheme": "Fooocus",
}
# PNG text and container tag keys that name the producing tool.
_TOOL_KEYS = {
    "software",
    "source",
    "generator",
    "creator tool",
    "encoder",
    "encoded_by",
    "creation_tool",
    "com.apple.quicktime.software",
    "tool",
}


@dataclass
class XmpFields:
    """What the provenance stage needs from one XMP packet."""

    digital_source_types: list[str] = field(default_factory=list)
    creator_tool: str | None = None
    ai_system: str | None = None
    notes: list[str] = field(default_factory=list)


def _clip(text: str, n: int = _MAX_TAG_CHARS) -> str:
    return printable(text, n)


def parse_xmp(raw: bytes | str) -> XmpFields:
    """Digital source type, creator tool and AI system of an XMP packet; never raises."""
    out = XmpFields()
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_XMP_BYTES:
        out.notes.append(f"XMP packet of {len(data) / 1e6:.1f} MB not parsed (limit {MAX_XMP_BYTES // 2**20} MB)")
        return out
    try:
        from defusedxml import ElementTree
    except ImportError:
        out.notes.append("defusedxml is not installed: XMP not parsed")
        return out
    # XMP writers pad packets with whitespace or NULs; the parser wants a clean document.
    data = data.strip(b"\x00 \t\r\n")
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True)
    except Exception as exc:
        out.notes.append(f"XMP packet not parseable ({type(exc).__name__})")
        return out

    def value(el: Any) -> str | None:
        text = (el.text or "").strip()
        if not text:
            # rdf:resource form, or an rdf:Alt / rdf:Seq holding rdf:li items
            text = el.attrib.get(f"{{{_NS_RDF}}}resource", "") or " ".join(
                (li.text or "").strip() for li in el.iter(f"{{{_NS_RDF}}}li") if (li.text or "").strip()
            )
        return _clip(text.strip(), 512) if text.strip() else None

    wanted = {
        f"{{{_NS_IPTC_EXT}}}DigitalSourceType": "dst",
        f"{{{_NS_XMP}}}CreatorTool": "tool",
        f"{{{_NS_IPTC_EXT}}}AISystemUsed": "ai",
    }
    for el in root.iter():
        hits: list[tuple[str, str | None]] = []
        if el.tag in wanted:
            hits.append((wanted[el.tag], value(el)))
        for key, val in el.attrib.items():
            if key in wanted:
                hits.append((wanted[key], _clip(val.strip(), 512) or None))
        for what, val in hits:
            if not val:
                continue
            if what == "dst" and val not in out.digital_source_types:
                out.digital_source_types.append(val)
            elif what == "tool" and out.creator_tool is None:
                out.creator_tool = val
            elif what == "ai" and out.ai_system is None:
                out.ai_system = val
    return out


def _merge_xmp(res: MetadataResult, raw: bytes | str, where: str) -> None:
    xmp = parse_xmp(raw)
    res.read.append("xmp")
    res.notes += xmp.notes
    for dst in xmp.digital_source_types:
        if dst not in res.digital_source_types:
            res.digital_source_types.append(dst)
        category = classify_source_type(dst)
        if category is not None:
            res.ai_declarations.append(AiDeclaration("xmp", f"{where} Iptc4xmpExt:DigitalSourceType", category, dst))
    if xmp.creator_tool:
        res.creator_tool = xmp.creator_tool
        _tool_hint(res, f"{where} xmp:CreatorTool", xmp.creator_tool, "xmp")
    if xmp.ai_system:
        res.ai_system = xmp.ai_system
        res.generator_hints.append(
            GeneratorHint(
                f"{where} Iptc4xmpExt:AISystemUsed", xmp.ai_system, known_generator(xmp.ai_system) or xmp.ai_system
            )
        )
        res.ai_declarations.append(
            AiDeclaration("xmp", f"{where} Iptc4xmpExt:AISystemUsed", "ai_generated", xmp.ai_system)
        )


def _tool_hint(res: MetadataResult, where: str, value: str, source: DeclarationSource) -> None:
    """Record a tool-naming field; a known AI generator's name becomes a declaration."""
    gen = known_generator(value)
    res.generator_hints.append(GeneratorHint(where, _clip(value), gen))
    if gen is not None:
        res.ai_declarations.append(AiDeclaration(source, where, "ai_generated", f"{gen} ({_clip(value, 80)})"))


def _is_a1111(text: str) -> bool:
    """AUTOMATIC1111 / Forge / SD.Next infotext: prompt lines, then 'Steps: N, Sampler: ..., Seed: ...'."""
    head = text[:MAX_SCAN_CHARS]
    return "Steps:" in head and any(k in head for k in ("Sampler:", "Seed:", "CFG scale:"))


def _json(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _generator_json(key: str, text: str) -> str | None:
    """Which generator a JSON text chunk comes from, judged by its structure rather than its key."""
    doc = _json(text)
    if not isinstance(doc, dict):
        return None
    if key == "prompt" and any(isinstance(v, dict) and "class_type" in v for v in list(doc.values())[:2000]):
        return "ComfyUI (prompt graph)"
    if key == "workflow" and isinstance(doc.get("nodes"), list) and "links" in doc:
        return "ComfyUI (workflow)"
    keys = {str(k).lower() for k in list(doc)[:500]}
    if {"steps", "sampler"} <= keys and keys & {"seed", "scale", "cfg_scale", "uc", "negative_prompt"}:
        return "diffusion sampler settings (e.g. NovelAI)"
    return None


def _png_text(res: MetadataResult, info: dict[str, Any]) -> None:
    texts = {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)}
    if not texts:
        return
    res.read.append("png_text")
    for key, text in texts.items():
        lk = key.lower()
        if lk == "xml:com.adobe.xmp":
            continue  # handled as XMP
        if len(text) > MAX_SCAN_CHARS:
            res.notes.append(
                f"PNG text chunk '{_clip(key, 40)}' is {len(text) / 1e6:.1f} MB; "
                f"only its first {MAX_SCAN_CHARS // 1024} KB were examined"
            )
        where = f"PNG text '{_clip(key, 40)}'"
        if lk == "parameters" and _is_a1111(text):
            res.ai_declarations.append(
                AiDeclaration(
                    "png_text",
                    where,
                    "ai_generated",
                    "Stable Diffusion web UI generation settings (AUTOMATIC1111 style)",
                )
            )
            continue
        if lk in _GENERATOR_PNG_KEYS:
            res.ai_declarations.append(AiDeclaration("png_text", where, "ai_generated", _GENERATOR_PNG_KEYS[lk]))
            continue
        gen = _generator_json(lk, text)
        if gen is not None:
            res.ai_declarations.append(AiDeclaration("png_text", where, "ai_generated", gen))
            continue
        if lk in _TOOL_KEYS:
            _tool_hint(res, where, text[:MAX_SCAN_CHARS], "png_text")


def _user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte charset prefix then text (AUTOMATIC1111 writes UNICODE, UTF-16)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    prefix, body = raw[:8], raw[8 : 8 + 2 * MAX_SCAN_CHARS]
    if prefix.startswith(b"UNICODE"):
        # The byte order is not declared; ASCII text in UTF-16 shows it through its zero bytes.
        order = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(order, "replace")
    return body.decode("utf-8", "replace")


def _exif(res: MetadataResult, im: Any) -> None:
    exif = im.getexif()
    if not exif:
        return
    res.read.append("exif")
    for tag, attr in ((_EXIF_MAKE, "make"), (_EXIF_MODEL, "model"), (_EXIF_SOFTWARE, "software")):
        val = exif.get(tag)
        if isinstance(val, bytes):
            val = val.decode("utf-8", "replace")
        if isinstance(val, str) and val.strip(" \x00"):
            setattr(res, attr, _clip(val.strip(" \x00")))
    if res.software:
        _tool_hint(res, "EXIF Software", res.software, "exif")
    try:
        comment = _user_comment(exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT))
    except Exception:
        comment = None
    if comment and _is_a1111(comment):
        res.ai_declarations.append(
            AiDeclaration("exif", "EXIF UserComment", "ai_generated", "Stable Diffusion web UI generation settings")
        )


def image_metadata(im: Any) -> MetadataResult:
    """Metadata of an opened Pillow image; never raises (problems become notes)."""
    res = MetadataResult()
    try:
        _exif(res, im)
    except Exception as exc:
        res.notes.append(f"EXIF unreadable ({type(exc).__name__})")
    try:
        info = dict(im.info)
        raw_xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
        if raw_xmp is None and getattr(im, "format", None) == "TIFF":
            raw_xmp = getattr(im, "tag_v2", {}).get(700)
        if raw_xmp:
            _merge_xmp(res, raw_xmp, "XMP")
        if getattr(im, "format", None) == "PNG":
            _png_text(res, info)
    except Exception as exc:
        res.notes.append(f"image metadata unreadable ({type(exc).__name__})")
    return res


def av_metadata(path: Path) -> MetadataResult:
    """Container and stream tags of an audio/video file, XMP included where FFmpeg exposes it."""
    res = MetadataResult()
    try:
        import av
    except ImportError:
        res.notes.append("PyAV is not installed: container metadata not read")
        return res
    try:
        # export_xmp: FFmpeg's MOV/MP4 demuxer then returns a top-level XMP uuid box as the 'xmp' tag.
        with av.open(str(path), options={"export_xmp": "1"}, metadata_errors="replace") as container:
            tags: dict[str, str] = {str(k): str(v) for k, v in container.metadata.items()}
            for stream in container.streams:
                for k, v in stream.metadata.items():
                    tags.setdefault(f"stream{stream.index}.{k}", str(v))
    except Exception as exc:
        res.notes.append(f"container metadata unreadable ({type(exc).__name__})")
        return res
    res.read.append("container_tags")
    raw_xmp = tags.pop("xmp", None)
    if raw_xmp:
        _merge_xmp(res, raw_xmp, "container XMP")
    for k, v in list(tags.items())[:_MAX_TAGS]:
        res.container_tags[_clip(k, 80)] = _clip(v)
    for k, v in tags.items():
        if k.rsplit(".", 1)[-1].lower() in _TOOL_KEYS:
            _tool_hint(res, f"tag '{_clip(k, 80)}'", v[:MAX_SCAN_CHARS], "container_tags")
        if k.rsplit(".", 1)[-1].lower() in ("comment", "description") and _is_a1111(v):
            res.ai_declarations.append(
                AiDeclaration(
                    "container_tags", f"tag '{_clip(k, 80)}'", "ai_generated", "diffusion generation settings"
                )
            )
    if res.software is None:
        res.software = next((h.value for h in res.generator_hints), None)
    return res
