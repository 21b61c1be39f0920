"""The CPU work of a clip, run in a worker process: frames for the VLM, face tracklets and crops, the audio track.

Decoding goes through `processing.read_clip` (frames sampled by seeking, audio as 16 kHz mono) and faces through
`processing`'s detector interface and tracker: `track_primary_face` finds the largest face that persists, and is
asked again without that face's boxes for the next one, so that each tracklet is the largest persistent face left.
What leaves the worker is small: JPEG bytes and a float32 waveform, never decoded frames.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from processing.face_tracking import FaceDetector, crop_face, default_face_detector, track_primary_face
from processing.media_reading import IMAGE_SUFFIXES, MediaReadError, read_clip, uniform_indices

from .config import ConfigError

FRAME_FOLDER_FPS = 25.0
"""*(ours)* The frame rate assumed for a folder of frames (AFEW-VA, FERV39K), which carries none."""


class MediaError(RuntimeError):
    """A clip whose media cannot give what a stage needs (unreadable, no video, a crashed worker)."""


@dataclass(frozen=True)
class FrameRequest:
    """Frames at `fps`, at most `max_frames`, as JPEGs whose longer side is at most `max_side` pixels."""

    fps: float
    max_frames: int
    max_side: int


@dataclass(frozen=True)
class FaceRequest:
    """Face tracking on frames at `fps` (at most `max_frames`), the `max_faces` largest tracklets, each with up to
    `crops` crops (`crop_size` pixels, `margin` around the box) spread over the frames it is seen in."""

    fps: float
    max_frames: int
    detector: str | None
    max_faces: int
    crops: int
    crop_size: int
    margin: float


@dataclass(frozen=True)
class MediaRequest:
    """What the stages left to run need of a clip; None for what they do not."""

    frames: FrameRequest | None = None
    faces: FaceRequest | None = None
    audio_seconds: float | None = None


@dataclass
class Tracklet:
    """One tracked face: its box (x0, y0, x1, y1 pixels) at each time (seconds) it is seen, crops for the VLM and
    the crop of its largest box (`portrait`) for the attribute classifiers."""

    times: list[float]
    boxes: list[list[float]]
    crops: list[bytes]
    portrait: bytes


@dataclass
class ClipMedia:
    """A clip's media as the stages use it; a field is None when it was not asked for or the clip lacks it."""

    duration: float | None = None
    frames: list[bytes] | None = None
    face_frames: int = 0
    tracklets: list[Tracklet] | None = None
    audio: np.ndarray | None = None


def jpeg(image: np.ndarray, max_side: int | None = None, size: int | None = None) -> bytes:
    """RGB array as JPEG bytes, shrunk so that its longer side is at most `max_side`, or resized to `size` square."""
    picture = Image.fromarray(image)
    if size is not None:
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    elif max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
            Image.Resampling.BICUBIC,
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def duration_seconds(path: Path) -> float | None:
    """The clip's duration, from its container (a frame folder: its frame count at `FRAME_FOLDER_FPS`)."""
    if path.is_dir():
        count = sum(1 for item in path.iterdir() if item.suffix.lower() in IMAGE_SUFFIXES)
        return count / FRAME_FOLDER_FPS if count else None
    try:
        with av.open(str(path)) as container:
            streams = [
                s for s in (*container.streams.video, *container.streams.audio) if s.duration and s.time_base
            ]
            if streams:
                return max(float(s.duration * s.time_base) for s in streams)
            return container.duration / av.time_base if container.duration else None
    except (av.FFmpegError, OSError) as error:
        raise MediaError(f"Cannot read media from {path}: {error}") from None


def frame_count(duration: float | None, fps: float, max_frames: int) -> int:
    """Frames at `fps` over `duration` seconds (at least one, at most `max_frames`; `max_frames` if unknown)."""
    if duration is None:
        return max_frames
    return max(1, min(max_frames, math.ceil(duration * fps)))


@functools.cache
def load_detector(spec: str | None) -> FaceDetector:
    """The face detector of a `module:factory` spec (None: the processor's default, RetinaFace where its weights are
    installed, else OpenCV's Haar cascade), built once per process."""
    if spec is None:
        return default_face_detector()
    module_name, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"stages.faces.detector: cannot load {spec!r} ({error})") from None
    return factory()


def track_faces(detections: list[np.ndarray], max_faces: int) -> list[list[np.ndarray | None]]:
    """Up to `max_faces` tracklets, largest persistent face first: each the primary face of the boxes left."""
    remaining = [np.asarray(boxes, dtype=np.float32).reshape(-1, 4) for boxes in detections]
    tracklets = []
    while len(tracklets) < max_faces and any(len(boxes) for boxes in remaining):
        track = track_primary_face(remaining)
        tracklets.append(track)
        remaining = [
            boxes if box is None else boxes[~np.all(boxes == box, axis=1)]
            for boxes, box in zip(remaining, track, strict=True)
        ]
    return tracklets


def _face_jpeg(frame: np.ndarray, box: np.ndarray, request: FaceRequest) -> bytes:
    return jpeg(crop_face(frame, box, request.margin), size=request.crop_size)


def _tracklets(frames: np.ndarray, duration: float | None, request: FaceRequest) -> list[Tracklet]:
    detector = load_detector(request.detector)
    detections = [detector(frame) for frame in frames]
    times = [round((duration or 0.0) * index / max(len(frames) - 1, 1), 2) for index in range(len(frames))]
    tracklets = []
    for track in track_faces(detections, request.max_faces):
        seen = [index for index, box in enumerate(track) if box is not None]
        chosen = sorted({seen[i] for i in uniform_indices(len(seen), min(request.crops, len(seen))).tolist()})
        largest = max(seen, key=lambda index: float(np.prod(track[index][2:] - track[index][:2])))
        tracklets.append(
            Tracklet(
                times=[times[index] for index in seen],
                boxes=[[round(float(value), 1) for value in track[index]] for index in seen],
                crops=[_face_jpeg(frames[index], track[index], request) for index in chosen],
                portrait=_face_jpeg(frames[largest], track[largest], request),
            )
        )
    return tracklets


def prepare_media(path: str, request: MediaRequest) -> ClipMedia:
    """Decode what `request` asks of the clip at `path`; `MediaError` names the clip if it cannot be read."""
    source = Path(path)
    try:
        media = ClipMedia(duration=duration_seconds(source))
        if request.frames is not None:
            sampling = request.frames
            count = frame_count(media.duration, sampling.fps, sampling.max_frames)
            frames = read_clip(source, count, with_audio=False).frames
            media.frames = None if frames is None else [jpeg(frame, sampling.max_side) for frame in frames]
        if request.faces is not None:
            count = frame_count(media.duration, request.faces.fps, request.faces.max_frames)
            frames = read_clip(source, count, with_audio=False).frames
            media.face_frames = 0 if frames is None else len(frames)
            media.tracklets = [] if frames is None else _tracklets(frames, media.duration, request.faces)
        if request.audio_seconds is not None:
            media.audio = read_clip(source, 0, max_audio_seconds=request.audio_seconds).audio
    except MediaReadError as error:
        raise MediaError(str(error)) from None
    return media
