from __future__ import annotations

import numpy as np
import pytest

from multimodal_df.config import FaceConfig
from multimodal_df.testing.fixtures import FixtureSpec, render_frames
from multimodal_df.vision.faces import FaceDetector, iou, square_crop


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def test_finds_the_astronauts_face(astronaut: np.ndarray) -> None:
    det = FaceDetector(crop_size=96).detect(astronaut[None])[0]
    assert len(det) == 1 and det.probs[0] > 0.99
    x1, y1, x2, y2 = det.boxes[0]
    # The face sits around x 180-270, y 60-175 in the 512x512 photo.
    assert 160 < x1 < 200 and 240 < x2 < 290 and 40 < y1 < 90 and 150 < y2 < 200
    assert det.landmarks.shape == (1, 5, 2)


def test_boxes_map_back_from_the_downscaled_copy(astronaut: np.ndarray) -> None:
    import cv2

    big = cv2.resize(astronaut, (1024, 1024))
    full = FaceDetector(FaceConfig(detect_max_side=2048)).detect(big[None])[0]
    small = FaceDetector(FaceConfig(detect_max_side=256)).detect(big[None])[0]
    assert len(full) == len(small) == 1
    assert iou(full.boxes[0], small.boxes[0]) > 0.8


def test_no_face_frames_are_recorded_as_such() -> None:
    frames = np.zeros((3, 120, 160, 3), np.uint8)
    track = FaceDetector(crop_size=64).track(frames, np.arange(3.0))
    assert len(track) == 0 and track.num_frames == 3 and track.crops.shape == (0, 64, 64, 3)


def test_track_follows_the_main_face_and_crops_are_square() -> None:
    frames, boxes = render_frames(FixtureSpec(seed=11, width=200, height=160, duration=1.0, fps=8))
    frames[3] = 0  # a frame with no face
    track = FaceDetector(crop_size=72).track(frames, np.arange(len(frames)) / 8)
    assert 3 not in track.frame_index and len(track) == len(frames) - 1
    assert track.crops.shape[1:] == (72, 72, 3)
    for fi, b in zip(track.frame_index, track.boxes):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        gx, gy = (boxes[fi, 0] + boxes[fi, 2]) / 2, (boxes[fi, 1] + boxes[fi, 3]) / 2
        assert abs(cx - gx) < 25 and abs(cy - gy) < 30  # on the rendered head


def test_crops_cut_on_several_threads_are_the_crops_cut_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal_df.vision import mtcnn_onnx

    frames, _ = render_frames(FixtureSpec(seed=12, width=200, height=160, duration=1.5, fps=8))
    det = FaceDetector(crop_size=72)
    dets = det.detect(frames)
    idx = np.array([i for i, d in enumerate(dets) if len(d)])
    boxes = np.stack([dets[i].boxes[0] for i in idx])
    assert len(idx) >= 8
    import threading

    from multimodal_df.vision import faces

    names: set[str] = set()

    def spy(*args, **kwargs):
        names.add(threading.current_thread().name)
        return square_crop(*args, **kwargs)

    monkeypatch.setattr(mtcnn_onnx, "default_threads", lambda: 2)
    monkeypatch.setattr(faces, "square_crop", spy)
    threaded = det._crops(frames, idx, boxes)
    assert names and all(n.startswith("crops") for n in names)
    want = np.stack([square_crop(frames[i], b, det.cfg.margin, 72) for i, b in zip(idx, boxes)])
    assert threaded.shape == want.shape and np.array_equal(threaded, want)


def _search_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """(frames, smallest face size searched) of every first-pass call of a FaceDetector, recorded as they happen."""
    calls: list[tuple[int, float]] = []
    real = FaceDetector._scaled

    def spy(self, frames, scale, min_face_size):
        calls.append((len(frames), float(min_face_size)))
        return real(self, frames, scale, min_face_size)

    monkeypatch.setattr(FaceDetector, "_scaled", spy)
    return calls


def test_after_the_probe_frames_a_close_up_is_searched_only_for_faces_near_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames, _ = render_frames(FixtureSpec(seed=13, width=320, height=240, duration=1.5, fps=8))
    full = FaceDetector(FaceConfig(size_probe_frames=0)).detect(frames)
    calls = _search_sizes(monkeypatch)
    probed = FaceDetector(FaceConfig(size_probe_frames=4)).detect(frames)
    # Four probe frames at the configured smallest size, then the other eight for larger faces only.
    assert calls[0] == (4, 20.0) and calls[1][0] == len(frames) - 4 and calls[1][1] > 25, calls
    # Whole top levels of the same pyramid: the main face is the face the full search finds.
    assert [len(d) > 0 for d in probed] == [len(d) > 0 for d in full] and sum(len(d) > 0 for d in full) >= 10
    for a, b in zip(full, probed):
        if len(a):
            assert iou(a.boxes[0], b.boxes[0]) > 0.95


def test_a_probe_frame_without_a_face_keeps_every_face_size_in_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    frames, _ = render_frames(FixtureSpec(seed=13, width=320, height=240, duration=1.5, fps=8))
    frames[0] = 0  # the first probe frame
    calls = _search_sizes(monkeypatch)
    dets = FaceDetector(FaceConfig(size_probe_frames=4)).detect(frames)
    assert len(dets[0]) == 0 and sum(len(d) > 0 for d in dets) >= 9
    assert [size for _, size in calls] == [20.0, 20.0], calls


def test_largest_face_wins_over_a_small_one() -> None:
    import cv2

    from multimodal_df.testing.fixtures import head_patch

    head = head_patch()
    frame = np.full((240, 320, 3), 90, np.uint8)
    big = cv2.resize(head, (150, 190))
    small = cv2.resize(head, (50, 63))
    frame[20:210, 150:300] = big
    frame[10:73, 10:60] = small
    track = FaceDetector(crop_size=64).track(np.stack([frame, frame]), np.array([0.0, 0.5]))
    assert len(track) == 2
    assert track.boxes[0][0] > 140  # the big face on the right


def test_square_crop_pads_outside_the_frame() -> None:
    frame = np.full((50, 50, 3), 200, np.uint8)
    crop = square_crop(frame, np.array([-20.0, -20.0, 20.0, 20.0]), 0.0, 40)
    assert crop.shape == (40, 40, 3)
    assert crop[:10, :10].max() == 0 and crop[-5:, -5:].min() == 200


def test_sparse_samples_of_a_moving_face_stay_one_track() -> None:
    # 16 frames over 10 s: the face moves far between samples, but it is one face.
    from multimodal_df.testing.fixtures import FixtureSpec, render_frames

    frames, _ = render_frames(FixtureSpec(seed=1, duration=10, width=320, height=180, fps=1.6))
    track = FaceDetector(crop_size=32).track(frames, np.arange(len(frames)) / 1.6)
    assert len(track) == len(frames) == 16


def test_link_score() -> None:
    from multimodal_df.vision.faces import link_score

    a = np.array([0.0, 0, 100, 100])
    assert link_score(a, a, 0.3, 1.0) == 1.0
    shifted = a + np.array([80.0, 0, 80, 0])  # IoU 0.11, centre moved 0.8 box sizes
    assert 0 < link_score(a, shifted, 0.3, 1.0) < 0.3
    assert link_score(a, a + np.array([150.0, 0, 150, 0]), 0.3, 1.0) == 0.0
    assert link_score(a, np.array([0.0, 0, 20, 20]), 0.3, 1.0) == 0.0  # a much smaller face is someone else
