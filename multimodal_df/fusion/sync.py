"""Audio-visual synchrony: does the mouth move with the voice?

A lip-synced or dubbed video, or one whose audio was shifted or taken from another clip, breaks the
coupling between mouth motion and speech loudness. This stage measures it:

* :func:`mouth_motion`: per dense grey video frame (``SYNC_FPS``, decoded with the clip), how much the mouth region changed
  since the previous frame. The mouth is located from the face track's landmarks (mouth corners),
  interpolated between the sparsely sampled frames, so no face detection runs at 25 fps.
* :func:`speech_envelope`: per frame, how much the speech loudness changed (log RMS).
* :func:`sync_profile`: the correlation of the two over offsets of up to ``max_offset`` seconds.
  In a real talking-face video it peaks near offset 0; shifted audio moves the peak, swapped audio
  flattens it.

:class:`SyncOutput.features` turns the profile into three numbers fusion can weigh. The stage
takes a face track and a waveform; it imports neither branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media.decode import DenseFrames, DenseSpec

SYNC_FPS = 25.0
"""Frame rate of the motion and envelope signals (frames per second)."""
SYNC_SECONDS = 10.0
"""How much of the start of a clip the sync measure looks at."""
DENSE = DenseSpec(SYNC_FPS, SYNC_SECONDS)
"""What to ask :func:`multimodal_df.media.decode` for so that :func:`measure_mouth` can run."""
SYNC_FEATURES = 3
"""Width of :meth:`SyncOutput.features`."""
ZERO_TOLERANCE = 0.08
"""Offsets (s) this close to 0 count as in sync."""


@dataclass
class SyncOutput:
    """Correlation ``corr`` [K] of mouth motion and speech envelope at ``offsets`` [K] (seconds;
    positive: the audio comes later than the video), over ``seconds`` of the clip."""

    offsets: np.ndarray
    corr: np.ndarray
    seconds: float

    @property
    def best_offset(self) -> float:
        """Offset (s) with the highest correlation."""
        return float(self.offsets[int(np.nanargmax(self.corr))]) if np.isfinite(self.corr).any() else 0.0

    @property
    def corr_at_zero(self) -> float:
        """The highest correlation within ``ZERO_TOLERANCE`` of offset 0: codecs delay audio by a
        frame or two (AAC's encoder priming alone is 64 ms at 16 kHz)."""
        near = np.abs(self.offsets) <= ZERO_TOLERANCE + 1e-9
        c = self.corr[near]
        return float(np.nanmax(c)) if np.isfinite(c).any() else 0.0

    @property
    def peak(self) -> float:
        return float(np.nanmax(self.corr)) if np.isfinite(self.corr).any() else 0.0

    def features(self) -> np.ndarray:
        """[3]: correlation near offset 0, how much higher the peak is elsewhere, and the peak's
        distance from 0 as a fraction of the largest offset. In sync: high, ~0, ~0."""
        span = float(np.abs(self.offsets).max()) or 1.0
        return np.array(
            [self.corr_at_zero, self.peak - self.corr_at_zero, abs(self.best_offset) / span], dtype=np.float64
        )


def mouth_boxes(landmarks: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Mouth boxes [T, 4] (x1, y1, x2, y2, pixels) at times ``at`` [T], interpolated from 5-point
    landmarks [K, 5, 2] seen at ``times`` [K] (mouth corners are points 3 and 4)."""
    left, right = landmarks[:, 3], landmarks[:, 4]
    centre = (left + right) / 2
    width = np.linalg.norm(right - left, axis=1)
    cx = np.interp(at, times, centre[:, 0])
    cy = np.interp(at, times, centre[:, 1])
    w = np.maximum(np.interp(at, times, width), 4.0) * 1.5
    # The box reaches further down than up: the jaw drops when the mouth opens.
    return np.stack([cx - w / 2, cy - 0.35 * w, cx + w / 2, cy + 0.55 * w], axis=1)


def mouth_motion(frames: np.ndarray, boxes: np.ndarray, size: tuple[int, int] = (32, 28)) -> np.ndarray:
    """Mean absolute change [T] of the standardised mouth crop between consecutive grey frames
    (uint8 [T, H, W], boxes [T, 4] in their pixels); NaN for the first frame and where the box leaves the frame."""
    import cv2

    out = np.full(len(frames), np.nan)
    prev = None
    for i, (f, b) in enumerate(zip(frames, boxes)):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, f.shape[1]), min(y2, f.shape[0])
        if x2 - x1 < 4 or y2 - y1 < 4:
            prev = None
            continue
        g = cv2.resize(np.ascontiguousarray(f[y1:y2, x1:x2]), size, interpolation=cv2.INTER_AREA).astype(np.float32)
        g = (g - g.mean()) / (g.std() + 1.0)
        if prev is not None:
            out[i] = float(np.abs(g - prev).mean())
        prev = g
    return out


def speech_envelope(wave: np.ndarray, sample_rate: int, n_frames: int, fps: float = SYNC_FPS) -> np.ndarray:
    """Absolute change [n_frames] of log RMS loudness from one video frame's span of audio to the next."""
    hop = sample_rate / fps
    rms = np.empty(n_frames)
    for i in range(n_frames):
        seg = np.asarray(wave[int(i * hop) : int((i + 1) * hop)], dtype=np.float64)
        rms[i] = np.sqrt(np.mean(seg**2)) if len(seg) else 0.0
    loud = np.log(rms + 1e-4)
    return np.concatenate([[np.nan], np.abs(np.diff(loud))])


def sync_profile(
    motion: np.ndarray, envelope: np.ndarray, fps: float = SYNC_FPS, max_offset: float = 1.0
) -> SyncOutput:
    """Pearson correlation of ``motion`` and ``envelope`` (both [T] per frame) over offsets of up to
    ``max_offset`` seconds; NaN where fewer than 2 s overlap."""
    n = min(len(motion), len(envelope))
    m, e = np.asarray(motion[:n], np.float64), np.asarray(envelope[:n], np.float64)
    lags = np.arange(-int(round(max_offset * fps)), int(round(max_offset * fps)) + 1)
    corr = np.full(len(lags), np.nan)
    for k, lag in enumerate(lags):
        if abs(lag) >= n:
            continue
        # Positive lag: the envelope at t + lag goes with the motion at t (the audio comes later).
        a, b = (m[: n - lag], e[lag:]) if lag >= 0 else (m[-lag:], e[: n + lag])
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= 2 * fps and a[ok].std() > 0 and b[ok].std() > 0:
            corr[k] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return SyncOutput(lags / fps, corr, n / fps)


@dataclass
class MouthTrack:
    """Mouth motion [T] at ``SYNC_FPS`` from ``start`` (s): the visual half of the sync measure,
    kept so that the audio half can be recomputed for shifted or swapped audio."""

    motion: np.ndarray
    start: float


def measure_mouth(dense: DenseFrames | None, landmarks: np.ndarray, times: np.ndarray) -> MouthTrack | None:
    """Mouth motion along the face track (landmarks [K, 5, 2] at ``times`` [K], full-frame pixels) over the dense
    grey frames decoded with the clip (:data:`DENSE`). None without a usable track or under 2 s of frames."""
    if dense is None or len(times) < 1 or len(dense.frames) < 2 * SYNC_FPS:
        return None
    lms = np.asarray(landmarks, np.float64) * dense.scale
    boxes = mouth_boxes(lms, np.asarray(times, np.float64), dense.times)
    # Frames come at 1/SYNC_FPS spacing from the first one, so index k is time start + k / SYNC_FPS.
    return MouthTrack(mouth_motion(dense.frames, boxes), float(dense.times[0] - 0.5 / SYNC_FPS))


def sync_output(mouth: MouthTrack, wave: np.ndarray, sample_rate: int, max_offset: float = 1.0) -> SyncOutput:
    """The sync profile of ``mouth`` against ``wave`` (float32 [T] from time 0 of the clip)."""
    s = max(0, int(round(mouth.start * sample_rate)))
    env = speech_envelope(wave[s:], sample_rate, len(mouth.motion))
    return sync_profile(mouth.motion, env, SYNC_FPS, max_offset)
