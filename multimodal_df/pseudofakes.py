"""Pseudo-fakes made from real media, for training on real data only.

* :func:`self_blend`: Self-Blended Images (Shiohara & Yamasaki, CVPR 2022). A face is blended with a
  colour-, sharpness- and geometry-jittered copy of itself through a soft, randomly deformed mask
  built from its landmarks, at a random blend ratio. The result carries the blending boundary and
  statistical mismatch of a face swap, with no identity change to learn from.
* :func:`griffin_lim_resynth`: real speech passed through a mel spectrogram and back with Griffin-Lim
  phase reconstruction, at a randomly drawn setting (the phase and fine-structure loss of vocoders).
* :func:`standardize_speech`: what both real and fake audio go through, so loudness and leading or
  trailing silence never separate the classes.

Every generator takes a ``numpy.random.Generator``: the same seed gives the same fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio.features import trim_silence


def landmarks_to_crop(landmarks: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Map landmarks [5, 2] from frame pixels into the square crop of ``box`` (as ``square_crop`` cuts it)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    a, b = round((x1 + x2) / 2 - side / 2), round((y1 + y2) / 2 - side / 2)
    s = max(1, round(side))
    return (np.asarray(landmarks, dtype=np.float64) - [a, b]) * (size / s)


def face_mask(landmarks: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft mask [size, size] in [0, 1] over the inner face, from 5 landmarks (eyes, nose, mouth corners).

    The hull of the landmarks is grown to cover brows and chin, randomly deformed (scaled,
    shifted, each vertex jittered), then eroded or dilated and blurred, so the blending boundary
    differs from sample to sample.
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    centre = lm.mean(0)
    eye_dist = max(1.0, float(np.linalg.norm(lm[1] - lm[0])))
    # Grow outward: brows above the eyes, chin below the mouth.
    pts = [lm[0] + [-0.45, -0.55] * np.array([eye_dist, eye_dist]), lm[1] + [0.45, -0.55] * np.array([eye_dist, eye_dist])]
    pts += [lm[4] + [0.35 * eye_dist, 0.55 * eye_dist], lm[3] + [-0.35 * eye_dist, 0.55 * eye_dist]]
    pts += list(lm)
    pts = np.array(pts)
    pts = centre + (pts - centre) * rng.uniform(0.85, 1.15, size=2) + rng.normal(0, 0.06 * eye_dist, size=pts.shape)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    k = max(1, int(size * rng.uniform(0.01, 0.05)))
    kernel = np.ones((k, k), np.uint8)
    mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    blur = int(size * rng.uniform(0.03, 0.1)) * 2 + 1
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (blur, blur), 0)


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "source" of a self-blend: colour, sharpness and geometry changed a little."""
    import cv2

    out = img.astype(np.float32)
    out = out * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-15, 15, size=3)  # per-channel gain and shift
    out = (out - out.mean()) * rng.uniform(0.85, 1.15) + out.mean()  # contrast
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    else:
        soft = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + rng.uniform(0.3, 1.0) * (out - soft)  # unsharp mask
    s = img.shape[0]
    scale = rng.uniform(0.95, 1.05)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), 0.0, scale)
    m[:, 2] += rng.uniform(-0.03, 0.03, size=2) * s
    out = cv2.warpAffine(out, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 255)


@dataclass
class SelfBlend:
    """A self-blended face: ``image`` uint8 [S, S, 3], the ``mask`` [S, S] actually used, and the blend ``ratio``."""

    image: np.ndarray
    mask: np.ndarray
    ratio: float


def self_blend(crop: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """Blend a jittered copy of ``crop`` (uint8 [S, S, 3]) into itself through a landmark mask.

    ``landmarks`` [5, 2] are in crop pixels (see :func:`landmarks_to_crop`).
    """
    s = crop.shape[0]
    mask = face_mask(landmarks, s, rng)
    ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    m = (mask * ratio)[..., None]
    source = _jitter(crop, rng)
    out = source * m + crop.astype(np.float32) * (1 - m)
    return SelfBlend(np.clip(np.round(out), 0, 255).astype(np.uint8), mask * ratio, ratio)


def standardize_speech(wave: np.ndarray, sample_rate: int = 16000, target_rms: float = 0.05) -> np.ndarray:
    """Trim leading/trailing silence and scale to ``target_rms``: applied to real and fake alike."""
    w = trim_silence(np.asarray(wave, dtype=np.float32), sample_rate)
    rms = float(np.sqrt(np.mean(w**2) + 1e-12))
    return np.clip(w * (target_rms / rms), -1, 1).astype(np.float32) if rms > 1e-6 else w


GRIFFIN_LIM_SETTINGS = ((512, 64, 8), (512, 80, 32), (1024, 80, 16), (1024, 128, 32), (400, 40, 4))
"""(n_fft, n_mels, iterations) choices: coarser mels and fewer iterations leave more artifacts."""


def griffin_lim_resynth(wave: np.ndarray, sample_rate: int, rng: np.random.Generator, setting: int | None = None) -> np.ndarray:
    """Resynthesise speech from its mel spectrogram with Griffin-Lim; same length as the input, float32 [T]."""
    import torch
    import torchaudio

    n_fft, n_mels, n_iter = GRIFFIN_LIM_SETTINGS[int(rng.integers(len(GRIFFIN_LIM_SETTINGS))) if setting is None else setting]
    hop = n_fft // 4
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=1.0)(x)
    # Mel -> linear magnitude with the pseudo-inverse of the filter bank (non-negative), then phase by Griffin-Lim.
    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
    lin = torch.clamp(torch.linalg.pinv(fb.T) @ mel, min=0.0)
    torch.manual_seed(int(rng.integers(2**31)))
    gl = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop, power=1.0, n_iter=n_iter, rand_init=True)
    y = gl(lin).numpy()
    y = np.pad(y, (0, max(0, len(wave) - len(y))))[: len(wave)]
    return y.astype(np.float32)
