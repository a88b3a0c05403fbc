"""Audio-visual pseudo-fakes: each modality real on its own, the pair out of sync (for the sync measure,
:mod:`multimodal_df.fusion.sync`)."""

from __future__ import annotations

import numpy as np


def shift_audio(wave: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Audio-visual pseudo-fake: the audio delayed (``seconds`` > 0) or advanced (< 0), same length, zero-filled."""
    k = int(round(seconds * sample_rate))
    out = np.zeros_like(np.asarray(wave, dtype=np.float32))
    if k >= 0:
        out[k:] = wave[: len(wave) - k] if k < len(wave) else out[k:]
    else:
        out[: len(wave) + k] = wave[-k:]
    return out


def swap_audio(wave: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Audio-visual pseudo-fake: another clip's audio in place of this one's, cut or zero-padded to the same length."""
    other = np.asarray(other, dtype=np.float32)[: len(wave)]
    return np.pad(other, (0, len(wave) - len(other)))
