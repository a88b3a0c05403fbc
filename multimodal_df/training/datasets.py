"""Training datasets: face crops (with pseudo-fakes blended on the fly) and speech windows."""

from __future__ import annotations

import numpy as np
import torch

from ..audio.features import window_starts
from .augment import augment_speech, degrade, rawboost, soften
from .pseudofakes.channel import degrade_channel
from .pseudofakes.faces import cross_blend, self_blend
from .pseudofakes.speech import griffin_lim_resynth, is_copy_synthesis, partial_fake, rms, window


class CropDataset(torch.utils.data.Dataset):
    """Face crops with labels.

    Augmentation: flip, small shift, brightness/contrast, and, on both classes alike, JPEG
    re-compression and down/up-scaling, so compression blocks and blur (everyday in real
    uploads) are not learned as signs of manipulation.
    """

    def __init__(
        self,
        items: list[tuple[np.ndarray, int, np.ndarray | None, int]],
        augment: bool,
        seed: int,
        degrade_prob: float = 0.3,
        cross_blend_prob: float = 0.0,
        soft_real_prob: float = 0.0,
    ) -> None:
        """``items``: (crop, label, landmarks, clip id). Landmarks (crop pixels, [5, 2]) mark a pseudo-fake:
        the crop is blended anew each time it is drawn (with a copy of itself, or with probability
        ``cross_blend_prob`` with a face from another clip) and the label is fake."""
        self.items, self.augment, self.degrade_prob, self.cross_blend_prob = (
            items,
            augment,
            degrade_prob,
            cross_blend_prob,
        )
        self.soft_real_prob = soft_real_prob
        self.rng = np.random.default_rng(seed)
        self.donors = [k for k, it in enumerate(items) if it[2] is not None]

    def __len__(self) -> int:
        return len(self.items)

    def _donor(self, clip: int) -> tuple[np.ndarray, np.ndarray] | None:
        for _ in range(8):
            crop, _, lm, other = self.items[self.donors[int(self.rng.integers(len(self.donors)))]]
            if other != clip and lm is not None:
                return np.asarray(crop), lm
        return None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        crop, label, blend_lm, clip = self.items[i]
        crop = np.asarray(crop)
        if blend_lm is not None:
            donor = (
                self._donor(clip) if self.cross_blend_prob > 0 and self.rng.random() < self.cross_blend_prob else None
            )
            crop = (
                cross_blend(crop, blend_lm, *donor, self.rng).image
                if donor
                else self_blend(crop, blend_lm, self.rng).image
            )
        if (
            self.soft_real_prob > 0
            and self.augment
            and label == 0
            and blend_lm is None
            and self.rng.random() < self.soft_real_prob
        ):
            # A real face made as soft as a decoder's reconstruction: softness alone must not point to fake.
            crop = soften(crop, self.rng)
        if self.augment and self.degrade_prob > 0:
            crop = degrade(crop, self.rng, self.degrade_prob, self.degrade_prob)
        x = crop.astype(np.float32) / 255.0
        if self.augment:
            rng = self.rng
            if rng.random() < 0.5:
                x = x[:, ::-1]
            s = x.shape[0]
            pad = max(1, s // 16)
            dx, dy = rng.integers(-pad, pad + 1, size=2)
            x = np.roll(x, (int(dy), int(dx)), axis=(0, 1))
            x = np.clip((x - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.05, 0.05), 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.tensor(float(label))


class WindowDataset(torch.utils.data.Dataset):
    """Audio windows with labels; training jitters each window's start and gain."""

    def __init__(self, waves: list[tuple[np.ndarray, int]], length: int, hop: int, augment: bool, seed: int) -> None:
        self.length, self.augment = length, augment
        self.rng = np.random.default_rng(seed)
        self.waves = waves
        self.index = []
        for w_idx, (w, _) in enumerate(waves):
            # The windows inference scores (end-aligned last window included), so training sees the same cuts.
            self.index.extend((w_idx, start) for start in window_starts(len(w), length, hop))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        w_idx, start = self.index[i]
        wave, label = self.waves[w_idx]
        jitter = self.augment and len(wave) > self.length
        x = window(wave, self.length, None if jitter else start, self.rng)
        if self.augment:
            x = x * self.rng.uniform(0.5, 1.5)
        return torch.from_numpy(np.clip(x, -1, 1)), torch.tensor(float(label))


class SpeechPseudoFakes(torch.utils.data.Dataset):
    """Real speech windows (label 0) and as many pseudo-fake windows (label 1), for real-only training.

    A fake window comes from a generator drawn at random each time: ``griffin_lim`` resynthesises a
    random real window on the fly; the others (slow: vocoder analysis, TTS processes) are drawn from
    ``banks``, fakes made once per real utterance. Both classes get the same augmentation (gain,
    band-limiting, light noise; with ``channel_prob`` a random recording channel: codec, telephone band,
    reverberation, noise, resampling; with ``rawboost_prob`` a RawBoost device distortion), so recording conditions
    cannot tell them apart. ``real_channel_prob`` (None: ``channel_prob``) sets the channel chance of real windows
    alone. With ``partial_prob`` a fake from a copy-synthesis generator is spliced into its own real source
    (``sources[k]`` is the real audio ``banks[g][k]`` was made from): only a stretch or a band of it is resynthesised
    (:func:`~.pseudofakes.speech.partial_fake`).
    """

    def __init__(
        self,
        reals: list[np.ndarray],
        banks: dict[str, list[np.ndarray]],
        generators: list[str],
        length: int,
        windows_per_utterance: int,
        augment: bool,
        seed: int,
        sample_rate: int,
        channel_prob: float = 0.0,
        rawboost_prob: float = 0.0,
        real_channel_prob: float | None = None,
        partial_prob: float = 0.0,
        sources: list[np.ndarray] | None = None,
    ) -> None:
        if partial_prob > 0 and sources is None:
            raise ValueError("partial_prob needs the real sources the banks were made from")
        self.reals, self.banks, self.generators = reals, banks, generators
        self.partial_prob, self.sources = partial_prob, sources
        self.channel_prob, self.rawboost_prob = channel_prob, rawboost_prob
        self.real_channel_prob = channel_prob if real_channel_prob is None else real_channel_prob
        self.length, self.augment, self.sr = length, augment, sample_rate
        self.rng = np.random.default_rng(seed)
        self.index: list[tuple[int, int, int]] = []
        for u, w in enumerate(reals):
            # Evenly spaced starts (used as they are without augmentation; redrawn at random with it).
            starts = np.linspace(0, max(0, len(w) - length), windows_per_utterance).astype(int)
            self.index.extend((0, u, int(s)) for s in starts)
        self.index.extend([(1, -1, -1)] * len(self.index))

    def __len__(self) -> int:
        return len(self.index)

    def _partial(self, g: str, rng: np.random.Generator) -> np.ndarray:
        """A window of real source speech with part of it replaced by ``g``'s resynthesis of the same samples."""
        assert self.sources is not None
        k = int(rng.integers(len(self.sources)))
        src = self.sources[k]
        start = int(rng.integers(0, max(1, len(src) - self.length + 1)))
        real = window(src, self.length, start, rng)
        if g == "griffin_lim":
            fake = griffin_lim_resynth(real, self.sr, rng)
        else:
            fake = window(self.banks[g][k], self.length, start, rng)
        return partial_fake(real, fake, self.sr, rng)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        label, u, start = self.index[i]
        rng = self.rng
        if label == 0:
            x = window(self.reals[u], self.length, None if self.augment else start, rng)
        else:
            g = self.generators[int(rng.integers(len(self.generators)))]
            # Tested before drawing, so that with partial fakes off the random stream (and the training) is unchanged.
            if self.partial_prob > 0 and is_copy_synthesis(g) and rng.random() < self.partial_prob:
                x = self._partial(g, rng)
            elif g == "griffin_lim":
                src = window(self.reals[int(rng.integers(len(self.reals)))], self.length, None, rng)
                x = griffin_lim_resynth(src, self.sr, rng)
                x *= rms(src) / rms(x)
            else:
                bank = self.banks[g]
                x = window(bank[int(rng.integers(len(bank)))], self.length, None, rng)
        if self.augment:
            if self.rawboost_prob > 0 and rng.random() < self.rawboost_prob:
                x = rawboost(x, self.sr, rng)
            p_channel = self.real_channel_prob if label == 0 else self.channel_prob
            if p_channel > 0 and rng.random() < p_channel:
                x = degrade_channel(x, self.sr, rng)
            x = augment_speech(x, self.sr, rng)
        return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32)), torch.tensor(float(label))
