"""Experiment: are blurry decoder pseudo-fakes teaching the face model that "soft = fake"? A/B in one run.

Generated-face pseudo-fakes (small autoencoders trained by the recipe) carry about 3.5x less power above half the
Nyquist frequency than the real crops they came from, and real soft video (GRID, phone clips) scores high on dev. Arm A
uses the decoder fakes as the recipe makes them; arm B gives every reconstruction the original's radial power spectrum
(``ReconstructionMix.spectrum_prob = 1``, ``pseudofakes.decoders.match_spectrum``). Same real crops, same fake kinds,
same random draws and degradation in both arms; a logistic-regression probe on frozen multi-depth EfficientNet-Lite0
features (the shipped model's features) per arm; validation AUC per pseudo-fake kind (plain and spectrum-matched
validation fakes) and dev AUC per domain, with the mean probe logit per dev source (../shared/data/dev: selection and
reporting only, never training).

Run: MDF_RUN=RUN [SEED=0] [THREADS=2] [PER=3] python scripts/experiments/vision_spectrum_ab.py
(RUN: a recipe run with its manifests, generators and caches; MDF_DEV overrides ../shared/data/dev.)
"""

import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

import multimodal_df.training.branches as br
from multimodal_df.training.augment import degrade
from multimodal_df.training.branches import _crop_landmarks, face_decoders
from multimodal_df.training.cache import prepare
from multimodal_df.training.manifests import ManifestRow, read_manifest
from multimodal_df.training.pseudofakes.faces import cross_blend, self_blend
from multimodal_df.training.recipe import recipe_config
from multimodal_df.vision.model import VisionModel, create_vision_model

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
RUN = os.environ.get("MDF_RUN", "runs/shipped")
SEED = int(os.environ.get("SEED", "0"))
rng = np.random.default_rng(SEED)
PER = int(os.environ.get("PER", "3"))
cfg = recipe_config("shipped", [], False, RUN)
dev = Path(os.environ.get("MDF_DEV", "../shared/data/dev"))
devrows = [
    ManifestRow(path=str(p), label=int(p.name.startswith("fake_")), split="test", group=p.name, category=s)
    for s in ("video", "image")
    for p in sorted((dev / s).iterdir())
]
devc = prepare(devrows, cfg, RUN + "/cache/dev", progress=False)
rows = read_manifest(RUN + "/manifests/faces.csv")
cache = prepare(rows, cfg, RUN + "/cache/faces", progress=False)
decs = face_decoders(cfg, held_out=True)
t0 = time.time()


def make(split, per_clip, train_decs):
    reals = []
    for r in rows:
        c = cache[r.path]
        if r.split != split or c.error or not len(c.crops):
            continue
        idx = np.linspace(0, len(c.crops) - 1, min(per_clip, len(c.crops))).round().astype(int)
        for i in idx:
            reals.append((np.asarray(c.crops[i]), _crop_landmarks(cfg, c, i)))
    XA, XB, y, kind = [], [], [], []
    for j, (crop, lm) in enumerate(reals):
        XA.append(crop)
        XB.append(crop)
        y.append(0)
        kind.append("real")
        opts = (["self_blend", "cross_blend"] if lm is not None else []) + [f"decoder_{d}" for d in train_decs]
        k = opts[rng.integers(len(opts))]
        if k == "self_blend":
            a = b = self_blend(crop, lm, rng).image
        elif k == "cross_blend":
            d, dl = reals[(j + 1 + rng.integers(len(reals) - 1)) % len(reals)]
            if dl is None:
                a = b = self_blend(crop, lm, rng).image
                k = "self_blend"
            else:
                a = b = cross_blend(crop, lm, d, dl, rng).image
        else:
            state = rng.bit_generator.state
            a = br.decoder_fakes(decs[k[8:]], crop[None], rng, spectrum_prob=0.0)[0]
            rng.bit_generator.state = state
            b = br.decoder_fakes(decs[k[8:]], crop[None], rng, spectrum_prob=1.0)[0]
        XA.append(a)
        XB.append(b)
        y.append(1)
        kind.append(k)
    if split == "train":
        outA, outB = [], []
        for a, b in zip(XA, XB):
            s = rng.bit_generator.state
            outA.append(degrade(a, rng, 0.5, 0.4))
            rng.bit_generator.state = s
            outB.append(degrade(b, rng, 0.5, 0.4))
        XA, XB = outA, outB
    return np.stack(XA), np.stack(XB), np.array(y), np.array(kind)


trd = [k for k in decs if k != "pixelshuffle"]
XtrA, XtrB, ytr, ktr = make("train", PER, trd)
XvaA, XvaB, yva, kva = make("valid", 2, list(decs))
print("sets", XtrA.shape, XvaA.shape, round(time.time() - t0), flush=True)
m = create_vision_model(cfg.vision).eval()
lite = m.backbone
feats = {}
ends = [2, 4, 7, 10, 14]
for i in ends:
    lite._blocks[i].register_forward_hook(lambda mod, inp, out, i=i: feats.__setitem__(i, out))


@torch.no_grad()
def F(X):
    outs = []
    for s in range(0, len(X), 64):
        emb, _ = m(VisionModel.to_input(X[s : s + 64]))
        parts = [emb]
        for i in ends:
            f = feats[i]
            parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3))]
        outs.append(torch.cat(parts, 1).numpy())
    return np.concatenate(outs)


real = ktr == "real"
FtrA = F(XtrA)
FtrB = FtrA.copy()
FtrB[~real] = F(XtrB[~real])
FvaA = F(XvaA)
FvaB = FvaA.copy()
FvaB[kva != "real"] = F(XvaB[kva != "real"])
items = [(r, devc[r.path]) for r in devrows if not devc[r.path].error and len(devc[r.path].crops)]
Fdev = [F(np.asarray(c.crops)) for _, c in items]
print("features", round(time.time() - t0), flush=True)


def perkind(z):
    r = z[kva == "real"]
    return {
        k: round(roc_auc_score(np.r_[np.zeros(len(r)), np.ones((kva == k).sum())], np.r_[r, z[kva == k]]), 3)
        for k in sorted(set(kva) - {"real"})
    }


for name, Ftr in (("A now", FtrA), ("B spectrum", FtrB)):
    for C in (0.03, 0.3):
        sc = StandardScaler().fit(Ftr)
        lr = LogisticRegression(C=C, max_iter=4000).fit(sc.transform(Ftr), ytr)

        def f(X, lr=lr, sc=sc):
            return lr.decision_function(sc.transform(X))

        res = {}
        for cat in ("video", "image"):
            ys = [r.label for (r, c) in items if r.category == cat]
            ss = [float(np.mean(f(Fd))) for (r, c), Fd in zip(items, Fdev) if r.category == cat]
            res[cat] = round(roc_auc_score(ys, ss), 3)
        src = {}
        for (r, _c), Fd in zip(items, Fdev):
            src.setdefault(r.category + ":" + Path(r.path).name.split("_")[1], []).append(float(np.mean(f(Fd))))
        print(
            f"{name:11s} C={C}: dev {res} | valid plain {perkind(f(FvaA))} | valid spectrum-matched {perkind(f(FvaB))}",
            flush=True,
        )
        print("   per source mean z:", {k: round(np.mean(v), 2) for k, v in sorted(src.items())}, flush=True)
