"""Small neural vocoders: every arch trains, resynthesises at the same length, round-trips through disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df.training.pseudofakes.vocoders import (
    VOCODER_ARCHS,
    Vocoder,
    VocoderConfig,
    budget_config,
    build_generator,
    estimate_f0,
    match_spectrum,
    train_vocoder,
)

SR = 16000
LIBRISPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "librispeech" / "train-clean-100"


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Harmonics of a gliding f0 under a syllable-rate envelope, plus breath noise, at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 30))
    x = x * np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None) + 0.05 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def tiny(arch: str, **kw: object) -> VocoderConfig:
    """A config that trains in well under a second: narrow, few steps, short segments."""
    base = dict(
        arch=arch,
        width=16,
        steps=3,
        batch_size=2,
        segment_s=(0.25, 0.3),
        convnext_blocks=2,
        resblock_kernels=(3, 5),
        threads=1,
    )
    base.update(kw)
    return VocoderConfig(**base)


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [speechlike(1.5, seed) for seed in range(4)]


@pytest.mark.parametrize("arch", VOCODER_ARCHS)
def test_arch_trains_resynthesises_and_round_trips(arch: str, waves: list[np.ndarray], tmp_path: Path) -> None:
    voc = train_vocoder(tiny(arch), waves)
    assert voc.report.steps == 3 and all(np.isfinite(loss) for _, loss in voc.report.losses)
    clip = speechlike(1.3, seed=9)[:20_001]  # not a multiple of the hop
    y = voc.resynthesize(clip)
    assert y.shape == clip.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    voc.save(tmp_path / arch)
    assert sorted(p.name for p in (tmp_path / arch).iterdir()) == ["vocoder.json", "vocoder.safetensors"]
    again = Vocoder.load(tmp_path / arch)
    assert again.cfg == voc.cfg
    assert np.array_equal(again.resynthesize(clip), y)


@pytest.mark.parametrize("arch", VOCODER_ARCHS)
def test_chunked_resynthesis_matches_whole(arch: str, waves: list[np.ndarray]) -> None:
    voc = train_vocoder(tiny(arch, steps=1), waves)
    clip = speechlike(1.2, seed=5)
    whole = voc.resynthesize(clip)
    voc.cfg = dataclasses.replace(voc.cfg, chunk_frames=20, context_frames=48)
    chunked = voc.resynthesize(clip)
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() < 1e-3 * max(1e-3, float(np.abs(whole).max())) + 1e-5


@pytest.mark.parametrize("n", [0, 1, 100, 256, 700])
def test_short_and_silent_inputs(n: int, waves: list[np.ndarray]) -> None:
    voc = train_vocoder(tiny("hifigan", steps=1), waves)
    for clip in (np.zeros(n, np.float32), speechlike(0.1, seed=1)[:n]):
        y = voc.resynthesize(clip)
        assert y.shape == (n,) and np.isfinite(y).all()


def test_mel_only_vocoders(waves: list[np.ndarray]) -> None:
    clip = speechlike(0.7, seed=2)
    for arch in VOCODER_ARCHS:
        voc = train_vocoder(tiny(arch, steps=1, excitation="none"), waves)
        y = voc.resynthesize(clip)
        assert y.shape == clip.shape and np.isfinite(y).all(), arch


def test_estimate_f0_tracks_a_tone_and_rejects_noise() -> None:
    cfg = VocoderConfig()
    t = np.arange(SR) / SR
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    f0 = estimate_f0(0.3 * tone, cfg)
    assert f0.shape == (SR // cfg.hop + 1,)
    assert abs(np.median(f0[3:-3]) - 150) < 1.0
    noise = np.random.default_rng(0).standard_normal(SR)
    assert np.mean(estimate_f0(0.1 * noise, cfg) > 0) < 0.1
    assert not estimate_f0(np.zeros(500), cfg).any()


def test_match_spectrum_restores_balance_without_delay() -> None:
    from scipy import signal

    x = np.random.default_rng(0).standard_normal(2 * SR)
    dull = signal.lfilter(*signal.butter(1, 1500, fs=SR), x)  # a muffled copy

    def hf_ratio_db(v: np.ndarray) -> float:
        f, p = signal.welch(v, SR, nperseg=1024)
        return float(10 * np.log10(p[(f > 4000) & (f < 7000)].mean() / p[(f > 200) & (f < 1000)].mean()))

    fixed = match_spectrum(dull, x, SR)
    assert fixed.shape == dull.shape and fixed.dtype == np.float32
    assert abs(hf_ratio_db(fixed) - hf_ratio_db(x)) < 0.5 * abs(hf_ratio_db(dull) - hf_ratio_db(x))
    impulse = np.zeros(3001)
    impulse[1500] = 1.0
    assert int(np.argmax(np.abs(match_spectrum(impulse, x, SR)))) == 1500
    assert not match_spectrum(np.zeros(100), x, SR).any()


def test_resynthesis_with_spectrum_matching(waves: list[np.ndarray]) -> None:
    voc = train_vocoder(tiny("subpixel", steps=1, match_spectrum=True), waves)
    clip = speechlike(0.8, seed=3)
    y = voc.resynthesize(clip)
    assert y.shape == clip.shape and np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_same_seed_same_weights(waves: list[np.ndarray]) -> None:
    a = train_vocoder(tiny("hifigan", seed=3), waves).generator.state_dict()
    b = train_vocoder(tiny("hifigan", seed=3), waves).generator.state_dict()
    c = train_vocoder(tiny("hifigan", seed=4), waves).generator.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_training_leaves_global_rng_alone(waves: list[np.ndarray]) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_vocoder(tiny("istft"), waves)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch", ["hifigan", "subpixel"])
def test_smooth_init_has_no_phase_pattern(arch: str) -> None:
    """At init a learned upsampler must not modulate its output phases differently (no checkerboard)."""
    cfg = tiny(arch, excitation="none", upsample_rates=(4, 4, 4, 4))
    gen = build_generator(cfg)
    with torch.no_grad():
        x = gen.pre(torch.zeros(1, cfg.n_mels, 6))  # a constant input sequence
        first = gen.ups[0] if arch == "hifigan" else gen.maps[0]
        y = first(x)
        if arch == "subpixel":
            y = y.view(1, -1, 4, 6).permute(0, 1, 3, 2).reshape(1, -1, 24)
    interior = y[..., 4:-4]
    assert torch.allclose(interior, interior[..., :1].expand_as(interior), atol=1e-5)


def test_budget_configs_are_valid() -> None:
    for arch in VOCODER_ARCHS:
        cfg = budget_config(arch, seed=7)
        assert cfg.arch == arch and cfg.seed == 7 and cfg.steps > 0
    with pytest.raises(ValueError):
        budget_config("wavenet")


def test_config_json_round_trip_and_validation() -> None:
    cfg = VocoderConfig(arch="subpixel", upsample_rates=(4, 4, 4, 4), stft_resolutions=((512, 128, 512),))
    assert VocoderConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        VocoderConfig(arch="wavenet")
    with pytest.raises(ValueError):
        VocoderConfig(arch="hifigan", upsample_rates=(8, 8, 2))


def test_learns_something_on_librispeech() -> None:
    """A few dozen steps on real speech already lower the loss and start to follow the spectrogram."""
    files = sorted(LIBRISPEECH.glob("*.flac"))[:4]
    if not files:
        pytest.skip(f"LibriSpeech sample not found at {LIBRISPEECH}")
    import av

    def load(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(audio=0)]
        x = np.concatenate(frames)
        return x / 32768.0 if np.abs(x).max() > 2 else x  # FLAC decodes to 16-bit integers

    speech = [load(f) for f in files]
    voc = train_vocoder(tiny("istft", width=64, steps=60, lr=3e-3, batch_size=4), speech[:3])
    first, last = voc.report.losses[0][1], voc.report.losses[-1][1]
    assert last < 0.95 * first
    clip = speech[3][: 3 * SR]
    y = voc.resynthesize(clip)
    assert y.shape == clip.shape and np.isfinite(y).all()
    mel_in = np.log(voc.mel(torch.from_numpy(clip)).numpy() + 1e-5)
    mel_out = np.log(voc.mel(torch.from_numpy(y)).numpy() + 1e-5)
    # Weak on purpose: 60 steps only start to follow the spectrogram (a full run reaches > 0.9).
    assert np.corrcoef(mel_in.ravel(), mel_out.ravel())[0, 1] > 0.3
