"""Audio front end: fixed-length windows over a waveform. NumPy only, so the ONNX runtime can cut windows without
importing PyTorch; the log-mel spectrogram (``LogMel``) is a PyTorch module and lives in :mod:`.model`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def window_starts(num_samples: int, length: int, hop: int) -> list[int]:
    """Start samples of the windows of ``length`` samples every ``hop`` samples over ``num_samples``.

    A clip no longer than one window has one window at 0 (zero-padded by the caller); otherwise a last
    window is aligned to the end so the tail is covered. Training and inference cut windows with this one rule.
    """
    if num_samples <= length:
        return [0]
    starts = list(range(0, num_samples - length + 1, max(1, hop)))
    if starts[-1] + length < num_samples:
        starts.append(num_samples - length)
    return starts


def window_samples(seconds: float, sample_rate: int) -> int:
    """Samples in ``seconds`` of audio (at least 1)."""
    return max(1, int(round(seconds * sample_rate)))


def frame_windows(wave: np.ndarray, sample_rate: int, window_s: float, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mono waveform [T] into windows [W, L] (L = window_s * sample_rate samples) by :func:`window_starts`.

    Returns the windows and their start times in seconds [W]. A clip shorter than one window is
    zero-padded to one window.
    """
    length, hop = window_samples(window_s, sample_rate), window_samples(hop_s, sample_rate)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size <= length:
        return np.pad(wave, (0, length - wave.size))[None], np.zeros(1)
    starts = window_starts(wave.size, length, hop)
    windows = np.stack([wave[s : s + length] for s in starts])
    return windows, np.asarray(starts, dtype=np.float64) / sample_rate


def num_windows(num_samples: int, sample_rate: int, window_s: float, hop_s: float) -> int:
    """How many windows :func:`frame_windows` makes for ``num_samples`` samples."""
    return len(window_starts(num_samples, window_samples(window_s, sample_rate), window_samples(hop_s, sample_rate)))


def frames_for(seconds: float, hop_length: int, sample_rate: int) -> int:
    """Spectrogram frames covering ``seconds`` of audio."""
    return int(math.floor(seconds * sample_rate / hop_length)) + 1


def trim_silence(wave: np.ndarray, sample_rate: int, top_db: float = 40.0, frame_s: float = 0.02) -> np.ndarray:
    """Drop leading and trailing stretches quieter than ``top_db`` below the loudest 20 ms frame.

    Used to check a known shortcut: in some datasets the fakes start or end with a brief silence
    that alone separates the classes. Returns the waveform unchanged when it is silent throughout.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = max(1, int(round(frame_s * sample_rate)))
    frames = len(wave) // n
    if frames < 2:
        return wave
    rms = np.sqrt(np.mean(wave[: frames * n].reshape(frames, n) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-top_db / 20))
    if len(loud) == 0 or rms.max() < 1e-5:
        return wave
    return wave[loud[0] * n : min(len(wave), (loud[-1] + 1) * n)]


def __getattr__(name: str) -> Any:
    # LogMel moved to .model (it needs PyTorch); reached through here, it is imported only when asked for.
    if name == "LogMel":
        from .model import LogMel

        return LogMel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
