"""Fusion and the validation report of the shipped-model recipe (see :mod:`multimodal_df.training.recipe`).

The real data has no clip in which a pseudo-fake face speaks with a pseudo-fake voice, so fusion
learns from composites: the branch outputs of a validation face clip (real, self-blended or
cross-blended) paired with those of a validation utterance (real or from a training generator).
Half the composites are real on both sides; the other half are fake on the face, the voice or both.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..evaluation.metrics import auc_by_kind, clean, expected_calibration_error, roc_auc
from ..pipeline.detector import Detector, resolve_device
from ..pipeline.outputs import AudioOutput, VisionOutput
from .branches import speech_validation_items, vision_validation_sets
from .cache import prepare
from .fusion_stage import fit_fusion_detector
from .manifests import assign_splits, read_manifest


def _setup(cfg: Config, device: str) -> tuple[Config, str]:
    cfg = copy.deepcopy(cfg)
    cfg.train.progress = False
    return cfg, str(resolve_device(device))


def _split(manifest: Path, cfg: Config, cache_dir: Path, device: str, split: str) -> list[tuple[Any, Any]]:
    rows = assign_splits(read_manifest(manifest), cfg.train.val_fraction, cfg.train.seed)
    picked = [r for r in rows if r.split == split]
    cache = prepare(picked, cfg, cache_dir, device, progress=False)
    return [(r, cache[r.path]) for r in picked if not cache[r.path].error]


def face_outputs(
    out: Path, faces_csv: Path, cfg: Config, det: Detector, device: str, split: str = "valid"
) -> tuple[list[VisionOutput], list[str]]:
    """Vision outputs of ``det`` and kinds for the ``split`` face clips and their pseudo-fakes."""
    faces = _split(faces_csv, cfg, out / "cache" / "faces", device, split)
    sets, kinds = vision_validation_sets(cfg, faces, True)
    return [det.vision_output(c, t, n) for c, t, n, _ in sets], kinds  # type: ignore[misc]


def speech_outputs(
    out: Path, speech_csv: Path, cfg: Config, det: Detector, device: str, split: str = "valid"
) -> tuple[list[AudioOutput], list[str]]:
    """Audio outputs of ``det`` and kinds for the ``split`` utterances and one fake per generator (all generators)."""
    speech = _split(speech_csv, cfg, out / "cache" / "speech", device, split)
    # Another seed for the test speakers' fakes: they are new utterances anyway, and nothing is reused.
    waves, kinds = speech_validation_items(
        cfg, speech, out / "cache" / "speech" / "pseudo_audio", seed_offset=1 if split == "valid" else 2
    )
    return [det.audio_output(w, cfg.decode.sample_rate) for w in waves], kinds  # type: ignore[misc]


def composites(
    vkinds: list[str], akinds: list[str], exclude: set[str], per_real: int, seed: int, vexclude: set[str] = frozenset()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (vision item, audio item) and labels (overall, video, audio).

    For every real utterance, ``per_real`` composites with a real face (label 0) and ``per_real``
    fake ones, each fake on the face, the voice or both; audio kinds in ``exclude`` and vision kinds in
    ``vexclude`` are never used.
    """
    rng = np.random.default_rng(seed)
    vk, ak = np.array(vkinds), np.array(akinds)
    v_real = np.flatnonzero(vk == "real")
    v_fake = np.flatnonzero((vk != "real") & ~np.isin(vk, list(vexclude)))
    a_real = np.flatnonzero(ak == "real")
    a_fake = np.flatnonzero((ak != "real") & ~np.isin(ak, list(exclude)))
    vi, ai, yv, ya = [], [], [], []
    for _ in range(per_real):
        for a in a_real:
            vi.append(rng.choice(v_real))
            ai.append(a)
            yv.append(0)
            ya.append(0)
            kind = int(rng.integers(3))  # 0 face, 1 voice, 2 both
            vi.append(rng.choice(v_fake) if kind in (0, 2) else rng.choice(v_real))
            ai.append(rng.choice(a_fake) if kind in (1, 2) else rng.choice(a_real))
            yv.append(int(kind in (0, 2)))
            ya.append(int(kind in (1, 2)))
    yv_, ya_ = np.array(yv), np.array(ya)
    return np.array(vi), np.array(ai), np.maximum(yv_, ya_), np.stack([yv_, ya_], 1)


def fuse_composites(cfg: Config, out: Path, faces_csv: Path, speech_csv: Path, device: str) -> Path:
    """Fit fusion on validation composites and write the detector to ``OUT/detector``."""
    cfg, dev = _setup(cfg, device)
    vdet = Detector.load(out / "vision", dev)
    adet = Detector.load(out / "audio", dev)
    vouts, vkinds = face_outputs(out, faces_csv, cfg, vdet, dev)
    aouts, akinds = speech_outputs(out, speech_csv, cfg, adet, dev)
    holdout = {cfg.train.audio_holdout} if cfg.train.audio_holdout else set()
    vholdout = {f"decoder_{cfg.train.face_holdout}"} if cfg.train.face_holdout else set()
    vi, ai, y, ym = composites(vkinds, akinds, holdout, per_real=3, seed=cfg.train.seed, vexclude=vholdout)
    outputs = [(vouts[i], aouts[j]) for i, j in zip(vi, ai)]
    training_data = {
        "stage": "fusion",
        "composites": len(y),
        "composite_fakes": {
            "face": int(((ym[:, 0] == 1) & (ym[:, 1] == 0)).sum()),
            "voice": int(((ym[:, 0] == 0) & (ym[:, 1] == 1)).sum()),
            "both": int(ym.all(1).sum()),
        },
        "vision": vdet.training_data,
        "audio": adet.training_data,
    }
    print(f"fusion: {len(y)} composites of {len(vouts)} face items and {len(aouts)} speech items", file=sys.stderr)
    return fit_fusion_detector(
        cfg, outputs, y, ym[:, 0], ym[:, 1], vdet, adet, training_data, out / "detector", resolve_device(device)
    )


def report(cfg: Config, out: Path, faces_csv: Path, speech_csv: Path, device: str) -> dict[str, Any]:
    """Write ``OUT/validation.json`` and ``OUT/validation.md`` for the final detector; returns the figures."""
    cfg, dev = _setup(cfg, device)
    det = Detector.load(out / "detector", dev)
    holdout = cfg.train.audio_holdout
    vholdout = f"decoder_{cfg.train.face_holdout}" if cfg.train.face_holdout else None
    res: dict[str, Any] = {"holdout_generator": holdout, "holdout_face_generator": vholdout}
    # The final detector holds the branch models and their calibrations as trained.
    vouts, vkinds = face_outputs(out, faces_csv, cfg, det, dev)
    aouts, akinds = speech_outputs(out, speech_csv, cfg, det, dev)
    pv = np.array([o.p_fake for o in vouts])
    pa = np.array([o.p_fake for o in aouts])
    yv = (np.array(vkinds) != "real").astype(int)
    res["vision_valid"] = {**auc_by_kind(pv, vkinds), "ece": expected_calibration_error(yv, pv), "clips": len(vouts)}
    res["vision_valid"]["ece_holdout"] = _holdout_ece(pv, vkinds, vholdout)
    # Test people: never seen by any stage (nor by the generators).
    t_vouts, t_vkinds = face_outputs(out, faces_csv, cfg, det, dev, split="test")
    ptv = np.array([o.p_fake for o in t_vouts])
    ytv = (np.array(t_vkinds) != "real").astype(int)
    res["vision_test_people"] = {
        **auc_by_kind(ptv, t_vkinds),
        "ece": expected_calibration_error(ytv, ptv),
        "ece_holdout": _holdout_ece(ptv, t_vkinds, vholdout),
    }
    train_gens = np.array([k != holdout for k in akinds])
    ya = (np.array(akinds) != "real").astype(int)
    res["audio_valid"] = {
        **auc_by_kind(pa, akinds),
        "ece_training_generators": expected_calibration_error(ya[train_gens], pa[train_gens]),
        "ece_holdout": _holdout_ece(pa, akinds, holdout),
    }
    # Test speakers (LibriSpeech test-other): never seen by any stage.
    t_aouts, t_akinds = speech_outputs(out, speech_csv, cfg, det, dev, split="test")
    pt = np.array([o.p_fake for o in t_aouts])
    yt = (np.array(t_akinds) != "real").astype(int)
    res["audio_test_speakers"] = {
        **auc_by_kind(pt, t_akinds),
        "ece": expected_calibration_error(yt, pt),
        "ece_holdout": _holdout_ece(pt, t_akinds, holdout),
    }
    # Fused: composites of the validation faces with the test speakers' speech (fusion never saw those voices).
    for name, exclude in (
        ("fused_test_composites", {holdout}),
        ("fused_test_composites_heldout_voice", set(t_akinds) - {"real", holdout}),
    ):
        vi, ai, y, ym = composites(vkinds, t_akinds, exclude, per_real=3, seed=cfg.train.seed + 7)
        p = np.array([det.fuse(vouts[i], t_aouts[j]) for i, j in zip(vi, ai)])
        kinds = np.where(ym.all(1), "both", np.where(ym[:, 0] == 1, "face", np.where(ym[:, 1] == 1, "voice", "real")))
        thr = det.threshold
        res[name] = {
            "auc": roc_auc(y, p),
            "ece": expected_calibration_error(y, p),
            "n": len(y),
            "by_fake": auc_by_kind(p, list(kinds)),
            "accuracy_at_threshold": float(((p >= thr).astype(int) == y).mean()),
            "threshold": thr,
        }
    res["fusion_meta"] = det.fusion_meta.metrics if det.fusion_meta else None
    res["audio_choice"] = (
        json.loads((out / "audio_choice.json").read_text()) if (out / "audio_choice.json").exists() else None
    )
    res = clean(res)
    (out / "validation.json").write_text(json.dumps(res, indent=2))
    (out / "validation.md").write_text(render_markdown(res))
    print(render_markdown(res))
    return res


def _holdout_ece(p: np.ndarray, kinds: list[str], holdout: str | None) -> float | None:
    """Calibration error on the real items and the held-out generator's fakes only (None without a holdout)."""
    k = np.array(kinds)
    sel = (k == "real") | (k == holdout)
    if holdout is None or not (k == holdout).any():
        return None
    return expected_calibration_error((k[sel] != "real").astype(int), p[sel])


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def render_markdown(res: dict[str, Any]) -> str:
    """The report as Markdown tables (the model card quotes them)."""
    lines = ["# Validation of the shipped model", ""]
    h = res.get("holdout_generator")
    hv = res.get("holdout_face_generator")
    for key, title in (
        ("vision_valid", "Vision branch: validation people (never trained on) vs their pseudo-fakes"),
        ("vision_test_people", "Vision branch: test people (never seen by any stage) vs their pseudo-fakes"),
        ("audio_valid", "Audio branch: validation speakers vs one fake per utterance and generator"),
        ("audio_test_speakers", "Audio branch: test speakers (never seen by any stage) vs fakes"),
    ):
        t = res.get(key)
        if not t:
            continue
        lines += [f"## {title}", "", "| fake type | AUC | n fake |", "|---|---|---|"]
        for g, v in t.items():
            if isinstance(v, dict) and "auc" in v:
                mark = " (held out of training)" if g in (h, hv) else ""
                lines.append(f"| {g}{mark} | {_f(v['auc'])} | {v['n']} |")
        ece = t.get("ece", t.get("ece_training_generators"))
        lines += [
            "",
            f"Real items: {t['real']['n']}. ECE: {_f(ece)}; ECE on real + held-out generator: {_f(t.get('ece_holdout'))}.",
            "",
        ]
    for key, title in (
        ("fused_test_composites", "Fused: validation faces x test speakers, training generators"),
        (
            "fused_test_composites_heldout_voice",
            f"Fused: validation faces x test speakers, voice fakes only from the held-out generator ({h})",
        ),
    ):
        t = res[key]
        lines += [
            f"## {title}",
            "",
            f"AUC {_f(t['auc'])}, ECE {_f(t['ece'])}, accuracy {_f(t['accuracy_at_threshold'])} at threshold {_f(t['threshold'])}, n = {t['n']}.",
            "",
        ]
        lines += ["| fake on | AUC vs real composites | n |", "|---|---|---|"]
        for g, v in t["by_fake"].items():
            if "auc" in v:
                lines.append(f"| {g} | {_f(v['auc'])} | {v['n']} |")
        lines.append("")
    if res.get("audio_choice"):
        c = res["audio_choice"]
        lines += [
            "## Audio branch choice",
            "",
            f"Kept: **{c['kept']}**. "
            + "; ".join(
                f"{k}: val AUC {_f(v['val_auc'])}, val loss {_f(v['val_loss'])}" for k, v in c["scores"].items()
            ),
            "",
        ]
    return "\n".join(lines) + "\n"
