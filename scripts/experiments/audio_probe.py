"""Experiment: probes on frozen speech features against the shipped log-mel CNN, on dev voices (../shared/data/dev:
selection and reporting only). Features: Resemblyzer's pretrained GE2E speaker encoder (3-layer LSTM on 40 mel bands;
`pip install --no-deps resemblyzer==0.1.4` provides resemblyzer/pretrained.pt, read with weights_only=True) and log-mel
statistics. Training data: real speech of the recipe's train split and fakes of its training generators, half of both through
a random channel; the held-out vocoder is reported.

Needs a recipe run's manifests and generators (see vision_probe.py). Run: MDF_RUN=RUN MDF_BASELINE=CHECKPOINT
python scripts/experiments/audio_probe.py
"""

import importlib.util
import os

RUN = os.environ.get("MDF_RUN", "runs/shipped")
DEV = os.environ.get("MDF_DEV", "../shared/data/dev")
BASELINE = os.environ.get("MDF_BASELINE", "multimodal_df/shipped")
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from multimodal_df.media.decode import decode
from multimodal_df.pipeline.checkpoint import load
from multimodal_df.training.cache import prepare
from multimodal_df.training.manifests import read_manifest
from multimodal_df.training.pseudofakes.channel import degrade_channel
from multimodal_df.training.pseudofakes.speech import make_speech_fakes, standardize_speech
from multimodal_df.training.recipe import recipe_config

torch.set_num_threads(1)
MEL40 = torchaudio.transforms.MelSpectrogram(
    16000, n_fft=400, hop_length=160, n_mels=40, norm="slaney", mel_scale="slaney"
)
MEL80 = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=80)
SR = 16000
cfg = recipe_config("shipped", [], False, RUN)
rows = read_manifest(RUN + "/manifests/speech.csv")
cache = prepare(rows, cfg, RUN + "/cache/speech", progress=False)
rng = np.random.default_rng(0)


def reals_of(split, n):
    rs = [r for r in rows if r.split == split and cache[r.path].waveform is not None and not cache[r.path].error]
    pick = rng.choice(len(rs), min(n, len(rs)), replace=False)
    return [standardize_speech(np.asarray(cache[rs[i].path].waveform), SR)[: 4 * SR] for i in pick]


gens_train = ["vocoder_hifigan", "vocoder_istft", "vocoder_upsample", "world", "griffin_lim", "espeak", "flite"]
gens_all = gens_train + ["vocoder_subpixel"]
gdir = RUN + "/generators"
t = time.time()
tr_real = reals_of("train", 210)
va_real = reals_of("valid", 48)
tr_fake, tr_kind = [], []
per = len(tr_real) // len(gens_train)
for j, g in enumerate(gens_train):
    fk = make_speech_fakes(tr_real[j * per : (j + 1) * per], g, SR, 5, False, Path(RUN) / "cache" / "probe_fakes", gdir)
    tr_fake += fk
    tr_kind += [g] * len(fk)
va_fake, va_kind = [], []
for j, g in enumerate(gens_all):
    fk = make_speech_fakes(va_real[j * 6 : (j + 1) * 6], g, SR, 6, False, Path(RUN) / "cache" / "probe_fakes", gdir)
    va_fake += fk
    va_kind += [g] * len(fk)
print("fakes", len(tr_fake), len(va_fake), round(time.time() - t), flush=True)


def chan(ws):
    return [degrade_channel(w, SR, rng) if rng.random() < 0.5 else w for w in ws]


tr_w = chan(tr_real) + chan(tr_fake)
ytr = np.r_[np.zeros(len(tr_real)), np.ones(len(tr_fake))]
va_w = va_real + va_fake
yva = np.r_[np.zeros(len(va_real)), np.ones(len(va_fake))]
kva = np.array(["real"] * len(va_real) + va_kind)
dev = sorted(Path(DEV + "/audio").iterdir())
dev_w, ydev, sdev = [], [], []
for p in dev:
    c = decode(str(p), cfg.decode)
    dev_w.append(standardize_speech(np.asarray(c.waveform), SR))
    ydev.append(int(p.name.startswith("fake_")))
    sdev.append(p.name.split("_")[1])
ydev = np.array(ydev)

st = torch.load(
    str(Path(importlib.util.find_spec("resemblyzer").origin).parent / "pretrained.pt"),
    map_location="cpu",
    weights_only=True,
)


class GE2E(nn.Module):
    def __init__(s):
        super().__init__()
        s.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        s.linear = nn.Linear(256, 256)

    def forward(s, mel):
        out, (h, _) = s.lstm(mel)
        e = torch.relu(s.linear(h[-1]))
        return e / e.norm(dim=1, keepdim=True), out.mean(1), h.transpose(0, 1).reshape(len(mel), -1)


enc = GE2E()
enc.load_state_dict({k: v for k, v in st["model_state"].items() if not k.startswith("similarity")})
enc.eval()


@torch.no_grad()
def ge2e(w):
    mel = MEL40(torch.from_numpy(w.astype(np.float32))).T.numpy()
    if len(mel) < 160:
        mel = np.pad(mel, ((0, 160 - len(mel)), (0, 0)))
    starts = list(range(0, len(mel) - 160 + 1, 80))
    x = torch.from_numpy(np.stack([mel[s : s + 160] for s in starts]))
    e, o, h = enc(x)
    return np.r_[
        e.mean(0).numpy(), o.mean(0).numpy(), h.mean(0).numpy(), h.std(0).numpy() if len(x) > 1 else np.zeros(768)
    ]


def melstats(w):
    m = np.log(MEL80(torch.from_numpy(w.astype(np.float32))).numpy() + 1e-8)
    d = np.diff(m, axis=1)
    return np.r_[m.mean(1), m.std(1), d.std(1), np.percentile(m, [10, 50, 90], axis=1).ravel()]


det = load(BASELINE, device="cpu")


def shipped(w):
    return det.audio_output(w).logit if hasattr(det, "audio_output") else np.nan


t = time.time()
feats = {}
for name, fn in (("ge2e", ge2e), ("mel", melstats)):
    feats[name] = [np.stack([fn(w) for w in ws]) for ws in (tr_w, va_w, dev_w)]
    print("feat", name, feats[name][0].shape, round(time.time() - t), flush=True)
try:
    sh = np.array([shipped(w) for w in dev_w])
    print("shipped dev", round(roc_auc_score(ydev, sh), 3))
except Exception as e:
    print("shipped failed", e)


def per_src(z):
    return {
        s: round(
            roc_auc_score(
                np.r_[np.zeros((ydev == 0).sum()), np.ones(((np.array(sdev) == s) & (ydev == 1)).sum())],
                np.r_[z[ydev == 0], z[(np.array(sdev) == s) & (ydev == 1)]],
            ),
            2,
        )
        for s in sorted(set(np.array(sdev)[ydev == 1]))
    }


GE = {"emb": slice(0, 256), "lstm": slice(256, 512), "hid": slice(512, 1280), "all": slice(0, 2048)}
for fname, sl in [("ge2e:" + k, (feats["ge2e"], v)) for k, v in GE.items()] + [("mel", (feats["mel"], slice(None)))]:
    (Ftr, Fva, Fdv), s = sl
    for C in (0.01, 0.1, 1.0):
        sc = StandardScaler().fit(Ftr[:, s])
        lr = LogisticRegression(C=C, max_iter=5000).fit(sc.transform(Ftr[:, s]), ytr)
        zva, zdv = lr.decision_function(sc.transform(Fva[:, s])), lr.decision_function(sc.transform(Fdv[:, s]))
        hold = roc_auc_score(
            np.r_[np.zeros(len(va_real)), np.ones((kva == "vocoder_subpixel").sum())],
            np.r_[zva[kva == "real"], zva[kva == "vocoder_subpixel"]],
        )
        print(
            fname,
            C,
            "valid",
            round(roc_auc_score(yva, zva), 3),
            "holdout",
            round(hold, 3),
            "DEV",
            round(roc_auc_score(ydev, zdv), 3),
            per_src(zdv),
            flush=True,
        )
