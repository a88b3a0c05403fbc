"""Speech pseudo-fakes made from real speech, for training on real data only.

* :func:`griffin_lim_resynth`: real speech passed through a mel spectrogram and back with Griffin-Lim
  phase reconstruction, at a randomly drawn setting (the phase and fine-structure loss of vocoders).
* :func:`world_resynth`: real speech through the WORLD vocoder (F0, spectral envelope and
  aperiodicity, the parametric path of statistical TTS and voice conversion), with its envelope
  compressed to a random number of coefficients.
* :func:`tts_speech`: speech synthesised from text by espeak-ng (formant synthesis) or flite
  (CMU Flite voices), both installed from Debian's packages.
* ``vocoder_<arch>``: real speech copied through a small neural vocoder trained here on real speech
  (:mod:`.vocoders`; the folder of trained vocoders is passed as ``generators_dir``).
* :func:`standardize_speech`: what both real and fake audio go through, so sample rate, loudness and
  leading or trailing silence never separate the classes.

Every generator takes a ``numpy.random.Generator``: the same seed gives the same fake.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...audio.features import trim_silence
from ...config import AUDIO_GENERATORS

if TYPE_CHECKING:
    from .vocoders import Vocoder

VOCODER_PREFIX = "vocoder_"


def window(wave: np.ndarray, length: int, start: int | None, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples from ``start`` (random when None), zero-padded at the end."""
    if start is None:
        start = int(rng.integers(0, max(1, len(wave) - length + 1)))
    x = np.asarray(wave[start : start + length], dtype=np.float32)
    return np.pad(x, (0, length - len(x))) if len(x) < length else x


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def standardize_speech(wave: np.ndarray, sample_rate: int = 16000, target_rms: float = 0.05) -> np.ndarray:
    """Trim leading/trailing silence and scale to ``target_rms``: applied to real and fake alike (float32 [T], 16 kHz)."""
    w = trim_silence(np.asarray(wave, dtype=np.float32), sample_rate)
    rms = float(np.sqrt(np.mean(w**2) + 1e-12))
    return np.clip(w * (target_rms / rms), -1, 1).astype(np.float32) if rms > 1e-6 else w


GRIFFIN_LIM_SETTINGS = ((512, 64, 8), (512, 80, 32), (1024, 80, 16), (1024, 128, 32), (400, 40, 4))
"""(n_fft, n_mels, iterations) choices: coarser mels and fewer iterations leave more artifacts."""


def griffin_lim_resynth(
    wave: np.ndarray, sample_rate: int, rng: np.random.Generator, setting: int | None = None
) -> np.ndarray:
    """Resynthesise speech from its mel spectrogram with Griffin-Lim; same length as the input, float32 [T]."""
    import torch
    import torchaudio

    n_fft, n_mels, n_iter = GRIFFIN_LIM_SETTINGS[
        int(rng.integers(len(GRIFFIN_LIM_SETTINGS))) if setting is None else setting
    ]
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


def world_resynth(wave: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """WORLD vocoder analysis and synthesis (pyworld); float32 [T], same length as the input.

    The spectral envelope is coded to 20-60 coefficients and back, and the frame period drawn from
    5 or 10 ms: the smoothing and buzz of parametric vocoders.
    """
    import pyworld

    x = np.asarray(wave, dtype=np.float64)
    period = float(rng.choice([5.0, 10.0]))
    f0, t = pyworld.dio(x, sample_rate, frame_period=period)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    sp = pyworld.cheaptrick(x, f0, t, sample_rate)
    ap = pyworld.d4c(x, f0, t, sample_rate)
    fft_size = (sp.shape[1] - 1) * 2
    dims = int(rng.integers(20, 61))
    sp = pyworld.decode_spectral_envelope(
        np.ascontiguousarray(pyworld.code_spectral_envelope(sp, sample_rate, dims)), sample_rate, fft_size
    )
    y = pyworld.synthesize(f0, sp, ap, sample_rate, frame_period=period)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return y.astype(np.float32)


SENTENCES = (
    "The morning train was late again, so we walked along the river to the old bridge.",
    "Please send the report before noon and call me if anything looks wrong.",
    "She opened the window and listened to the rain falling on the quiet street.",
    "Our results show a clear improvement over last year, especially in the north.",
    "He said the meeting would start at nine, but nobody arrived before ten.",
    "A small boat drifted past the harbour lights while the gulls circled overhead.",
    "I never expected the garden to grow so quickly after the long winter.",
    "The committee will publish its decision on the new budget next Thursday.",
    "They carried the boxes up three flights of stairs and collapsed on the sofa.",
    "If you follow the path past the church, you will find the house on the left.",
    "The children laughed when the dog chased its own tail around the kitchen.",
    "We need more time to test the system before it goes into production.",
    "Snow covered the fields and the roads were closed for most of the day.",
    "My grandmother kept every letter she ever received in a wooden chest.",
    "The price of bread has risen twice this month, and people are worried.",
    "After dinner we played cards by the fire until the candles burned out.",
    "The captain ordered the crew to lower the sails before the storm arrived.",
    "Nobody knows exactly who built the tower or why it stands alone on the hill.",
    "Turn off the lights when you leave, and lock the back door behind you.",
    "The scientist explained her findings in simple words that everyone understood.",
    "Two hundred people gathered in the square to hear the mayor speak.",
    "He bought a second hand bicycle and rode it to work every single day.",
    "The library will be closed on Monday while the heating is repaired.",
    "When the music stopped, the dancers bowed and the audience stood to applaud.",
)
"""Text for the synthetic voices: plain sentences written for this project (no corpus text)."""

TTS_ENGINES = {
    # Voices at 16 kHz or more only: an 8 kHz voice would be told apart by its missing upper band alone.
    "espeak": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-gb-x-gbcwmd"],
    "flite": ["kal16", "awb", "rms", "slt"],
}


def tts_speech(engine: str, rng: np.random.Generator, sample_rate: int = 16000, text: str | None = None) -> np.ndarray:
    """Synthesise a random sentence (or ``text``) with ``engine`` ("espeak" or "flite") at a random
    voice, rate and pitch; float32 [T] at ``sample_rate``.

    Raises ``RuntimeError`` with the install hint when the engine is not on the machine.
    """
    import shutil
    import subprocess
    import tempfile
    import wave as wavfile

    if engine not in TTS_ENGINES:
        raise ValueError(f"unknown TTS engine {engine!r}; expected one of {sorted(TTS_ENGINES)}")
    voices = TTS_ENGINES[engine]
    voice = str(rng.choice(voices))
    words = text or " ".join(str(rng.choice(SENTENCES)) for _ in range(int(rng.integers(1, 3))))
    exe = {"espeak": "espeak-ng", "flite": "flite"}[engine]
    if shutil.which(exe) is None:
        raise RuntimeError(f"{exe} is not installed (Debian: apt-get install {exe})")
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/tts.wav"
        if engine == "espeak":
            cmd = [
                exe,
                "-v",
                voice,
                "-s",
                str(int(rng.integers(130, 200))),
                "-p",
                str(int(rng.integers(25, 75))),
                "-w",
                out,
                words,
            ]
        else:
            stretch = f"{rng.uniform(0.85, 1.2):.2f}"
            cmd = [
                exe,
                "-voice",
                voice,
                "--setf",
                f"duration_stretch={stretch}",
                "--setf",
                f"int_f0_target_mean={int(rng.integers(90, 200))}",
                "-t",
                words,
                "-o",
                out,
            ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        with wavfile.open(out, "rb") as fh:  # both engines write 16-bit PCM WAV
            sr, ch = fh.getframerate(), fh.getnchannels()
            y = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").reshape(-1, ch).mean(1) / 32768.0
    return resample(y, sr, sample_rate)


def resample(wave: np.ndarray, orig_sr: int, sample_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's sinc interpolation); float32 [T']."""
    if orig_sr == sample_rate:
        return np.asarray(wave, dtype=np.float32)
    import torch
    import torchaudio

    return torchaudio.functional.resample(
        torch.from_numpy(np.asarray(wave, dtype=np.float32)), orig_sr, sample_rate
    ).numpy()


@functools.lru_cache(maxsize=8)
def load_vocoder(directory: str) -> Vocoder:
    """A trained vocoder from ``directory`` (kept in memory: every utterance of a bank uses it)."""
    from .vocoders import Vocoder

    return Vocoder.load(directory)


def vocoder_dir(generators_dir: str | Path | None, generator: str) -> Path:
    """Where the trained vocoder of a ``vocoder_<arch>`` generator lives; a clear error when it is missing."""
    if generators_dir is None or not (Path(generators_dir) / generator).is_dir():
        raise ValueError(
            f"audio generator {generator!r} needs a trained vocoder in train.generators_dir/{generator} "
            f"(the recipe's 'generators' stage trains it); generators_dir is {generators_dir!r}"
        )
    return Path(generators_dir) / generator


def fake_speech(
    generator: str,
    wave: np.ndarray | None,
    sample_rate: int,
    rng: np.random.Generator,
    generators_dir: str | Path | None = None,
) -> np.ndarray:
    """One pseudo-fake utterance from ``generator`` (see :data:`AUDIO_GENERATORS`), standardised like
    real speech (:func:`standardize_speech`); float32 [T] at ``sample_rate``. ``wave`` is the real
    utterance to resynthesise (ignored by the TTS engines); ``generators_dir`` holds the trained vocoders."""
    if generator.startswith(VOCODER_PREFIX):
        voc = load_vocoder(str(vocoder_dir(generators_dir, generator).resolve()))
        if voc.cfg.sample_rate != sample_rate:
            raise ValueError(f"{generator} was trained at {voc.cfg.sample_rate} Hz, not {sample_rate} Hz")
        y = voc.resynthesize(np.asarray(wave, dtype=np.float32))
    elif generator == "griffin_lim":
        y = griffin_lim_resynth(np.asarray(wave), sample_rate, rng)
    elif generator == "world":
        y = world_resynth(np.asarray(wave), sample_rate, rng)
    elif generator in TTS_ENGINES:
        y = tts_speech(generator, rng, sample_rate)
    else:
        raise ValueError(f"unknown audio generator {generator!r}; expected one of {AUDIO_GENERATORS}")
    return standardize_speech(y, sample_rate)


def make_speech_fakes(
    reals: list[np.ndarray],
    generator: str,
    sample_rate: int,
    seed: int,
    progress: bool = False,
    cache: Path | None = None,
    generators_dir: str | Path | None = None,
) -> list[np.ndarray]:
    """One pseudo-fake per real utterance from ``generator``, each seeded by (seed, utterance index).

    With ``cache``, each fake is kept as ``.npy`` under a key of the generator, seed, index and the
    real waveform's bytes, so a second training run (another audio variant) does not remake them.
    """
    import hashlib

    from tqdm import tqdm

    gi = AUDIO_GENERATORS.index(generator)
    # A retrained vocoder makes other fakes: its weights' identity (size, time) is part of the cache key.
    stamp = ""
    if generator.startswith(VOCODER_PREFIX):
        st = (vocoder_dir(generators_dir, generator) / "vocoder.safetensors").stat()
        stamp = f"{st.st_size}/{st.st_mtime_ns}/"
    out = []
    for k, w in enumerate(tqdm(reals, desc=f"fakes: {generator}", leave=False, disable=not progress)):
        path = None
        if cache is not None:
            key = hashlib.sha1(
                f"{generator}/{seed}/{k}/{sample_rate}/{stamp}".encode()
                + np.ascontiguousarray(w, dtype=np.float32).tobytes()
            ).hexdigest()
            path = cache / f"{key}.npy"
            if path.exists():
                out.append(np.load(path))
                continue
        y = fake_speech(generator, w, sample_rate, np.random.default_rng([seed, k, gi]), generators_dir)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, y)
        out.append(y)
    return out
