"""Typed results handed from the branches to fusion and from the detector to users."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fusion.sync import SyncOutput
from ..media.decode import Clip, MediaInfo
from ..provenance.policy import VerdictEvidence
from ..provenance.report import ProvenanceReport
from ..vision.faces import FaceTrack


def format_p(p: float, decimals: int = 3) -> str:
    """A probability as text with ``decimals`` places, or more when that would print 0 or 1 exactly: a
    P(fake) of 0.99994 prints as 0.9999, not 1.000, because certainty is a claim the model never makes."""
    text = f"{p:.{decimals}f}"
    while 0.0 < p < 1.0 and text.rstrip("0").rstrip(".") in ("0", "1") and decimals < 9:
        decimals += 1
        text = f"{p:.{decimals}f}"
    return text


def _logit(p: float | None) -> float | None:
    """log(p / (1 - p)) of a P(fake) (None when there is none); keeps the ranking that 4 decimals of p may lose."""
    if p is None or not 0.0 < p < 1.0:
        return None
    return math.log(p) - math.log1p(-p)


@dataclass
class VisionOutput:
    """The vision branch on one clip.

    ``logit``: pooled, uncalibrated. ``p_fake``: calibrated for the branch alone.
    ``embedding`` [D]: mean crop embedding. ``crop_logits``/``crop_p``/``times`` [K]: per face crop.
    ``frames``: frames searched for a face; ``faces``: frames where the main face was found.
    """

    logit: float
    p_fake: float
    embedding: np.ndarray
    crop_logits: np.ndarray
    crop_p: np.ndarray
    times: np.ndarray
    frames: int
    faces: int


@dataclass
class AudioOutput:
    """The audio branch on one clip.

    ``logit``: mean window logit, uncalibrated; ``p_fake``: calibrated for the branch alone.
    ``embedding`` [E]: mean window embedding. ``window_*``/``starts``/``ends`` [W]: per window, seconds.
    """

    logit: float
    p_fake: float
    embedding: np.ndarray
    window_logits: np.ndarray
    window_p: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @property
    def windows(self) -> int:
        return len(self.window_logits)


@dataclass
class Segment:
    """Evidence over one stretch of time (seconds): mean P(fake) per modality, None where absent."""

    start: float
    end: float
    vision: float | None
    audio: float | None


@dataclass
class Prediction:
    """The verdict on one input. ``p_fake`` and ``label`` are None when ``error`` is set."""

    path: str
    p_fake: float | None = None
    label: str | None = None
    threshold: float | None = None
    vision: VisionOutput | None = None
    audio: AudioOutput | None = None
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    info: MediaInfo | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    faces: list[dict[str, Any]] = field(default_factory=list)
    """Image mode: every face, ``{"box": [x1, y1, x2, y2], "prob": detector confidence, "p_fake": ...}``."""
    sync: SyncOutput | None = None
    """The audio-visual sync measure, when the detector's fusion weighs it."""
    provenance: ProvenanceReport | None = None
    """What the file says about its own origin (C2PA, AI-disclosure metadata, watermarks); None when the
    stage was switched off."""
    evidence: VerdictEvidence | None = None
    """Which evidence decided ``label`` (the model or provenance) and why; ``p_fake`` is always the model's."""

    def to_text(self) -> str:
        """One human-readable line (plus a line of notes when there are any), as ``predict`` prints it."""
        if self.error:
            # A file the models cannot read may still declare itself AI-made.
            extra = "".join(f"\n       note: {n}" for n in (self.evidence.notes if self.evidence else ()))
            return f"ERROR  {self.path}: {self.error}{extra}"
        parts = [
            f"{(self.label or '').upper():5s}  P(fake)={format_p(self.p_fake)} (threshold {self.threshold:.3f})  {self.path}"
        ]
        v, a = self.vision, self.audio
        parts.append(f"vision {format_p(v.p_fake)} ({v.faces}/{v.frames} frames with a face)" if v else "vision -")
        parts.append(f"audio {format_p(a.p_fake)} ({a.windows} windows)" if a else "audio -")
        line = "  ".join(parts) + f"  [{self.seconds:.1f} s]"
        notes = list(self.notes) + (self.info.notes if self.info else [])
        if notes:
            line += "\n       note: " + "; ".join(notes)
        return line

    def to_json(self) -> dict[str, Any]:
        """The documented JSON record (``predict --json``, the REST API)."""

        def r(x: float | None, nd: int = 4) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), nd)

        vision = None
        if self.vision is not None:
            # The raw pooled logit ranks files even where calibrated scores meet their bounds.
            vision = {
                "p_fake": r(self.vision.p_fake),
                "logit": r(self.vision.logit, 6),
                "frames": self.vision.frames,
                "faces": self.vision.faces,
            }
        audio = None
        if self.audio is not None:
            audio = {"p_fake": r(self.audio.p_fake), "logit": r(self.audio.logit, 6), "windows": self.audio.windows}
        media = None
        if self.info is not None:
            media = {
                "kind": self.info.kind,
                "duration": r(self.info.duration, 3),
                "width": self.info.width,
                "height": self.info.height,
                "fps": r(self.info.fps, 3),
                "video_codec": self.info.video_codec,
                "audio_codec": self.info.audio_codec,
                "rotation": self.info.rotation,
                "truncated": self.info.truncated,
            }
        return {
            "path": self.path,
            "p_fake": r(self.p_fake),
            "logit": r(_logit(self.p_fake), 6),
            "label": self.label,
            "threshold": r(self.threshold),
            "modalities": {"vision": vision, "audio": audio},
            "segments": [
                {"start": r(s.start, 3), "end": r(s.end, 3), "vision": r(s.vision), "audio": r(s.audio)}
                for s in self.segments
            ],
            "error": self.error,
            "seconds": r(self.seconds, 3),
            "media": media,
            "notes": list(self.notes) + (list(self.info.notes) if self.info is not None else []),
            "timings": {k: r(v, 4) for k, v in self.timings.items()},
            "faces": [
                {"box": [round(float(x), 1) for x in f["box"]], "prob": r(f["prob"]), "p_fake": r(f["p_fake"])}
                for f in self.faces
            ],
            # The report's own path is dropped: behind the REST API it is a temporary file's name.
            "provenance": None
            if self.provenance is None
            else {k: v for k, v in self.provenance.to_json().items() if k != "path"},
            "evidence": None if self.evidence is None else self.evidence.to_json(),
            "av_sync": None
            if self.sync is None
            else {
                "best_offset_s": r(self.sync.best_offset, 3),
                "corr_at_zero": r(self.sync.corr_at_zero),
                "peak_corr": r(self.sync.peak),
                "seconds": r(self.sync.seconds, 2),
            },
        }


def per_second_segments(
    duration: float, vision: VisionOutput | None, audio: AudioOutput | None, step: float = 1.0
) -> list[Segment]:
    """Average each modality's P(fake) over consecutive ``step``-second bins covering ``duration``."""
    if duration <= 0:
        return []
    n = max(1, int(math.ceil(duration / step - 1e-9)))
    out = []
    for i in range(n):
        a, b = i * step, min((i + 1) * step, duration)
        v = None
        if vision is not None and len(vision.times):
            sel = (vision.times >= a) & (vision.times < b)
            v = float(vision.crop_p[sel].mean()) if sel.any() else None
        s = None
        if audio is not None and audio.windows:
            sel = (audio.starts < b) & (audio.ends > a)
            s = float(audio.window_p[sel].mean()) if sel.any() else None
        out.append(Segment(a, b, v, s))
    return out


@dataclass
class Analysis:
    """A prediction with what produced it: the decoded ``clip`` and the face ``track`` that was scored
    (None where decoding failed or there was no face). Explanations are drawn from it."""

    prediction: Prediction
    clip: Clip | None = None
    track: FaceTrack | None = None
