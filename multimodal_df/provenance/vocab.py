"""Vocabularies: IPTC digital source types and names of AI generators seen in metadata."""

from __future__ import annotations

import re

from .report import AiCategory

IPTC_DST_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
C2PA_DST_PREFIX = "http://c2pa.org/digitalsourcetype/"

# IPTC Digital Source Type terms (cv.iptc.org/newscodes/digitalsourcetype) that say the media was not
# sampled from real life. The vocabulary's other terms (digitalCapture, computationalCapture, film,
# print, humanEdits, algorithmicallyEnhanced, digitalArt, dataDrivenMedia, screenCapture, ...) do not.
# trainedAlgorithmicData is C2PA's own term for AI output that is not media (a model's data).
_SOURCE_TYPE_CATEGORY: dict[str, AiCategory] = {
    "trainedalgorithmicmedia": "ai_generated",
    "trainedalgorithmicdata": "ai_generated",
    "compositewithtrainedalgorithmicmedia": "ai_edited",
    "algorithmicmedia": "synthetic",
    "compositesynthetic": "synthetic",
}

# Terms that declare capture by a camera or recorder.
CAPTURE_SOURCE_TYPES = frozenset({"digitalcapture", "computationalcapture", "negativefilm", "positivefilm", "print"})


def source_type_term(value: str) -> str:
    """Last path segment of a digital source type, e.g. ``trainedAlgorithmicMedia``.

    Accepts full IPTC/C2PA URIs, QCodes (``digsrctype:trainedAlgorithmicMedia``) and bare terms.
    """
    v = value.strip().rstrip("/")
    for sep in ("/", ":", "#"):
        v = v.rsplit(sep, 1)[-1]
    return v


def classify_source_type(value: str) -> AiCategory | None:
    """AI category a digital source type declares, None for capture, human edits and unknown terms."""
    return _SOURCE_TYPE_CATEGORY.get(source_type_term(value).lower())


def is_capture_source_type(value: str) -> bool:
    return source_type_term(value).lower() in CAPTURE_SOURCE_TYPES


# Generators whose names, in a Software / CreatorTool / comment field, say the file is AI output.
# Patterns are word-bounded and specific: generic words (e.g. "runway", "flux", "gemini" alone) would
# name ordinary software and products too.
_GENERATORS: tuple[tuple[str, str], ...] = (
    ("Stable Diffusion", r"stable[\s_-]?diffusion|\bsdxl\b"),
    ("AUTOMATIC1111 web UI", r"automatic1111|stable-diffusion-webui"),
    ("ComfyUI", r"\bcomfy\s?ui\b"),
    ("InvokeAI", r"\binvoke\s?ai\b"),
    ("NovelAI", r"\bnovel\s?ai\b"),
    ("Fooocus", r"\bfooocus\b"),
    ("Midjourney", r"\bmid\s?journey\b"),
    ("DALL-E", r"\bdall[\s·.-]?e\b"),
    ("Adobe Firefly", r"\bfirefly\b"),
    ("Google Imagen", r"\bimagen\s?\d"),
    ("Ideogram", r"\bideogram\b"),
    ("Leonardo.Ai", r"\bleonardo\.?ai\b"),
    ("FLUX", r"\bflux\.1\b|\bflux[\s_-](?:dev|schnell|pro|kontext)\b|black forest labs"),
    ("Runway", r"\brunway\s?ml\b|\brunway gen-?\d"),
    ("OpenAI Sora", r"\bsora\b"),
    ("Kling", r"\bkling\s?(?:ai)?\b"),
    ("Luma Dream Machine", r"dream machine"),
    ("Google Veo", r"\bveo\s?\d\b"),
    ("Pika", r"\bpika\s?labs\b|\bpika\s?\d"),
    ("HeyGen", r"\bheygen\b"),
    ("Synthesia", r"\bsynthesia\b"),
    ("D-ID", r"\bd-id\b"),
    ("ElevenLabs", r"\beleven\s?labs\b"),
    ("Suno", r"\bsuno\b"),
    ("Udio", r"\budio\b"),
    ("Draw Things", r"\bdraw things\b"),
    ("DiffusionBee", r"\bdiffusion\s?bee\b"),
    ("DeepFaceLab", r"\bdeepfacelab\b"),
    ("FaceFusion", r"\bfacefusion\b"),
)
_GENERATOR_RE = tuple((name, re.compile(pat, re.IGNORECASE)) for name, pat in _GENERATORS)

# Only this much of any one metadata value is searched: a hostile 50 MB comment costs nothing more.
MAX_SCAN_CHARS = 65536


def known_generator(text: str) -> str | None:
    """Name of the known AI generator that ``text`` mentions, or None."""
    head = text[:MAX_SCAN_CHARS]
    for name, rx in _GENERATOR_RE:
        if rx.search(head):
            return name
    return None
