"""Augmentation applied alike to real and fake training items, so that quality and channel are never the tell."""

from __future__ import annotations

import numpy as np

from .pseudofakes.speech import resample, rms


def degrade(crop: np.ndarray, rng: np.random.Generator, p_jpeg: float = 0.4, p_rescale: float = 0.3) -> np.ndarray:
    """Everyday quality loss on a uint8 RGB crop: JPEG at quality 30-95 and/or a 1.2-2.5x down/up-scale."""
    import cv2

    if rng.random() < p_rescale:
        crop = soften(crop, rng, (1.2, 2.5))
    if rng.random() < p_jpeg:
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))]
        )
        if ok:
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return crop


def soften(crop: np.ndarray, rng: np.random.Generator, factor: tuple[float, float] = (1.2, 2.0)) -> np.ndarray:
    """A uint8 RGB crop [S, S, 3] down-scaled by a random factor in ``factor`` (area) and enlarged back (bilinear): about
    as soft as the face decoders' reconstructions, which lose most power above half Nyquist."""
    import cv2

    s = crop.shape[0]
    f = rng.uniform(*factor)
    small = cv2.resize(crop, (max(4, int(s / f)), max(4, int(s / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)


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


RAWBOOST_KINDS: tuple[str, ...] = ("convolutive", "impulsive", "coloured_noise", "convolutive+impulsive")
"""The RawBoost-style distortions :func:`rawboost` draws from (one of them per call)."""


def _multiband_fir(sample_rate: int, rng: np.random.Generator, bands: int = 5) -> np.ndarray:
    """A random FIR filter: ``bands`` band-stop filters in cascade, each at a random centre (20 Hz - Nyquist), width
    (100-1000 Hz) and length (11-101 taps), with unit gain at its largest. [taps] float64."""
    from scipy import signal

    nyq = sample_rate / 2
    b = np.ones(1)
    for _ in range(bands):
        centre = rng.uniform(20, nyq - 60)
        width = rng.uniform(100, 1000)
        lo, hi = max(10.0, centre - width / 2), min(nyq - 10.0, centre + width / 2)
        taps = int(rng.integers(5, 51)) * 2 + 1  # odd: a band-stop FIR needs a centre tap
        b = np.convolve(b, signal.firwin(taps, [lo, hi], fs=sample_rate, pass_zero="bandstop"))
    peak = np.abs(np.fft.rfft(b, 4096)).max()
    return b / max(peak, 1e-9)


def rawboost(x: np.ndarray, sample_rate: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A random device / transmission distortion of a mono waveform [samples] (float32, about [-1, 1]), after
    RawBoost (Tak et al., ICASSP 2022), which improved spoofing countermeasures on attacks unseen in training:

    * ``convolutive``: linear and non-linear convolutive noise: the sum over orders j = 1..5 of x**j through its own
      random multi-band filter, order j attenuated by 5-20 dB per step (a loudspeaker, microphone or amplifier with
      a coloured, mildly non-linear response);
    * ``impulsive``: 1-10 % of the samples disturbed by up to twice their own value (clipping, bit errors, clicks);
    * ``coloured_noise``: noise through a random multi-band filter at 10-40 dB SNR;
    * ``convolutive+impulsive``: both in a row.

    Applied alike to real and fake training windows it removes the device as a tell, and it smears the fine
    spectral detail a model would otherwise learn from our particular generators. Output: same length, float32,
    peak-normalised to the input's peak."""
    from scipy import signal

    if kind is not None and kind not in RAWBOOST_KINDS:
        raise ValueError(f"unknown RawBoost kind {kind!r}; choose from {RAWBOOST_KINDS}")
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.abs(x).max())
    if peak < 1e-6:
        return x.astype(np.float32)
    kind = kind or RAWBOOST_KINDS[int(rng.integers(len(RAWBOOST_KINDS)))]
    y = x / peak
    if kind.startswith("convolutive"):
        out = np.zeros_like(y)
        atten_db = 0.0
        for order in range(1, 6):
            if order > 1:
                atten_db += rng.uniform(5, 20)
            term = signal.fftconvolve(y**order, _multiband_fir(sample_rate, rng), mode="same")
            out += term * 10 ** (-atten_db / 20)
        y = out / max(float(np.abs(out).max()), 1e-9)
    if kind.endswith("impulsive"):
        n = len(y)
        idx = rng.choice(n, size=max(1, int(n * rng.uniform(0.01, 0.10))), replace=False)
        y = y.copy()
        y[idx] += 2.0 * y[idx] * rng.uniform(-1, 1, size=len(idx))
        y = y / max(float(np.abs(y).max()), 1e-9)
    if kind == "coloured_noise":
        noise = signal.fftconvolve(rng.standard_normal(len(y)), _multiband_fir(sample_rate, rng), mode="same")
        snr_db = rng.uniform(10, 40)
        noise *= rms(y) / max(rms(noise), 1e-12) * 10 ** (-snr_db / 20)
        y = y + noise
        y = y / max(float(np.abs(y).max()), 1e-9)
    return (y * peak).astype(np.float32)
