"""How provenance enters the verdict: a hint, its reason and notes for people. Model scores are untouched.

Rules, strongest first:

1. ``ai_declared``: a C2PA manifest, XMP, EXIF, a PNG text chunk or a container tag says AI made or
   altered the file. Hardly anyone adds such a label to a real photo, so it is strong evidence, stronger
   when it sits in an intact signed manifest.
2. ``ai_watermark``: a known generator's invisible watermark decodes (almost) bit-exactly.
3. ``capture_signed``: an intact C2PA manifest whose signer chains to a configured trust anchor and that
   declares no AI. Evidence of where the file came from, not proof that what it shows is true.
4. ``none``: nothing of the above. Missing metadata means nothing: stripping it is trivial and most
   platforms do it on upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .report import AiDeclaration, ProvenanceReport, VerdictHint
from .vocab import is_capture_source_type, source_type_term

Strength = Literal["strong", "supporting", "none"]

_CATEGORY_WORDS = {
    "ai_generated": "AI-generated",
    "ai_edited": "AI-edited",
    "synthetic": "synthetic (algorithmically made)",
}
_STATE_WORDS = {
    "valid": "valid, signer trusted",
    "untrusted_signer": "intact, but the signer is not on any configured trust list",
    "invalid": "no longer valid: the file changed after signing or the signature fails",
    "unreadable": "present but unreadable",
}
_WATERMARK_WORDS = {
    "sd_v1": "Stable Diffusion v1 (its reference scripts embed it by default)",
    "sd_v2": "Stable Diffusion 2 (its reference scripts embed it by default)",
    "sdxl": "SDXL (Stability's code and diffusers embed it by default)",
    "flux": "FLUX.1 (its reference code embeds it by default)",
}
_DECLARED_STATE_WORDS = {
    "valid": "valid manifest, trusted signer",
    "untrusted_signer": "untrusted signer: the manifest is intact, but its signer is not on any configured trust list",
    "invalid": "manifest no longer valid: the file changed after signing or the signature fails",
    "unreadable": "manifest present but unreadable",
}


@dataclass(frozen=True)
class ProvenanceEvidence:
    """Verdict-facing summary of a :class:`ProvenanceReport`."""

    hint: VerdictHint
    reason: str
    strength: Strength
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"hint": self.hint, "reason": self.reason, "strength": self.strength, "notes": list(self.notes)}


def _describe(decl: AiDeclaration, report: ProvenanceReport) -> str:
    """One declaration in words. It says what the file claims, never that the claim is true: an AI label can be
    forged as easily as stripped, but few people forge one that makes their own file look machine-made."""
    what = _CATEGORY_WORDS[decl.category]
    value = source_type_term(decl.value) if decl.value.startswith("http") else decl.value
    if decl.source == "c2pa":
        c2pa = report.c2pa
        signer = f"signed by {c2pa.signer}" if c2pa.signer else "signed"
        state = _DECLARED_STATE_WORDS.get(c2pa.state, c2pa.state)
        return f"the file declares itself {what} ({value}) in a C2PA manifest {signer} ({state})"
    return f"the file declares itself {what} in unsigned metadata: {decl.where} = {value}"


def provenance_evidence(report: ProvenanceReport) -> ProvenanceEvidence:
    """Hint, reason and human-readable notes for the detector's JSON."""
    c2pa, meta, wm = report.c2pa, report.metadata, report.watermark
    notes: list[str] = []
    decls = report.ai_declarations
    # Signed declarations from an intact manifest speak loudest; unsigned ones next; a broken manifest last.
    ranked = sorted(
        decls, key=lambda d: (not d.signed or c2pa.state not in ("valid", "untrusted_signer"), d.source != "c2pa")
    )
    for d in ranked[1:4]:
        notes.append("also: " + _describe(d, report))
    if len(ranked) > 4:
        notes.append(f"{len(ranked) - 4} more AI declarations in the metadata")

    if c2pa.present and c2pa.state != "unreadable":  # unreadable: c2pa.notes say why
        if not decls:  # with declarations, the reason already describes the manifest
            signer = f" signed by {c2pa.signer}" if c2pa.signer else ""
            gen = f" (claim generator {c2pa.claim_generator})" if c2pa.claim_generator else ""
            notes.append(f"C2PA manifest{signer}{gen}: {_STATE_WORDS.get(c2pa.state, c2pa.state)}")
        if c2pa.state == "invalid" and c2pa.failure_codes:
            notes.append("C2PA failures: " + ", ".join(c2pa.failure_codes[:6]))
        if c2pa.state == "untrusted_signer":
            notes.append(
                "an untrusted signature proves nothing about who made the file: anyone can make such a certificate"
            )
    if meta.make or meta.model:
        camera = " ".join(x for x in (meta.make, meta.model) if x)
        notes.append(f"EXIF names a camera ({camera}); unsigned, so not evidence of capture")
    for s in wm.detected[1:]:
        notes.append(f"also watermark {s.scheme} ({s.bit_accuracy:.0%} of {s.n_bits} bits)")
    notes += [*report.notes, *c2pa.notes, *meta.notes]

    if ranked:
        strength: Strength = "strong"
        return ProvenanceEvidence("ai_declared", _describe(ranked[0], report), strength, notes)
    if wm.detected:
        s = max(wm.detected, key=lambda x: x.bit_accuracy)
        where = f" in frame {s.frame_index}" if s.frame_index is not None else ""
        reason = (
            f"the file carries the invisible watermark of {_WATERMARK_WORDS.get(s.scheme, s.scheme)}{where}: "
            f"{s.bit_accuracy:.0%} of its {s.n_bits} bits match ({s.scheme}; unmarked content matches this well "
            f"with probability {s.chance:.1g})"
        )
        return ProvenanceEvidence("ai_watermark", reason, "strong", notes)
    if c2pa.present and c2pa.state == "valid":
        capture = [t for t in c2pa.declared_source_types if is_capture_source_type(t)]
        kind = f"declares {source_type_term(capture[0])}" if capture else "declares no AI generation or editing"
        reason = (
            f"C2PA manifest signed by {c2pa.signer or 'a trusted signer'} (trusted) {kind}; "
            "evidence of origin, not proof that the content is authentic"
        )
        return ProvenanceEvidence("capture_signed", reason, "supporting", notes)
    if report.kind != "unknown" and not c2pa.present and not meta.generator_hints and not meta.digital_source_types:
        notes.append("no provenance metadata found; its absence means nothing (it is stripped trivially)")
    return ProvenanceEvidence(
        "none", "no AI declaration, known watermark or trusted capture signature found", "none", notes
    )
