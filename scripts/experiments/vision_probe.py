"""Experiment behind the shipped face model: logistic-regression probes on frozen EfficientNet-Lite0 ImageNet features
(last layer alone, or with the spatial mean/std of blocks 2, 4, 7, 10, 14) against the fine-tuned model shipped before,
on dev face images and videos (../shared/data/dev: selection and reporting only, never training).

Needs a recipe run's manifests and generators: python -m multimodal_df.recipe --data ../shared/data --out RUN
--stages manifests,generators. Then: MDF_RUN=RUN MDF_BASELINE=CHECKPOINT [TAPS=2,4,7,10,14] python scripts/experiments/vision_probe.py THREADS [lowres]
("lowres": half the training crops, both classes, pass through a 56-160 px JPEG round trip instead of the usual degradation).
Prints validation AUC per pseudo-fake kind and dev AUC per domain for each probe, then per-video dev scores.
"""

import os

RUN = os.environ.get("MDF_RUN", "runs/shipped")
DEV = os.environ.get("MDF_DEV", "../shared/data/dev")
BASELINE = os.environ.get("MDF_BASELINE", "multimodal_df/shipped")
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from multimodal_df.pipeline.checkpoint import load
from multimodal_df.training.augment import degrade
from multimodal_df.training.branches import _crop_landmarks, decoder_fakes, face_decoders
from multimodal_df.training.cache import prepare
from multimodal_df.training.manifests import ManifestRow, read_manifest
from multimodal_df.training.pseudofakes.faces import cross_blend, self_blend
from multimodal_df.training.recipe import recipe_config
from multimodal_df.vision.model import VisionModel, create_vision_model

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
rng = np.random.default_rng(0)
LOWRES = len(sys.argv) > 2 and sys.argv[2] == "lowres"
import cv2


def lowres(x):
    side = int(rng.integers(56, 160))
    small = cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(small[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 80))]
    )
    small = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return cv2.resize(small, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR)


cfg = recipe_config("shipped", [], False, RUN)
dev = Path(DEV)
devrows = [
    ManifestRow(path=str(p), label=int(p.name.startswith("fake_")), split="test", group=p.name, category=s)
    for s in ("video", "image")
    for p in sorted((dev / s).iterdir())
]
devc = prepare(devrows, cfg, RUN + "/cache/dev", progress=False)
rows = read_manifest(RUN + "/manifests/faces.csv")
cache = prepare(rows, cfg, RUN + "/cache/faces", progress=False)

decs = {}
try:
    decs = face_decoders(cfg, held_out=True)
except Exception as e:
    print("no decoders:", e)
print("decoders", list(decs))


def make_set(split, per_clip, nfake):
    X, y, kind = [], [], []
    reals = []
    for r in rows:
        c = cache[r.path]
        if r.split != split or c.error or len(c.crops) == 0:
            continue
        idx = np.linspace(0, len(c.crops) - 1, min(per_clip, len(c.crops))).round().astype(int)
        for i in idx:
            reals.append((np.asarray(c.crops[i]), _crop_landmarks(cfg, c, i)))
    train_decs = [k for k in decs if k != "pixelshuffle"]
    for j, (crop, lm) in enumerate(reals):
        X.append(crop)
        y.append(0)
        kind.append("real")
        for f in range(nfake):
            opts = []
            if lm is not None:
                opts += ["self_blend", "cross_blend"]
            opts += [f"decoder_{d}" for d in (train_decs if split == "train" else decs)]
            if not opts:
                continue
            k = opts[rng.integers(len(opts))]
            if k == "self_blend":
                img = self_blend(crop, lm, rng).image
            elif k == "cross_blend":
                d, dl = reals[(j + 1 + rng.integers(len(reals) - 1)) % len(reals)]
                if dl is None:
                    img = self_blend(crop, lm, rng).image
                    k = "self_blend"
                else:
                    img = cross_blend(crop, lm, d, dl, rng).image
            else:
                img = decoder_fakes(decs[k[8:]], crop[None], rng)[0]
            X.append(img)
            y.append(1)
            kind.append(k)
    if split == "train" and LOWRES:
        X = [lowres(x) if rng.random() < 0.5 else degrade(x, rng, 0.5, 0.4) for x in X]
    elif split == "train":
        X = [degrade(x, rng, 0.5, 0.4) for x in X]
    return np.stack(X), np.array(y), np.array(kind)


t = time.time()
Xtr, ytr, ktr = make_set("train", 3, 1)
Xva, yva, kva = make_set("valid", 2, 1)
print("sets", Xtr.shape, Xva.shape, round(time.time() - t), flush=True)

vcfg = cfg.vision
m = create_vision_model(vcfg).eval()
lite = m.backbone
feats = {}
ends = [int(x) for x in os.environ.get("TAPS", "2,4,7,10,14").split(",")]  # blocks to tap
for i in ends:
    lite._blocks[i].register_forward_hook(lambda mod, inp, out, i=i: feats.__setitem__(i, out))


@torch.no_grad()
def featurize(X):
    outs = []
    for s in range(0, len(X), 64):
        x = VisionModel.to_input(X[s : s + 64])
        emb, _ = m(x)
        parts = [emb]
        for i in ends:
            f = feats[i]
            parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3))]
        outs.append(torch.cat(parts, 1).numpy())
    return np.concatenate(outs)


t = time.time()
Ftr, Fva = featurize(Xtr), featurize(Xva)
dev_items = [(r, devc[r.path]) for r in devrows if not devc[r.path].error and len(devc[r.path].crops)]
Fdev = [featurize(np.asarray(c.crops)) for _, c in dev_items]
print("features", Ftr.shape, round(time.time() - t), flush=True)
np.savez(f"{RUN}/probe_features{int(LOWRES)}.npz", Ftr=Ftr, ytr=ytr, ktr=ktr, Fva=Fva, yva=yva, kva=kva)

# shipped baseline
det = load(BASELINE, device="cpu")
sm = det.vision.eval()


@torch.no_grad()
def shipped_logits(X):
    return np.concatenate([sm(VisionModel.to_input(X[s : s + 64]))[1].numpy() for s in range(0, len(X), 64)])


D1 = 1280
W = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]  # block widths
D2 = 1280 + sum(2 * W[i] for i in ends)
sel = {"final": slice(0, D1), "multi": slice(0, D2)}


def dev_auc(score_fn):
    res = {}
    for cat in ("video", "image"):
        ys, ss = [], []
        for (r, c), F in zip(dev_items, Fdev):
            if r.category != cat:
                continue
            ys.append(r.label)
            ss.append(float(np.mean(score_fn(F, c))))
        res[cat] = round(roc_auc_score(ys, ss), 3)
    return res


print(
    "shipped dev",
    dev_auc(lambda F, c: shipped_logits(np.asarray(c.crops))),
    "valid",
    round(roc_auc_score(yva, shipped_logits(Xva)), 3),
    flush=True,
)
for name, s in sel.items():
    for C in (0.01, 0.1, 1.0):
        sc = StandardScaler().fit(Ftr[:, s])
        lr = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(Ftr[:, s]), ytr)
        f = lambda F, c=None: lr.decision_function(sc.transform(F[:, s]))
        zva = f(Fva)
        per = {
            k: round(
                roc_auc_score(
                    np.r_[np.zeros((kva == "real").sum()), np.ones((kva == k).sum())],
                    np.r_[zva[kva == "real"], zva[kva == k]],
                ),
                3,
            )
            for k in set(kva) - {"real"}
        }
        print(name, C, "valid", round(roc_auc_score(yva, zva), 3), per, "dev", dev_auc(f), flush=True)

s = sel["multi"]
sc = StandardScaler().fit(Ftr[:, s])
lr = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(Ftr[:, s]), ytr)
for (r, c), F in zip(dev_items, Fdev):
    if r.category == "video":
        print(
            "  ",
            r.label,
            Path(r.path).name[:36],
            round(float(np.mean(lr.decision_function(sc.transform(F[:, s])))), 2),
            round(float(np.mean(shipped_logits(np.asarray(c.crops)))), 2),
        )
