"""MTCNN face detection on ONNX Runtime: the facenet-pytorch cascade in NumPy, its three networks as ONNX graphs.

The ONNX runtime of :mod:`multimodal_df.pipeline.onnx_runtime` must not import PyTorch (its import alone costs
2-4 s on a small CPU). Face detection there runs the same three networks as facenet-pytorch's ``MTCNN``
(P-Net, R-Net, O-Net, with facenet-pytorch's own pretrained weights, exported by :func:`export_mtcnn`) through
the same cascade, written here in NumPy:

1. an image pyramid: scales ``12 / min_face_size * factor**k`` while the shorter side stays >= 12 px, each level
   resampled by area averaging (PyTorch's ``interpolate(mode="area")``, i.e. adaptive average pooling);
2. P-Net on every level: a 12 x 12 window every 2 px whose face probability passes ``thresholds[0]`` becomes a
   candidate box; NMS at IoU 0.5 within a level, then 0.7 across levels; the boxes are regressed and squared;
3. R-Net on 24 x 24 resamplings of the candidates: probability above ``thresholds[1]``, NMS 0.7, regression;
4. O-Net on 48 x 48 resamplings: probability above ``thresholds[2]``, five landmarks, regression, and an NMS that
   divides the overlap by the smaller box ("Min", 0.7).

Area resampling of a box is a box mean, so every resampling (pyramid levels and the R-Net / O-Net crops) is
read off one integral image per frame: four look-ups per output pixel, exactly the mean PyTorch computes.

Coordinates follow facenet-pytorch's: boxes (x1, y1, x2, y2) in pixels of the image given, landmarks (x, y) in
the order left eye, right eye, nose, left mouth corner, right mouth corner.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NETS = ("pnet", "rnet", "onet")
"""The three graphs, written as ``<name>.onnx``."""
FACTOR = 0.709
"""Pyramid step (facenet-pytorch's default)."""
_OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}
_INPUT_SIDE = {"rnet": 24, "onet": 48}
_CHUNK = 512
"""Most R-Net / O-Net crops per session call (bounds the batch's memory, as facenet-pytorch does)."""
_PNET_IMAGES = 4
"""Most images per P-Net call. Each image's output is the same whatever the batch (convolutions are per image); the
activations of one call are what ONNX Runtime must hold: about 13 MB per 640x360 image at the first pyramid level,
so 16 images took some 350 MB of fresh memory per frame batch, whose page faults cost more than the calls saved."""


# ------------------------------------------------------------------------------------------- export (PyTorch)
def export_mtcnn(out: str | Path, opset: int = 17) -> dict[str, float]:
    """Write facenet-pytorch's pretrained P-Net, R-Net and O-Net to ``out/{pnet,rnet,onet}.onnx`` (dynamic batch;
    P-Net also dynamic height and width). Returns the largest |ONNX - PyTorch| over each net's outputs on a random
    batch; raises ``RuntimeError`` above 1e-4 (float32 rounding is about 1e-6). Needs PyTorch and facenet-pytorch."""
    import warnings

    import onnxruntime as ort
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    diffs: dict[str, float] = {}
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        net = cls(pretrained=True).eval()
        side = _INPUT_SIDE.get(name, 37)
        x = torch.rand(3, 3, side, side + (5 if name == "pnet" else 0), generator=g) * 2 - 1
        axes: dict[str, dict[int, str]] = {"x": {0: "batch"}}
        if name == "pnet":
            axes["x"].update({2: "height", 3: "width"})
        for o in _OUTPUTS[name]:
            axes[o] = {0: "batch"}
        path = out / f"{name}.onnx"
        tmp = path.with_name(f".{path.name}.tmp")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (x[:2],),
                str(tmp),
                input_names=["x"],
                output_names=_OUTPUTS[name],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,  # the dynamo exporter needs onnxscript, which is not a dependency
            )
            want = [t.numpy() for t in net(x)]
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(_OUTPUTS[name], {"x": x.numpy()})
        diffs[name] = float(max(np.abs(a - b).max() for a, b in zip(got, want)))
        if not diffs[name] <= 1e-4:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"the {name} ONNX graph differs from PyTorch by {diffs[name]:.2e}")
        tmp.replace(path)
    return diffs


# ------------------------------------------------------------------------------------------- resampling
def integral(image: np.ndarray) -> np.ndarray:
    """Integral image of uint8 [H, W, C]: [H + 1, W + 1, C] with a zero first row and column. int32 where the total
    fits (exact, half the memory of int64), int64 beyond."""
    h, w = image.shape[:2]
    dtype = np.int32 if h * w * 255 < 2**31 else np.int64
    if dtype == np.int32:
        import cv2

        # The same integers as the cumulative sums below, about 25x faster on a 640x360 frame.
        return cv2.integral(np.ascontiguousarray(image), sdepth=cv2.CV_32S)
    out = np.zeros((h + 1, w + 1, image.shape[2]), dtype)
    np.cumsum(image, axis=0, dtype=dtype, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, dtype=dtype, out=out[1:, 1:])
    return out


def _bins(start: np.ndarray, length: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-average-pooling bins of ``n`` outputs over spans [start, start + length): first and one-past-last
    input index per output, [K, n] each (PyTorch's rule: floor(i * L / n) to ceil((i + 1) * L / n))."""
    i = np.arange(n)
    lo = (i[None, :] * length[:, None]) // n
    hi = -((-(i[None, :] + 1) * length[:, None]) // n)
    return start[:, None] + lo, start[:, None] + hi


def area_crops(ii: np.ndarray, y0: np.ndarray, x0: np.ndarray, hh: np.ndarray, ww: np.ndarray, oh: int, ow: int):
    """Area-resample K rectangles of one image (its integral image ``ii`` [H + 1, W + 1, C]) to ``oh`` x ``ow``.

    Rectangle k covers rows ``y0[k] : y0[k] + hh[k]`` and columns ``x0[k] : x0[k] + ww[k]`` (inside the image).
    Returns float32 [K, C, oh, ow], pixel values 0-255.
    """
    ys, ye = _bins(np.asarray(y0), np.asarray(hh), oh)  # [K, oh]
    xs, xe = _bins(np.asarray(x0), np.asarray(ww), ow)  # [K, ow]
    total = (
        ii[ye[:, :, None], xe[:, None, :]].astype(np.int64)
        - ii[ys[:, :, None], xe[:, None, :]]
        - ii[ye[:, :, None], xs[:, None, :]]
        + ii[ys[:, :, None], xs[:, None, :]]
    )  # [K, oh, ow, C]
    # float32 sum / rows / columns, in that order: what PyTorch's kernel computes, bit for bit (the sums are exact
    # integers below 2**24). Dividing once by the area in float64 differs in the last bit, and that is enough to
    # reorder P-Net's near-tied scores of 0.99999 and change which boxes NMS keeps in a crowd.
    kh = (ye - ys).astype(np.float32)[:, :, None, None]
    kw = (xe - xs).astype(np.float32)[:, None, :, None]
    return (total.astype(np.float32) / kh / kw).transpose(0, 3, 1, 2)


def area_resize(ii: np.ndarray, oh: int, ow: int, out: np.ndarray | None = None) -> np.ndarray:
    """Area-resample a whole image (its integral image ``ii`` [H + 1, W + 1, C]) to ``oh`` x ``ow``: float32
    [1, C, oh, ow], the same values bit for bit as :func:`area_crops` over the full image, computed separably.
    ``out``: a float32 array of shape [C, oh, ow] to write into (it is then returned as [1, C, oh, ow]).

    Differencing whole rows of the integral image first gives every output row's column-cumulative sums; two
    column gathers then finish each window, instead of gathering four scattered corners per output pixel: about 4x
    faster on a 640x360 frame (the pyramid was about half the detector's time)."""
    h, w = ii.shape[0] - 1, ii.shape[1] - 1
    ys, ye = _bins(np.zeros(1, np.int64), np.array([h]), oh)
    xs, xe = _bins(np.zeros(1, np.int64), np.array([w]), ow)
    ys, ye, xs, xe = ys[0], ye[0], xs[0], xe[0]
    # Exact integers in the integral image's own type (int32 whenever the image's total fits, see integral()).
    rows = np.take(ii, ye, axis=0) - np.take(ii, ys, axis=0)  # [oh, W + 1, C]: row-window sums, cumulated along x
    total = np.take(rows, xe, axis=1) - np.take(rows, xs, axis=1)  # [oh, ow, C]
    kh = (ye - ys).astype(np.float32)[:, None, None]
    kw = (xe - xs).astype(np.float32)[None, :, None]
    mean = total.astype(np.float32)
    mean /= kh  # in place: the same float32 divisions, in the same order, without two temporaries
    mean /= kw
    if out is None:
        return mean.transpose(2, 0, 1)[None]
    out[...] = mean.transpose(2, 0, 1)
    return out[None]


def _normalise(x: np.ndarray) -> np.ndarray:
    """Pixel values 0-255 -> the networks' input range, as facenet-pytorch scales them: in place on a contiguous
    float32 array (the same float32 arithmetic as ``(x - 127.5) * 0.0078125``), which is returned."""
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    x -= np.float32(127.5)
    x *= np.float32(0.0078125)
    return x


# ------------------------------------------------------------------------------------------- boxes
def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    ``method="union"``: IoU with areas (x2 - x1) * (y2 - y1), a box dropped when its IoU with a kept one exceeds
    ``threshold`` (torchvision's ``nms``). ``"min"``: areas with + 1 and the overlap divided by the smaller area,
    a box kept only while it stays at or under ``threshold`` (facenet-pytorch's O-Net stage).
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    # float32 throughout, as torchvision and facenet-pytorch compute it: with boxes on a pixel grid an overlap of
    # exactly the threshold is common, and float64 would round it to the other side of the comparison.
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float32) for k in range(4))
    plus = np.float32(1.0 if method == "min" else 0.0)
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
            order = rest[overlap <= threshold]
        else:
            union = area[i] + area[rest] - inter
            overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, image: np.ndarray, threshold: float, method: str = "union"):
    """:func:`nms` within each image (``image`` [K] its index); kept indices, grouped by image."""
    keep = [
        np.flatnonzero(image == i)[nms(boxes[image == i], scores[image == i], threshold, method)]
        for i in np.unique(image)
    ]
    return np.concatenate(keep) if keep else np.zeros(0, np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes [K, >=4] grown to squares about their centres (side = the longer side); other columns kept."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """R-Net / O-Net box regression: each edge moves by its offset times the box's side (+ 1 pixel, as trained)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def clip_rows(boxes: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer pixel spans of boxes inside a w x h image, as facenet-pytorch cuts them: coordinates truncated toward
    zero, then rows ``y0 : y1`` and columns ``x0 : x1`` (0-based, end excluded)."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(b[:, 0], 1) - 1
    y = np.maximum(b[:, 1], 1) - 1
    ex = np.minimum(b[:, 2], w)
    ey = np.minimum(b[:, 3], h)
    return y, ey, x, ex


# ------------------------------------------------------------------------------------------- the detector
@dataclass
class Faces:
    """One image's faces: ``boxes`` float32 [M, 4] (x1, y1, x2, y2), ``probs`` [M], ``landmarks`` [M, 5, 2], pixels."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> Faces:
        return Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


class OnnxMTCNN:
    """The MTCNN cascade on three ONNX Runtime sessions (the graphs :func:`export_mtcnn` writes in ``directory``).

    ``min_face_size`` pixels (any positive number); ``thresholds`` the P-, R- and O-Net face probabilities a box must
    pass; ``providers`` ONNX Runtime execution providers; ``threads`` intra-op threads per session.
    """

    def __init__(
        self,
        directory: str | Path,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = FACTOR,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int = 1,
    ) -> None:
        self.min_face_size = float(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.sessions = {n: _session(Path(directory) / f"{n}.onnx", tuple(providers), threads) for n in NETS}

    def scales(self, h: int, w: int) -> list[float]:
        """The pyramid's scale factors for an h x w image (largest first)."""
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        out, s = [], m
        while minl >= 12:
            out.append(s)
            s *= self.factor
            minl *= self.factor
        return out

    def detect(self, images: np.ndarray | Sequence[np.ndarray]) -> list[Faces]:
        """Faces in each of N equal-size uint8 RGB images ([N, H, W, 3] or a list of [H, W, 3]); per image the faces
        sorted by box area, largest first (facenet-pytorch's ``select_largest`` order)."""
        imgs = [np.asarray(i) for i in images]
        if not imgs:
            return []
        h, w = imgs[0].shape[:2]
        if any(i.shape != imgs[0].shape for i in imgs) or imgs[0].ndim != 3 or imgs[0].shape[2] != 3:
            raise ValueError("detect() needs RGB images [H, W, 3] of one size")
        ii = [integral(i) for i in imgs]
        boxes, image = self._propose(ii, h, w)
        if len(boxes):
            boxes, image = self._refine(ii, boxes, image, h, w)
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, image, points = self._output(ii, boxes, image, h, w)
        out = []
        for n in range(len(imgs)):
            sel = np.flatnonzero(image == n)
            if not len(sel):
                out.append(Faces.empty())
                continue
            b = boxes[sel]
            order = np.argsort(-((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])), kind="stable")
            out.append(Faces(b[order, :4], b[order, 4], points[sel][order]))
        return out

    # Stage 1: P-Net over the pyramid.
    def _propose(self, ii: list[np.ndarray], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        found, where = [], []
        for scale in self.scales(h, w):
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            level = np.empty((len(ii), 3, hs, ws), np.float32)
            for n, x in enumerate(ii):
                area_resize(x, hs, ws, out=level[n])
            reg, prob = self._run("pnet", _normalise(level), _PNET_IMAGES)
            score = prob[:, 1]
            img, yy, xx = np.nonzero(score >= self.thresholds[0])
            if not len(img):
                continue
            # A cell's 12 px window in the image, in float32 as facenet-pytorch computes it: at scale 0.6 the float32
            # quotient 3 / 0.6 is 4.9999998, and the box edge is pixel 4, where float64 would say 5.
            s32, x32, y32 = np.float32(scale), xx.astype(np.float32), yy.astype(np.float32)
            q1x, q1y = np.floor((2 * x32 + 1) / s32), np.floor((2 * y32 + 1) / s32)
            q2x, q2y = np.floor((2 * x32 + 12) / s32), np.floor((2 * y32 + 12) / s32)
            b = np.stack(
                [q1x, q1y, q2x, q2y, score[img, yy, xx], *(reg[img, k, yy, xx] for k in range(4))], axis=1
            ).astype(np.float32)
            keep = batched_nms(b[:, :4], b[:, 4], img, 0.5)
            found.append(b[keep])
            where.append(img[keep])
        if not found:
            return np.zeros((0, 9), np.float32), np.zeros(0, np.int64)
        b, img = np.concatenate(found), np.concatenate(where)
        keep = batched_nms(b[:, :4], b[:, 4], img, 0.7)
        b, img = b[keep], img[keep]
        # P-Net's regression scales with the box's side without the + 1 that R-Net and O-Net use.
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        moved = b[:, :4] + b[:, 5:9] * np.stack([bw, bh, bw, bh], axis=1)
        return square(np.concatenate([moved, b[:, 4:5]], axis=1).astype(np.float32)), img

    def _crops(self, ii: list[np.ndarray], boxes: np.ndarray, image: np.ndarray, h: int, w: int, side: int):
        """Area resamplings [K, 3, side, side] (normalised) of the boxes, and which boxes had any pixels."""
        y, ey, x, ex = clip_rows(boxes, w, h)
        ok = (ey > y) & (ex > x)
        out = np.zeros((len(boxes), 3, side, side), np.float32)
        for n in np.unique(image[ok]):
            sel = np.flatnonzero(ok & (image == n))
            out[sel] = area_crops(ii[n], y[sel], x[sel], ey[sel] - y[sel], ex[sel] - x[sel], side, side)
        return _normalise(out), ok

    def _run(self, net: str, x: np.ndarray, chunk: int = _CHUNK) -> list[np.ndarray]:
        """``net``'s outputs on the batch ``x``, run ``chunk`` items at a time."""
        parts = [self.sessions[net].run(_OUTPUTS[net], {"x": x[i : i + chunk]}) for i in range(0, len(x), chunk)]
        return parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts)]

    # Stage 2: R-Net on 24 x 24 crops.
    def _refine(self, ii: list[np.ndarray], boxes: np.ndarray, image: np.ndarray, h: int, w: int):
        x, ok = self._crops(ii, boxes, image, h, w, 24)
        boxes, image, x = boxes[ok], image[ok], x[ok]
        reg, prob = self._run("rnet", x)
        score = prob[:, 1]
        passed = score > self.thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        image, reg = image[passed], reg[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image, 0.7)
        return square(regress(boxes[keep], reg[keep])), image[keep]

    # Stage 3: O-Net on 48 x 48 crops, with landmarks.
    def _output(self, ii: list[np.ndarray], boxes: np.ndarray, image: np.ndarray, h: int, w: int):
        x, ok = self._crops(ii, boxes, image, h, w, 48)
        boxes, image, x = boxes[ok], image[ok], x[ok]
        reg, pts, prob = self._run("onet", x)
        score = prob[:, 1]
        passed = score > self.thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        image, reg, pts = image[passed], reg[passed], pts[passed]
        # Landmarks are fractions of the (+ 1) box before its regression; the - 1 matches facenet-pytorch.
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        px = bw * pts[:, :5] + boxes[:, 0:1] - 1
        py = bh * pts[:, 5:10] + boxes[:, 1:2] - 1
        points = np.stack([px, py], axis=2).astype(np.float32)
        boxes = regress(boxes, reg)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image, 0.7, "min")
        return boxes[keep], image[keep], points[keep]


def default_threads() -> int:
    """Intra-op threads for an ONNX Runtime session when PyTorch is not there to ask: ``OMP_NUM_THREADS`` when set
    (what PyTorch would use), else the cores this process may run on."""
    import os

    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_SESSIONS: dict[tuple[str, tuple[str, ...], int], Any] = {}
_LOCK = threading.Lock()


def _session(path: Path, providers: tuple[str, ...], threads: int) -> Any:
    """One ONNX Runtime session per graph, providers and thread count in a process (sessions are thread-safe)."""
    import onnxruntime as ort

    key = (str(path.resolve()), providers, threads)
    with _LOCK:
        if key not in _SESSIONS:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, threads)
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            # Idle pool threads sleep instead of spinning: between the many short calls of the cascade they would
            # otherwise busy-wait on the cores that NumPy, the decoder and other processes need (measured faster on
            # 2 shared cores); the results do not depend on it.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _SESSIONS[key] = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        return _SESSIONS[key]
