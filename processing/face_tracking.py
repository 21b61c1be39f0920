"""The primary face of a clip: detection per sampled frame, tracking by box position and size, cropping.

Any callable that maps an RGB frame to boxes is a detector (`FaceDetector`); the default,
`HaarCascadeFaceDetector`, uses the cascade that ships inside the opencv-python-headless wheel, so
detection works offline with no weights to fetch. A stronger detector (MTCNN, YuNet, RetinaFace, ...)
plugs in by wrapping it in a function with the same signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FaceDetector(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Boxes of the faces in an RGB uint8 (H, W, 3) image, as an (N, 4) float array of x0, y0, x1, y1 pixels."""
        ...


class HaarCascadeFaceDetector:
    """OpenCV's frontal-face Haar cascade, run on a copy of the frame shrunk to at most `max_side` pixels."""

    def __init__(
        self,
        cascade_file: str = "haarcascade_frontalface_default.xml",
        max_side: int = 640,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face_fraction: float = 0.05,
    ):
        try:
            import cv2
        except ImportError as error:
            raise ImportError(
                "The default face detector needs OpenCV: pip install 'opencv-python-headless<5' "
                "(or pass your own `face_detector`)."
            ) from error
        path = cascade_file if "/" in cascade_file else cv2.data.haarcascades + cascade_file
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(
                f"Could not load the Haar cascade {path!r} (OpenCV 5 no longer ships them: use <5)."
            )
        self._cv2 = cv2
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction

    def __call__(self, image: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        min_side = max(16, int(self.min_face_fraction * min(gray.shape)))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
        )
        boxes = np.asarray(found, dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
        return boxes / scale


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x0, y0, x1, y1 box with each of (N, 4) boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


@dataclass
class _Track:
    boxes: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def last(self) -> np.ndarray:
        return self.boxes[max(self.boxes)]

    @property
    def score(self) -> float:
        """Persistence times size: the sum of the box areas over the frames where the face was seen."""
        return sum(_area(box) for box in self.boxes.values())


def _link_cost(box: np.ndarray, last: np.ndarray, max_shift: float) -> float:
    """How well `box` continues a track whose last box is `last`: lower is better, inf when it cannot.

    Sampled frames of a clip lie up to seconds apart, so a face may have moved past any overlap: a box links
    when its centre moved at most `max_shift` face sides and its side changed at most twofold. Overlap (IoU)
    ranks the candidates first, then the shift.
    """
    side, last_side = float(np.sqrt(_area(box))), float(np.sqrt(_area(last)))
    if min(side, last_side) <= 0 or max(side, last_side) > 2 * min(side, last_side):
        return float("inf")
    shift = float(np.hypot(*((box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2))) / max(side, last_side)
    if shift > max_shift:
        return float("inf")
    return shift - float(box_iou(box, last[None])[0])


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def track_primary_face(detections: Sequence[np.ndarray], max_shift: float = 1.5) -> list[np.ndarray | None]:
    """The box of the primary face in each frame (None where it is not seen).

    In each frame, box-track pairs are linked cheapest first (see `_link_cost`), each box and track once;
    a box that continues no track starts one, and a face missed in some frames keeps its track. The primary
    face is the track with the largest summed area, i.e. the largest face that persists.
    """
    tracks: list[_Track] = []
    for frame_index, boxes in enumerate(detections):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        pairs = sorted(
            (cost, box_index, track_index)
            for box_index, box in enumerate(boxes)
            for track_index, track in enumerate(tracks)
            if (cost := _link_cost(box, track.last, max_shift)) != float("inf")
        )
        linked: dict[int, int] = {}
        for _, box_index, track_index in pairs:
            if box_index not in linked and track_index not in linked.values():
                linked[box_index] = track_index
        for box_index, box in enumerate(boxes):
            if box_index not in linked:
                tracks.append(_Track())
                linked[box_index] = len(tracks) - 1
            tracks[linked[box_index]].boxes[frame_index] = box
    if not tracks:
        return [None] * len(detections)
    primary = max(tracks, key=lambda track: track.score)
    return [primary.boxes.get(i) for i in range(len(detections))]


def crop_face(image: np.ndarray, box: np.ndarray, margin: float = 0.5) -> np.ndarray:
    """A square crop centred on `box`, its side the box's longer side grown by `margin` (0.5 = 50%).

    Parts of the square outside the frame are black, so that the face keeps its place and scale.
    """
    center_x, center_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(round(float(max(box[2] - box[0], box[3] - box[1])) * (1 + margin)), 1)
    x0, y0 = round(float(center_x) - side / 2), round(float(center_y) - side / 2)
    crop = np.zeros((side, side, 3), dtype=image.dtype)
    src_x0, src_y0 = max(x0, 0), max(y0, 0)
    src_x1, src_y1 = min(x0 + side, image.shape[1]), min(y0 + side, image.shape[0])
    if src_x1 > src_x0 and src_y1 > src_y0:
        crop[src_y0 - y0 : src_y1 - y0, src_x0 - x0 : src_x1 - x0] = image[src_y0:src_y1, src_x0:src_x1]
    return crop


def primary_face_crops(
    frames: np.ndarray, detector: FaceDetector, margin: float = 0.5, max_shift: float = 1.5
) -> list[np.ndarray | None]:
    """One crop of the primary face per frame of (T, H, W, 3) `frames`, None where it is absent.

    Repeated frames (a short clip padded to T) are detected once.
    """
    cache: dict[int, np.ndarray] = {}
    detections = []
    for frame in frames:
        key = hash(frame[::16, ::16].tobytes())
        if key not in cache:
            cache[key] = detector(frame)
        detections.append(cache[key])
    boxes = track_primary_face(detections, max_shift=max_shift)
    return [
        None if box is None else crop_face(frame, box, margin)
        for frame, box in zip(frames, boxes, strict=True)
    ]
