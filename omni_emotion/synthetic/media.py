"""Media made on the spot for the demo, the tests and the benchmarks: mp4 clips, wav files and broken files.

Frames are a real face photo sliding slowly across a grey canvas, so that a face detector has a real face to find;
the sound is a tone or a speech-like voice (`SpeechLikeVoice`). `time_bar_frame` makes flat frames whose grey level is their index, so that tests can tell
which frame was sampled.

The photo, `astronaut.jpg`, is scikit-image's `astronaut` test image (Eileen Collins, NASA, public domain), stored
as a JPEG inside the package so that a fresh install needs neither scikit-image nor a download.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ASTRONAUT = Path(__file__).with_name("astronaut.jpg")


@functools.cache
def _astronaut() -> np.ndarray:
    from PIL import Image

    with Image.open(ASTRONAUT) as image:
        pixels = np.asarray(image.convert("RGB"))
    pixels.flags.writeable = False
    return pixels


def astronaut() -> np.ndarray:
    """The 512x512 RGB face photo (a fresh, writable copy)."""
    return _astronaut().copy()


def moving_face_frame(
    index: int,
    width: int,
    height: int,
    face: np.ndarray | None = None,
    background: int | tuple[int, int, int] = 90,
) -> np.ndarray:
    """The astronaut placed on a canvas of colour `background` (grey by default), shifted right by one pixel per
    frame."""
    face = astronaut() if face is None else face
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background
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


def tone(t: np.ndarray) -> np.ndarray:
    """A 440 Hz sine at amplitude 0.3, at times `t` (seconds)."""
    return 0.3 * np.sin(2 * np.pi * 440.0 * t)


@dataclass(frozen=True)
class SpeechLikeVoice:
    """A voiced sound with a pitch contour and syllable rhythm, as a function of time (seconds) -> samples.

    A harmonic series (amplitudes 1/k) on a fundamental that starts at `pitch_hz` and changes by `glide` of it per
    second (rising above 0, falling below), with a 5 Hz vibrato, gated into syllables of `syllables_per_second`
    with short pauses between them. Enough to carry prosody (pitch, rate, loudness, harshness) without words.
    """

    pitch_hz: float = 180.0
    glide: float = 0.0
    syllables_per_second: float = 4.0
    loudness: float = 0.3
    harmonics: int = 6

    def __call__(self, t: np.ndarray) -> np.ndarray:
        cycles = self.pitch_hz * (t + 0.5 * self.glide * t**2) + 0.6 * np.sin(2 * np.pi * 5.0 * t)
        voice = sum(np.sin(2 * np.pi * k * cycles) / k for k in range(1, self.harmonics + 1))
        syllable = np.clip(1.25 * np.sin(np.pi * self.syllables_per_second * t) ** 2 - 0.25, 0.0, None)
        weight = sum(1.0 / k for k in range(1, self.harmonics + 1))
        return self.loudness * syllable * voice / weight


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
    sound: Callable[[np.ndarray], np.ndarray] = tone,
) -> str | io.BytesIO:
    """Write an H.264 (+ AAC stereo `sound`) clip; `timestamps` (seconds) make it variable frame rate."""
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
        sound_stream = None
        if audio:
            sound_stream = container.add_stream("aac", rate=audio_rate)
            sound_stream.layout = "stereo"
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_fn(index, width, height), format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound_stream is not None:
            _write_sound(container, sound_stream, sound, times[-1] + 1 / fps if times else seconds)
    return path if isinstance(path, io.BytesIO) else str(path)


def _write_sound(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    sound: Callable[[np.ndarray], np.ndarray],
    seconds: float,
) -> None:
    rate, frame_size = stream.rate, stream.codec_context.frame_size or 1024
    total = round(seconds * rate)
    for start in range(0, total, frame_size):
        samples = sound(np.arange(start, min(start + frame_size, total)) / rate).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([samples, samples]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_wav(
    path: str | Path,
    seconds: float,
    rate: int = 16_000,
    channels: int = 1,
    sound: Callable[[np.ndarray], np.ndarray] = tone,
) -> str:
    """A 16-bit PCM wav of `sound` (a tone by default); `channels=2` checks the downmix."""
    t = np.arange(round(seconds * rate)) / rate
    samples = (np.clip(sound(t), -1.0, 1.0) * 32767).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = layout
        for start in range(0, samples.size, 4096):
            chunk = np.tile(samples[start : start + 4096], (channels, 1)).T.reshape(1, -1).copy()
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
