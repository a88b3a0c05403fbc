"""Typed results of the provenance stage.

Every stage returns one of these small dataclasses; :class:`ProvenanceReport` gathers them and
``to_json()`` turns the whole tree into plain dicts, lists, strings and numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .evidence import ProvenanceEvidence

MediaKind = Literal["image", "video", "audio", "unknown"]

C2paState = Literal["absent", "valid", "untrusted_signer", "invalid", "unreadable", "not_checked"]
"""``valid``: signature and content hashes check out and the signer chains to a configured trust anchor.
``untrusted_signer``: the manifest is intact but nobody vouches for the signer (any self-made certificate
looks like this). ``invalid``: the manifest no longer matches the content or its signature fails.
``unreadable``: C2PA data is there but could not be parsed. ``not_checked``: the library is missing or
the format is not one it reads."""

AiCategory = Literal["ai_generated", "ai_edited", "synthetic"]
"""``ai_generated``: made by a trained model (IPTC ``trainedAlgorithmicMedia``, a generator's own
metadata). ``ai_edited``: real media with AI-made parts (``compositeWithTrainedAlgorithmicMedia``).
``synthetic``: made by an algorithm without training data or composited with synthetic elements
(``algorithmicMedia``, ``compositeSynthetic``)."""

DeclarationSource = Literal["c2pa", "xmp", "png_text", "exif", "container_tags"]

VerdictHint = Literal["ai_declared", "ai_watermark", "capture_signed", "none"]


def printable(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text`` (then an ellipsis), every non-printable one escaped as Python
    writes it (``\\n``, ``\\x1b``). Every string taken from a file goes through this: a manifest or a tag can
    hold terminal control sequences, and the detector prints these strings on one line per file."""
    clipped = text if len(text) <= limit else text[:limit] + "…"
    if clipped.isprintable():
        return clipped
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in clipped)


def to_jsonable(value: Any) -> Any:
    """Recursively turn dataclasses, tuples and numpy scalars into JSON-ready Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


@dataclass(frozen=True)
class AiDeclaration:
    """One place where the file says it was made or altered by AI."""

    source: DeclarationSource
    where: str
    """Human-readable location, e.g. ``c2pa.actions.v2 (active manifest)`` or ``PNG text 'parameters'``."""
    category: AiCategory
    value: str
    """What was declared: a digital source type URI, a generator's name, a short excerpt."""
    signed: bool = False
    """True when the declaration sits inside a cryptographically signed C2PA manifest."""


@dataclass(frozen=True)
class C2paAction:
    """One entry of a ``c2pa.actions`` / ``c2pa.actions.v2`` assertion."""

    action: str
    digital_source_type: str | None = None
    software_agent: str | None = None
    manifest: str = ""
    active: bool = True
    """False for actions of an ingredient's manifest (earlier history of the content)."""


@dataclass
class C2paResult:
    """The C2PA manifest store as read and validated by the official c2pa-python bindings."""

    present: bool = False
    state: C2paState = "absent"
    library_state: str | None = None
    """The library's own ``validation_state`` (``Trusted`` / ``Valid`` / ``Invalid``)."""
    signer: str | None = None
    """Common name of the signing certificate, or its organisation when it has no CN."""
    signer_org: str | None = None
    claim_generator: str | None = None
    active_manifest: str | None = None
    manifests: int = 0
    actions: list[C2paAction] = field(default_factory=list)
    failure_codes: list[str] = field(default_factory=list)
    """Validation status codes that failed for the active manifest, e.g. ``assertion.dataHash.mismatch``."""
    ingredient_failure_codes: list[str] = field(default_factory=list)
    declared_source_types: list[str] = field(default_factory=list)
    ai_declarations: list[AiDeclaration] = field(default_factory=list)
    embedded: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GeneratorHint:
    """A metadata field naming the tool that made the file (AI or not)."""

    field: str
    value: str
    generator: str | None = None
    """Known AI generator the value names, None when the tool is not a known generator."""


@dataclass
class MetadataResult:
    """Unsigned embedded metadata: EXIF, XMP, PNG text chunks, container tags."""

    read: list[str] = field(default_factory=list)
    """Which metadata blocks were actually read, e.g. ``["exif", "xmp", "png_text"]``."""
    digital_source_types: list[str] = field(default_factory=list)
    software: str | None = None
    make: str | None = None
    model: str | None = None
    creator_tool: str | None = None
    ai_system: str | None = None
    """IPTC 2025.1 ``Iptc4xmpExt:AISystemUsed``."""
    generator_hints: list[GeneratorHint] = field(default_factory=list)
    container_tags: dict[str, str] = field(default_factory=dict)
    """Container-level tags of audio/video files (truncated values)."""
    ai_declarations: list[AiDeclaration] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WatermarkScore:
    """Best agreement of decoded bits with one known watermark pattern."""

    scheme: str
    bit_accuracy: float
    """Fraction of the pattern's bits decoded correctly, 0..1; about 0.5 on unmarked content."""
    n_bits: int
    channel_order: str
    """``bgr`` (reference scripts convert RGB to BGR first) or ``rgb`` (diffusers encodes RGB as is)."""
    frame_index: int | None = None
    chance: float = 1.0
    """Probability that unmarked content matches at least this many bits (bits as fair coins)."""
    detected: bool = False


@dataclass
class WatermarkResult:
    """Invisible DWT-DCT watermark check (the invisible-watermark library's ``dwtDct`` method)."""

    checked: bool = False
    images_checked: int = 0
    scores: list[WatermarkScore] = field(default_factory=list)
    """Best score per known scheme."""
    required: dict[str, str] = field(default_factory=dict)
    """Matching bits each scheme needs to count as detected, e.g. ``{"sd_v2": "30/32"}``."""
    notes: list[str] = field(default_factory=list)

    @property
    def detected(self) -> list[WatermarkScore]:
        return [s for s in self.scores if s.detected]


@dataclass
class ProvenanceReport:
    """What a file says about itself: C2PA, embedded metadata and invisible watermarks."""

    path: str
    kind: MediaKind = "unknown"
    mime: str | None = None
    size_bytes: int | None = None
    c2pa: C2paResult = field(default_factory=C2paResult)
    metadata: MetadataResult = field(default_factory=MetadataResult)
    watermark: WatermarkResult = field(default_factory=WatermarkResult)
    notes: list[str] = field(default_factory=list)
    """Problems met while inspecting (unreadable file, missing library, hostile metadata)."""
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ai_declarations(self) -> list[AiDeclaration]:
        return [*self.c2pa.ai_declarations, *self.metadata.ai_declarations]

    def evidence(self) -> ProvenanceEvidence:
        """The verdict-facing summary; see :func:`multimodal_df.provenance.provenance_evidence`."""
        from .evidence import provenance_evidence

        return provenance_evidence(self)

    @property
    def verdict_hint(self) -> VerdictHint:
        return self.evidence().hint

    @property
    def verdict_reason(self) -> str:
        return self.evidence().reason

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the whole report plus its ``evidence`` summary."""
        out = to_jsonable(self)
        out["watermark"]["detected"] = [to_jsonable(s) for s in self.watermark.detected]
        # Every declaration in one list (C2PA first), so readers need not look in two places.
        out["ai_declarations"] = to_jsonable(self.ai_declarations)
        out["evidence"] = self.evidence().to_json()
        return out
