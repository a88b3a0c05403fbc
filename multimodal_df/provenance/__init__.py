"""Provenance stage: what a media file says about its own origin.

* C2PA manifests, read and validated with the official ``c2pa-python`` bindings;
* unsigned metadata: IPTC/XMP digital source type, EXIF Software/Make/Model, generators' PNG text chunks,
  audio/video container tags;
* invisible DWT-DCT watermarks that Stable Diffusion, SDXL and FLUX reference code embed.

``inspect_provenance(path, frames)`` returns a :class:`ProvenanceReport`; ``report.evidence()`` (or
:func:`provenance_evidence`) turns it into a verdict hint, a reason and notes, and :func:`decide` (in
:mod:`.policy`) combines that with the model's P(fake) into the label the detector reports. Optional
libraries are imported lazily: a missing one becomes a note, never an import error.
"""

from __future__ import annotations

from .evidence import ProvenanceEvidence, provenance_evidence
from .inspector import inspect_provenance
from .policy import ProvenanceSettings, VerdictEvidence, decide
from .report import (
    AiDeclaration,
    C2paAction,
    C2paResult,
    GeneratorHint,
    MetadataResult,
    ProvenanceReport,
    VerdictHint,
    WatermarkResult,
    WatermarkScore,
)

__all__ = [
    "AiDeclaration",
    "C2paAction",
    "C2paResult",
    "GeneratorHint",
    "MetadataResult",
    "ProvenanceEvidence",
    "ProvenanceReport",
    "ProvenanceSettings",
    "VerdictEvidence",
    "VerdictHint",
    "WatermarkResult",
    "WatermarkScore",
    "decide",
    "inspect_provenance",
    "provenance_evidence",
]
