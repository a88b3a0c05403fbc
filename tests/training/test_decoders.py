"""Generator-like decoders for "generated-face" pseudo-fakes: training, reconstruction, save/load, determinism.

Tiny configs and a few steps keep the whole file to seconds on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df.training.pseudofakes.decoders import (
    DECODER_ARCHS,
    DECODER_FAMILIES,
    DecoderConfig,
    FaceDecoder,
    ReconstructionMix,
    decoder_pseudofakes,
    match_colour,
    match_spectrum,
    psnr_db,
    soft_face_mask,
    train_decoder,
)

FACE_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "face_photos"


def tiny(arch: str, seed: int = 0, **kw: object) -> DecoderConfig:
    base = dict(
        arch=arch,
        size=32,
        latent_channels=4,
        latent_stride=4,
        width=4,
        max_width=8,
        steps=3,
        batch=2,
        seed=seed,
        threads=1,
    )
    base.update(kw)
    return DecoderConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Smooth synthetic 'faces' of assorted sizes (uint8 RGB), some smaller than the training square."""
    rng = np.random.default_rng(0)
    out = []
    for side in (24, 40, 57, 64):
        yy, xx = np.mgrid[0:side, 0:side] / side
        base = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(3)], -1)
        img = 127 + 90 * base + rng.normal(0, 8, base.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _weights(dec: FaceDecoder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in dec.model.state_dict().items()}


def test_archs_and_families_agree() -> None:
    assert set(DECODER_FAMILIES) == set(DECODER_ARCHS)
    assert len(set(DECODER_FAMILIES.values())) >= 3  # one family can be held out of training


@pytest.mark.parametrize("arch", DECODER_ARCHS)
def test_each_arch_trains_and_reconstructs_any_size(arch: str, images: list[np.ndarray]) -> None:
    dec = train_decoder(tiny(arch), images)
    assert dec.log.steps == 3 and np.isfinite(dec.log.final_loss) and dec.log.seconds > 0
    for side in (32, 37, 5):  # a multiple of the stride, an odd size, and one below a latent cell
        crops = np.random.default_rng(side).integers(0, 256, (3, side, side, 3), dtype=np.uint8)
        out = dec.reconstruct(crops)
        assert out.shape == crops.shape and out.dtype == np.uint8
    # Non-square input works as well: the network is fully convolutional.
    assert dec.reconstruct(np.zeros((1, 20, 44, 3), np.uint8)).shape == (1, 20, 44, 3)


def test_save_load_gives_identical_output(images: list[np.ndarray], tmp_path: Path) -> None:
    dec = train_decoder(tiny("pixelshuffle", seed=3), images)
    crops = np.stack([img[:24, :24] for img in images])
    dec.save(tmp_path / "dec")
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["decoder.json", "decoder.safetensors"]
    back = FaceDecoder.load(tmp_path / "dec")
    assert back.cfg == dec.cfg
    assert back.log.steps == dec.log.steps
    np.testing.assert_array_equal(back.reconstruct(crops), dec.reconstruct(crops))


def test_same_seed_same_weights_other_seed_differs(images: list[np.ndarray]) -> None:
    torch.manual_seed(123)
    a = _weights(train_decoder(tiny("tconv", seed=5), images))
    global_after = torch.rand(1)
    torch.manual_seed(999)  # the caller's global RNG state must not matter
    b = _weights(train_decoder(tiny("tconv", seed=5), images))
    c = _weights(train_decoder(tiny("tconv", seed=6), images))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), global_after)  # and training did not consume it either


def test_training_improves_reconstruction(images: list[np.ndarray]) -> None:
    cfg = tiny("nearest", steps=60, lr=3e-3, width=8, max_width=16)
    crops = np.stack([img[:40, :40] for img in images[1:]])
    before = psnr_db(FaceDecoder(cfg).reconstruct(crops), crops)
    dec = train_decoder(cfg, images)
    assert np.mean(dec.log.losses[-10:]) < np.mean(dec.log.losses[:5])
    assert psnr_db(dec.reconstruct(crops), crops) > before + 3.0


def test_optional_loss_terms_run(images: list[np.ndarray]) -> None:
    dec = train_decoder(tiny("bilinear", steps=4, freq_weight=0.1, gan_weight=0.05, gan_start=0.5), images)
    assert dec.log.steps == 4 and np.isfinite(dec.log.final_loss)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DecoderConfig(arch="upconv")
    with pytest.raises(ValueError):
        DecoderConfig(latent_stride=6, size=96)
    with pytest.raises(ValueError):
        DecoderConfig(latent_stride=8, size=100)
    with pytest.raises(ValueError):
        train_decoder(tiny("nearest"), [])
    dec = FaceDecoder(tiny("nearest"))
    with pytest.raises(ValueError):
        dec.reconstruct(np.zeros((2, 8, 8, 3), np.float32))


def test_pseudofakes_mix(images: list[np.ndarray]) -> None:
    dec = train_decoder(tiny("nearest"), images)
    crops = np.stack([img[:40, :40] for img in images[1:]])
    full = decoder_pseudofakes(dec, crops, np.random.default_rng(0))
    np.testing.assert_array_equal(full, dec.reconstruct(crops))  # the default mix is the plain reconstruction
    none = decoder_pseudofakes(dec, crops, np.random.default_rng(0), ReconstructionMix(strength=(0.0, 0.0)))
    np.testing.assert_array_equal(none, crops)
    mix = ReconstructionMix(
        strength=(0.5, 1.0), partial_prob=1.0, work_scale=(0.5, 2.0), colour_match=True, spectrum_prob=0.5
    )
    a = decoder_pseudofakes(dec, crops, np.random.default_rng(1), mix)
    b = decoder_pseudofakes(dec, crops, np.random.default_rng(1), mix)
    assert a.shape == crops.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    # Partial blends keep the corners (outside the face ellipse) as they were.
    np.testing.assert_array_equal(a[:, 0, 0], crops[:, 0, 0])


def test_colour_and_spectrum_matching(images: list[np.ndarray]) -> None:
    import cv2

    ref = images[3]
    tinted = np.clip(ref.astype(np.int16) * [1, 0.8, 1] + [20, 0, -10], 0, 255).astype(np.uint8)
    fixed = match_colour(tinted, ref)
    assert fixed.dtype == np.uint8 and fixed.shape == ref.shape
    np.testing.assert_allclose(fixed.mean((0, 1)), ref.mean((0, 1)), atol=1.5)
    assert np.abs(match_spectrum(ref, ref).astype(int) - ref).max() <= 1  # matching to itself changes nothing

    def highs(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())

    # A mild blur (high frequencies at about half strength): within the gain cap of the matching.
    blurred = cv2.addWeighted(ref, 0.5, cv2.GaussianBlur(ref, (0, 0), 1.0), 0.5, 0)
    sharpened = match_spectrum(blurred, ref)
    assert sharpened.shape == ref.shape and sharpened.dtype == np.uint8
    assert abs(highs(sharpened) - highs(ref)) < 0.5 * abs(highs(blurred) - highs(ref))


def test_training_reconstructions_can_take_their_sources_fine_detail(images: list[np.ndarray]) -> None:
    """train.decoder_spectrum_prob: a smooth decoder's fakes, matched, get back much of their source's fine detail;
    at 0 the training fakes are exactly what they were before the option existed (same draws, same pixels)."""
    import cv2

    from multimodal_df.config import load_config
    from multimodal_df.errors import ConfigError
    from multimodal_df.training.branches import DECODER_MIX, decoder_fakes

    class BlurringDecoder:
        """Stands in for a small L1-trained decoder: its reconstructions are its inputs with the fine detail at about
        half strength (within the matching's gain cap, as the recipe's decoders are)."""

        cfg = tiny("nearest")

        def reconstruct(self, batch: np.ndarray) -> np.ndarray:
            return np.stack([cv2.addWeighted(x, 0.5, cv2.GaussianBlur(x, (0, 0), 1.0), 0.5, 0) for x in batch])

    dec = BlurringDecoder()
    crops = np.stack([img[:40, :40] for img in images[1:]] * 4)  # 12 crops: the mix's draws average out

    def highs(batch: np.ndarray) -> float:
        return float(np.abs(np.diff(batch.astype(np.float32), axis=2)).mean())

    plain = decoder_fakes(dec, crops, np.random.default_rng(3))
    before = decoder_pseudofakes(dec, crops, np.random.default_rng(3), ReconstructionMix(**DECODER_MIX))
    np.testing.assert_array_equal(plain, before)
    matched = decoder_fakes(dec, crops, np.random.default_rng(3), spectrum_prob=1.0)
    assert matched.shape == crops.shape and matched.dtype == np.uint8
    # Reconstructions made below the crop's pitch (work_scale < 1) lose their top band for good, and partial blends keep
    # the source outside the face, so matching closes part of the gap, not all of it.
    assert highs(plain) < highs(matched) < highs(crops) + 0.5
    assert highs(matched) - highs(plain) > 0.1 * (highs(crops) - highs(plain)), (highs(plain), highs(matched))
    with pytest.raises(ConfigError, match="decoder_spectrum_prob"):
        load_config("tiny", {"train.decoder_spectrum_prob": -0.1})


def test_soft_face_mask_and_psnr() -> None:
    m = soft_face_mask(64, np.random.default_rng(0))
    assert m.shape == (64, 64) and m.dtype == np.float32
    assert m[32, 32] == 1.0 and m[0, 0] == 0.0
    x = np.full((2, 8, 8, 3), 100, np.uint8)
    assert psnr_db(x, x) == float("inf")
    assert psnr_db(x, x + 1) == pytest.approx(48.13, abs=0.01)


def test_trains_on_real_face_photos(tmp_path: Path) -> None:
    if not FACE_PHOTOS.is_dir():
        pytest.skip(f"real face photos not found at {FACE_PHOTOS}")
    import cv2

    paths = sorted(FACE_PHOTOS.glob("utkface/*.jpg"))[:8]
    if not paths:
        pytest.skip(f"no utkface/*.jpg under {FACE_PHOTOS}")
    imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    cfg = tiny("tconv", size=64, steps=2)
    dec = train_decoder(cfg, imgs)
    out = dec.reconstruct(np.stack(imgs[:2]))
    assert out.shape == (2, *imgs[0].shape) and out.dtype == np.uint8
    dec.save(tmp_path / "real")
    assert FaceDecoder.load(tmp_path / "real").cfg == replace(cfg)
