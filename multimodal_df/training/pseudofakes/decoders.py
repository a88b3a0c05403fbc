"""Generator-like decoders: small convolutional autoencoders whose reconstructions of real faces serve as
"generated-face" pseudo-fakes.

An image that has passed through a generator's decoder carries the decoder's upsampling fingerprint
(AEROBLADE, Ricker et al., CVPR 2024; NPR, Tan et al., CVPR 2024; DRCT, Chen et al., ICML 2024). We cannot
ship GAN or diffusion generators, so we train tiny ones here, on real faces only: an encoder squeezes a face
into a latent map at 1/``latent_stride`` resolution with ``latent_channels`` channels (like the VAE of
Stable Diffusion: 1/8 and 4 channels) and a decoder must synthesise the lost detail back through its own
upsampling layers. The reconstruction of a real face is then a "generated" face with the same content.

Decoder families, by how they upsample (``DECODER_ARCHS``; ``DECODER_FAMILIES`` groups them so that one
family can be held out in an evaluation):

* ``tconv``: transposed convolutions, 4x4 stride 2 (DCGAN / pix2pix style; checkerboard artefacts).
* ``nearest``: nearest-neighbour x2 then 3x3 convolution (the Stable Diffusion VAE decoder's upsampler).
* ``bilinear``: bilinear x2 then 3x3 convolution (close to StyleGAN2's filtered upsampling).
* ``pixelshuffle``: 3x3 convolution to 4x channels then pixel shuffle (sub-pixel convolution, ESPCN).

Everything here runs on CPU in minutes and needs only torch, numpy, cv2 and safetensors.

Typical use::

    dec = train_decoder(DecoderConfig(arch="nearest", seed=1), real_crops)   # list of uint8 [H, W, 3]
    fakes = dec.reconstruct(crops_224)                                      # uint8 [N, 224, 224, 3]
    fakes = decoder_pseudofakes(dec, crops_224, rng, ReconstructionMix(partial_prob=0.3))
    dec.save("decoders/nearest"); FaceDecoder.load("decoders/nearest")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

DECODER_ARCHS: tuple[str, ...] = ("tconv", "nearest", "bilinear", "pixelshuffle")
"""Upsampling layers a decoder can be built from."""

DECODER_FAMILIES: dict[str, str] = {
    "tconv": "transposed",
    "nearest": "interpolate",
    "bilinear": "interpolate",
    "pixelshuffle": "subpixel",
}
"""Arch -> family. ``nearest`` and ``bilinear`` are one family: hold out both together."""

_FORMAT = "multimodal_df.face_decoder/1"
_WEIGHTS = "decoder.safetensors"
_META = "decoder.json"


@dataclass
class DecoderConfig:
    """How to build and train one decoder. Sizes in pixels, ``lr`` per Adam step.

    Training draws random ``size`` x ``size`` squares from the given images after a random rescale in
    ``scale_range`` (relative to the smallest scale at which the square fits), so the decoder sees faces at
    several pixel densities. The compute per step grows with ``batch * size**2 * width**2``.
    """

    arch: str = "nearest"
    """One of ``DECODER_ARCHS``."""
    size: int = 128
    """Side of the training squares, px; a multiple of ``latent_stride``."""
    latent_channels: int = 8
    """Channels of the latent map."""
    latent_stride: int = 8
    """Downsampling factor of the latent map: a power of two, 2..32."""
    width: int = 16
    """Channels at full resolution; doubled at every halving up to ``max_width``."""
    max_width: int = 64
    """Cap on channels at the coarse levels."""
    steps: int = 1200
    """Adam steps."""
    lr: float = 2e-3
    """Peak learning rate; cosine-decayed to 5 % over ``steps`` after a short warm-up."""
    batch: int = 8
    """Squares per step."""
    seed: int = 0
    """Seeds the initial weights and the sampling of squares: same seed, data and threads -> same weights."""
    grad_weight: float = 1.0
    """Weight of the L1 loss on horizontal / vertical pixel differences (keeps edges and fine texture)."""
    freq_weight: float = 0.0
    """Weight of the L1 loss on log-amplitude spectra (pushes high-frequency energy towards the real one)."""
    gan_weight: float = 0.0
    """Weight of a hinge loss from a tiny patch discriminator; 0 disables it (and its cost, about +40 %)."""
    gan_start: float = 0.5
    """Fraction of ``steps`` after which the adversarial term starts, so it refines a working autoencoder."""
    scale_range: tuple[float, float] = (1.0, 2.0)
    """Random rescale of each source image before cutting a square, as a multiple of the minimum scale."""
    threads: int | None = None
    """torch CPU threads while training (None: leave as is). Results are reproducible for a fixed value."""
    max_seconds: float | None = None
    """Stop early after this many seconds of training. Hitting it makes the weights depend on machine speed."""

    def __post_init__(self) -> None:
        if self.arch not in DECODER_ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {DECODER_ARCHS}")
        if self.latent_stride < 2 or self.latent_stride > 32 or self.latent_stride & (self.latent_stride - 1):
            raise ValueError(f"latent_stride must be a power of two in 2..32, got {self.latent_stride}")
        if self.size % self.latent_stride:
            raise ValueError(f"size {self.size} must be a multiple of latent_stride {self.latent_stride}")
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def _up(arch: str, c_in: int, c_out: int) -> nn.Module:
    """x2 upsampling layer of the given family, [B, c_in, H, W] -> [B, c_out, 2H, 2W]."""
    if arch == "tconv":
        return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    if arch in ("nearest", "bilinear"):
        return nn.Sequential(nn.Upsample(scale_factor=2, mode=arch), nn.Conv2d(c_in, c_out, 3, padding=1))
    if arch == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2))
    raise ValueError(arch)


class _AutoEncoder(nn.Module):
    """Images in [-1, 1], [B, 3, H, W] with H, W multiples of the stride -> reconstruction, same shape."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        levels = int(math.log2(cfg.latent_stride))
        ch = [min(cfg.width * 2**i, cfg.max_width) for i in range(levels + 1)]
        enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1), _act()]
        for i in range(levels):
            enc += [nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1), _act()]
            enc += [nn.Conv2d(ch[i + 1], ch[i + 1], 3, padding=1), _act()]
        enc += [nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1), _act()]
        for i in range(levels, 0, -1):
            dec += [_up(cfg.arch, ch[i], ch[i - 1]), _act()]
            dec += [nn.Conv2d(ch[i - 1], ch[i - 1], 3, padding=1), _act()]
        dec += [nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self._init()

    def _init(self) -> None:
        # PyTorch's default init shrinks activations by about 3x per layer; through ~15 plain layers the net
        # starts as a constant and spends hundreds of steps escaping it. He init for LeakyReLU keeps the scale.
        gain = nn.init.calculate_gain("leaky_relu", 0.2)
        convs = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        for m in convs:
            if isinstance(m, nn.ConvTranspose2d):
                # weight [in, out, k, k]; with stride s each output pixel sees in * (k / s)^2 taps.
                fan_in = m.in_channels * (m.kernel_size[0] // m.stride[0]) * (m.kernel_size[1] // m.stride[1])
            else:
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            # The latent projection and the RGB output are linear: no activation gain there.
            g = 1.0 if m in (self.encoder[-1], self.decoder[-1]) else gain
            nn.init.normal_(m.weight, 0.0, g / math.sqrt(fan_in))
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _PatchCritic(nn.Module):
    """Tiny patch discriminator: [B, 3, H, W] in [-1, 1] -> realness logits [B, 1, H/4, W/4]."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            _act(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            _act(),
            nn.Conv2d(2 * width, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3], rounded and clipped."""
    y = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dxa, dxb = a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]
    dya, dyb = a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]
    return (dxa - dxb).abs().mean() + (dya - dyb).abs().mean()


def _freq_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    fa = torch.log1p(torch.fft.rfft2(a, norm="ortho").abs())
    fb = torch.log1p(torch.fft.rfft2(b, norm="ortho").abs())
    return (fa - fb).abs().mean()


def _sample_squares(
    images: list[np.ndarray], n: int, size: int, scale_range: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` squares (uint8 [n, size, size, 3]) from randomly rescaled, flipped images."""
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        s = size / min(h, w) * rng.uniform(*scale_range)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        if (nh, nw) != (h, w):
            # Area averaging to shrink: a decoder must not learn to undo aliasing from the data pipeline.
            interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
            img = cv2.resize(img, (nw, nh), interpolation=interp)
        y, x = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
        sq = img[y : y + size, x : x + size]
        out[k] = sq[:, ::-1] if rng.random() < 0.5 else sq
    return out


@dataclass
class TrainingLog:
    """What training did: wall-clock seconds, steps run, and the mean loss and PSNR (dB) of the last 10 %."""

    seconds: float = 0.0
    steps: int = 0
    final_loss: float = float("nan")
    final_psnr_db: float = float("nan")
    losses: list[float] = field(default_factory=list)
    """Total training loss every step."""


class FaceDecoder:
    """A trained autoencoder. ``reconstruct`` turns real crops into same-size "generated" ones."""

    def __init__(self, cfg: DecoderConfig, model: nn.Module | None = None, log: TrainingLog | None = None) -> None:
        self.cfg = cfg
        self.model = (model or _AutoEncoder(cfg)).eval()
        self.log = log or TrainingLog()

    @torch.no_grad()
    def reconstruct(self, crops: np.ndarray, chunk: int = 8) -> np.ndarray:
        """Reconstruct images at their own resolution.

        ``crops``: uint8 [N, H, W, 3] (RGB; square crops in practice, any size >= 1 px). Returns uint8
        [N, H, W, 3]. The network is fully convolutional, so nothing is resized or tiled: each image is
        reflect-padded up to a multiple of ``latent_stride`` (at least one latent cell), reconstructed whole
        and cropped back, so the decoder's fingerprint sits at the crop's own pixel grid. Memory grows with
        H * W * width: about 0.3 GB for a chunk of 8 images of 512 px at the default width (about 1 s per
        512 px image on one CPU core; 25-50 ms per 224 px crop).
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 [N, H, W, 3], got {crops.dtype} {crops.shape}")
        n, h, w = crops.shape[:3]
        st = self.cfg.latent_stride
        ph, pw = (-h) % st, (-w) % st
        out = np.empty_like(crops)
        for i in range(0, n, chunk):
            x = _to_tensor(crops[i : i + chunk])
            if ph or pw:
                # Reflect padding needs pad < size; tiny inputs fall back to replicate.
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = F.pad(x, [0, pw, 0, ph], mode=mode)
            out[i : i + chunk] = _to_uint8(self.model(x)[..., :h, :w])
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``decoder.safetensors`` (weights) and ``decoder.json`` (config, training log) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(d / _WEIGHTS), metadata={"format": _FORMAT})
        log = asdict(self.log)
        log.pop("losses")  # the per-step curve is for diagnostics, not worth storing next to the weights
        meta = {"format": _FORMAT, "config": asdict(self.cfg), "log": log}
        (d / _META).write_text(json.dumps(meta, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> FaceDecoder:
        """Read a decoder written by :meth:`save`."""
        d = Path(directory)
        meta = json.loads((d / _META).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{d / _META}: unknown format {meta.get('format')!r}")
        names = {f.name for f in fields(DecoderConfig)}
        cfg = DecoderConfig(**{k: v for k, v in meta["config"].items() if k in names})
        model = _AutoEncoder(cfg)
        model.load_state_dict(load_file(str(d / _WEIGHTS)))
        log = TrainingLog(
            **{k: v for k, v in meta.get("log", {}).items() if k in {f.name for f in fields(TrainingLog)}}
        )
        return cls(cfg, model, log)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of one shape (peak 255), over all pixels."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def train_decoder(cfg: DecoderConfig, images: list[np.ndarray], progress: bool = False) -> FaceDecoder:
    """Train one autoencoder on real images.

    ``images``: uint8 RGB [H, W, 3] arrays of any sizes (face crops; smaller than ``cfg.size`` are enlarged).
    Loss: L1 + ``grad_weight`` * L1 of pixel differences + ``freq_weight`` * L1 of log spectra
    (+ ``gan_weight`` * hinge loss of a patch critic). Deterministic for a given config, data and thread count.
    Cost at the defaults on one idle CPU core: about 0.14 s per step, under 3 minutes for the 1,200 steps
    (measured 4.5-5 minutes on a shared, busy 2-core machine); reconstruction PSNR on held-out people's 224 px
    crops is about 29-29.5 dB for every arch (about 31 dB with ``latent_stride=4, latent_channels=4``).
    """
    if not images:
        raise ValueError("no training images")
    for im in images:
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected uint8 [H, W, 3] images, got {im.dtype} {im.shape}")
    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    log = TrainingLog()
    try:
        # A private RNG stream: seeding must not disturb (or depend on) the caller's global torch state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _AutoEncoder(cfg)
            critic = _PatchCritic() if cfg.gan_weight > 0 else None
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
            opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.99)) if critic else None
            warm = max(1, cfg.steps // 20)

            def lr_at(step: int) -> float:
                if step < warm:
                    return cfg.lr * (step + 1) / warm
                t = (step - warm) / max(1, cfg.steps - warm)
                return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

            t0 = time.perf_counter()
            model.train()
            psnrs: list[float] = []
            for step in range(cfg.steps):
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                x = _to_tensor(_sample_squares(images, cfg.batch, cfg.size, cfg.scale_range, rng))
                y = model(x)
                loss = (y - x).abs().mean()
                if cfg.grad_weight:
                    loss = loss + cfg.grad_weight * _grad_l1(y, x)
                if cfg.freq_weight:
                    loss = loss + cfg.freq_weight * _freq_l1(y, x)
                use_gan = critic is not None and step >= int(cfg.gan_start * cfg.steps)
                if use_gan:
                    loss = loss - cfg.gan_weight * critic(y).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if use_gan:
                    # Hinge loss for the critic on the detached reconstruction.
                    d_loss = F.relu(1 - critic(x)).mean() + F.relu(1 + critic(y.detach())).mean()
                    opt_c.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_c.step()
                log.losses.append(float(loss.detach()))
                mse = float(((y.detach().clamp(-1, 1) - x) ** 2).mean()) / 4  # [-1, 1] -> [0, 1] units
                psnrs.append(10 * math.log10(1 / max(mse, 1e-12)))
                if progress and (step % 50 == 0 or step == cfg.steps - 1):
                    print(
                        f"[{cfg.arch} seed {cfg.seed}] step {step}/{cfg.steps} loss {float(loss):.4f} "
                        f"psnr {psnrs[-1]:.2f} dB {time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
                if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                    break
            log.seconds = time.perf_counter() - t0
            log.steps = len(log.losses)
            tail = max(1, log.steps // 10)
            log.final_loss = float(np.mean(log.losses[-tail:]))
            log.final_psnr_db = float(np.mean(psnrs[-tail:]))
    finally:
        torch.set_num_threads(prev_threads)
    return FaceDecoder(cfg, model.eval(), log)


def soft_face_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft ellipse mask float32 [size, size] in [0, 1] over the face of a centred square face crop.

    The product's crops are the detector box enlarged by 30 %, so the face fills roughly the central 75 %;
    the ellipse's axes, centre and feathering are jittered so the blend boundary differs from sample to sample.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    cx, cy = 0.5 + rng.uniform(-0.04, 0.04), 0.53 + rng.uniform(-0.04, 0.04)
    ax, ay = rng.uniform(0.26, 0.36), rng.uniform(0.33, 0.43)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    feather = rng.uniform(0.1, 0.35)
    return np.clip((1 + feather - r) / (2 * feather), 0, 1).astype(np.float32)


def match_colour(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` uint8 [H, W, 3] with each channel's mean and standard deviation set to ``reference``'s.

    Small decoders drift in colour (adversarially trained ones most); a classifier would learn the tint.
    """
    x = image.astype(np.float32)
    ref = reference.astype(np.float32)
    mx, sx = x.mean((0, 1)), x.std((0, 1)) + 1e-3
    mr, sr = ref.mean((0, 1)), ref.std((0, 1))
    return np.clip((x - mx) / sx * sr + mr + 0.5, 0, 255).astype(np.uint8)


def match_spectrum(image: np.ndarray, reference: np.ndarray, max_gain: float = 4.0) -> np.ndarray:
    """``image`` uint8 [H, W, 3] with its radially averaged power spectrum rescaled to ``reference``'s.

    An L1-trained autoencoder is smoother than the photo it reconstructs, and "less high-frequency energy"
    is the easiest cue a classifier can find (it also fires on soft, low-resolution real video). Matching the
    power in each frequency ring (per channel; gain capped at ``max_gain``) removes that cue while keeping the
    decoder's phase structure and any off-axis peaks within a ring (checkerboards, grid lines).
    """
    h, w = image.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    ring = np.minimum((np.sqrt(fy**2 + fx**2) * max(h, w)).astype(np.int64), max(h, w))
    n_rings = int(ring.max()) + 1
    counts = np.bincount(ring.ravel(), minlength=n_rings).astype(np.float64) + 1e-9
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        x = image[..., c].astype(np.float64)
        r = reference[..., c].astype(np.float64)
        fx_img, fr = np.fft.rfft2(x - x.mean()), np.fft.rfft2(r - r.mean())
        px = np.bincount(ring.ravel(), (np.abs(fx_img) ** 2).ravel(), n_rings) / counts
        pr = np.bincount(ring.ravel(), (np.abs(fr) ** 2).ravel(), n_rings) / counts
        gain = np.clip(np.sqrt(pr / (px + 1e-6)), 0.0, max_gain)
        gain[0] = 1.0
        out[..., c] = np.fft.irfft2(fx_img * gain[ring], s=(h, w)) + x.mean()
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass
class ReconstructionMix:
    """How a reconstruction becomes a pseudo-fake (all draws per image).

    ``strength`` is the weight of the reconstruction in ``w * recon + (1 - w) * original``; with probability
    ``partial_prob`` that blend is further limited to a soft face ellipse (a generated face pasted into a
    real frame, like talking-head and inpainting pipelines). ``work_scale`` reconstructs at a random multiple
    of the crop's size and resizes back, so the fingerprint lands at a different pixel pitch (> 1 mimics a
    high-resolution generator whose output is downscaled to the crop, as with 512-1024 px generated faces).
    """

    strength: tuple[float, float] = (1.0, 1.0)
    partial_prob: float = 0.0
    work_scale: tuple[float, float] = (1.0, 1.0)
    colour_match: bool = False
    """Give the reconstruction the original's per-channel mean and spread (see :func:`match_colour`)."""
    spectrum_prob: float = 0.0
    """Probability of giving the reconstruction the original's radial power spectrum (:func:`match_spectrum`)."""


def decoder_pseudofakes(
    decoder: FaceDecoder, crops: np.ndarray, rng: np.random.Generator, mix: ReconstructionMix | None = None
) -> np.ndarray:
    """Pseudo-fakes from real crops: uint8 [N, S, S, 3] -> uint8 [N, S, S, 3], one reconstruction per image.

    Same ``rng`` state, decoder and crops -> same output.
    """
    mix = mix or ReconstructionMix()
    crops = np.asarray(crops)
    n, s = crops.shape[0], crops.shape[1]
    scales = rng.uniform(mix.work_scale[0], mix.work_scale[1], size=n)
    native = np.abs(scales - 1.0) <= 1e-3
    recs = np.empty_like(crops)
    if native.any():
        recs[native] = decoder.reconstruct(crops[native])  # one batched pass for the common case
    for i in np.flatnonzero(~native):
        ws = max(decoder.cfg.latent_stride, int(round(s * scales[i])))
        interp = cv2.INTER_AREA if ws < s else cv2.INTER_LINEAR
        rec = decoder.reconstruct(cv2.resize(crops[i], (ws, ws), interpolation=interp)[None])[0]
        recs[i] = cv2.resize(rec, (s, s), interpolation=cv2.INTER_AREA if ws > s else cv2.INTER_LINEAR)
    out = np.empty_like(crops)
    for i in range(n):
        img, rec = crops[i], recs[i]
        if mix.colour_match:
            rec = match_colour(rec, img)
        if rng.random() < mix.spectrum_prob:
            rec = match_spectrum(rec, img)
        w = np.float32(rng.uniform(*mix.strength))
        alpha = np.full((s, s), w, np.float32)
        if rng.random() < mix.partial_prob:
            alpha *= soft_face_mask(s, rng)
        a = alpha[..., None]
        out[i] = np.clip(a * rec + (1 - a) * img + 0.5, 0, 255).astype(np.uint8)
    return out
