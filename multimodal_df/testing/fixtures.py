"""Synthetic test media: small MP4s of a moving face with speech-like audio.

The face is cut from scikit-image's ``astronaut()`` photo (public domain, shipped in the
scikit-image wheel); the voice is additive formant synthesis. Either modality can carry a
controllable artifact, so tests can prove that training learns and that explanations point
at the right place:

* vision artifact: the inner face is replaced by a blocky, colour-shifted copy of itself
  blended through a soft elliptical mask (a crude face-swap boundary);
* audio artifact: the speech is low-passed and resynthesised from its STFT magnitude with
  random phase (a crude vocoder).

These prove the pipeline, not real-world accuracy: a model trained on them detects these
artifacts and nothing else.
"""

from __future__ import annotations

import csv
import functools
import wave as wavlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Mouth centre and half-width in the head patch (fractions), from MTCNN's mouth-corner landmarks.
_MOUTH = (0.49, 0.62, 0.11)
# Face box of the astronaut's face in skimage.data.astronaut() (x1, y1, x2, y2), found by MTCNN.
_ASTRONAUT_HEAD = (140, 10, 310, 225)
_INNER_FACE = (0.44, 0.50, 0.21, 0.23)  # centre x, centre y, semi-axes, as fractions of the head patch

CATEGORIES = {"RVRA": (0, 0), "FVRA": (1, 0), "RVFA": (0, 1), "FVFA": (1, 1)}
"""FakeAVCeleb-style categories: (video_label, audio_label)."""


@dataclass
class FixtureSpec:
    """One synthetic clip. Artifact strengths are in [0, 1]; 0 means real."""

    seed: int = 0
    duration: float = 2.0
    width: int = 160
    height: int = 160
    fps: float = 10
    face: bool = True
    audio: bool = True
    vision_artifact: float = 0.0
    audio_artifact: float = 0.0
    rotation: int = 0
    sample_rate: int = 16000
    lip_sync: bool = False
    """Draw a mouth that opens with the loudness of the clip's speech (for audio-visual sync tests)."""


@functools.lru_cache(maxsize=1)
def head_patch() -> np.ndarray:
    """The astronaut's head, RGB uint8 [H, W, 3]."""
    from skimage import data

    x1, y1, x2, y2 = _ASTRONAUT_HEAD
    return np.ascontiguousarray(data.astronaut()[y1:y2, x1:x2])


def _ellipse_mask(h: int, w: int, cx: float, cy: float, ax: float, ay: float, soft: float = 0.25) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx * w) / (ax * w)) ** 2 + ((yy - cy * h) / (ay * h)) ** 2)
    return np.clip((1.0 + soft - r) / soft, 0.0, 1.0)


def inner_face_mask(h: int, w: int) -> np.ndarray:
    """Soft mask [h, w] in [0, 1] of the region the vision artifact replaces, in head-patch coordinates."""
    cx, cy, ax, ay = _INNER_FACE
    return _ellipse_mask(h, w, cx, cy, ax, ay * 1.3)


def vision_artifact(patch: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Blend a blocky, colour-shifted copy of the inner face into ``patch`` (uint8 RGB)."""
    import cv2

    if strength <= 0:
        return patch
    h, w = patch.shape[:2]
    f = int(rng.integers(3, 6))
    small = cv2.resize(patch, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    blocky = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    shift = rng.uniform(12, 28) * rng.choice([-1.0, 1.0], size=3)
    fake = np.clip(blocky + shift, 0, 255)
    alpha = strength * inner_face_mask(h, w)[..., None]
    return np.clip(patch * (1 - alpha) + fake * alpha, 0, 255).astype(np.uint8)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    c1, c2 = rng.uniform(30, 220, size=(2, 3))
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    bg = c1 * (1 - t) + c2 * t + rng.normal(0, 6, size=(h, w, 3))
    return np.clip(bg, 0, 255).astype(np.float32) * np.ones((1, w, 1), np.float32)


def render_frames(spec: FixtureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [N, H, W, 3] and the head box per frame [N, 4] (x1, y1, x2, y2; NaN without a face)."""
    import cv2

    rng = np.random.default_rng(spec.seed)
    n = max(1, int(round(spec.duration * spec.fps)))
    h, w = spec.height, spec.width
    bg = _background(h, w, rng)
    head = head_patch()
    head_flipped = rng.random() < 0.5
    if head_flipped:
        head = head[:, ::-1]
    gain, bias = rng.uniform(0.8, 1.15), rng.uniform(-20, 20)
    head = np.clip(head.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    head = vision_artifact(head, spec.vision_artifact, rng)
    scale = rng.uniform(0.55, 0.75) * h / head.shape[0]
    hh, hw = int(head.shape[0] * scale), int(head.shape[1] * scale)
    head = cv2.resize(head, (hw, hh), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = _ellipse_mask(hh, hw, 0.5, 0.5, 0.5, 0.5, soft=0.15)[..., None]
    phase = rng.uniform(0, 2 * np.pi, size=2)
    amp = rng.uniform(0.03, 0.1, size=2) * np.array([w, h])
    flipped = bool(head_flipped)
    opening = mouth_opening(make_audio(spec), spec.sample_rate, n, spec.fps) if spec.lip_sync and spec.audio else None
    frames = np.empty((n, h, w, 3), np.uint8)
    boxes = np.full((n, 4), np.nan)
    for i in range(n):
        t = i / spec.fps
        cx = w / 2 + amp[0] * np.sin(2 * np.pi * 0.4 * t + phase[0])
        cy = h / 2 + amp[1] * np.sin(2 * np.pi * 0.3 * t + phase[1])
        frame = bg.copy()
        if spec.face:
            x1, y1 = int(round(cx - hw / 2)), int(round(cy - hh / 2))
            xa, ya, xb, yb = max(x1, 0), max(y1, 0), min(x1 + hw, w), min(y1 + hh, h)
            sub = (slice(ya - y1, yb - y1), slice(xa - x1, xb - x1))
            a = alpha[sub]
            frame[ya:yb, xa:xb] = frame[ya:yb, xa:xb] * (1 - a) + head[sub] * a
            boxes[i] = (x1, y1, x1 + hw, y1 + hh)
            if opening is not None:
                mx = x1 + (1 - _MOUTH[0] if flipped else _MOUTH[0]) * hw
                my = y1 + _MOUTH[1] * hh
                axes = (max(1, int(round(_MOUTH[2] * hw))), max(1, int(round((0.01 + 0.06 * opening[i]) * hh))))
                cv2.ellipse(
                    frame, (int(round(mx)), int(round(my))), axes, 0, 0, 360, (60.0, 25.0, 25.0), -1, cv2.LINE_AA
                )
        frames[i] = np.clip(frame + rng.normal(0, 2, size=frame.shape), 0, 255).astype(np.uint8)
    return frames, boxes


def mouth_opening(wave: np.ndarray, sr: int, n_frames: int, fps: float) -> np.ndarray:
    """Mouth opening in [0, 1] per video frame from the speech loudness around that frame."""
    hop = sr / fps
    rms = np.array([np.sqrt(np.mean(wave[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n_frames)])
    return np.clip(rms / (np.percentile(rms, 95) + 1e-9), 0, 1)


# Vowel formants (Hz): a, e, i, o, u, schwa.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240], [500, 1500, 2500]]
)


def synth_speech(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like audio: voiced syllables with formants, fricative bursts, pauses. float32 [T] in [-1, 1]."""
    n = int(round(duration * sr))
    out = np.zeros(n, np.float32)
    f0_base = rng.uniform(95, 210)
    t = 0.05 + rng.uniform(0, 0.1)
    while t < duration - 0.1:
        syl = rng.uniform(0.12, 0.3)
        a, b = int(t * sr), min(n, int((t + syl) * sr))
        m = b - a
        if m <= 0:
            break
        tt = np.arange(m) / sr
        f0 = (
            f0_base
            * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * tt + rng.uniform(0, 6)))
            * (1 - 0.05 * t / duration)
        )
        phase = 2 * np.pi * np.cumsum(f0) / sr
        formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.1)
        seg = np.zeros(m, np.float64)
        # Harmonics up to 7 kHz with a -3 dB/octave tilt: real voices have energy well above 4 kHz.
        for k in range(1, int(7000 / f0_base)):
            fk = k * f0_base
            gain = (sum(1.0 / (1.0 + ((fk - F) / (60 + 0.08 * F)) ** 2) for F in formants) + 0.02) / k**0.5
            seg += gain * np.sin(k * phase)
        # Aspiration: a little broadband breath noise in every syllable.
        seg += np.diff(rng.normal(0, 1, m + 1)) * 0.01
        env = np.sin(np.pi * np.arange(m) / m) ** 0.7
        seg *= env
        if rng.random() < 0.4:  # a fricative onset: high-band noise
            fl = min(m, int(rng.uniform(0.03, 0.08) * sr))
            noise = np.diff(rng.normal(0, 1, fl + 1)) * 0.15 * np.hanning(fl)
            seg[:fl] += noise
        out[a:b] += seg.astype(np.float32)
        t += syl + (rng.uniform(0.2, 0.4) if rng.random() < 0.15 else rng.uniform(0.03, 0.12))
    out += rng.normal(0, 1e-3, n).astype(np.float32)
    return (0.5 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def audio_artifact(wave: np.ndarray, strength: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Vocoder-like resynthesis: low-pass at 3.5-5 kHz, then STFT magnitude with random phase."""
    import torch

    if strength <= 0:
        return wave
    x = torch.from_numpy(wave.astype(np.float32))
    n_fft, hop = 512, 128
    win = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=win, return_complex=True)
    freqs = torch.linspace(0, sr / 2, spec.shape[0])
    cutoff = float(rng.uniform(3500, 5000))
    mag = spec.abs() * (freqs < cutoff).float()[:, None]
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    ph = torch.rand(spec.shape, generator=gen) * 2 * torch.pi
    y = torch.istft(torch.polar(mag, ph), n_fft, hop, window=win, length=x.shape[0]).numpy()
    y *= np.abs(wave).max() / (np.abs(y).max() + 1e-9)
    return ((1 - strength) * wave + strength * y).astype(np.float32)


def make_audio(spec: FixtureSpec) -> np.ndarray:
    """The clip's waveform (float32 [T] at ``spec.sample_rate``), with its artifact applied."""
    rng = np.random.default_rng(spec.seed + 7919)
    wave = synth_speech(spec.duration, spec.sample_rate, rng)
    return audio_artifact(wave, spec.audio_artifact, rng, spec.sample_rate)


def write_mp4(
    path: str | Path,
    frames: np.ndarray | None,
    fps: float,
    audio: np.ndarray | None,
    sr: int = 16000,
    rotation: int = 0,
    keyframe_interval: int | None = None,
) -> Path:
    """Write H.264 video (yuv420p) and/or AAC mono audio to ``path``.

    ``keyframe_interval``: frames between keyframes (x264's default when None).

    ``frames`` are upright. With ``rotation`` (degrees counter-clockwise), they are stored turned
    the other way plus a display matrix, as phones do, so a correct reader shows them upright.
    """
    import av

    path = Path(path)
    if frames is not None and rotation:
        frames = np.stack([np.rot90(f, k=-int(rotation // 90)) for f in frames])
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        vs = as_ = None
        if frames is not None:
            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
            from fractions import Fraction

            opts = {"crf": "20", "preset": "veryfast"}
            if keyframe_interval:
                opts["x264-params"] = f"keyint={keyframe_interval}:min-keyint={keyframe_interval}:scenecut=0"
            vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options=opts)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            if rotation:
                vs.set_display_rotation(rotation)
        if audio is not None:
            as_ = out.add_stream("aac", rate=sr, layout="mono")
            as_.bit_rate = 64000
        if vs is not None:
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
                vf.pts = i
                for p in vs.encode(vf):
                    out.mux(p)
            for p in vs.encode(None):
                out.mux(p)
        if as_ is not None:
            step = 1024
            for i in range(0, len(audio), step):
                chunk = np.ascontiguousarray(audio[None, i : i + step], dtype=np.float32)
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate = sr
                af.pts = i
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode(None):
                out.mux(p)
    return path


def write_wav(path: str | Path, audio: np.ndarray, sr: int = 16000) -> Path:
    """16-bit PCM mono WAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wavlib.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sr)
        fh.writeframes(pcm.tobytes())
    return path


def make_clip(path: str | Path, spec: FixtureSpec) -> Path:
    """Render ``spec`` to an MP4 at ``path``."""
    frames, _ = render_frames(spec)
    audio = make_audio(spec) if spec.audio else None
    return write_mp4(path, frames, spec.fps, audio, spec.sample_rate, spec.rotation)


def make_dataset(
    out_dir: str | Path,
    per_category: dict[str, int] | None = None,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    strength: tuple[float, float] = (0.7, 1.0),
    **spec_kwargs: object,
) -> Path:
    """Write a labelled fixture set and its manifest; returns the manifest path.

    ``splits`` maps split name -> clips per category (default train 12, valid 6, test 6), so
    every split holds all four FakeAVCeleb-style categories. Each clip is its own group. Frame
    sizes vary per clip (128-208 px a side) unless ``width``/``height`` are given, so a model
    cannot tell real from fake by resolution or sharpness alone.
    """
    out_dir = Path(out_dir)
    splits = splits or {"train": 12, "valid": 6, "test": 6}
    rows = []
    k = 0
    for split, count in splits.items():
        for cat, (vl, al) in CATEGORIES.items():
            for j in range(count if per_category is None else per_category.get(cat, count)):
                rng = np.random.default_rng([seed, k])
                size = {"width": int(rng.integers(64, 105)) * 2, "height": int(rng.integers(64, 105)) * 2}
                spec = FixtureSpec(
                    seed=int(rng.integers(2**31)),
                    vision_artifact=float(rng.uniform(*strength)) if vl else 0.0,
                    audio_artifact=float(rng.uniform(*strength)) if al else 0.0,
                    **{**size, **spec_kwargs},  # type: ignore[arg-type]
                )
                name = f"{split}_{cat}_{j:03d}.mp4"
                make_clip(out_dir / name, spec)
                rows.append(
                    {
                        "path": name,
                        "label": int(vl or al),
                        "video_label": vl,
                        "audio_label": al,
                        "split": split,
                        "category": cat,
                        "group": f"clip{k}",
                    }
                )
                k += 1
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def zero_mp4_sample_times(data: bytearray, start: int = 0, end: int | None = None) -> None:
    """Set every sample's time delta (``stts``) and composition offset (``ctts``) of the MP4 bytes ``data`` to 0, in
    place: all frames then carry pts 0, as some broken muxers write them."""
    import struct

    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size < 8:
            return
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            zero_mp4_sample_times(data, i + 8, i + size)
        elif kind in (b"stts", b"ctts"):
            (entries,) = struct.unpack(">I", data[i + 12 : i + 16])
            for k in range(entries):
                off = i + 16 + 8 * k + 4
                data[off : off + 4] = bytes(4)
        i += size


def make_clip_without_timestamps(path: str | Path, spec: FixtureSpec) -> Path:
    """A video-only MP4 of ``spec``'s frames (H.264 without B-frames) whose every frame has pts 0; returns ``path``."""
    import av

    frames, _ = render_frames(spec)
    good = Path(path).with_suffix(".good.mp4")
    with av.open(str(good), "w", format="mp4") as out:
        # No B-frames: the decoder then returns every frame of the damaged copy, each with pts 0.
        vs = out.add_stream("libx264", rate=spec.fps, options={"preset": "veryfast", "x264-params": "bframes=0"})
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        for f in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(vs.encode())
    data = bytearray(good.read_bytes())
    good.unlink()
    zero_mp4_sample_times(data)
    Path(path).write_bytes(bytes(data))
    return Path(path)
