"""Face detection (MTCNN), tracking of the main face, and square crops.

MTCNN runs batched on a downscaled copy of each frame; boxes and landmarks are mapped back
to full resolution so crops keep every pixel of the original face. It runs on facenet-pytorch (PyTorch), or,
given the directory of its ONNX graphs, on ONNX Runtime without importing PyTorch
(:mod:`multimodal_df.vision.mtcnn_onnx`; the same networks and cascade, boxes within float rounding).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FaceConfig
from ..errors import MediaError
from .crops import square_crop
from .mtcnn_onnx import FACTOR


@dataclass
class Detections:
    """Faces found in one frame, full-resolution pixels.

    ``boxes`` [M, 4] (x1, y1, x2, y2), ``probs`` [M], ``landmarks`` [M, 5, 2] (eyes, nose, mouth corners).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return len(self.probs)


@dataclass
class FaceTrack:
    """The main face of a clip, one crop per frame in which it was found.

    ``crops`` uint8 RGB [K, S, S, 3]; ``frame_index`` [K] indexes the clip's frames; ``times`` [K]
    seconds; ``boxes`` [K, 4] and ``landmarks`` [K, 5, 2] in full-resolution pixels; ``probs`` [K].
    ``num_frames`` is how many frames were searched (frames without the face are not in the track).
    """

    crops: np.ndarray
    frame_index: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray
    num_frames: int

    def __len__(self) -> int:
        return len(self.frame_index)

    @staticmethod
    def empty(num_frames: int, size: int) -> FaceTrack:
        return FaceTrack(
            np.zeros((0, size, size, 3), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros((0, 5, 2)),
            num_frames,
        )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def link_score(a: np.ndarray, b: np.ndarray, min_iou: float, max_shift: float) -> float:
    """How well box ``b`` continues box ``a``: IoU when it reaches ``min_iou``; otherwise a score in
    (0, min_iou) that falls with the centre shift (in box sizes), or 0 when they cannot be one face."""
    ov = iou(a, b)
    if ov >= min_iou:
        return ov
    size_a, size_b = np.sqrt((a[2] - a[0]) * (a[3] - a[1])), np.sqrt((b[2] - b[0]) * (b[3] - b[1]))
    if size_a <= 0 or size_b <= 0 or not 0.5 <= size_b / size_a <= 2.0:
        return 0.0
    shift = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / ((size_a + size_b) / 2)
    return float(min_iou * (1 - shift / max_shift) * 0.999) if shift < max_shift else 0.0


_MTCNN_CACHE: dict[tuple, object] = {}
_MTCNN_LOCK = threading.Lock()


def _mtcnn(min_face_size: float, thresholds: list[float], device: str):
    key = (min_face_size, tuple(thresholds), device)
    with _MTCNN_LOCK:
        if key not in _MTCNN_CACHE:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as exc:  # pragma: no cover - an install problem, said plainly
                raise RuntimeError(
                    "facenet-pytorch is not installed; run `pip install --no-deps facenet-pytorch==2.6.0`"
                ) from exc
            _MTCNN_CACHE[key] = MTCNN(
                keep_all=True,
                min_face_size=min_face_size,
                thresholds=list(thresholds),
                post_process=False,
                device=device,
            )
        return _MTCNN_CACHE[key]


def _onnx_mtcnn(
    directory: str | Path, min_face_size: float, thresholds: list[float], device: str, threads: int | None = None
):
    """The ONNX Runtime MTCNN (sessions are shared per process by :mod:`.mtcnn_onnx`); ``threads`` intra-op threads
    per session (default: :func:`~.mtcnn_onnx.default_threads`)."""
    from .mtcnn_onnx import OnnxMTCNN, default_threads

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        import onnxruntime as ort

        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()] + providers
    return OnnxMTCNN(directory, min_face_size, thresholds, providers=providers, threads=threads or default_threads())


def _spread(n: int, k: int) -> np.ndarray:
    """Indices of ``k`` frames spread evenly over ``n``, first and last included (fewer when ``n < k``)."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class FaceDetector:
    """Detects faces in frames and follows the main one.

    ``crop_size`` is the side of the square crops handed to the vision model, in pixels. ``mtcnn_graphs``: a
    directory holding ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` (written by ``python -m multimodal_df.export``)
    to run MTCNN on ONNX Runtime; None runs facenet-pytorch.

    Detection runs on frames downscaled to ``detect_max_side``: first on a few probe frames for faces of every size,
    then on the others for faces of about the main face's size or larger (``size_probe_frames``, ``size_probe_ratio``:
    on a 1080p close-up that halves the detector's time). A face that is small in a large frame
    (60-100 px in 1080p is about 20-35 px at 640) is then easily missed, so when that first pass finds a
    face in fewer than ``small_face_trigger`` of the frames, a second pass looks closer: around the faces
    it did find, or, when it found none, first in a few frames at up to ``small_face_max_side``, and then
    at full resolution in a window around those finds in every frame that missed.
    """

    def __init__(
        self,
        cfg: FaceConfig | None = None,
        crop_size: int = 224,
        device: str = "cpu",
        mtcnn_graphs: str | Path | None = None,
    ) -> None:
        self.cfg = cfg or FaceConfig()
        self.crop_size = crop_size
        self.device = device
        self.mtcnn_graphs = mtcnn_graphs

    def _batches(self, images: list[np.ndarray], min_face_size: float) -> Iterator[list[int]]:
        """Indices of ``images`` in batches of equal size (at most ``batch_size``), skipping images too small to hold
        a face: MTCNN's pyramid needs at least one face of the smallest size it looks for."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            if min(img.shape[:2]) >= max(12, min_face_size):
                by_size.setdefault(img.shape, []).append(i)
        for idx in by_size.values():
            for start in range(0, len(idx), self.cfg.batch_size):
                yield idx[start : start + self.cfg.batch_size]

    def _kept(self, boxes: np.ndarray, probs: np.ndarray, landmarks: np.ndarray) -> Detections:
        """The detections of one image above ``min_prob``, most confident first."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        keep = p >= self.cfg.min_prob
        order = np.argsort(-p[keep])
        return Detections(b[keep][order], p[keep][order], lm[keep][order])

    def _run(self, images: list[np.ndarray], min_face_size: float) -> list[Detections]:
        """MTCNN on images of any sizes (full-resolution pixels of each image), batched by equal size; on the ONNX
        Runtime copy of the networks when the detector has their graphs."""
        out: list[Detections] = [Detections.empty() for _ in images]
        if self.mtcnn_graphs is not None:
            parts = list(self._batches(images, min_face_size))
            for part, faces in self._onnx_parts(images, parts, min_face_size):
                for i, f in zip(part, faces):
                    out[i] = self._kept(f.boxes, f.probs, f.landmarks)
            return out
        mtcnn = _mtcnn(min_face_size, self.cfg.thresholds, self.device)
        for part in self._batches(images, min_face_size):
            boxes, probs, lms = mtcnn.detect([images[i] for i in part], landmarks=True)  # type: ignore[attr-defined]
            for i, b, p, lm in zip(part, boxes, probs, lms):
                # facenet-pytorch gives None for an image without a face (object arrays when others in the batch have one).
                if b is not None:
                    out[i] = self._kept(b, p, lm)
        return out

    def _onnx_parts(self, images: list[np.ndarray], parts: list[list[int]], min_face_size: float):
        """(part, faces of its images) for every batch of ``parts``, on the ONNX Runtime MTCNN.

        On the CPU with several batches and cores, the batches run side by side on one thread per core, each with
        single-threaded sessions: the cascade's NumPy steps (pyramid levels, NMS, crop resampling) then run in
        parallel too (NumPy, OpenCV and ONNX Runtime release the GIL), where one batch at a time left a core idle
        during them and its short R-Net / O-Net calls split poorly over threads. Each batch is the same call as
        before, and ONNX Runtime's thread count does not change its floats, so the faces are the same."""
        from .mtcnn_onnx import default_threads

        cores = default_threads()
        workers = min(len(parts), cores) if not self.device.startswith("cuda") else 1
        if workers <= 1:
            onnx = _onnx_mtcnn(self.mtcnn_graphs, min_face_size, self.cfg.thresholds, self.device)  # type: ignore[arg-type]
            for part in parts:
                yield part, onnx.detect([images[i] for i in part])
            return
        from concurrent.futures import ThreadPoolExecutor

        onnx = _onnx_mtcnn(self.mtcnn_graphs, min_face_size, self.cfg.thresholds, self.device, threads=1)  # type: ignore[arg-type]
        with ThreadPoolExecutor(workers, thread_name_prefix="mtcnn") as pool:
            yield from zip(parts, pool.map(lambda part: onnx.detect([images[i] for i in part]), parts))

    def _scaled(self, frames: np.ndarray | list[np.ndarray], scale: float, min_face_size: float) -> list[Detections]:
        """Detect on frames resized by ``scale``; boxes and landmarks come back in full-resolution pixels. A list of
        frames (views) spares a copy of them: 170 MB of fresh memory for 28 frames of 1080p costs more than MTCNN."""
        dets = self._run([_resize(f, scale) for f in frames], min_face_size)
        return [Detections(d.boxes / scale, d.probs, d.landmarks / scale) for d in dets]

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """Faces in each frame of uint8 RGB [N, H, W, 3], above ``min_prob``, sorted by confidence; full-resolution pixels."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(f"expected RGB frames [N, H, W, 3], got shape {tuple(frames.shape)}")
        n, h, w = frames.shape[:3]
        scale = min(1.0, self.cfg.detect_max_side / max(h, w))
        dets = self._first_pass(frames, scale)
        found = sum(len(d) > 0 for d in dets)
        if self.cfg.small_faces and scale < 1.0 and found < self.cfg.small_face_trigger * n:
            dets = self._look_closer(frames, dets)
        return dets

    def _first_pass(self, frames: np.ndarray, scale: float) -> list[Detections]:
        """Detections in every frame at ``scale``: first in ``size_probe_frames`` frames for faces of every size, then
        in the others for faces of about the main face's size or larger (see :class:`FaceConfig`)."""
        n = len(frames)
        cfg = self.cfg
        if cfg.size_probe_frames <= 0 or n < 2 * cfg.size_probe_frames:
            return self._scaled(frames, scale, cfg.min_face_size)
        probe = _spread(n, cfg.size_probe_frames)
        dets: list[Detections] = [Detections.empty() for _ in range(n)]
        for i, d in zip(probe, self._scaled([frames[i] for i in probe], scale, cfg.min_face_size)):
            dets[i] = d
        rest = np.setdiff1d(np.arange(n), probe)
        min_size: float = cfg.min_face_size
        if all(len(dets[i]) for i in probe):
            # The largest face of each probe frame (in pixels of the detection scale); the smallest of those bounds
            # the main face's size over the clip.
            sides = [
                float(np.max(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) for b in (dets[i].boxes for i in probe)
            ]
            want = cfg.size_probe_ratio * min(sides) * scale
            if want > cfg.min_face_size:
                # Drop whole levels from the top of the usual pyramid (scales 12 / min_face_size * FACTOR**k), so the
                # levels that remain are the same images the full search looks at and the main face's box does not move.
                k = int(math.floor(math.log(want / cfg.min_face_size) / -math.log(FACTOR)))
                min_size = cfg.min_face_size / FACTOR**k
        for i, d in zip(rest, self._scaled([frames[i] for i in rest], scale, min_size)):
            dets[i] = d
        return dets

    def _look_closer(self, frames: np.ndarray, dets: list[Detections]) -> list[Detections]:
        """The second pass for small faces (see the class docstring)."""
        h, w = frames.shape[1:3]
        boxes = [b for d in dets for b in d.boxes]
        if not boxes:
            probe = _spread(len(frames), self.cfg.small_face_probe_frames)
            scale = min(1.0, self.cfg.small_face_max_side / max(h, w))
            for i, d in zip(probe, self._scaled([frames[i] for i in probe], scale, self.cfg.small_face_min_size)):
                dets[i] = d
            boxes = [b for d in dets for b in d.boxes]
            if not boxes:
                return dets
        # A window around every face found so far, grown by the face's size (faces move between samples).
        b = np.asarray(boxes)
        side = float(np.max(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))
        x1, y1 = max(0, int(b[:, 0].min() - 1.5 * side)), max(0, int(b[:, 1].min() - 1.5 * side))
        x2, y2 = min(w, int(b[:, 2].max() + 1.5 * side)), min(h, int(b[:, 3].max() + 1.5 * side))
        missed = [i for i, d in enumerate(dets) if len(d) == 0]
        if not missed or x2 - x1 < 12 or y2 - y1 < 12:
            return dets
        # Full resolution inside the window, capped so the window's longer side stays at most detect_max_side.
        scale = min(1.0, self.cfg.detect_max_side / max(x2 - x1, y2 - y1))
        windows = np.ascontiguousarray(frames[missed, y1:y2, x1:x2])
        for i, d in zip(missed, self._scaled(windows, scale, self.cfg.small_face_min_size)):
            if len(d):
                offset = np.array([x1, y1], dtype=np.float64)
                dets[i] = Detections(d.boxes + np.tile(offset, 2), d.probs, d.landmarks + offset)
        return dets

    def track(self, frames: np.ndarray | None, times: np.ndarray) -> FaceTrack:
        """The main face track of a clip: detections linked by IoU (or a small centre shift); the
        largest, most confident track wins."""
        if frames is None or len(frames) == 0:
            return FaceTrack.empty(0, self.crop_size)
        dets = self.detect(frames)
        h, w = frames.shape[1:3]
        tracks: list[list[tuple[int, int]]] = []  # each: [(frame, detection index)]
        for i, d in enumerate(dets):
            taken: set[int] = set()
            for j in range(len(d)):
                best, best_score = None, 0.0
                for t_idx, tr in enumerate(tracks):
                    if t_idx in taken or tr[-1][0] == i:
                        continue
                    fi, dj = tr[-1]
                    sc = link_score(dets[fi].boxes[dj], d.boxes[j], self.cfg.track_iou, self.cfg.track_max_shift)
                    if sc > best_score:
                        best, best_score = t_idx, sc
                if best is None:
                    tracks.append([(i, j)])
                    taken.add(len(tracks) - 1)
                else:
                    tracks[best].append((i, j))
                    taken.add(best)
        if not tracks:
            return FaceTrack.empty(len(frames), self.crop_size)

        def score(tr: list[tuple[int, int]]) -> float:
            # Area (as a fraction of the frame) times confidence, summed over the frames it spans.
            total = 0.0
            for fi, dj in tr:
                b = dets[fi].boxes[dj]
                total += dets[fi].probs[dj] * (b[2] - b[0]) * (b[3] - b[1]) / (h * w)
            return total

        main = max(tracks, key=score)
        idx = np.array([fi for fi, _ in main], np.int64)
        boxes = np.stack([dets[fi].boxes[dj] for fi, dj in main])
        probs = np.array([dets[fi].probs[dj] for fi, dj in main])
        lms = np.stack([dets[fi].landmarks[dj] for fi, dj in main])
        crops = self._crops(frames, idx, boxes)
        return FaceTrack(crops, idx, np.asarray(times, dtype=np.float64)[idx], boxes, probs, lms, len(frames))

    def _crops(self, frames: np.ndarray, idx: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """uint8 [K, S, S, 3]: the :func:`square_crop` of ``boxes[k]`` in ``frames[idx[k]]``, on one thread per core.

        OpenCV's area resize to a non-integer fraction (a ~700 px face square to 224 px) runs on one core; the crops
        are independent, so two threads halve the time (0.11 s -> 0.06 s for 32 crops of a 1080p clip)."""
        from .mtcnn_onnx import default_threads

        def crop(k: int) -> np.ndarray:
            return square_crop(frames[idx[k]], boxes[k], self.cfg.margin, self.crop_size)

        workers = min(default_threads(), len(idx) // 4)  # a handful of crops is not worth a thread
        if workers <= 1:
            return np.stack([crop(k) for k in range(len(idx))])
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="crops") as pool:
            return np.stack(list(pool.map(crop, range(len(idx)))))

    def faces_in_image(self, image: np.ndarray) -> tuple[Detections, np.ndarray]:
        """Every face in one RGB image [H, W, 3]: detections and crops [M, S, S, 3]."""
        d = self.detect(image[None])[0]
        crops = [square_crop(image, b, self.cfg.margin, self.crop_size) for b in d.boxes]
        return d, (np.stack(crops) if crops else np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8))
