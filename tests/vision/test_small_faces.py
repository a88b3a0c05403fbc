"""Small faces in large frames: real faces from ../shared/data placed 40-100 px tall on a dim 1920x1080 canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal_df.config import FaceConfig
from multimodal_df.vision.faces import FaceDetector

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PHOTOS = ["makeittalk", "deca"]


def _scene(photo: Path, face_px: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` dim, slightly blurred, JPEG-compressed 1080p frames with the photo's face ``face_px`` tall, drifting."""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    d = FaceDetector(FaceConfig(small_faces=False), 64).detect(img[None])[0]
    assert len(d), f"no face in {photo}"
    _, y1, _, y2 = d.boxes[0]
    img = cv2.resize(img, None, fx=face_px / (y2 - y1), fy=face_px / (y2 - y1), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(n):
        canvas = rng.normal(30, 8, (1080, 1920, 3)).clip(0, 255).astype(np.uint8)
        x, y = 700 + 12 * k, 420 + 6 * k
        canvas[y : y + img.shape[0], x : x + img.shape[1]] = (img * 0.45).astype(np.uint8)
        canvas = cv2.GaussianBlur(canvas, (0, 0), 1.0)
        _, buf = cv2.imencode(".jpg", canvas[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 60])
        frames.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return np.stack(frames)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the project")
@pytest.mark.parametrize("face_px", [60, 80, 100])
def test_small_faces_are_found_in_most_frames(face_px: int) -> None:
    rng = np.random.default_rng(face_px)
    for folder in PHOTOS:
        photo = sorted((SHARED / "face_photos" / folder).glob("*"))[0]
        frames = _scene(photo, face_px, 8, rng)
        track = FaceDetector(FaceConfig(), 224).track(frames, np.arange(8) * 1.0)
        assert len(track) >= 6, f"{folder}: a {face_px} px face found in {len(track)} of 8 frames"
        # The track is the face, not noise: its boxes are about the planted size.
        heights = track.boxes[:, 3] - track.boxes[:, 1]
        assert np.median(heights) == pytest.approx(face_px, rel=0.35)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the project")
def test_the_closer_look_finds_what_the_downscaled_pass_misses() -> None:
    rng = np.random.default_rng(1)
    photo = sorted((SHARED / "face_photos" / "makeittalk").glob("*"))[2]
    frames = _scene(photo, 40, 8, rng)  # 13 px at the 640 px detection scale: below MTCNN's 20 px
    plain = sum(len(d) > 0 for d in FaceDetector(FaceConfig(small_faces=False), 224).detect(frames))
    closer = sum(len(d) > 0 for d in FaceDetector(FaceConfig(), 224).detect(frames))
    assert plain <= 2 and closer >= 6, (plain, closer)
