"""Small neural vocoders trained here on real speech, used to make vocoded pseudo-fakes.

Neural text-to-speech and voice conversion end in a neural vocoder, and the vocoder's upsampling
path leaves a fingerprint in the waveform whatever the acoustic model in front of it: transposed
convolutions alias and leave periodic peaks at multiples of the rate they upsample from, pixel
shuffles repeat a per-phase pattern, interpolation smears the top band, inverse-STFT heads leave
frame-rate phase structure (Frank & Schoenherr, "WaveFake", NeurIPS 2021 datasets track; Sun et al.,
"AI-synthesized voice detection using neural vocoder artifacts", CVPR workshops 2023). Real speech
copied through such a vocoder (mel -> waveform "copy synthesis") keeps its words, speaker and
prosody but carries the fingerprint, which is what the detector should learn to see.

The vocoders here need not sound good and are trained for minutes on CPU; their architecture is
the point. Families (:data:`VOCODER_ARCHS`):

* ``hifigan``: HiFi-GAN / MelGAN generator: transposed-convolution upsamplers (8x8x2x2 by default)
  each followed by multi-receptive-field fusion of residual dilated convolutions, leaky ReLU, tanh.
* ``istft``: Vocos / iSTFTNet style: ConvNeXt 1-D blocks at frame rate predict log-magnitude and
  phase of every STFT bin; ``torch.istft`` makes the waveform (no learned upsampling at all).
* ``upsample``: Parallel WaveGAN-like: the mel conditioning is upsampled by fixed interpolation
  (linear by default, or nearest) and box-filter smoothing; a non-causal WaveNet of gated dilated
  convolutions turns noise into the waveform under it (fine structure from shaped noise).
* ``subpixel``: sub-pixel (1-D pixel-shuffle) upsampling: a convolution predicts ``u`` output phases
  per input sample and they are interleaved, each stage followed by a dilated residual stack.

Excitation. A vocoder that only sees the mel spectrogram has to learn to lay down pitch harmonics
with coherent phase; minutes of CPU training do not get there, and such a vocoder buzzes at the frame
rate (every hop repeats the same waveform, so the spectrum becomes a comb at multiples of
sample_rate / hop), a blatant tell no real generator has. With ``excitation="sine"`` (the default)
every family is given a neural-source-filter excitation as well (Wang et al., NSF, 2019; the
NSF-HiFiGAN of RVC / so-vits-svc voice conversion and of DiffSinger): sines at the harmonics of F0,
estimated from the input by YIN, plus noise, injected at every upsampling stage (``hifigan``,
``subpixel``), as the WaveNet input (``upsample``), or as the phase of the iSTFT (``istft``). The
vocoder still regenerates the whole waveform from the mel and F0; the pitch track is all it takes
from the original. ``excitation="none"`` gives the pure mel vocoders.

Training uses only a multi-resolution STFT loss (spectral convergence + log-magnitude L1) and a
log-mel L1 loss; no adversarial term (it would at least double the cost, and the fingerprints of
interest come from the generator's upsampling path, not from the discriminator).

All waveforms are mono float32 numpy arrays [samples] at ``VocoderConfig.sample_rate`` Hz.
Log-mel spectrograms are natural-log magnitudes (power 1), clamped at 1e-5, shape [n_mels, frames],
frame i centred on sample i * hop, frames = samples // hop + 1.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from safetensors.torch import load_file, save_file
from scipy.signal import medfilt, oaconvolve
from torch import nn

__all__ = [
    "VOCODER_ARCHS",
    "TrainReport",
    "Vocoder",
    "VocoderConfig",
    "budget_config",
    "build_generator",
    "estimate_f0",
    "make_mel",
    "match_spectrum",
    "train_vocoder",
]

VOCODER_ARCHS: tuple[str, ...] = ("hifigan", "istft", "upsample", "subpixel")

_WEIGHTS = "vocoder.safetensors"
_CONFIG = "vocoder.json"
_LOG_FLOOR = 1e-5


@dataclass
class VocoderConfig:
    """Architecture, features and training schedule of one vocoder.

    Attributes:
        arch: one of :data:`VOCODER_ARCHS`.
        sample_rate: Hz of the waveforms it reads and writes.
        n_fft: FFT size of the input mel spectrogram (and of the ``istft`` head), samples.
        hop: hop of the mel spectrogram, samples; the product of ``upsample_rates`` must equal it.
        n_mels: mel bands.
        f_min: lowest mel band edge, Hz.
        f_max: highest mel band edge, Hz; ``None`` means sample_rate / 2.
        width: channels of the widest layer (the first; each upsampling stage halves them, floor 4),
            the ConvNeXt width of ``istft``, twice the WaveNet width of ``upsample``.
        upsample_rates: per-stage upsampling factors of the conv archs, applied in order.
        resblock_kernels: kernel sizes of the parallel residual blocks of ``hifigan`` (MRF).
        resblock_dilations: dilations inside each residual block (``hifigan``) or stack (``subpixel``).
        convnext_blocks: ConvNeXt blocks of ``istft``.
        wavenet_layers: gated dilated layers of ``upsample``; dilations cycle 1, 2, 4, ... 2**(wavenet_cycle - 1).
        wavenet_cycle: layers per dilation cycle of ``upsample``.
        interp_mode: "linear" or "nearest": the fixed upsampler of ``upsample``'s conditioning.
        smooth_init: start the learned upsamplers as plain interpolation (every output phase with the
            same weights: linear for transposed convs, nearest for pixel shuffle; Aitken et al. 2017,
            "checkerboard artifact free sub-pixel convolution"). A random start leaves a frame-rate comb
            20-30 dB deep that minutes of training do not remove, far beyond any real vocoder's; from a
            smooth start, the per-phase differences that remain are the ones training put there.
        excitation: "sine" (harmonics of the YIN F0 plus noise, see the module docstring) or "none".
        n_harmonics: separate sine channels in the excitation (F0 and its first overtones below Nyquist).
        pulse: add one channel with the sum of all harmonics below Nyquist (a band-limited pulse train),
            so the network need not invent the upper harmonics itself; without it, minutes-trained
            generators fill the upper band with a frame-rate comb instead.
        sine_amp: amplitude of each sine; the noise is sine_amp / 3 where unvoiced, 0.003 where voiced.
        f0_min: lowest F0 searched, Hz.
        f0_max: highest F0 searched, Hz.
        yin_threshold: YIN's aperiodicity threshold: frames whose best dip is above it are unvoiced.
        steps: optimiser steps.
        batch_size: segments per step.
        lr: peak AdamW learning rate (linear warm-up over 5 % of steps, then cosine decay to 10 %).
        segment_s: (shortest, longest) training segment in seconds; each step draws one length.
        seed: seeds initial weights, segment draws and the excitation noise: the same config and data
            give the same weights and the same resynthesis.
        mel_weight: weight of the log-mel L1 loss against the multi-resolution STFT loss.
        stft_resolutions: (n_fft, hop, win) triples of the multi-resolution STFT loss, samples.
        chunk_frames: mel frames generated at once by :meth:`Vocoder.resynthesize` (bounds memory).
        context_frames: extra frames each side of a chunk, discarded, so chunk seams do not show.
        resynth_peak: :meth:`Vocoder.resynthesize` scales the input to this peak before vocoding and
            scales the output back, so input level does not move the vocoder off its training range.
        match_spectrum: :meth:`Vocoder.resynthesize` equalises its output to the input's long-term
            spectrum (see :func:`match_spectrum`), so broadband dullness or brightness of a briefly
            trained vocoder is not what separates it from real speech; the fine structure stays.
        threads: torch threads while training (restored afterwards); ``None`` leaves them alone.
        max_seconds: stop training early after this many seconds (breaks determinism when it fires).
    """

    arch: str = "hifigan"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    width: int = 128
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[int, ...] = (1, 3, 5)
    convnext_blocks: int = 6
    wavenet_layers: int = 10
    wavenet_cycle: int = 5
    interp_mode: str = "linear"
    smooth_init: bool = True
    excitation: str = "sine"
    n_harmonics: int = 8
    pulse: bool = True
    sine_amp: float = 0.1
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_threshold: float = 0.2
    steps: int = 400
    batch_size: int = 4
    lr: float = 2e-3
    segment_s: tuple[float, float] = (0.5, 1.0)
    seed: int = 0
    mel_weight: float = 1.0
    stft_resolutions: tuple[tuple[int, int, int], ...] = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))
    chunk_frames: int = 256
    context_frames: int = 32
    resynth_peak: float = 0.6
    match_spectrum: bool = False
    threads: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in VOCODER_ARCHS:
            raise ValueError(f"unknown vocoder arch {self.arch!r}; expected one of {VOCODER_ARCHS}")
        if self.arch != "istft" and math.prod(self.upsample_rates) != self.hop:
            raise ValueError(
                f"upsample_rates {self.upsample_rates} multiply to {math.prod(self.upsample_rates)}, not hop {self.hop}"
            )
        if self.interp_mode not in ("linear", "nearest"):
            raise ValueError(f"interp_mode must be 'linear' or 'nearest', not {self.interp_mode!r}")
        if self.excitation not in ("sine", "none"):
            raise ValueError(f"excitation must be 'sine' or 'none', not {self.excitation!r}")

    @property
    def n_excitation(self) -> int:
        """Channels of the excitation the generator reads: harmonics + noise, or noise alone, or none."""
        if self.excitation == "sine":
            return self.n_harmonics + int(self.pulse) + 1
        return 1 if self.arch == "upsample" else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VocoderConfig:
        """Inverse of :meth:`to_json`; unknown keys are an error, missing keys take defaults."""
        raw = json.loads(text)
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown VocoderConfig fields {sorted(unknown)}")
        return cls(**{k: _tuplify(v) for k, v in raw.items()})


def budget_config(arch: str, **overrides: object) -> VocoderConfig:
    """Width and steps that train ``arch`` in about 4-5 CPU-minutes on one thread (measured on a 2-core
    machine: 200-290 s of CPU time per arch at 16 kHz, hop 256, batch 4 x 0.5-1 s), so well under
    5 minutes of wall time on 2 cores. ``overrides`` replace any field (e.g. ``seed``, ``hop``).
    """
    budget = {
        "hifigan": {"width": 128, "steps": 500},
        "istft": {"width": 256, "steps": 3000},
        "upsample": {"width": 48, "steps": 400},
        "subpixel": {"width": 128, "steps": 2800},
    }
    if arch not in budget:
        raise ValueError(f"unknown vocoder arch {arch!r}; expected one of {VOCODER_ARCHS}")
    return VocoderConfig(arch=arch, **{**budget[arch], **overrides})  # type: ignore[arg-type]


def _tuplify(v: object) -> object:
    """JSON lists back to (nested) tuples, as the dataclass declares them."""
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


@dataclass
class TrainReport:
    """What :func:`train_vocoder` did: steps run, wall seconds, and the mean loss over each tenth of the run."""

    steps: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)


# -------------------------------------------------------------------------------------- features


def make_mel(cfg: VocoderConfig) -> torchaudio.transforms.MelSpectrogram:
    """The mel front end: [..., samples] -> magnitude mel [..., n_mels, samples // hop + 1] (centred frames)."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.n_fft,
        hop_length=cfg.hop,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_mels=cfg.n_mels,
        power=1.0,
        center=True,
        pad_mode="reflect",
        norm="slaney",
        mel_scale="slaney",
    )


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.clamp(x, min=_LOG_FLOOR))


def estimate_f0(wave: np.ndarray, cfg: VocoderConfig) -> np.ndarray:
    """YIN fundamental frequency at the mel frame centres.

    Args:
        wave: mono [samples] at ``cfg.sample_rate`` Hz.
        cfg: uses sample_rate, hop, f0_min, f0_max, yin_threshold.

    Returns:
        float64 [samples // hop + 1]: F0 in Hz of the frame centred on sample i * hop, 0 where unvoiced
        (aperiodic, or more than 40 dB below the loudest frame). Memory is bounded: frames are
        processed in blocks.
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    sr, hop = cfg.sample_rate, cfg.hop
    n_frames = len(x) // hop + 1
    tau_max = int(math.ceil(sr / cfg.f0_min))
    tau_min = max(2, int(sr / cfg.f0_max))
    win = tau_max  # integrate over one longest period: enough for YIN, short enough to follow glides
    length = win + tau_max + 1
    n_fft = 1 << int(math.ceil(math.log2(length + win)))
    xp = np.pad(x, (length // 2, length + hop))
    f0 = np.zeros(n_frames)
    energy = np.zeros(n_frames)
    lags = np.arange(1, tau_max + 1)
    block = 2048
    for s in range(0, n_frames, block):
        idx = (np.arange(s, min(n_frames, s + block)) * hop)[:, None] + np.arange(length)[None]
        fr = xp[idx]  # [frames, length], frame i starting length // 2 before its centre
        r = np.fft.irfft(np.fft.rfft(fr, n_fft) * np.conj(np.fft.rfft(fr[:, :win], n_fft)), n_fft)[:, : tau_max + 1]
        cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr**2, axis=1)], axis=1)
        e0 = cs[:, win]
        e_tau = cs[:, win : win + tau_max + 1] - cs[:, : tau_max + 1]
        d = np.maximum(e0[:, None] + e_tau - 2 * r, 0.0)[:, 1:]  # difference function, lags 1..tau_max
        cmnd = d * lags / np.maximum(np.cumsum(d, axis=1), 1e-12)  # cumulative-mean-normalised
        c = cmnd[:, tau_min - 1 :]  # lags tau_min..tau_max
        local_min = np.zeros_like(c, dtype=bool)
        local_min[:, 1:-1] = (c[:, 1:-1] <= c[:, :-2]) & (c[:, 1:-1] <= c[:, 2:])
        cand = local_min & (c < cfg.yin_threshold)
        has = cand.any(axis=1)
        k = np.where(has, np.argmax(cand, axis=1), 0)
        rows = np.arange(len(c))
        # Parabolic interpolation of the dip for sub-sample lag resolution.
        kk = np.clip(k, 1, c.shape[1] - 2)
        a, b, cc = c[rows, kk - 1], c[rows, kk], c[rows, kk + 1]
        den = a - 2 * b + cc
        shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - cc) / np.where(np.abs(den) > 1e-12, den, 1.0), 0.0)
        tau = kk + np.clip(shift, -1, 1) + tau_min
        f0[s : s + len(c)] = np.where(has, sr / tau, 0.0)
        energy[s : s + len(c)] = e0 / win
    f0[energy < max(float(energy.max()) * 1e-4, 1e-10)] = 0.0
    # A 3-frame median drops one-frame octave errors and voicing blips.
    return medfilt(f0, 3) if n_frames >= 3 else f0


def _excitation(cfg: VocoderConfig, f0: torch.Tensor, phase0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """NSF source signal.

    Args:
        f0: [B, frames] Hz (0 = unvoiced), held constant over each hop.
        phase0: [B] float64 radians of the fundamental at the first sample.
        noise: [B, 1, frames * hop] standard Gaussian noise.

    Returns:
        float32 [B, cfg.n_excitation, frames * hop]: sines at k * F0 (k = 1..n_harmonics, silent where
        unvoiced or above Nyquist), then (with ``cfg.pulse``) the sum of all harmonics below Nyquist
        scaled to the RMS of one sine, then the noise channel.
    """
    f = f0.double().repeat_interleave(cfg.hop, dim=-1)  # [B, T]
    phase = phase0.double()[:, None] + 2 * math.pi * torch.cumsum(f / cfg.sample_rate, dim=-1)
    k = torch.arange(1, cfg.n_harmonics + 1, dtype=torch.float64)[None, :, None]
    voiced = (f > 0)[:, None, :]
    zero = torch.zeros((), dtype=torch.float64)
    keep = voiced & (k * f[:, None, :] < cfg.sample_rate / 2)
    parts = [torch.where(keep, torch.sin(k * phase[:, None, :]) * cfg.sine_amp, zero).float()]
    if cfg.pulse:
        # sum_{k=1..K} sin(k p) = sin(K p / 2) sin((K + 1) p / 2) / sin(p / 2), K = harmonics below Nyquist.
        n_harm = torch.clamp(torch.floor(cfg.sample_rate / 2 / torch.clamp(f, min=1.0)), min=1.0)
        half = phase / 2
        den = torch.sin(half)
        safe = den.abs() > 1e-9
        num = torch.sin(n_harm * half) * torch.sin((n_harm + 1) * half)
        total = torch.where(safe, num / torch.where(safe, den, 1.0), zero)
        pulse = torch.where(voiced[:, 0], total * cfg.sine_amp / torch.sqrt(n_harm), zero)
        parts.append(pulse[:, None].float())
    noise_std = torch.where(voiced, torch.tensor(0.003), torch.tensor(cfg.sine_amp / 3))
    parts.append(noise * noise_std.float())
    return torch.cat(parts, dim=1)


# --------------------------------------------------------------------------------------- networks


class _MRFBlock(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, lrelu -> dilated conv -> lrelu -> conv, residual."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations
        )
        self.plain = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.dilated, self.plain):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
        return x


class _DilatedStack(nn.Module):
    """WaveNet-like residual stack without gates: per dilation, lrelu -> dilated conv (kernel 3), residual."""

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, dilation=d, padding=d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, 0.1))
        return x


def _stage_channels(width: int, n_stages: int) -> list[int]:
    """Channels before the first and after every upsampling stage: width, width/2, ... (floor 4)."""
    return [max(4, width >> i) for i in range(n_stages + 1)]


def _source_convs(cfg: VocoderConfig, channels: list[int]) -> nn.ModuleList:
    """NSF-HiFiGAN's noise convs: bring the sample-rate excitation down to each stage's rate and width."""
    convs = nn.ModuleList()
    rates = cfg.upsample_rates
    for i in range(len(rates)):
        s = math.prod(rates[i + 1 :])
        if s > 1:
            k, p = (2 * s, s // 2) if s % 2 == 0 else (s, 0)  # exactly len / s outputs either way
            convs.append(nn.Conv1d(cfg.n_excitation, channels[i + 1], k, stride=s, padding=p))
        else:
            convs.append(nn.Conv1d(cfg.n_excitation, channels[i + 1], 1))
    return convs


@torch.no_grad()
def _linear_interp_init(up: nn.ConvTranspose1d, u: int) -> None:
    """Weights [C_in, C_out, 2u] = (random channel mix) x (triangle kernel): at init the layer is linear
    interpolation by u followed by a channel mix, the same for every output phase."""
    c_in, c_out, k = up.weight.shape
    m = torch.arange(k, dtype=torch.float32)
    tri = 1.0 - (m + 0.5 - k / 2).abs() / u  # the two taps that reach each output sample sum to 1
    mix = torch.randn(c_in, c_out) / math.sqrt(c_in)
    up.weight.copy_(mix[:, :, None] * tri[None, None, :])
    if up.bias is not None:
        up.bias.zero_()


@torch.no_grad()
def _nearest_shuffle_init(conv: nn.Conv1d, u: int) -> None:
    """ICNR: give the u phases of every output channel of a pixel-shuffle conv identical weights, so at
    init the stage is nearest-neighbour upsampling of an ordinary convolution."""
    out = conv.weight.shape[0] // u
    conv.weight.copy_(conv.weight[::u][:out].repeat_interleave(u, dim=0))
    if conv.bias is not None:
        conv.bias.copy_(conv.bias[::u][:out].repeat_interleave(u, dim=0))


class HiFiGANGenerator(nn.Module):
    """Log-mel [B, n_mels, T] (+ excitation [B, E, T * hop]) -> waveform [B, 1, T * hop].

    Transposed-conv upsampling, each stage followed by multi-receptive-field fusion; with an
    excitation it is NSF-HiFiGAN (the source, downsampled, is added after every upsampler).
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        ch = _stage_channels(cfg.width, len(cfg.upsample_rates))
        self.pre = nn.Conv1d(cfg.n_mels, ch[0], 7, padding=3)
        self.ups = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        for i, u in enumerate(cfg.upsample_rates):
            # kernel 2u with this padding makes the output exactly u times longer, odd u included.
            self.ups.append(
                nn.ConvTranspose1d(ch[i], ch[i + 1], 2 * u, stride=u, padding=(u + 1) // 2, output_padding=u % 2)
            )
            self.mrfs.append(
                nn.ModuleList(_MRFBlock(ch[i + 1], k, cfg.resblock_dilations) for k in cfg.resblock_kernels)
            )
        self.sources = _source_convs(cfg, ch) if cfg.n_excitation else None
        self.post = nn.Conv1d(ch[-1], 1, 7, padding=3)
        if cfg.smooth_init:
            for up, u in zip(self.ups, cfg.upsample_rates):
                _linear_interp_init(up, u)

    def forward(self, mel: torch.Tensor, exc: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre(mel)
        for i, (up, mrf) in enumerate(zip(self.ups, self.mrfs)):
            x = up(F.leaky_relu(x, 0.1))
            if self.sources is not None and exc is not None:
                x = x + self.sources[i](exc)[..., : x.shape[-1]]
            x = sum(block(x) for block in mrf) / len(mrf)
        return torch.tanh(self.post(F.leaky_relu(x, 0.01)))


class _ConvNeXtBlock(nn.Module):
    """Depthwise conv (7) -> LayerNorm -> pointwise 3x expansion -> GELU -> pointwise, layer-scaled residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.scale
        return x + y.transpose(1, 2)


class ISTFTGenerator(nn.Module):
    """Log-mel [B, n_mels, T] (+ excitation) -> waveform [B, 1, T * hop] via ConvNeXt at frame rate and iSTFT.

    The head predicts a log-magnitude and a phase per STFT bin and frame. With an excitation, the
    predicted phase is a correction added to the phase of the excitation's own STFT (so harmonics
    arrive with coherent phase, as in source-filter iSTFT vocoders); without, it is the phase itself.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.embed = nn.Conv1d(cfg.n_mels, cfg.width, 7, padding=3)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = nn.ModuleList(_ConvNeXtBlock(cfg.width) for _ in range(cfg.convnext_blocks))
        self.norm_out = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.n_fft + 2)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor, exc: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm_in(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2)  # [B, n_fft + 2, T]
        log_mag, phase = h.chunk(2, dim=1)
        # Clamp before exp: an early large logit would otherwise overflow and poison the step.
        mag = torch.exp(torch.clamp(log_mag, max=6.0))
        frames = mel.shape[-1]
        spec = torch.polar(mag, phase)
        if exc is not None:
            e = torch.stft(exc.sum(1), self.n_fft, self.hop, self.n_fft, self.window, center=True, return_complex=True)
            e = e[..., :frames]
            spec = spec * (e / torch.clamp(e.abs(), min=1e-7))
        wave = torch.istft(spec, self.n_fft, self.hop, self.n_fft, self.window, center=True, length=frames * self.hop)
        return wave.unsqueeze(1)


class SubpixelGenerator(nn.Module):
    """Log-mel [B, n_mels, T] (+ excitation) -> waveform [B, 1, T * hop] by sub-pixel (1-D pixel-shuffle) upsampling.

    Each stage's convolution predicts ``u`` output phases per input sample, interleaved in time, then a
    dilated residual stack follows: the per-phase filters differ, which leaves a period-``u`` pattern.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        ch = _stage_channels(cfg.width, len(cfg.upsample_rates))
        self.rates = tuple(cfg.upsample_rates)
        self.pre = nn.Conv1d(cfg.n_mels, ch[0], 7, padding=3)
        self.maps = nn.ModuleList(nn.Conv1d(ch[i], ch[i + 1] * u, 3, padding=1) for i, u in enumerate(self.rates))
        self.stacks = nn.ModuleList(_DilatedStack(ch[i + 1], cfg.resblock_dilations) for i in range(len(self.rates)))
        self.sources = _source_convs(cfg, ch) if cfg.n_excitation else None
        self.post = nn.Conv1d(ch[-1], 1, 7, padding=3)
        if cfg.smooth_init:
            for conv, u in zip(self.maps, self.rates):
                _nearest_shuffle_init(conv, u)

    def forward(self, mel: torch.Tensor, exc: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre(mel)
        for i, (u, conv, stack) in enumerate(zip(self.rates, self.maps, self.stacks)):
            y = conv(F.leaky_relu(x, 0.1))  # [B, C * u, T]
            b, cu, t = y.shape
            x = y.view(b, cu // u, u, t).permute(0, 1, 3, 2).reshape(b, cu // u, t * u)
            if self.sources is not None and exc is not None:
                x = x + self.sources[i](exc)[..., : x.shape[-1]]
            x = stack(x)
        return torch.tanh(self.post(F.leaky_relu(x, 0.01)))


class UpsampleGenerator(nn.Module):
    """Parallel-WaveGAN-like: log-mel [B, n_mels, T] + excitation [B, E, T * hop] -> waveform [B, 1, T * hop].

    The conditioning is upsampled by fixed interpolation (``cfg.interp_mode``), each stage followed by
    a moving-average smoothing kernel shared by all channels (learned from a box filter), so it
    reaches sample rate smooth and alias-free; a non-causal WaveNet of gated dilated convolutions turns
    the excitation (Gaussian noise, plus the harmonic sines with ``excitation="sine"``) into the
    waveform under that conditioning. No learned upsampler, unlike the other families.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        res = max(8, cfg.width // 2)
        self.rates = tuple(cfg.upsample_rates)
        self.mode = cfg.interp_mode
        self.cond_in = nn.Conv1d(cfg.n_mels, res, 5, padding=2)
        self.smooth = nn.ModuleList()
        for u in self.rates:
            conv = nn.Conv1d(1, 1, 2 * u + 1, padding=u, bias=False)
            nn.init.constant_(conv.weight, 1.0 / (2 * u + 1))
            self.smooth.append(conv)
        self.source_in = nn.Conv1d(cfg.n_excitation, res, 1)
        dilations = [2 ** (i % max(1, cfg.wavenet_cycle)) for i in range(cfg.wavenet_layers)]
        self.dilated = nn.ModuleList(nn.Conv1d(res, 2 * res, 3, dilation=d, padding=d) for d in dilations)
        self.cond = nn.ModuleList(nn.Conv1d(res, 2 * res, 1) for _ in dilations)
        self.out = nn.ModuleList(nn.Conv1d(res, 2 * res, 1) for _ in dilations)
        self.post = nn.Sequential(nn.ReLU(), nn.Conv1d(res, res, 1), nn.ReLU(), nn.Conv1d(res, 1, 1))

    def forward(self, mel: torch.Tensor, exc: torch.Tensor | None = None) -> torch.Tensor:
        if exc is None:
            raise ValueError("the upsample vocoder needs its excitation (noise) input")
        c = self.cond_in(mel)
        kw = {"align_corners": False} if self.mode == "linear" else {}
        for u, smooth in zip(self.rates, self.smooth):
            c = F.interpolate(c, scale_factor=u, mode=self.mode, **kw)
            b, ch, t = c.shape
            c = smooth(c.reshape(b * ch, 1, t)).view(b, ch, t)
        x = self.source_in(exc)
        skip = torch.zeros_like(x)
        for dil, cond, out in zip(self.dilated, self.cond, self.out):
            a, g = (dil(x) + cond(c)).chunk(2, dim=1)
            r, s = out(torch.tanh(a) * torch.sigmoid(g)).chunk(2, dim=1)
            x = (x + r) * math.sqrt(0.5)
            skip = skip + s
        return self.post(skip * math.sqrt(1.0 / len(self.dilated)))


def build_generator(cfg: VocoderConfig) -> nn.Module:
    """The untrained generator of ``cfg.arch``: (log-mel [B, n_mels, T], excitation) -> waveform [B, 1, T * hop]."""
    if cfg.arch == "hifigan":
        return HiFiGANGenerator(cfg)
    if cfg.arch == "istft":
        return ISTFTGenerator(cfg)
    if cfg.arch == "upsample":
        return UpsampleGenerator(cfg)
    if cfg.arch == "subpixel":
        return SubpixelGenerator(cfg)
    raise ValueError(f"unknown vocoder arch {cfg.arch!r}")


# ------------------------------------------------------------------------------------------ losses


class _MultiResSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Yamamoto et al., 2020)."""

    def __init__(self, resolutions: tuple[tuple[int, int, int], ...]) -> None:
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _, win in resolutions:
            self.register_buffer(f"win{n_fft}_{win}", torch.hann_window(win), persistent=False)

    def _mag(self, x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
        s = torch.stft(x, n_fft, hop, win, getattr(self, f"win{n_fft}_{win}"), center=True, return_complex=True)
        # sqrt of a clamped power rather than .abs(): the gradient of |z| at z = 0 is NaN.
        return torch.sqrt(torch.clamp(s.real**2 + s.imag**2, min=1e-9))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            s_hat, s = self._mag(y_hat, n_fft, hop, win), self._mag(y, n_fft, hop, win)
            sc = torch.linalg.norm(s - s_hat) / torch.clamp(torch.linalg.norm(s), min=1e-6)
            total = total + sc + F.l1_loss(torch.log(s_hat), torch.log(s))
        return total / len(self.resolutions)


# ------------------------------------------------------------------------------------------ vocoder


class Vocoder:
    """A trained generator with its mel front end: copy-synthesises real speech into vocoded speech."""

    def __init__(self, cfg: VocoderConfig, generator: nn.Module, report: TrainReport | None = None) -> None:
        self.cfg = cfg
        self.generator = generator.eval()
        self.mel = make_mel(cfg)
        self.report = report if report is not None else TrainReport()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())

    @torch.inference_mode()
    def resynthesize(self, wave: np.ndarray) -> np.ndarray:
        """Copy synthesis: waveform -> log-mel (+ F0) -> this vocoder -> waveform.

        Args:
            wave: mono [samples] at ``cfg.sample_rate`` Hz, nominally in [-1, 1].

        Returns:
            float32 [samples] (same length and alignment), finite, in [-1, 1], at the input's level.
            Deterministic (the excitation's noise and phase are fixed functions of sample position and
            seed). Long inputs are generated ``cfg.chunk_frames`` frames at a time with
            ``cfg.context_frames`` of context on each side, so memory does not grow with the input.
        """
        cfg = self.cfg
        x = np.nan_to_num(np.asarray(wave, dtype=np.float32).reshape(-1))
        n = len(x)
        if n == 0:
            return x.copy()
        peak = float(np.abs(x).max())
        gain = cfg.resynth_peak / peak if peak > 1e-4 else 1.0
        xt = torch.from_numpy(x * gain)
        hop, n_frames = cfg.hop, n // cfg.hop + 1
        f0 = estimate_f0(x, cfg) if cfg.excitation == "sine" else np.zeros(n_frames)
        # Phase of the fundamental at each frame start, so the sines run on seamlessly across chunks.
        cycles = np.concatenate([[0.0], np.cumsum(f0 * hop / cfg.sample_rate)])
        chunk, ctx = max(1, cfg.chunk_frames), max(0, cfg.context_frames)
        out: list[torch.Tensor] = []
        for start in range(0, n_frames, chunk):
            stop = min(n_frames, start + chunk)
            a, b = max(0, start - ctx), min(n_frames, stop + ctx)
            # Frames a..b-1 are the centred frames of samples a*hop .. b*hop; computing the mel of
            # just that span matches the whole-file mel except within n_fft / 2 of its ends,
            # which lie inside the discarded context.
            seg = xt[a * hop : min(n, b * hop)]
            if len(seg) <= cfg.n_fft // 2:  # reflect padding needs more than n_fft / 2 samples
                seg = F.pad(seg, (0, cfg.n_fft // 2 + 1 - len(seg)))
            mel = _log(self.mel(seg))[:, : b - a]
            if mel.shape[-1] < b - a:
                mel = F.pad(mel, (0, b - a - mel.shape[-1]), value=math.log(_LOG_FLOOR))
            exc = None
            if cfg.n_excitation:
                noise = self._noise(a * hop, (b - a) * hop)
                if cfg.excitation == "sine":
                    phase0 = torch.tensor([2 * math.pi * (cycles[a] % 1.0)], dtype=torch.float64)
                    exc = _excitation(cfg, torch.from_numpy(f0[a:b])[None], phase0, noise)
                else:
                    exc = noise
            y = self.generator(mel.unsqueeze(0), exc)[0, 0]
            out.append(y[(start - a) * hop : (stop - a) * hop])
        y = torch.cat(out)[:n].numpy() / gain
        if cfg.match_spectrum:
            y = match_spectrum(y, x, cfg.sample_rate)
        return np.clip(np.nan_to_num(y), -1.0, 1.0).astype(np.float32)

    def _noise(self, start: int, n: int) -> torch.Tensor:
        """Gaussian noise [1, 1, n] for samples start .. start + n: a fixed function of sample position and
        seed, so chunked and whole-file resynthesis agree and the output is reproducible."""
        block = 1 << 14
        first, last = start // block, (start + n - 1) // block
        parts = [
            torch.randn(block, generator=torch.Generator().manual_seed(self.cfg.seed * 100_003 + k))
            for k in range(first, last + 1)
        ]
        offset = start - first * block
        return torch.cat(parts)[offset : offset + n].view(1, 1, n)

    def save(self, directory: str | Path) -> Path:
        """Write ``vocoder.safetensors`` (weights) and ``vocoder.json`` (config) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().clone() for k, v in self.generator.state_dict().items()}
        save_file(state, str(d / _WEIGHTS), metadata={"arch": self.cfg.arch})
        (d / _CONFIG).write_text(self.cfg.to_json())
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Vocoder:
        """Inverse of :meth:`save`."""
        d = Path(directory)
        cfg = VocoderConfig.from_json((d / _CONFIG).read_text())
        gen = build_generator(cfg)
        gen.load_state_dict(load_file(str(d / _WEIGHTS)))
        return cls(cfg, gen)


def _mean_magnitude(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Long-term average magnitude spectrum [n_fft // 2 + 1] (Hann, 75 % overlap), computed in blocks."""
    hop = n_fft // 4
    xp = np.pad(np.asarray(x, dtype=np.float64), (n_fft // 2, n_fft // 2))
    n_frames = max(1, (len(xp) - n_fft) // hop + 1)
    window = np.hanning(n_fft)
    total = np.zeros(n_fft // 2 + 1)
    for s in range(0, n_frames, 1024):
        idx = (np.arange(s, min(n_frames, s + 1024)) * hop)[:, None] + np.arange(n_fft)[None]
        total += np.abs(np.fft.rfft(xp[np.minimum(idx, len(xp) - 1)] * window, axis=1)).sum(0)
    return total / n_frames


def match_spectrum(
    y: np.ndarray, ref: np.ndarray, sample_rate: int, smooth_hz: float = 250.0, max_gain_db: float = 15.0
) -> np.ndarray:
    """Equalise ``y`` so its long-term average spectrum follows ``ref``'s, without delay.

    The gain curve (ratio of average magnitude spectra, clamped to +-``max_gain_db``) is smoothed over
    ``smooth_hz`` so only the broadband balance moves: comb lines, harmonics and other fine structure
    narrower than that are left as the vocoder made them. Applied as a symmetric (zero-phase) FIR
    filter by overlap-add, so memory stays proportional to the input.

    Args:
        y: [samples] to equalise. ref: [samples'] whose spectrum to follow. sample_rate: Hz of both.

    Returns:
        float32 [samples], aligned with ``y``.
    """
    y64 = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y64) < 2 or not np.any(y64) or not np.any(ref):
        return y64.astype(np.float32)
    n_fft = 1024
    gain = _mean_magnitude(ref, n_fft) / np.maximum(_mean_magnitude(y64, n_fft), 1e-12)
    limit = 10 ** (max_gain_db / 20)
    gain = np.clip(gain, 1 / limit, limit)
    width = max(1, int(round(smooth_hz * n_fft / sample_rate)))
    gain = np.convolve(np.pad(gain, (width, width), mode="edge"), np.ones(width) / width, mode="same")[width:-width]
    h0 = np.fft.irfft(gain, n_fft)  # zero-phase impulse response, circular
    taps = np.arange(-(n_fft // 2 - 1), n_fft // 2)
    fir = h0[taps % n_fft] * np.hanning(len(taps) + 2)[1:-1]
    return oaconvolve(y64, fir, mode="same").astype(np.float32)


# ------------------------------------------------------------------------------------------ training


def _draw_batch(cfg: VocoderConfig, waves: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
    """[batch, samples] of random segments, one random length per batch (multiple of hop), random peak level."""
    lo, hi = cfg.segment_s
    n = int(round(rng.uniform(lo, hi) * cfg.sample_rate / cfg.hop)) * cfg.hop
    n = max(cfg.hop * 4, n)
    batch = np.zeros((cfg.batch_size, n), np.float32)
    for i in range(cfg.batch_size):
        w = waves[int(rng.integers(len(waves)))]
        if len(w) > n:
            start = int(rng.integers(0, len(w) - n + 1))
            seg = w[start : start + n]
        else:
            seg = w
        peak = float(np.abs(seg).max()) if len(seg) else 0.0
        # Random level so the vocoder copes with any input loudness (resynthesize also normalises).
        level = rng.uniform(0.2, 0.95)
        batch[i, : len(seg)] = seg * (level / peak) if peak > 1e-4 else seg
    return torch.from_numpy(batch)


def _train_excitation(cfg: VocoderConfig, y: torch.Tensor) -> torch.Tensor | None:
    """Excitation [B, E, frames * hop] for a training batch y [B, samples], random start phase and noise."""
    if not cfg.n_excitation:
        return None
    b, n = y.shape
    frames = n // cfg.hop + 1
    noise = torch.randn(b, 1, frames * cfg.hop)
    if cfg.excitation != "sine":
        return noise
    f0 = torch.from_numpy(np.stack([estimate_f0(seg, cfg) for seg in y.numpy()]))
    phase0 = torch.rand(b, dtype=torch.float64) * 2 * math.pi
    return _excitation(cfg, f0, phase0, noise)


def train_vocoder(cfg: VocoderConfig, waves: list[np.ndarray], progress: bool = False) -> Vocoder:
    """Train a vocoder of ``cfg.arch`` on real speech by copy synthesis.

    Args:
        cfg: architecture and schedule; ``cfg.seed`` fixes weights, segment draws and excitation noise.
        waves: mono float32 waveforms [samples] at ``cfg.sample_rate`` Hz (any lengths; shorter than a
            segment are zero-padded).
        progress: print the loss to stderr about ten times during training.

    Returns:
        The trained :class:`Vocoder` in eval mode; ``vocoder.report`` holds steps, seconds and losses.
        The same config and waves give identical weights on the same machine and thread count
        (unless ``cfg.max_seconds`` cuts training short). The caller's torch RNG state is untouched.
    """
    if not waves:
        raise ValueError("train_vocoder needs at least one waveform")
    waves = [np.nan_to_num(np.asarray(w, dtype=np.float32).reshape(-1)) for w in waves]
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        # A private RNG stream: training must neither depend on nor disturb the caller's torch seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _train(cfg, waves, progress)
    finally:
        torch.set_num_threads(old_threads)


def _train(cfg: VocoderConfig, waves: list[np.ndarray], progress: bool) -> Vocoder:
    rng = np.random.default_rng(cfg.seed)
    gen = build_generator(cfg).train()
    mel_fn = make_mel(cfg)
    stft_loss = _MultiResSTFTLoss(cfg.stft_resolutions)
    opt = torch.optim.AdamW(gen.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=0.0)
    warm = max(1, cfg.steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        t = (step - warm) / max(1, cfg.steps - warm)
        return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))

    report = TrainReport()
    log_every = max(1, cfg.steps // 10)
    t0 = time.perf_counter()
    running, count = 0.0, 0
    for step in range(cfg.steps):
        y = _draw_batch(cfg, waves, rng)
        mel = _log(mel_fn(y))  # [B, n_mels, n / hop + 1]
        y_hat = gen(mel, _train_excitation(cfg, y))[:, 0, : y.shape[-1]]
        loss = stft_loss(y_hat, y) + cfg.mel_weight * F.l1_loss(_log(mel_fn(y_hat)), mel)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), 10.0)
        opt.step()
        running, count = running + loss.item(), count + 1
        report.steps = step + 1
        out_of_time = cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps or out_of_time:
            report.losses.append((step + 1, running / count))
            if progress:
                print(
                    f"[{cfg.arch}] step {step + 1}/{cfg.steps} loss {running / count:.3f} "
                    f"{time.perf_counter() - t0:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
            running, count = 0.0, 0
        if out_of_time:
            break
    report.seconds = time.perf_counter() - t0
    return Vocoder(cfg, gen, report)
