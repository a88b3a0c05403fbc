"""Pseudo-fakes made from real media, for training on real data only.

* :func:`self_blend`: Self-Blended Images (Shiohara & Yamasaki, CVPR 2022). A face is blended with a
  colour-, sharpness- and geometry-jittered copy of itself through a soft, randomly deformed mask
  built from its landmarks, at a random blend ratio. The result carries the blending boundary and
  statistical mismatch of a face swap, with no identity change to learn from.
* :func:`cross_blend`: another real person's face aligned onto a face by its landmarks, colour
  matched and blended the same way (a crude face swap).
* :func:`griffin_lim_resynth`: real speech passed through a mel spectrogram and back with Griffin-Lim
  phase reconstruction, at a randomly drawn setting (the phase and fine-structure loss of vocoders).
* :func:`world_resynth`: real speech through the WORLD vocoder (F0, spectral envelope and
  aperiodicity, the parametric path of statistical TTS and voice conversion), with its envelope
  compressed to a random number of coefficients.
* :func:`tts_speech`: speech synthesised from text by espeak-ng (formant synthesis) or flite
  (CMU Flite voices), both installed from Debian's packages.
* :func:`standardize_speech`: what both real and fake audio go through, so sample rate, loudness and
  leading or trailing silence never separate the classes.

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
    mask = _elastic(mask, rng, strength=eye_dist * rng.uniform(0.1, 0.35))
    blur = int(size * rng.uniform(0.03, 0.1)) * 2 + 1
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (blur, blur), 0)


def _elastic(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Warp a mask by a smooth random displacement field (pixels, up to about ``strength``), so the
    boundary is wavy rather than a polygon: real swap masks follow jaw and cheek contours."""
    import cv2

    s = mask.shape[0]
    grid = max(3, s // 16)
    flow = rng.normal(0, 1, size=(2, grid, grid)).astype(np.float32)
    flow = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_CUBIC) for f in flow])
    flow *= strength / (np.abs(flow).max() + 1e-6)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    return cv2.remap(mask, xx + flow[0], yy + flow[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


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
    return _composite(_jitter(crop, rng), crop, mask, ratio)


def _composite(source: np.ndarray, target: np.ndarray, mask: np.ndarray, ratio: float) -> SelfBlend:
    """``source`` over ``target`` (both [S, S, 3]) through ``mask`` [S, S] scaled by ``ratio``."""
    m = (mask * ratio)[..., None]
    out = source * m + target.astype(np.float32) * (1 - m)
    return SelfBlend(np.clip(np.round(out), 0, 255).astype(np.uint8), mask * ratio, ratio)


def cross_blend(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray, source_lm: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """Blend another person's face (``source`` uint8 [S, S, 3], landmarks [5, 2]) onto ``target``.

    The source is aligned to the target by a similarity transform fitted on the 5 landmarks, its
    colour statistics inside the mask are matched to the target's (swap pipelines do this), then
    it is blended through the same kind of soft, deformed mask as :func:`self_blend`.
    """
    import cv2

    s = target.shape[0]
    m, _ = cv2.estimateAffinePartial2D(np.asarray(source_lm, np.float32), np.asarray(target_lm, np.float32))
    if m is None:
        return self_blend(target, target_lm, rng)
    warped = cv2.warpAffine(source.astype(np.float32), m, (s, s), borderMode=cv2.BORDER_REFLECT)
    mask = face_mask(target_lm, s, rng)
    inside = mask > 0.5
    if inside.sum() > 16:
        t, w = target.astype(np.float32)[inside], warped[inside]
        warped = (warped - w.mean(0)) / (w.std(0) + 1e-3) * t.std(0) + t.mean(0)
    warped = _jitter(np.clip(warped, 0, 255), rng)
    ratio = float(rng.choice([0.5, 0.75, 1.0, 1.0]))
    return _composite(warped, target, mask, ratio)


def standardize_speech(wave: np.ndarray, sample_rate: int = 16000, target_rms: float = 0.05) -> np.ndarray:
    """Trim leading/trailing silence and scale to ``target_rms``: applied to real and fake alike (float32 [T], 16 kHz)."""
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
    sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(pyworld.code_spectral_envelope(sp, sample_rate, dims)), sample_rate, fft_size)
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
    "espeak": "en-us en-gb en-gb-scotland en-gb-x-rp en-gb-x-gbclan en-029 en-gb-x-gbcwmd".split(),
    "flite": "kal16 awb rms slt".split(),
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
            cmd = [exe, "-v", voice, "-s", str(int(rng.integers(130, 200))), "-p", str(int(rng.integers(25, 75))), "-w", out, words]
        else:
            stretch = f"{rng.uniform(0.85, 1.2):.2f}"
            cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf", f"int_f0_target_mean={int(rng.integers(90, 200))}", "-t", words, "-o", out]
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

    return torchaudio.functional.resample(torch.from_numpy(np.asarray(wave, dtype=np.float32)), orig_sr, sample_rate).numpy()


AUDIO_GENERATORS = ("griffin_lim", "world", "espeak", "flite")
"""Audio pseudo-fake generators. The first two turn a real utterance into a fake of the same words;
the TTS engines speak other text in synthetic voices."""


def fake_speech(generator: str, wave: np.ndarray | None, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One pseudo-fake utterance from ``generator`` (see :data:`AUDIO_GENERATORS`), standardised like
    real speech (:func:`standardize_speech`); float32 [T] at ``sample_rate``. ``wave`` is the real
    utterance to resynthesise (ignored by the TTS engines)."""
    if generator == "griffin_lim":
        y = griffin_lim_resynth(np.asarray(wave), sample_rate, rng)
    elif generator == "world":
        y = world_resynth(np.asarray(wave), sample_rate, rng)
    elif generator in TTS_ENGINES:
        y = tts_speech(generator, rng, sample_rate)
    else:
        raise ValueError(f"unknown audio generator {generator!r}; expected one of {AUDIO_GENERATORS}")
    return standardize_speech(y, sample_rate)
