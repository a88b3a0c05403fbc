"""Check: how much everyday quality loss alone moves a detector's score of real media (people it never saw).

A detector that keys on generator traces should score a real face or voice about the same after ordinary quality
loss; one that has learned "soft or band-limited means fake" scores it higher. This scores the test people's real
photos (first face of each, one photo per person) and the test speakers' real utterances (one per speaker, first 8 s)
as they are and after quality chains real uploads go through, and prints the mean shift of the branch logit and
the share of real items whose raw branch logit is then above 0 (the branch leans fake).

Faces: down-scaling by 2 and up again (``down-up``), the same with JPEG at quality 40 after (``down-up-jpeg40``, the
order the training augmentation uses) and compression at the low resolution before up-scaling (``down-jpeg40-up``,
the order of low-resolution video that a pipeline enlarges). Voices: AAC and MP3 at 32 kbit/s (16 kHz),
MPEG-1 Layer II at 64 kbit/s (44.1 kHz, as in MPEG-1 video).

Run: MDF_RUN=RUN python scripts/experiments/quality_shift.py [DETECTOR] (default the shipped model; RUN: a recipe
run, for its split of people and speakers.)
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from multimodal_df.media.decode import decode
from multimodal_df.predict import load_checked
from multimodal_df.training.pseudofakes.channel import CodecSpec, _resample, codec_roundtrip

RUN = Path(os.environ.get("MDF_RUN", "runs/shipped"))
MP2 = CodecSpec("mp2", (64, 128, 192), decoder="mp2float", sample_format="s16")


def _one_per_group(manifest: Path, limit: int) -> list[dict[str, str]]:
    first: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(manifest.open()):
        if row["split"] == "test" and row["label"] == "0":
            first.setdefault(row["group"], row)
    return list(first.values())[:limit]


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def _down(x: np.ndarray) -> np.ndarray:
    s = x.shape[0]
    return cv2.resize(x, (s // 2, s // 2), interpolation=cv2.INTER_AREA)


def _up(x: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(x, (side, side), interpolation=cv2.INTER_LINEAR)


FACE_CHAINS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "down-up": lambda c: _up(_down(c), c.shape[0]),
    "down-up-jpeg40": lambda c: _jpeg(_up(_down(c), c.shape[0]), 40),
    "down-jpeg40-up": lambda c: _up(_jpeg(_down(c), 40), c.shape[0]),
}


def _mp2(x: np.ndarray) -> np.ndarray:
    hi = codec_roundtrip(_resample(x, 16000, 44100), 44100, MP2, 64)
    return _resample(hi, 44100, 16000, length=len(x))


VOICE_CHAINS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "aac32": lambda x: codec_roundtrip(x, 16000, "aac", 32),
    "mp3_32": lambda x: codec_roundtrip(x, 16000, "libmp3lame", 32),
    "mp2_64_44k": _mp2,
}


def _report(name: str, logits: dict[str, list[float]]) -> None:
    base = np.asarray(logits["as is"])
    print(f"\n{name}: {len(base)} real items of test people / speakers")
    print("| chain | mean logit | shift | sd of shift | share with logit > 0 |")
    print("|---|---|---|---|---|")
    for chain, values in logits.items():
        v = np.asarray(values)
        print(
            f"| {chain} | {v.mean():+.2f} | {np.mean(v - base):+.2f} | {np.std(v - base):.2f} | {np.mean(v > 0):.2f} |"
        )


def main(argv: list[str]) -> None:
    det = load_checked(argv[0] if argv else "multimodal_df/shipped", "cpu", "torch")
    if det.vision is not None:
        faces: dict[str, list[float]] = {"as is": [], **{k: [] for k in FACE_CHAINS}}
        for row in _one_per_group(RUN / "manifests" / "faces.csv", 80):
            if not row["path"].lower().endswith((".jpg", ".jpeg", ".png", ".pgm", ".bmp")):
                continue  # photos only: one face crop each
            _, crops = det.faces.faces_in_image(np.asarray(Image.open(row["path"]).convert("RGB")))
            if len(crops) == 0:
                continue
            crop = crops[0]
            faces["as is"].append(det.vision_output(crop[None], np.zeros(1), 1).logit)  # type: ignore[union-attr]
            for chain, f in FACE_CHAINS.items():
                faces[chain].append(det.vision_output(f(crop)[None], np.zeros(1), 1).logit)  # type: ignore[union-attr]
        _report("faces", faces)
    if det.audio is not None:
        voices: dict[str, list[float]] = {"as is": [], **{k: [] for k in VOICE_CHAINS}}
        for row in _one_per_group(RUN / "manifests" / "speech.csv", 60):
            wave = decode(row["path"], det.decode_cfg).waveform
            if wave is None:
                continue
            x = wave[: 16000 * 8]
            voices["as is"].append(det.audio_output(x, 16000).logit)  # type: ignore[union-attr]
            for chain, f in VOICE_CHAINS.items():
                voices[chain].append(det.audio_output(f(x).astype(np.float32), 16000).logit)  # type: ignore[union-attr]
        _report("voices", voices)


if __name__ == "__main__":
    main(sys.argv[1:])
