"""Media made on the spot for the demo, the tests and the benchmarks: clips in the containers and codecs that
datasets hold (mp4, mov, mkv/webm, MPEG-TS/PS, AVI; several audio tracks; cut, remuxed or mislabelled copies), wav
files, audio with cover art, and broken files.

Frames are a real face photo sliding slowly across a grey canvas, so that a face detector has a real face to find;
the sound is a tone or a speech-like voice (`SpeechLikeVoice`). `time_bar_frame` makes flat frames whose grey level is their index, so that tests can tell
which frame was sampled; `code_frame` writes the index in black and white bands that survive any codec, so that they
can tell it exactly. `face_test_frame` turns, tilts, shrinks and darkens the face to measure face detectors.

The photo, `astronaut.jpg`, is scikit-image's `astronaut` test image (Eileen Collins, NASA, public domain), stored
as a JPEG inside the package so that a fresh install needs neither scikit-image nor a download.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
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
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    codec_options: Mapping[str, str] | None = None,
    format_options: Mapping[str, str] | None = None,
    audio_tracks: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    default_audio_track: int | None = None,
) -> str | io.BytesIO:
    """Write an H.264 (+ AAC stereo `sound`) clip; `timestamps` (seconds) make it variable frame rate.

    The codec and container arguments make what datasets hold: `video_codec` / `audio_codec`
    (e.g. "mpeg2video" / "mp2" for MPEG-PS, "libvpx-vp9" / "libopus" for WebM), encoder `codec_options` over
    the defaults (x264's ultrafast, `keyframe_seconds` apart), muxer `format_options` (e.g.
    `{"movflags": "faststart"}`), and several audio tracks (`audio_tracks` replace `sound`), the one at
    `default_audio_track` flagged as the default.
    """
    times = list(timestamps) if timestamps is not None else [i / fps for i in range(round(seconds * fps))]
    # MPEG-1/2 video only takes the frame rate's own time base; the others get a finer one for VFR timestamps.
    time_base = Fraction(1, fps) if video_codec in ("mpeg1video", "mpeg2video") else Fraction(1, 1000 * fps)
    format_options = dict(format_options or {})
    if default_audio_track is not None and container_format in ("matroska", "webm"):
        format_options.setdefault("default_mode", "passthrough")  # flag exactly the track asked for
    with av.open(
        path if isinstance(path, io.BytesIO) else str(path),
        "w",
        format=container_format,
        options=format_options,
    ) as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        options = {"g": str(max(1, round(keyframe_seconds * fps))), "sc_threshold": "0"}
        if video_codec in ("libx264", "libx265"):
            options["preset"] = "ultrafast"
        video.options = {**options, **(codec_options or {})}
        if rotation:
            video.set_display_rotation(rotation)
        sounds = list(audio_tracks) if audio_tracks is not None else [sound] if audio else []
        sound_streams = []
        for track_index, _ in enumerate(sounds):
            stream = container.add_stream(audio_codec, rate=audio_rate)
            stream.layout = "stereo"
            if default_audio_track is not None:
                is_default = track_index == default_audio_track
                stream.disposition = av.stream.Disposition.default if is_default else av.stream.Disposition(0)
            sound_streams.append(stream)
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_fn(index, width, height), format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for stream, track_sound in zip(sound_streams, sounds, strict=True):
            _write_sound(container, stream, track_sound, times[-1] + 1 / fps if times else seconds)
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


CODE_BITS = 13


def code_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame that carries its index exactly through lossy coding and scaling: `CODE_BITS` equal vertical bands,
    white for a set bit (most significant first), black otherwise; `read_frame_code` reads it back."""
    bits = np.array([(index >> (CODE_BITS - 1 - k)) & 1 for k in range(CODE_BITS)], np.uint8)
    columns = bits[np.arange(width) * CODE_BITS // width] * 219 + 16
    return np.broadcast_to(columns[None, :, None], (height, width, 3)).copy()


def read_frame_code(frame: np.ndarray) -> int:
    """The index that `code_frame` drew into `frame` (at any size, upright), from the middle of each band."""
    band = frame.shape[1] / CODE_BITS
    index = 0
    for k in range(CODE_BITS):
        middle = frame[:, int((k + 0.3) * band) : max(int((k + 0.7) * band), int((k + 0.3) * band) + 1)]
        index = index << 1 | int(middle.mean() > 128)
    return index


def coded_face_frame(index: int, width: int, height: int) -> np.ndarray:
    """`moving_face_frame` with `code_frame`'s bands in a strip along the bottom (a twelfth of the height): real
    picture content to decode, and an index that `read_face_frame_code` reads back from any reader's frame."""
    frame = moving_face_frame(index, width, height)
    strip = max(height // 12, 8)
    frame[-strip:] = code_frame(index, width, strip)
    return frame


def grainy_coded_face_frame(index: int, width: int, height: int) -> np.ndarray:
    """`coded_face_frame` with a camera sensor's grain (noise that changes every frame), so that an encoder spends
    on it the bitrate of a real recording instead of a few bits on a still photo."""
    frame = coded_face_frame(index, width, height).astype(np.int16)
    grain = np.random.default_rng(index).integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    strip = max(height // 12, 8)
    frame[:-strip] += grain[:-strip]
    return np.clip(frame, 0, 255).astype(np.uint8)


def read_face_frame_code(frame: np.ndarray) -> int:
    """The index in the bottom strip of a `coded_face_frame`."""
    return read_frame_code(frame[-max(frame.shape[0] // 12, 8) :])


def silence(t: np.ndarray) -> np.ndarray:
    """Digital silence: an audio track that is there but holds no sound."""
    return np.zeros_like(t)


def remux(path: str | Path, target: str | Path, container_format: str, **format_options: str) -> str:
    """Copy the streams of `path` into another container without re-encoding (`ffmpeg -c copy`), as a dataset
    conversion does: a one-keyframe mp4 becomes an MPEG-TS with one keyframe and no index."""
    with (
        av.open(str(path)) as source,
        av.open(str(target), "w", format=container_format, options=format_options) as out,
    ):
        streams = {stream.index: out.add_stream_from_template(stream) for stream in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return str(target)


def with_declared_duration(path: str | Path, target: str | Path, fraction: float) -> str:
    """A copy of an mp4 whose headers (mvhd, tkhd, mdhd) declare `fraction` of the real duration, as a muxer
    that wrote the header before the end does; the samples and their timestamps are untouched."""
    data = bytearray(Path(path).read_bytes())
    # Box layout after the 4-byte type: version (1), flags (3), then for version 0: creation, modification
    # (4 each), [timescale (mvhd, mdhd) | track id, reserved (tkhd)] (4 + 4 for tkhd), duration (4).
    offsets = {b"mvhd": 16, b"mdhd": 16, b"tkhd": 20}
    for box, offset in offsets.items():
        start = 0
        while (found := data.find(box, start)) != -1:
            if data[found + 4] != 0:
                raise ValueError(f"{path}: version-1 {box.decode()} boxes are not handled")
            field = found + 4 + offset
            duration = int.from_bytes(data[field : field + 4], "big")
            data[field : field + 4] = int(duration * fraction).to_bytes(4, "big")
            start = found + 4
    Path(target).write_bytes(bytes(data))
    return str(target)


def write_audio_with_cover(
    path: str | Path,
    seconds: float = 1.0,
    container_format: str = "mp3",
    sound: Callable[[np.ndarray], np.ndarray] = tone,
) -> str:
    """An audio file (MP3 by default) with the astronaut embedded as its cover picture, as music and podcast files
    carry one: a video stream flagged `attached_pic` that holds a single PNG."""
    from PIL import Image

    picture = io.BytesIO()
    Image.fromarray(astronaut()[::8, ::8]).save(picture, format="PNG")
    codec = "libmp3lame" if container_format == "mp3" else "aac"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=44_100)
        stream.layout = "stereo"
        cover = container.add_stream("png", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 64, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(picture.getvalue())
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        container.mux(packet)
        _write_sound(container, stream, sound, seconds)
    return str(path)


# Where her face is in `astronaut()` (x0, y0, x1, y1), as RetinaFace draws it: forehead to chin, ear to ear.
ASTRONAUT_FACE = np.array([178.0, 57.0, 273.0, 177.0], np.float32)
FACE_TEST_KINDS = ("frontal", "tilted", "turned", "small", "dark", "none")


def face_test_frame(
    kind: str, variant: int, width: int = 640, height: int = 480
) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame for measuring a face detector, and the box of the face in it (None for `kind="none"`).

    `variant` (0-7) varies each kind: "frontal" moves and scales the photo; "tilted" rotates it by -60 to 60
    degrees (roll); "turned" warps it in perspective as a face turned 25-60 degrees sideways (yaw, simulated from
    the frontal photo, so only an approximation of a profile); "small" shrinks the face to 16-44 px wide; "dark"
    dims it to 6-20% brightness with sensor-like noise; "none" shows the photo's suit and flag, or noise, with no
    face at all (every box there is a false one).
    """
    import cv2

    rng = np.random.default_rng(variant)
    photo, box = astronaut(), ASTRONAUT_FACE.copy()
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], np.float32)
    scale = 0.8 if kind != "small" else (16 + 4 * variant) / float(box[2] - box[0])
    if kind == "none":
        photo = photo[250:] if variant % 2 == 0 else rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    matrix = np.float32([[scale, 0, 0], [0, scale, 0], [0, 0, 1]])
    centre = np.float32([width / 2 + rng.uniform(-80, 80), height / 2 + rng.uniform(-40, 40)])
    if kind == "tilted":
        angle = [-60, -45, -30, -15, 15, 30, 45, 60][variant]
        rotation = cv2.getRotationMatrix2D((float(box[[0, 2]].mean()), float(box[[1, 3]].mean())), angle, 1.0)
        matrix = matrix @ np.vstack([rotation, [0, 0, 1]]).astype(np.float32)
    if kind == "turned":
        squeeze = float(np.cos(np.radians(25 + 5 * variant)))
        left = variant % 2 == 0  # which side turns away
        x0, y0, x1, y1 = 0.0, 0.0, float(photo.shape[1]), float(photo.shape[0])
        near, far = (x0, x1) if left else (x1, x0)
        shrink = (1 - squeeze) * (y1 - y0) / 4
        source = np.float32([[near, y0], [far, y0], [far, y1], [near, y1]])
        middle = (x0 + x1) / 2
        target = np.float32(
            [
                [middle + (near - middle) * squeeze, y0],
                [middle + (far - middle) * squeeze, y0 + shrink],
                [middle + (far - middle) * squeeze, y1 - shrink],
                [middle + (near - middle) * squeeze, y1],
            ]
        )
        matrix = matrix @ cv2.getPerspectiveTransform(source, target).astype(np.float32)
    placed = cv2.perspectiveTransform(np.float32([[[photo.shape[1] / 2, photo.shape[0] / 2]]]), matrix)[0, 0]
    matrix = np.float32([[1, 0, centre[0] - placed[0]], [0, 1, centre[1] - placed[1]], [0, 0, 1]]) @ matrix
    frame = cv2.warpPerspective(photo, matrix, (width, height), borderValue=(90, 90, 90))
    if kind == "dark":
        frame = frame.astype(np.float32) * (0.06 + 0.02 * variant) + rng.normal(0, 3, frame.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if kind == "none":
        return frame, None
    moved = cv2.perspectiveTransform(corners[None], matrix)[0]
    return frame, np.concatenate([moved.min(axis=0), moved.max(axis=0)]).astype(np.float32)
