"""Square face crops: one definition of the geometry, used to cut crops, to map landmarks into them
and to paste heat maps back onto the frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Square:
    """A square region of a frame: top-left corner (``x``, ``y``) and ``side``, integer pixels (may reach outside the frame)."""

    x: int
    y: int
    side: int


def square_region(box: np.ndarray, margin: float) -> Square:
    """The square around face ``box`` (x1, y1, x2, y2, pixels): its longer side times (1 + ``margin``), same centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return Square(int(round(cx - side / 2)), int(round(cy - side / 2)), max(1, int(round(side))))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` uint8 [H, W, 3] resized to [size, size, 3]: area averaging to shrink, bilinear to enlarge."""
    import cv2

    interp = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def square_crop(frame: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the :func:`square_region` of ``box`` in ``frame`` [H, W, 3], zero-padded past the edges."""
    sq = square_region(box, margin)
    h, w = frame.shape[:2]
    out = np.zeros((sq.side, sq.side, 3), np.uint8)
    xa, ya, xb, yb = max(sq.x, 0), max(sq.y, 0), min(sq.x + sq.side, w), min(sq.y + sq.side, h)
    if xb > xa and yb > ya:
        out[ya - sq.y : yb - sq.y, xa - sq.x : xb - sq.x] = frame[ya:yb, xa:xb]
    return resize_square(out, size)


def landmarks_to_crop(landmarks: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Landmarks [5, 2] in frame pixels -> pixels of the ``size`` crop that :func:`square_crop` cuts for ``box``."""
    sq = square_region(box, margin)
    return (np.asarray(landmarks, dtype=np.float64) - [sq.x, sq.y]) * (size / sq.side)
