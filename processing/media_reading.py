"""Reading a clip (sampled frames + mono 16 kHz audio) from a path, bytes, a file object or a URL.

Every call into the decoder (PyAV, which ships its own FFmpeg) lives in this module, so that the rest
of the processor sees only `read_clip`, `read_audio`, `resample_audio`, `uniform_indices` and `MediaReadError`.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

MediaSource = str | os.PathLike | bytes | bytearray | BinaryIO
# Frame folders (FERV39K, AFEW-VA and other datasets that ship extracted frames) hold these.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class MediaReadError(ValueError):
    """A media source that is empty, truncated, not media, unreachable or without a decodable stream."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"Cannot read media from {source}: {problem}")
        self.source = source


@dataclass
class Clip:
    """What the processor needs of one clip.

    `frames` is (T, H, W, 3) uint8 RGB, upright (rotation metadata applied), or None when the source
    has no picture (an audio file). `audio` is float32 mono at `sampling_rate`, or None when the source
    has no audio track.
    """

    frames: np.ndarray | None
    audio: np.ndarray | None
    sampling_rate: int
    source: str


@dataclass(frozen=True)
class UrlLimits:
    """Bounds on fetching an HTTP(S) source, so that a bad link cannot hang or exhaust a worker."""

    max_bytes: int = 1 << 30
    timeout_s: float = 60.0


def describe_source(source: MediaSource) -> str:
    """A short human-readable name for error messages."""
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<file object {getattr(source, 'name', type(source).__name__)}>"


def fetch_url(url: str, limits: UrlLimits = UrlLimits()) -> bytes:
    """Download `url` into memory, refusing bodies over `limits.max_bytes` or slower than `limits.timeout_s`."""
    deadline = time.monotonic() + limits.timeout_s
    chunks, size = [], 0
    try:
        with urllib.request.urlopen(url, timeout=limits.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and int(declared) > limits.max_bytes:
                raise MediaReadError(url, f"{declared} bytes announced, over the limit of {limits.max_bytes}")
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise MediaReadError(url, f"more than the limit of {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise MediaReadError(url, f"download took longer than {limits.timeout_s} s")
                chunks.append(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MediaReadError(url, f"download failed ({error})") from error
    return b"".join(chunks)


def _open_input(source: MediaSource, url_limits: UrlLimits) -> tuple[BinaryIO | str, str]:
    """Turn any source into something `av.open` takes, after the cheap checks that give clearer errors."""
    name = describe_source(source)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        source = fetch_url(source, url_limits)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaReadError(name, "the data is empty")
        return io.BytesIO(source), name
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise MediaReadError(name, "no such file")
        if os.path.getsize(source) == 0:
            raise MediaReadError(name, "the file is empty")
        return os.fspath(source), name
    if not hasattr(source, "read"):
        raise MediaReadError(name, "expected a path, a URL, bytes or a binary file object")
    return source, name


def read_clip(
    source: MediaSource,
    num_frames: int = 8,
    sampling_rate: int = 16_000,
    max_audio_seconds: float | None = None,
    url_limits: UrlLimits = UrlLimits(),
    with_audio: bool = True,
) -> Clip:
    """Sample `num_frames` frames uniformly over the duration and decode the audio track of `source`.

    A source with a single picture (a still image) gives one frame; a clip with fewer frames than
    `num_frames` repeats frames (uniform index sampling over what exists). Only the first
    `max_audio_seconds` of audio are decoded, none with `with_audio=False`; `num_frames=0` decodes no frame.
    A folder of images is a clip of those frames in natural name order (`2.jpg` before `10.jpg`), without audio.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return _read_frame_folder(Path(source), num_frames, sampling_rate)
    opened, name = _open_input(source, url_limits)
    try:
        with av.open(opened, mode="r") as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                raise MediaReadError(name, "it has no video or audio stream")
            decode_audio = audio is not None and with_audio
            waveform = (
                _decode_audio(container, audio, sampling_rate, max_audio_seconds) if decode_audio else None
            )
            frames = _sample_frames(container, video, num_frames, name) if video and num_frames else None
    except MediaReadError:
        raise
    except (av.FFmpegError, OSError, EOFError) as error:
        raise MediaReadError(name, f"not readable as media ({error})") from error
    if decode_audio and waveform is None and frames is None:
        raise MediaReadError(name, "its audio stream holds no decodable samples")
    return Clip(frames=frames, audio=waveform, sampling_rate=sampling_rate, source=name)


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_frame_folder(folder: Path, num_frames: int, sampling_rate: int) -> Clip:
    """`num_frames` images spread evenly over a folder's frames, each decoded once."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise MediaReadError(
            str(folder), f"the folder holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if num_frames == 0:
        return Clip(frames=None, audio=None, sampling_rate=sampling_rate, source=str(folder))
    chosen = uniform_indices(len(files), num_frames)
    decoded = {
        index: read_clip(files[index], 1, with_audio=False).frames[0] for index in set(chosen.tolist())
    }
    shapes = {frame.shape for frame in decoded.values()}
    if len(shapes) > 1:
        raise MediaReadError(str(folder), f"its frames differ in size ({sorted(shapes)})")
    return Clip(
        frames=np.stack([decoded[index] for index in chosen]),
        audio=None,
        sampling_rate=sampling_rate,
        source=str(folder),
    )


def read_audio(
    source: MediaSource,
    sampling_rate: int = 16_000,
    max_seconds: float | None = None,
    url_limits: UrlLimits = UrlLimits(),
) -> np.ndarray:
    """The audio track of `source` as float32 mono at `sampling_rate`; an error if there is none."""
    clip = read_clip(source, 0, sampling_rate, max_seconds, url_limits)
    if clip.audio is None:
        raise MediaReadError(clip.source, "it has no audio track")
    return clip.audio


def resample_audio(waveform: np.ndarray, orig_sampling_rate: int, sampling_rate: int = 16_000) -> np.ndarray:
    """Downmix (channels first or last) and resample an in-memory waveform with FFmpeg's resampler."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=0 if waveform.shape[0] <= waveform.shape[1] else 1)
    if waveform.ndim != 1:
        raise ValueError(f"Expected a 1-D or 2-D waveform, got shape {waveform.shape}.")
    if orig_sampling_rate == sampling_rate or waveform.size == 0:
        return waveform
    frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
    frame.sample_rate = orig_sampling_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    chunks = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _decode_audio(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    sampling_rate: int,
    max_seconds: float | None,
) -> np.ndarray | None:
    """Decode from the start, downmixed and resampled, stopping once `max_seconds` are there.

    The other streams are discarded meanwhile, so that the demuxer skips their packets instead of
    reading them (in a 1080p clip, most of the bytes in the audio's time span are video).
    """
    max_samples = math.inf if max_seconds is None else int(max_seconds * sampling_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    others = [other for other in container.streams if other.index != stream.index]
    for other in others:
        other.discard = av.stream.Discard.all
    chunks, total = [], 0
    for packet in container.demux(stream):
        for frame in packet.decode():
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                total += chunks[-1].size
        if total >= max_samples:
            break
    else:
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    for other in others:
        other.discard = av.stream.Discard.default
    container.seek(0)
    if not chunks:
        return None
    waveform = np.concatenate(chunks)
    return waveform[: min(waveform.size, max_samples)]


def _sample_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, num_frames: int, name: str
) -> np.ndarray:
    duration = _duration_seconds(container, stream)
    known_frames = stream.frames
    # Seeking pays off only when there is a timeline to seek on and more frames than we keep.
    if duration is None or 0 < known_frames <= num_frames:
        frames = _frames_by_index(container, stream, num_frames)
    else:
        frames = _frames_by_seeking(container, stream, duration, num_frames)
    if not frames:
        raise MediaReadError(name, "its video stream holds no decodable frame")
    return _stack_upright(frames)


def _duration_seconds(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return None
    return seconds if seconds > 0 else None


def uniform_indices(available: int, wanted: int) -> np.ndarray:
    """`wanted` indices spread evenly over `available` items, first and last included (repeats if fewer)."""
    return np.linspace(0, available - 1, wanted).round().astype(int)


def _frames_by_index(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, num_frames: int
) -> list[av.VideoFrame]:
    """Two passes without a timeline: count packets (no decoding), then decode keeping only the sampled frames."""
    count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size > 0)
    container.seek(0)
    if count <= 1:
        return list(_decode(container, stream))[:1]
    wanted = uniform_indices(count, num_frames).tolist()
    kept: dict[int, av.VideoFrame] = {}
    for index, frame in enumerate(_decode(container, stream)):
        if index in wanted:
            kept[index] = frame
        if index >= wanted[-1]:
            break
    if not kept:
        return []
    # A packet count can overshoot the decodable frames (a truncated tail): fall back to the last one kept.
    last = kept[max(kept)]
    return [kept.get(index, last) for index in wanted]


def _frames_by_seeking(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    duration: float,
    num_frames: int,
) -> list[av.VideoFrame]:
    """One seek per target time, then decode from the keyframe before it up to the target."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    targets = start + np.linspace(0.0, max(duration - 1.0 / rate, 0.0), num_frames)
    tolerance = 0.5 / rate
    frames: list[av.VideoFrame] = []
    for target in targets:
        if frames and frames[-1].time is not None and frames[-1].time >= target - tolerance:
            frames.append(frames[-1])  # several targets within one frame (a clip shorter than num_frames)
            continue
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in _decode(container, stream, skip_before=target - tolerance):
            chosen = frame
            if frame.time is None or frame.time >= target - tolerance:
                break
        if chosen is not None:
            frames.append(chosen)
    return frames


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    skip_before: float | None = None,
) -> Iterator[av.VideoFrame]:
    """Decode video frames, skipping corrupt packets instead of giving up on the whole clip.

    With `skip_before` (seconds), the decoder drops the non-reference frames (typically B-frames) shown
    before that time: no other frame is predicted from them and none of them can be the one sought,
    so the frames that come out from `skip_before` on are exactly those of a full decode.
    """
    context = stream.codec_context
    skip_before_pts = None if skip_before is None else skip_before / stream.time_base
    for packet in container.demux(stream):
        early = skip_before_pts is not None and packet.pts is not None and packet.pts < skip_before_pts
        context.skip_frame = "NONREF" if early else "DEFAULT"
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            continue


def _stack_upright(frames: list[av.VideoFrame]) -> np.ndarray:
    """(T, H, W, 3) RGB written into one preallocated array (`np.stack` would copy 8 HD frames once more)."""
    first = _upright(frames[0])
    stacked = np.empty((len(frames), *first.shape), np.uint8)
    stacked[0] = first
    for index in range(1, len(frames)):
        same = frames[index] is frames[index - 1]
        stacked[index] = stacked[index - 1] if same else _upright(frames[index])
    return stacked


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB array (a view, possibly strided) with the display-matrix rotation applied, as a player shows it."""
    array = frame.to_ndarray(format="rgb24")
    return np.rot90(array, k=round((frame.rotation or 0) / 90) % 4)
