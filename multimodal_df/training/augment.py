"""Augmentation applied alike to real and fake training items, so that quality and channel are never the tell."""

from __future__ import annotations

import numpy as np

from .pseudofakes.speech import resample, rms


def degrade(crop: np.ndarray, rng: np.random.Generator, p_jpeg: float = 0.4, p_rescale: float = 0.3) -> np.ndarray:
    """Everyday quality loss on a uint8 RGB crop: JPEG at quality 30-95 and/or a 1.2-2.5x down/up-scale."""
    import cv2

    s = crop.shape[0]
    if rng.random() < p_rescale:
        f = rng.uniform(1.2, 2.5)
        small = cv2.resize(crop, (max(4, int(s / f)), max(4, int(s / f))), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    if rng.random() < p_jpeg:
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))]
        )
        if ok:
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return crop


def augment_speech(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gain 0.5-1.5x; with p=0.3 band-limiting to 3.5-7 kHz (phone, web codecs); with p=0.2 white noise at 20-40 dB SNR."""
    x = np.asarray(x, dtype=np.float32) * rng.uniform(0.5, 1.5)
    if rng.random() < 0.3:
        low = int(rng.integers(7000, 14001)) // 100 * 100
        x = resample(resample(x, sample_rate, low), low, sample_rate)[: len(x)]
    if rng.random() < 0.2:
        snr = rng.uniform(20, 40)
        x = x + rng.standard_normal(len(x)).astype(np.float32) * rms(x) * 10 ** (-snr / 20)
    return x.astype(np.float32)
