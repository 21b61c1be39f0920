"""Media made on the spot for tests and benchmarks: mp4 clips, wav files and broken files.

Frames are `skimage.data.astronaut()` sliding slowly across a grey canvas, so that a face detector has
a real face to find; the sound is a tone. Each frame's mean brightness encodes its time (a thin bar at
the bottom grows with it) so that tests can tell which frame was sampled.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()


def moving_face_frame(index: int, width: int, height: int, face: np.ndarray | None = None) -> np.ndarray:
    """The astronaut placed on a grey canvas, shifted right by one pixel per frame."""
    face = astronaut() if face is None else face
    canvas = np.full((height, width, 3), 90, np.uint8)
    scale = min(1.0, 0.9 * height / face.shape[0], 0.6 * width / face.shape[1])
    if scale < 1.0:
        import cv2

        face = cv2.resize(
            face, (int(face.shape[1] * scale), int(face.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    top = (height - face.shape[0]) // 2
    left = min(index % max(width - face.shape[1], 1), width - face.shape[1])
    canvas[top : top + face.shape[0], left : left + face.shape[1]] = face
    return canvas


def time_bar_frame(index: int, width: int, height: int) -> np.ndarray:
    """A flat frame whose grey level is the frame index (mod 256): tests read the sampled index back."""
    return np.full((height, width, 3), index % 256, np.uint8)


def write_clip(
    path: str | Path | io.BytesIO,
    *,
    seconds: float = 2.0,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    audio: bool = True,
    audio_rate: int = 44_100,
    keyframe_seconds: float = 2.0,
    frame_fn=moving_face_frame,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    container_format: str = "mp4",
) -> str | io.BytesIO:
    """Write an H.264 (+ AAC stereo tone) clip; `timestamps` (seconds) make it variable frame rate."""
    times = list(timestamps) if timestamps is not None else [i / fps for i in range(round(seconds * fps))]
    time_base = Fraction(1, 1000 * fps)
    with av.open(
        path if isinstance(path, io.BytesIO) else str(path), "w", format=container_format
    ) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {
            "g": str(max(1, round(keyframe_seconds * fps))),
            "preset": "ultrafast",
            "sc_threshold": "0",
        }
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=audio_rate)
            sound.layout = "stereo"
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_fn(index, width, height), format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            _write_tone(container, sound, times[-1] + 1 / fps if times else seconds)
    return path if isinstance(path, io.BytesIO) else str(path)


def _write_tone(
    container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float
) -> None:
    rate, frame_size = stream.rate, stream.codec_context.frame_size or 1024
    total = round(seconds * rate)
    for start in range(0, total, frame_size):
        t = np.arange(start, min(start + frame_size, total)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_wav(path: str | Path, seconds: float, rate: int = 16_000, channels: int = 1) -> str:
    """A PCM wav tone; `channels=2` checks the downmix."""
    t = np.arange(round(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = layout
        for start in range(0, tone.size, 4096):
            chunk = np.tile(tone[start : start + 4096], (channels, 1)).T.reshape(1, -1).copy()
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def write_png(path: str | Path, image: np.ndarray | None = None) -> str:
    from PIL import Image

    Image.fromarray(astronaut() if image is None else image).save(str(path))
    return str(path)


def truncated_copy(path: str | Path, target: str | Path, keep: float = 0.5) -> str:
    data = Path(path).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * keep)])
    return str(target)
