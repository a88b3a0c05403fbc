"""Face pseudo-fakes made from real faces, for training on real data only.

* :func:`self_blend`: Self-Blended Images (Shiohara & Yamasaki, CVPR 2022). A face is blended with a
  colour-, sharpness- and geometry-jittered copy of itself through a soft, randomly deformed mask
  built from its landmarks, at a random blend ratio. The result carries the blending boundary and
  statistical mismatch of a face swap, with no identity change to learn from.
* :func:`cross_blend`: another real person's face aligned onto a face by its landmarks, colour
  matched and blended the same way (a crude face swap).

Every generator takes a ``numpy.random.Generator``: the same seed gives the same fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def face_mask(landmarks: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft mask [size, size] in [0, 1] over the inner face, from 5 landmarks (eyes, nose, mouth corners).

    The hull of the landmarks is grown to cover brows and chin, randomly deformed (scaled,
    shifted, each vertex jittered), then eroded or dilated and blurred, so the blending boundary
    differs from sample to sample.
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    centre = lm.mean(0)
    eye_dist = max(1.0, float(np.linalg.norm(lm[1] - lm[0])))
    # Grow outward: brows above the eyes, chin below the mouth.
    pts = [
        lm[0] + [-0.45, -0.55] * np.array([eye_dist, eye_dist]),
        lm[1] + [0.45, -0.55] * np.array([eye_dist, eye_dist]),
    ]
    pts += [lm[4] + [0.35 * eye_dist, 0.55 * eye_dist], lm[3] + [-0.35 * eye_dist, 0.55 * eye_dist]]
    pts += list(lm)
    pts = np.array(pts)
    pts = centre + (pts - centre) * rng.uniform(0.85, 1.15, size=2) + rng.normal(0, 0.06 * eye_dist, size=pts.shape)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    k = max(1, int(size * rng.uniform(0.01, 0.05)))
    kernel = np.ones((k, k), np.uint8)
    mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    mask = _elastic(mask, rng, strength=eye_dist * rng.uniform(0.1, 0.35))
    blur = int(size * rng.uniform(0.03, 0.1)) * 2 + 1
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (blur, blur), 0)


def _elastic(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Warp a mask by a smooth random displacement field (pixels, up to about ``strength``), so the
    boundary is wavy rather than a polygon: real swap masks follow jaw and cheek contours."""
    import cv2

    s = mask.shape[0]
    grid = max(3, s // 16)
    flow = rng.normal(0, 1, size=(2, grid, grid)).astype(np.float32)
    flow = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_CUBIC) for f in flow])
    flow *= strength / (np.abs(flow).max() + 1e-6)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    return cv2.remap(mask, xx + flow[0], yy + flow[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "source" of a self-blend: colour, sharpness and geometry changed a little."""
    import cv2

    out = img.astype(np.float32)
    out = out * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-15, 15, size=3)  # per-channel gain and shift
    out = (out - out.mean()) * rng.uniform(0.85, 1.15) + out.mean()  # contrast
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    else:
        soft = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + rng.uniform(0.3, 1.0) * (out - soft)  # unsharp mask
    s = img.shape[0]
    scale = rng.uniform(0.95, 1.05)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), 0.0, scale)
    m[:, 2] += rng.uniform(-0.03, 0.03, size=2) * s
    out = cv2.warpAffine(out, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 255)


@dataclass
class SelfBlend:
    """A self-blended face: ``image`` uint8 [S, S, 3], the ``mask`` [S, S] actually used, and the blend ``ratio``."""

    image: np.ndarray
    mask: np.ndarray
    ratio: float


def self_blend(crop: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """Blend a jittered copy of ``crop`` (uint8 [S, S, 3]) into itself through a landmark mask.

    ``landmarks`` [5, 2] are in crop pixels (see :func:`landmarks_to_crop`).
    """
    s = crop.shape[0]
    mask = face_mask(landmarks, s, rng)
    ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    return _composite(_jitter(crop, rng), crop, mask, ratio)


def _composite(source: np.ndarray, target: np.ndarray, mask: np.ndarray, ratio: float) -> SelfBlend:
    """``source`` over ``target`` (both [S, S, 3]) through ``mask`` [S, S] scaled by ``ratio``."""
    m = (mask * ratio)[..., None]
    out = source * m + target.astype(np.float32) * (1 - m)
    return SelfBlend(np.clip(np.round(out), 0, 255).astype(np.uint8), mask * ratio, ratio)


def cross_blend(
    target: np.ndarray, target_lm: np.ndarray, source: np.ndarray, source_lm: np.ndarray, rng: np.random.Generator
) -> SelfBlend:
    """Blend another person's face (``source`` uint8 [S, S, 3], landmarks [5, 2]) onto ``target``.

    The source is aligned to the target by a similarity transform fitted on the 5 landmarks, its
    colour statistics inside the mask are matched to the target's (swap pipelines do this), then
    it is blended through the same kind of soft, deformed mask as :func:`self_blend`.
    """
    import cv2

    s = target.shape[0]
    m, _ = cv2.estimateAffinePartial2D(np.asarray(source_lm, np.float32), np.asarray(target_lm, np.float32))
    if m is None:
        return self_blend(target, target_lm, rng)
    warped = cv2.warpAffine(source.astype(np.float32), m, (s, s), borderMode=cv2.BORDER_REFLECT)
    mask = face_mask(target_lm, s, rng)
    inside = mask > 0.5
    if inside.sum() > 16:
        t, w = target.astype(np.float32)[inside], warped[inside]
        warped = (warped - w.mean(0)) / (w.std(0) + 1e-3) * t.std(0) + t.mean(0)
    warped = _jitter(np.clip(warped, 0, 255), rng)
    ratio = float(rng.choice([0.5, 0.75, 1.0, 1.0]))
    return _composite(warped, target, mask, ratio)
