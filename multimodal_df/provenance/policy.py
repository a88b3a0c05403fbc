"""How provenance enters the detector's verdict. The model's P(fake) is never changed.

The detector runs :func:`multimodal_df.provenance.inspect_provenance` on every input before its models and
hands the report to :func:`decide` together with the model's calibrated P(fake) and threshold:

* **Declared AI generation or editing** (a C2PA action or assertion with an AI ``digitalSourceType``, an
  IPTC/XMP ``DigitalSourceType``, a generator's PNG text chunk or EXIF comment, a generator named in a
  Software tag) or **a known generator's watermark** is strong evidence. The label becomes ``fake``,
  ``label_from`` is ``provenance`` and the reason says what the file declares; ``p_fake`` stays the model's
  number. A declaration counts whether its C2PA signer is trusted, untrusted or its manifest no longer
  validates, and when it sits in unsigned metadata: anyone can forge such a label, but a label saying
  "made by AI" is still the file's own claim, and hardly anyone adds one to a real capture. The reason
  states which of these it is, so nobody mistakes an untrusted signature for a verified origin.
* **A valid, trusted C2PA manifest with no AI action** is evidence of where the file came from (a camera,
  an editor), not proof that what it shows is real: it becomes a note and never turns a ``fake`` into
  ``real``.
* **A manifest that no longer validates** without an AI declaration is a neutral note: the file changed
  after signing, which honest re-saving does too.
* **Absent metadata means nothing** (stripping it is trivial and most platforms do it on upload), so the
  verdict never mentions it; at most the provenance block itself carries a neutral note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .evidence import Strength
from .report import ProvenanceReport, VerdictHint

LabelSource = Literal["model", "provenance"]
STRONG_HINTS: frozenset[str] = frozenset({"ai_declared", "ai_watermark"})
"""Provenance hints that decide the label on their own."""


@dataclass
class ProvenanceSettings:
    """Whether and how the detector runs the provenance stage before its models."""

    enabled: bool = True
    """False skips the stage: ``provenance`` is null in the JSON and the label always follows the model."""
    trust_anchors: str | Path | None = None
    """PEM bundle of root certificates (e.g. the C2PA trust list). Without it no C2PA signer is trusted, so
    a manifest is at best ``untrusted_signer`` and never counts as evidence of capture."""


@dataclass(frozen=True)
class VerdictEvidence:
    """Which evidence decided a prediction's label, and why.

    ``label``: the final label (``fake`` / ``real``; None when the file could not be scored).
    ``label_from``: ``model`` (calibrated P(fake) against the threshold) or ``provenance`` (the file declares
    AI generation or carries a generator's watermark); None without a label.
    ``model_label``: what the model alone says. ``provenance_hint`` / ``provenance_strength``: the stage's
    summary (None when it did not run). ``notes``: lines for the prediction's notes.
    """

    label: str | None
    label_from: LabelSource | None
    reason: str
    model_label: str | None = None
    provenance_hint: VerdictHint | None = None
    provenance_strength: Strength | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "label_from": self.label_from,
            "reason": self.reason,
            "model_label": self.model_label,
            "provenance_hint": self.provenance_hint,
            "provenance_strength": self.provenance_strength,
        }


def _model_reason(p_fake: float, threshold: float) -> str:
    side = "at or above" if p_fake >= threshold else "below"
    return f"P(fake) {p_fake:.3f} is {side} the threshold {threshold:.3f}"


def decide(p_fake: float | None, threshold: float | None, report: ProvenanceReport | None) -> VerdictEvidence:
    """The label from the model's calibrated ``p_fake`` against ``threshold`` and the provenance ``report``.

    ``p_fake`` / ``threshold``: None when the models could not score the file (then there is no label, but
    a declaration still becomes a note). ``report``: None when the stage was switched off.
    """
    scored = p_fake is not None and threshold is not None
    model_label = ("fake" if p_fake >= threshold else "real") if scored else None  # type: ignore[operator]
    ev = report.evidence() if report is not None else None
    hint, strength = (ev.hint, ev.strength) if ev is not None else (None, None)

    if ev is not None and ev.hint in STRONG_HINTS:
        if not scored:
            note = f"provenance: {ev.reason}"
            return VerdictEvidence(
                None, None, f"no label: the file could not be scored; {note}", None, hint, strength, (note,)
            )
        agree = (
            f"the model agrees: {_model_reason(p_fake, threshold)}"  # type: ignore[arg-type]
            if model_label == "fake"
            else f"the model alone would say real: {_model_reason(p_fake, threshold)}"  # type: ignore[arg-type]
        )
        note = (
            f"provenance is strong evidence of AI and decides the label: {ev.reason}; "
            "P(fake) is still the model's own score"
        )
        return VerdictEvidence("fake", "provenance", f"{ev.reason}; {agree}", model_label, hint, strength, (note,))

    notes: list[str] = []
    if ev is not None and ev.hint == "capture_signed":
        # Evidence of origin, never of truth: a signed camera can photograph a screen showing a deepfake.
        notes.append(f"provenance: {ev.reason}; it does not override the model's verdict")
    elif report is not None and report.c2pa.present and report.c2pa.state == "invalid":
        notes.append(
            "provenance: a C2PA manifest is present but no longer valid (the file changed after signing or the "
            "signature fails); on its own this says nothing about AI"
        )
    if not scored:
        return VerdictEvidence(None, None, "no label: the file could not be scored", None, hint, strength, tuple(notes))
    return VerdictEvidence(
        model_label,
        "model",
        "the model's " + _model_reason(p_fake, threshold),  # type: ignore[arg-type]
        model_label,
        hint,
        strength,
        tuple(notes),
    )
