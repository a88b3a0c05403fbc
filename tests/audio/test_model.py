from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_df.audio.model import AudioModel, create_audio_model
from multimodal_df.config import AudioConfig, Wav2VecConfig, load_config
from multimodal_df.errors import CheckpointError

TINY = load_config("tiny")


def with_w2v(**kw: object) -> AudioConfig:
    return dataclasses.replace(TINY.audio, wav2vec=dataclasses.replace(TINY.audio.wav2vec, **kw))


@pytest.mark.parametrize("use_mel, use_w2v", [(True, True), (True, False), (False, True)])
def test_audio_model_variants(use_mel: bool, use_w2v: bool) -> None:
    cfg = dataclasses.replace(with_w2v(enabled=use_w2v), use_mel=use_mel)
    m = create_audio_model(cfg).eval()
    emb, logit = m(torch.randn(3, m.window_samples) * 0.1)
    assert emb.shape == (3, cfg.embed_dim) and logit.shape == (3,)
    assert (m.logmel is not None) == use_mel and (m.wav2vec is not None) == use_w2v


def test_model_describes_itself_and_rebuilds_without_a_hub() -> None:
    m = create_audio_model(TINY.audio).eval()
    args = m.config()
    assert isinstance(args.wav2vec, dict) and args.wav2vec["hidden_size"] == TINY.audio.wav2vec.hidden_size
    again = AudioModel.from_config(args).eval()
    again.load_state_dict(m.state_dict())
    x = torch.randn(2, m.window_samples) * 0.1
    assert torch.allclose(m(x)[1], again(x)[1])


def test_wav2vec_layer_choice_and_freezing() -> None:
    with pytest.raises(ValueError, match="hidden states"):
        create_audio_model(with_w2v(layer=7))
    frozen = create_audio_model(with_w2v(freeze=True, layer=1))
    assert not any(p.requires_grad for p in frozen.wav2vec.encoder.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())
    frozen.train()
    assert not frozen.wav2vec.encoder.training  # dropout and SpecAugment stay off when frozen


def test_wav2vec_from_a_local_pretrained_directory(tmp_path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from multimodal_df.audio.model import wav2vec_hf_config

    src = Wav2Vec2Model(Wav2Vec2Config.from_dict(wav2vec_hf_config(TINY.audio.wav2vec)))
    src.save_pretrained(tmp_path / "w2v")
    m = create_audio_model(
        dataclasses.replace(
            TINY.audio, wav2vec=Wav2VecConfig(enabled=True, pretrained=str(tmp_path / "w2v"), freeze=True)
        )
    )
    for (k, a), (_, b) in zip(src.state_dict().items(), m.wav2vec.encoder.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="cannot load wav2vec 2.0 weights"):
        create_audio_model(
            dataclasses.replace(TINY.audio, wav2vec=Wav2VecConfig(enabled=True, pretrained=str(tmp_path / "nowhere")))
        )


def test_window_framing_covers_the_tail() -> None:
    from multimodal_df.audio.features import frame_windows, num_windows

    wave = np.arange(16000 * 3 + 500, dtype=np.float32)
    w, starts = frame_windows(wave, 16000, 1.0, 0.5)
    assert w.shape[1] == 16000 and starts[0] == 0 and w[-1, -1] == wave[-1]
    assert len(w) == num_windows(wave.size, 16000, 1.0, 0.5)
    short, _ = frame_windows(np.ones(8000, np.float32), 16000, 1.0, 0.5)
    assert short.shape == (1, 16000) and short[0, 8000:].max() == 0


def test_trim_silence_cuts_only_the_edges() -> None:
    from multimodal_df.audio.features import trim_silence

    sr = 16000
    speech = (np.sin(np.arange(sr) * 0.05) * 0.5).astype(np.float32)
    wave = np.concatenate([np.zeros(sr // 2, np.float32), speech, np.zeros(sr // 4, np.float32)])
    out = trim_silence(wave, sr)
    assert abs(len(out) - sr) <= 2 * int(0.02 * sr)
    assert np.abs(out[:320]).max() > 0.01 and np.abs(out[-320:]).max() > 0.01
    silent = np.zeros(sr, np.float32)
    assert len(trim_silence(silent, sr)) == sr


def _tilted(x: torch.Tensor) -> torch.Tensor:
    # A fixed first-order filter: the spectral tilt of another microphone or room, the same over the whole window.
    return torch.cat([x[:, :1], x[:, 1:] - 0.9 * x[:, :-1]], dim=1)


def test_band_normalisation_removes_a_fixed_channel_tilt_that_global_keeps() -> None:
    from multimodal_df.audio.model import LogMel

    g = torch.Generator().manual_seed(0)
    t = torch.arange(32000) / 16000
    # A voiced-like signal: harmonics with a slow pitch glide plus a little noise, 2 s at 16 kHz.
    x = sum(torch.sin(2 * torch.pi * k * (120 + 20 * t) * t) / k for k in range(1, 30)).unsqueeze(0)
    x = x + 0.01 * torch.randn(1, 32000, generator=g)
    shift = {}
    for norm in ("global", "band"):
        lm = LogMel(norm=norm)
        a, b = lm(x), lm(_tilted(x))
        shift[norm] = float((a - b).abs().mean())
        if norm == "band":
            assert float(a.mean(dim=2).abs().max()) < 1e-4  # every band centred over the window
    assert shift["band"] < 0.5 * shift["global"], shift
    with pytest.raises(ValueError):
        LogMel(norm="per-speaker")


def test_a_linear_front_end_resolves_the_upper_band_that_mel_lumps_together() -> None:
    from multimodal_df.audio.model import LogMel

    # Two tones 150 Hz apart near 7 kHz: the mel bands there are several hundred Hz wide, the linear ones 125 Hz.
    t = torch.arange(32000) / 16000
    peaks = {}
    for scale in ("mel", "linear"):
        lm = LogMel(scale=scale)
        centres = (lm.mel.mel_scale.fb * torch.arange(201)[:, None]).sum(0) / lm.mel.mel_scale.fb.sum(0) * 40.0
        if scale == "linear":
            gaps = centres.diff()
            assert float(gaps.max() - gaps.min()) < 1.0  # evenly spaced, in Hz
        peaks[scale] = {
            f: int(lm(torch.sin(2 * torch.pi * f * t).unsqueeze(0))[0].mean(dim=1).argmax()) for f in (6900.0, 7050.0)
        }
    assert peaks["mel"][6900.0] == peaks["mel"][7050.0], peaks
    assert peaks["linear"][6900.0] != peaks["linear"][7050.0], peaks
    with pytest.raises(ValueError):
        LogMel(scale="bark")


@pytest.mark.parametrize(("norm", "scale"), [("global", "mel"), ("band", "mel"), ("global", "linear")])
def test_onnx_log_mel_matches_torchaudio_for_each_normalisation(norm: str, scale: str) -> None:
    from multimodal_df.audio.model import LogMel
    from multimodal_df.pipeline.onnx_runtime import dft_logmel

    lm = LogMel(norm=norm, scale=scale)
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    assert torch.allclose(lm(x), dft_logmel(lm)(x), atol=1e-3)


def test_a_checkpoint_with_an_unknown_mel_norm_is_refused() -> None:
    from multimodal_df.pipeline.schema import _check_audio

    args = create_audio_model(TINY.audio).config()
    _check_audio(dataclasses.replace(args, mel_norm="band"), "audio.args")
    with pytest.raises(CheckpointError, match="mel_norm"):
        _check_audio(dataclasses.replace(args, mel_norm="cmvn"), "audio.args")
    _check_audio(dataclasses.replace(args, frequency_scale="linear"), "audio.args")
    with pytest.raises(CheckpointError, match="frequency_scale"):
        _check_audio(dataclasses.replace(args, frequency_scale="bark"), "audio.args")


def test_a_linear_front_end_is_rebuilt_from_the_model_description() -> None:
    model = create_audio_model(dataclasses.replace(TINY.audio, frequency_scale="linear"))
    assert model.config().frequency_scale == "linear"
    rebuilt = AudioModel(model.config())  # what loading a checkpoint builds before its weights go in
    assert torch.equal(rebuilt.logmel.mel.mel_scale.fb, model.logmel.mel.mel_scale.fb)
    assert not torch.equal(create_audio_model(TINY.audio).logmel.mel.mel_scale.fb, model.logmel.mel.mel_scale.fb)


def test_band_pooling_keeps_the_frequency_rows_apart_and_is_rebuilt_from_the_description() -> None:
    from multimodal_df.pipeline.schema import _check_audio

    cfg = dataclasses.replace(TINY.audio, mel_pool="band")
    model = create_audio_model(cfg).eval()
    args = model.config()
    assert args.mel_pool == "band"
    bands = args.n_mels // 2 ** len(args.mel_channels)
    assert model.mel_cnn.out_dim == 2 * args.mel_channels[-1] * bands
    x = torch.randn(3, model.window_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    emb, logit = model(x)
    assert emb.shape == (3, args.embed_dim) and logit.shape == (3,)
    rebuilt = AudioModel(args)  # what loading a checkpoint builds before its weights go in
    rebuilt.load_state_dict(model.state_dict())
    assert torch.allclose(rebuilt.eval()(x)[1], logit)
    _check_audio(args, "audio.args")
    with pytest.raises(CheckpointError, match="mel_pool"):
        _check_audio(dataclasses.replace(args, mel_pool="attention"), "audio.args")
    with pytest.raises(ValueError, match="n_mels"):
        create_audio_model(dataclasses.replace(cfg, n_mels=4))
