"""The ONNX Runtime MTCNN (NumPy cascade) finds the faces facenet-pytorch's MTCNN finds, on real photos and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.vision.faces import FaceDetector, iou
from multimodal_df.vision.mtcnn_onnx import OnnxMTCNN, export_mtcnn, nms

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "data" / "face_photos"
EXAMPLES = ROOT / "multimodal_df" / "examples"


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mtcnn")
    diffs = export_mtcnn(out)
    assert set(diffs) == {"pnet", "rnet", "onet"} and max(diffs.values()) <= 1e-4
    return out


def _photos() -> list[np.ndarray]:
    """Real face photos: single portraits (AFLW2000 via DECA and PRNet, MakeItTalk) and two group photos."""
    from PIL import Image

    from multimodal_df.vision.faces import _resize

    names = sorted(PHOTOS.glob("deca/*.jpg"))[:3] + sorted(PHOTOS.glob("prnet/*.jpg"))[:3]
    names += sorted(PHOTOS.glob("makeittalk/*"))[:3] + sorted(PHOTOS.glob("ulfd_groups/*.jpg"))[1:3]
    out = []
    for p in names:
        img = np.asarray(Image.open(p).convert("RGB"))
        out.append(_resize(img, min(1.0, 640 / max(img.shape[:2]))))  # the size detection runs at in the pipeline
    return out


def _frames() -> np.ndarray:
    from multimodal_df.config import DecodeConfig
    from multimodal_df.media.decode import decode

    clips = [decode(p, DecodeConfig(num_frames=4)).frames for p in sorted(EXAMPLES.glob("*.mp4"))]
    return np.concatenate([c for c in clips if c is not None])


def _match(want: np.ndarray, got: np.ndarray) -> list[float]:
    """Best IoU in ``got`` for every box of ``want``."""
    return [max((iou(w, g) for g in got), default=0.0) for w in want]


def test_same_faces_as_facenet_pytorch_on_real_photos_and_frames(graphs: Path) -> None:
    from facenet_pytorch import MTCNN

    images = _photos() + list(_frames())
    if len(images) < 8:
        pytest.skip("no face photos or example clips here")
    ref = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], post_process=False, device="cpu")
    ours = OnnxMTCNN(graphs, 20, [0.6, 0.7, 0.7])
    total = 0
    for img in images:
        boxes, probs, points = ref.detect(img, landmarks=True)
        want = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64)
        (got,) = ours.detect(img[None])
        assert len(got.boxes) == len(want), img.shape
        total += len(want)
        ious = _match(want, got.boxes)
        assert min(ious, default=1.0) > 0.8
        # Beyond the matching faces: the same boxes, probabilities and landmarks up to float rounding, crowds
        # included (the cascade reproduces facenet-pytorch's float32 arithmetic where NMS decisions hang on it).
        order_w, order_g = np.lexsort(want.T), np.lexsort(got.boxes.T)
        np.testing.assert_allclose(got.boxes[order_g], want[order_w], atol=0.05)
        if len(want):
            np.testing.assert_allclose(got.probs[order_g], np.asarray(probs, np.float64)[order_w], atol=1e-4)
            np.testing.assert_allclose(got.landmarks[order_g], np.asarray(points, np.float64)[order_w], atol=0.05)
    assert total >= 10  # the comparison saw faces, not empty frames


def test_batched_frames_give_what_single_frames_give(graphs: Path) -> None:
    frames = _frames()
    ours = OnnxMTCNN(graphs, 20, [0.6, 0.7, 0.7])
    together = ours.detect(frames)
    for frame, t in zip(frames, together):
        (alone,) = ours.detect(frame[None])
        np.testing.assert_allclose(t.boxes, alone.boxes, atol=1e-3)


def test_face_detector_on_onnx_matches_the_torch_one(graphs: Path) -> None:
    frames = _frames()
    times = np.arange(len(frames), dtype=np.float64)
    torch_track = FaceDetector(crop_size=64).track(frames, times)
    onnx_track = FaceDetector(crop_size=64, mtcnn_graphs=graphs).track(frames, times)
    assert len(onnx_track) == len(torch_track) > 0
    assert np.array_equal(onnx_track.frame_index, torch_track.frame_index)
    assert min(iou(a, b) for a, b in zip(onnx_track.boxes, torch_track.boxes)) > 0.8


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    # NMS keeps the best of overlapping boxes and every box that overlaps nothing.
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.95, 0.5], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


def test_blank_images_have_no_faces(graphs: Path) -> None:
    ours = OnnxMTCNN(graphs, 20, [0.6, 0.7, 0.7])
    out = ours.detect(np.full((2, 120, 160, 3), 128, np.uint8))
    assert [len(f.boxes) for f in out] == [0, 0]
    assert ours.detect(np.zeros((1, 8, 8, 3), np.uint8))[0].boxes.shape == (0, 4)  # below one 12 px cell


def test_fast_resampling_is_bit_identical_to_the_reference_arithmetic() -> None:
    from multimodal_df.vision.mtcnn_onnx import area_crops, area_resize, integral

    rng = np.random.default_rng(5)
    for h, w in [(360, 640), (144, 176), (37, 23)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ii = integral(img)
        # The integral image is the plain double cumulative sum with a zero first row and column.
        ref = np.zeros((h + 1, w + 1, 3), np.int64)
        ref[1:, 1:] = img.astype(np.int64).cumsum(0).cumsum(1)
        assert np.array_equal(ii, ref)
        for scale in (0.6, 0.3, 0.1):
            oh, ow = int(h * scale + 1), int(w * scale + 1)
            whole = area_crops(ii, np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([h]), np.array([w]), oh, ow)
            assert np.array_equal(area_resize(ii, oh, ow), whole)


def test_pnet_in_small_batches_gives_what_one_batch_gives(graphs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # P-Net runs a few images per call to bound ONNX Runtime's memory; the faces must not depend on it.
    from multimodal_df.vision import mtcnn_onnx

    frames = _frames()
    ours = OnnxMTCNN(graphs, 20, [0.6, 0.7, 0.7])
    chunked = ours.detect(frames)
    assert len(frames) > mtcnn_onnx._PNET_IMAGES and sum(len(f.boxes) for f in chunked) > 0
    monkeypatch.setattr(mtcnn_onnx, "_PNET_IMAGES", len(frames))
    whole = ours.detect(frames)
    for a, b in zip(chunked, whole):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)
        assert np.array_equal(a.landmarks, b.landmarks)


def test_face_batches_side_by_side_find_the_same_faces(graphs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With several frame batches and cores, batches run on parallel threads with single-threaded sessions.
    import threading

    from multimodal_df.config import FaceConfig
    from multimodal_df.vision import mtcnn_onnx

    frames = _frames()
    # Three or four batches of every frame (no size probe, which runs alone first).
    cfg = FaceConfig(batch_size=max(1, len(frames) // 3), size_probe_frames=0)
    where: list[tuple[str, int]] = []
    real = mtcnn_onnx.OnnxMTCNN.detect

    def spy(self, images):
        where.append(
            (threading.current_thread().name, self.sessions["pnet"].get_session_options().intra_op_num_threads)
        )
        return real(self, images)

    monkeypatch.setattr(mtcnn_onnx.OnnxMTCNN, "detect", spy)
    monkeypatch.setattr(mtcnn_onnx, "default_threads", lambda: 2)
    parallel = FaceDetector(cfg, crop_size=64, mtcnn_graphs=graphs).detect(frames)
    assert len(where) >= 3 and all(name.startswith("mtcnn") and threads == 1 for name, threads in where), where
    where.clear()
    monkeypatch.setattr(mtcnn_onnx, "default_threads", lambda: 1)
    serial = FaceDetector(cfg, crop_size=64, mtcnn_graphs=graphs).detect(frames)
    assert all(name == threading.main_thread().name for name, _ in where), where
    assert sum(len(d) for d in serial) > 0
    for a, b in zip(parallel, serial):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)
        assert np.array_equal(a.landmarks, b.landmarks)
