"""Reading a clip (sampled frames + mono 16 kHz audio) from a path, bytes, a file object or a URL.

Every call into the decoders (PyAV, which ships its own FFmpeg, and Pillow for still images) lives in this module,
so that the rest of the processor sees only `read_clip`, `read_audio`, `resample_audio`, `uniform_indices` and
`MediaReadError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import av
import numpy as np

if TYPE_CHECKING:
    from PIL import Image

MediaSource = str | os.PathLike | bytes | bytearray | BinaryIO
# Frame folders (FERV39K, AFEW-VA and other datasets that ship extracted frames) hold these.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# Still images are read by Pillow: FFmpeg's image demuxers have no timeline to seek on. GIF stays with FFmpeg.
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")  # JPEG includes MPO (multi-picture) photos
# H.264's largest frame (level 6.2, 8192x4352): a picture above it is refused from its header, before decoding.
MAX_PIXELS = 8192 * 4352
# Frames above 4K are scaled down while they are converted to RGB: enough for 384 px frames and for face crops.
MAX_SIDE = 3840
# From this size on (4K), frame threads pay for the frames they hold back at every seek; below it, slice threads
# alone are faster (measured on 720p, 1080p High-profile and 4K clips: docs/choices.md).
FRAME_THREADS_MIN_PIXELS = 2 * 1920 * 1080
# The only FFmpeg demuxers that read data from a URL, bytes or a file object: containers of audio and video that
# never open another file (concat lists, HLS/DASH playlists and image2 patterns do, which would let a crafted
# file make the worker read local files).
SAFE_DEMUXERS = (
    "mov", "matroska", "avi", "mpegts", "mpeg", "flv", "asf", "ogg", "gif", "wav", "w64", "aiff", "caf",
    "mp3", "aac", "flac", "wv", "amr", "ac3", "eac3", "h264", "hevc", "m4v", "mjpeg", "ivf", "nut", "mxf",
    "dv", "yuv4mpegpipe",
)  # fmt: skip
# Elementary video streams (`.h264`, `.hevc`, `.m4v`): no timestamps and no container to seek in.
RAW_VIDEO_FORMATS = frozenset({"h264", "hevc", "m4v"})


class MediaReadError(ValueError):
    """A media source that is empty, truncated, not media, unreachable or without a decodable stream."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"Cannot read media from {source}: {problem}")
        self.source = source


class MediaReadWarning(UserWarning):
    """A source read only in part (a truncated file): the clip holds what decodes, and the warning says how much.

    `read_clip(..., strict=True)` raises `MediaReadError` instead; `warnings.simplefilter("error",
    MediaReadWarning)` does the same for a whole run.
    """


@dataclass
class Clip:
    """What the processor needs of one clip.

    `frames` is (T, H, W, 3) uint8 RGB, upright (rotation metadata applied), or None when the source
    has no picture (an audio file); with `read_clip(..., convert_frame=f)` it is the list of what `f` returned
    for each sampled frame (a frame sampled twice gives the same object twice). `audio` is float32 mono at
    `sampling_rate`, or None when the source has no audio track.
    """

    frames: np.ndarray | list[Any] | None
    audio: np.ndarray | None
    sampling_rate: int
    source: str


class Picture:
    """One sampled frame, upright, before it is converted to RGB: each consumer asks for the size it needs.

    A decoded video frame (YUV at the stream's size) is converted and scaled by FFmpeg's swscale in one pass, so
    that a 384 px frame or a detection-size copy of a 4K (or 16000 px) picture never makes the full-size RGB
    array; `rgb()` without a size gives the frame at full size, scaled down to `max_side` if larger. A picture
    that is already an RGB array (a still image, a frame folder, decoded frames) is scaled by Pillow, with the
    same filters. Conversions are kept for the picture's lifetime, so that asking twice costs once.
    """

    def __init__(self, frame: av.VideoFrame | np.ndarray, max_side: int | None = MAX_SIDE):
        self._frame = frame
        self._cache: dict[tuple[int, int, str], np.ndarray] = {}
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                raise ValueError(
                    f"A picture array must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}."
                )
            self._quarter_turns = 0
            width, height = frame.shape[1], frame.shape[0]
        else:
            self._quarter_turns = round((frame.rotation or 0) / 90) % 4
            width, height = (
                (frame.height, frame.width) if self._quarter_turns % 2 else (frame.width, frame.height)
            )
        scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
        self.width, self.height = max(round(width * scale), 1), max(round(height * scale), 1)

    def rgb(
        self, width: int | None = None, height: int | None = None, interpolation: str = "AREA"
    ) -> np.ndarray:
        """(height, width, 3) uint8 RGB; the picture's own size when none is given. `interpolation` is swscale's
        name of the filter ("AREA", "BICUBIC", "BILINEAR"; Pillow's BOX for AREA with an array)."""
        width, height = width or self.width, height or self.height
        key = (width, height, interpolation)
        if key not in self._cache:
            self._cache[key] = self._convert(width, height, interpolation)
        return self._cache[key]

    def rgb_within(self, max_side: int, interpolation: str = "AREA") -> np.ndarray:
        """RGB scaled down (never up) so that its longer side is at most `max_side`, keeping the aspect ratio."""
        scale = min(1.0, max_side / max(self.width, self.height))
        return self.rgb(max(round(self.width * scale), 1), max(round(self.height * scale), 1), interpolation)

    def _convert(self, width: int, height: int, interpolation: str) -> np.ndarray:
        frame = self._frame
        if isinstance(frame, np.ndarray):
            if (width, height) == (frame.shape[1], frame.shape[0]):
                return frame
            from PIL import Image

            resample = Image.Resampling.BOX if interpolation == "AREA" else Image.Resampling[interpolation]
            return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((width, height), resample))
        stored = (height, width) if self._quarter_turns % 2 else (width, height)  # the decoder's orientation
        if stored == (frame.width, frame.height):
            array = frame.to_ndarray(format="rgb24")
        else:
            array = frame.to_ndarray(
                format="rgb24", width=stored[0], height=stored[1], interpolation=interpolation
            )
        return np.rot90(array, k=self._quarter_turns)


@dataclass(frozen=True)
class UrlLimits:
    """Bounds on fetching an HTTP(S) source, so that a bad link cannot hang or exhaust a worker.

    `timeout_s` is a deadline for the whole download, which a server that trickles bytes cannot stretch.
    """

    max_bytes: int = 1 << 30
    timeout_s: float = 60.0


def describe_source(source: MediaSource) -> str:
    """A short human-readable name for error messages."""
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<file object {getattr(source, 'name', type(source).__name__)}>"


def fetch_url(url: str, limits: UrlLimits = UrlLimits()) -> io.BytesIO:
    """Download `url` into memory, refusing bodies over `limits.max_bytes` or not complete within `limits.timeout_s`.

    The download runs in a thread that the caller stops waiting for at the deadline; the body is written once,
    into the buffer that is returned (no list of chunks joined at the end).
    """
    outcome: dict[str, io.BytesIO | BaseException] = {}
    cancelled = threading.Event()

    def download() -> None:
        try:
            outcome["body"] = _download(url, limits, cancelled)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=download, name=f"fetch {url}", daemon=True)
    worker.start()
    worker.join(limits.timeout_s)
    if worker.is_alive():
        cancelled.set()  # the worker stops at its next chunk, or at its socket timeout
        raise MediaReadError(url, f"download took longer than {limits.timeout_s} s (`UrlLimits.timeout_s`)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["body"]


def _download(url: str, limits: UrlLimits, cancelled: threading.Event) -> io.BytesIO:
    body = io.BytesIO()
    try:
        with urllib.request.urlopen(url, timeout=limits.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
                raise MediaReadError(
                    url,
                    f"{declared} bytes announced, over the limit of {limits.max_bytes} (`UrlLimits.max_bytes`)",
                )
            # read1 returns what has arrived, so that a trickling server is seen at every chunk.
            while (chunk := response.read1(1 << 16)) and not cancelled.is_set():
                if body.tell() + len(chunk) > limits.max_bytes:
                    raise MediaReadError(
                        url, f"more than the limit of {limits.max_bytes} bytes (`UrlLimits.max_bytes`)"
                    )
                body.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MediaReadError(url, f"download failed ({error})") from error
    body.seek(0)
    return body


def _open_input(source: MediaSource, url_limits: UrlLimits) -> tuple[BinaryIO | str, str, bool]:
    """Something `av.open` and Pillow take, the source's name, and whether it is a local path (trusted to
    name any format, while data from a URL or memory is read only by `SAFE_DEMUXERS`)."""
    name = describe_source(source)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return fetch_url(source, url_limits), name, False
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaReadError(name, "the data is empty")
        return io.BytesIO(source), name, False
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise MediaReadError(name, "no such file")
        if os.path.getsize(source) == 0:
            raise MediaReadError(name, "the file is empty")
        return os.fspath(source), name, True
    if not hasattr(source, "read"):
        raise MediaReadError(name, "expected a path, a URL, bytes or a binary file object")
    return source, name, False


def read_clip(
    source: MediaSource,
    num_frames: int = 8,
    sampling_rate: int = 16_000,
    max_audio_seconds: float | None = None,
    url_limits: UrlLimits = UrlLimits(),
    with_audio: bool = True,
    *,
    audio_track: int | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = MAX_SIDE,
    convert_frame: Callable[[Picture], Any] | None = None,
) -> Clip:
    """Sample `num_frames` frames uniformly over the video's span and decode the audio track of `source`.

    Frame `i` is the first frame shown at or after time `first + i * (last - first) / (num_frames - 1)`, where
    `first` and `last` are the times of the stream's first and last frames as its packets give them (not a
    header's duration, which may be missing or wrong). A clip with fewer frames than `num_frames` repeats
    frames (several targets fall within one frame). A still image gives one frame, a folder of images a clip
    of those frames in natural name order (`2.jpg` before `10.jpg`), without audio.

    The audio is the track flagged as default, else the first with sound, unless `audio_track` (an index
    among the audio streams) says which; only the first `max_audio_seconds` are decoded, none with
    `with_audio=False`; `num_frames=0` decodes no frame. A truncated file gives the frames of the part that
    decodes with a `MediaReadWarning` (a `MediaReadError` with `strict=True`). A picture over `max_pixels` is
    refused before decoding, and frames whose longer side is over `max_side` are scaled down to it (None: never).

    `convert_frame` turns each sampled frame, as a `Picture`, into what the caller keeps (by default its RGB
    array). It runs as soon as the frame is decoded, and the decoder's frame is let go, so that a caller that
    keeps small copies (the processor: 384 px frames, a detection copy, face crops) never holds a clip's frames
    at full size.
    """
    convert = convert_frame or Picture.rgb
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return _read_frame_folder(
            Path(source), num_frames, sampling_rate, max_pixels, max_side, convert_frame
        )
    opened, name, trusted = _open_input(source, url_limits)
    image = _open_image(opened, name)
    if image is not None:
        pictures = _image_frames(image, name, num_frames, max_pixels, max_side)
        frames = None if pictures is None else _finish(pictures, convert_frame)
        return Clip(frames=frames, audio=None, sampling_rate=sampling_rate, source=name)
    container_options = {} if trusted else {"format_whitelist": ",".join(SAFE_DEMUXERS)}
    # The decoders' own pixel limit: probing the streams at open decodes a frame, which must not be the huge one.
    decoder_options = {"max_pixels": str(max_pixels)}

    def open_container(again: bool = False) -> av.container.InputContainer:
        if again and not isinstance(opened, str):
            opened.seek(0)
        return av.open(opened, "r", options=decoder_options, container_options=container_options)

    try:
        with open_container() as container:
            video = _video_stream(container)
            if video is None and not container.streams.audio:
                raise MediaReadError(name, "it has no video or audio stream")
            if video is not None and num_frames:
                context = video.codec_context
                _check_pixels(context.width, context.height, name, max_pixels)
            tracks = _audio_tracks(container, audio_track, name) if with_audio else []
            waveform = _decode_audio(container, tracks, sampling_rate, max_audio_seconds) if tracks else None
            frames = None
            if video is not None and num_frames:
                if container.format.name in RAW_VIDEO_FORMATS:
                    converted = _sample_elementary_stream(
                        lambda: open_container(again=True), num_frames, name, strict, max_side, convert
                    )
                else:
                    converted = _sample_frames(container, video, num_frames, name, strict, max_side, convert)
                frames = converted if convert_frame else np.stack(converted)
    except MediaReadError:
        raise
    except av.ArgumentError as error:
        problem = f"not readable as media ({error})"
        if not trusted:
            problem += (
                "; from a URL or memory only audio and video containers are read, never a playlist or "
                "concat list that opens other files"
            )
        raise MediaReadError(name, problem) from error
    except (av.FFmpegError, OSError, EOFError) as error:
        raise MediaReadError(name, f"not readable as media ({error})") from error
    if tracks and waveform is None and frames is None:
        raise MediaReadError(name, "its audio stream holds no decodable samples")
    return Clip(frames=frames, audio=waveform, sampling_rate=sampling_rate, source=name)


def _check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaReadError(
            name,
            f"its picture is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.1f} (`max_pixels`): decoding it could take gigabytes; pass a larger "
            "`max_pixels` if you trust the file",
        )


# -- still images and frame folders (Pillow) ----------------------------------------------------------------------


def _open_image(opened: BinaryIO | str, name: str) -> Image.Image | None:
    """The source as a Pillow image when it is a still image in `PILLOW_FORMATS`, else None (left at its start)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(opened, str) and not (hasattr(opened, "seekable") and opened.seekable()):
        return None  # a stream that cannot rewind is left to FFmpeg
    try:
        return Image.open(opened, formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        if not isinstance(opened, str):
            opened.seek(0)
        return None
    except Image.DecompressionBombError as error:
        raise MediaReadError(name, f"the image is too large to decode safely ({error})") from error


def _image_frames(
    image: Image.Image, name: str, num_frames: int, max_pixels: int, max_side: int | None
) -> list[np.ndarray] | None:
    """One frame, or `num_frames` spread over an animated WebP / PNG (a frame chosen twice is the same array);
    upright as its EXIF orientation says."""
    with image:
        _check_pixels(image.width, image.height, name, max_pixels)
        if num_frames == 0:
            return None
        animated = getattr(image, "is_animated", False) and image.format in ("WEBP", "PNG")
        chosen = uniform_indices(image.n_frames, num_frames) if animated else np.zeros(1, int)
        try:
            decoded = {index: _image_rgb(image, index, max_side) for index in set(chosen.tolist())}
        except (OSError, ValueError, SyntaxError) as error:  # Pillow's errors for a damaged or cut file
            raise MediaReadError(name, f"the image does not decode ({error})") from error
    return [decoded[index] for index in chosen]


def _finish(
    frames: list[np.ndarray], convert_frame: Callable[[Picture], Any] | None
) -> np.ndarray | list[Any]:
    """RGB arrays stacked to (T, H, W, 3), or each distinct one converted once by `convert_frame`."""
    if convert_frame is None:
        return np.stack(frames)
    converted = {id(frame): convert_frame(Picture(frame, max_side=None)) for frame in frames}
    return [converted[id(frame)] for frame in frames]


def _image_rgb(image: Image.Image, index: int, max_side: int | None) -> np.ndarray:
    """Frame `index` of a Pillow image as RGB uint8, upright, scaled down to `max_side` if larger."""
    from PIL import Image, ImageOps

    image.seek(index)
    scale = 1.0 if max_side is None else min(1.0, max_side / max(image.size))
    if scale < 1.0 and image.format == "JPEG":  # decodes at 1/2, 1/4 or 1/8 directly: no full-size copy
        image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: keep the top 8 bits, not a clip
        image = Image.fromarray((np.asarray(image, np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    image = image.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    return np.asarray(image)


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_frame_folder(
    folder: Path,
    num_frames: int,
    sampling_rate: int,
    max_pixels: int,
    max_side: int | None,
    convert_frame: Callable[[Picture], Any] | None,
) -> Clip:
    """`num_frames` images spread evenly over a folder's frames, each decoded once."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise MediaReadError(
            str(folder), f"the folder holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if num_frames == 0:
        return Clip(frames=None, audio=None, sampling_rate=sampling_rate, source=str(folder))
    chosen = uniform_indices(len(files), num_frames)
    decoded = {}
    for index in set(chosen.tolist()):
        image = _open_image(str(files[index]), str(files[index]))
        if image is None:
            raise MediaReadError(str(files[index]), f"not an image in {', '.join(PILLOW_FORMATS)}")
        decoded[index] = _image_frames(image, str(files[index]), 1, max_pixels, max_side)[0]
    shapes = {frame.shape for frame in decoded.values()}
    if len(shapes) > 1:
        raise MediaReadError(str(folder), f"its frames differ in size ({sorted(shapes)})")
    return Clip(
        frames=_finish([decoded[index] for index in chosen], convert_frame),
        audio=None,
        sampling_rate=sampling_rate,
        source=str(folder),
    )


# -- audio -----------------------------------------------------------------------------------------------------


def read_audio(
    source: MediaSource,
    sampling_rate: int = 16_000,
    max_seconds: float | None = None,
    url_limits: UrlLimits = UrlLimits(),
    *,
    audio_track: int | None = None,
) -> np.ndarray:
    """The audio track of `source` as float32 mono at `sampling_rate`; an error if there is none."""
    clip = read_clip(source, 0, sampling_rate, max_seconds, url_limits, audio_track=audio_track)
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


def _audio_tracks(
    container: av.container.InputContainer, audio_track: int | None, name: str
) -> list[av.audio.stream.AudioStream]:
    """The audio streams to try, best first: the one asked for, else those flagged default, then the others."""
    streams = list(container.streams.audio)
    if audio_track is not None:
        if not 0 <= audio_track < len(streams):
            raise MediaReadError(
                name, f"`audio_track={audio_track}` asked for, but it has {len(streams)} audio track(s)"
            )
        return [streams[audio_track]]
    default = [stream for stream in streams if stream.disposition & av.stream.Disposition.default]
    return default + [stream for stream in streams if stream not in default]


def _decode_audio(
    container: av.container.InputContainer,
    tracks: list[av.audio.stream.AudioStream],
    sampling_rate: int,
    max_seconds: float | None,
) -> np.ndarray | None:
    """The first of `tracks` that holds sound (the first that decodes at all if all are silent)."""
    fallback = None
    for stream in tracks:
        waveform = _decode_audio_stream(container, stream, sampling_rate, max_seconds)
        if waveform is not None and np.any(waveform):
            return waveform
        fallback = waveform if fallback is None else fallback
    return fallback


def _decode_audio_stream(
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
    for packet in _readable(container.demux(stream)):
        try:
            frames = packet.decode()
        except av.InvalidDataError:  # a corrupt or cut packet: skip it, as for video
            continue
        for frame in frames:
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


def _readable(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """Packets until the demuxer cannot read on (data cut off mid-packet): the stream ends there."""
    try:
        yield from packets
    except av.InvalidDataError:
        return


# -- video -----------------------------------------------------------------------------------------------------


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The video stream flagged default, else the first; a cover picture (mp3/m4a artwork) is not a video."""
    streams = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    default = [stream for stream in streams if stream.disposition & av.stream.Disposition.default]
    return (default or streams or [None])[0]


def uniform_indices(available: int, wanted: int) -> np.ndarray:
    """`wanted` indices spread evenly over `available` items, first and last included (repeats if fewer)."""
    return np.linspace(0, available - 1, wanted).round().astype(int)


def _sample_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    num_frames: int,
    name: str,
    strict: bool,
    max_side: int | None,
    convert: Callable[[Picture], Any],
) -> list[Any]:
    """What `convert` makes of each sampled frame, called as the frame is decoded."""
    context = stream.codec_context
    # Before the decoder opens. Above `MAX_PIXELS` (a limit raised by the caller) each frame thread's picture costs
    # hundreds of megabytes: one thread of slices then.
    if FRAME_THREADS_MIN_PIXELS <= context.width * context.height <= MAX_PIXELS:
        stream.thread_type = "FRAME"
        context.thread_count = min(os.cpu_count() or 1, 4)

    def convert_decoded(frame: av.VideoFrame) -> Any:
        return convert(Picture(frame, max_side))

    def from_start() -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        _rewind(container, name)
        return container, stream

    sampler = _TimeSampler(container, stream, name, convert_decoded)
    frames = sampler.sample(num_frames)
    if frames is None:  # no timestamps: count the packets, then decode in one pass
        frames = _frames_by_index(from_start, num_frames, name, strict, convert_decoded)
    elif sampler.truncated_at is not None:
        decoded, declared = (round((end - sampler.first) * sampler.rate) + 1 for end in sampler.truncated_at)
        _report_truncation(
            name,
            strict,
            f"about {decoded} of its {declared} video frames decode ({decoded / sampler.rate:.2f} s)",
        )
    if not frames:
        raise MediaReadError(name, "its video stream holds no decodable frame")
    return frames


def _sample_elementary_stream(
    reopen: Callable[[], av.container.InputContainer],
    num_frames: int,
    name: str,
    strict: bool,
    max_side: int | None,
    convert: Callable[[Picture], Any],
) -> list[Any]:
    """Frames by index from an elementary stream, which has neither timestamps nor a container to seek in: each
    pass (count the packets, then decode up to the last sampled frame) opens the source afresh."""
    with contextlib.ExitStack() as opened:

        def from_start() -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
            container = opened.enter_context(reopen())
            return container, _video_stream(container)

        frames = _frames_by_index(
            from_start, num_frames, name, strict, lambda frame: convert(Picture(frame, max_side))
        )
    if not frames:
        raise MediaReadError(name, "its video stream holds no decodable frame")
    return frames


def _report_truncation(name: str, strict: bool, detail: str, depth: int = 4) -> None:
    """A `MediaReadWarning` pointing at `read_clip`'s caller, `depth` calls up (an error with `strict`)."""
    if strict:
        raise MediaReadError(name, f"it is truncated: {detail} (`strict=True`)")
    warnings.warn(
        f"{name} is truncated: {detail}; the frames are sampled over the part that decodes "
        "(pass strict=True to make this an error).",
        MediaReadWarning,
        stacklevel=depth,
    )


class _NoTimeline(Exception):
    """Frames without timestamps: sampling by time is impossible, sampling by index takes over."""


Run = Generator[av.VideoFrame, float | None, None]


class _TimeSampler:
    """Frames by presentation time, seeking only where it saves decoding, and never trusting a seek blindly.

    Target `t` takes the first frame shown at or after `t - tolerance` (half a frame). Decoding after a seek must
    start at a keyframe at or before that: where a seek lands later (MPEG-TS and MPEG-PS seeks land on the packet
    at the time asked, and the decoder waits for the next keyframe), it is retried earlier; where seeks do not
    work at all (an index-less stream with one keyframe), the stream is decoded from its start. A target that a
    seek would not bring closer (one keyframe for the whole clip, or several targets in one group of pictures)
    is reached by decoding on from the previous one, so that no clip costs more than one pass. Each frame chosen
    is handed to `convert` at once, and only what it returns is kept.
    """

    SCAN_SECONDS = 30.0  # how far after a seek's landing point a keyframe is looked for
    # A last frame this close to the last packet is no truncation worth a warning: a trailing packet that does
    # not decode, or timestamps that a demuxer computes differently after a seek (AVI).
    SLACK_SECONDS = 0.25

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        name: str,
        convert: Callable[[av.VideoFrame], Any],
    ):
        self.container, self.stream, self.name, self.convert = container, stream, name, convert
        self.time_base = stream.time_base
        self.rate = float(stream.average_rate or stream.guessed_rate or 25)
        self.tolerance = 0.5 / self.rate
        self.first = 0.0
        self.seeks_work = True
        # (the last frame that decodes, the last one that the packets or the index announce) when they differ
        self.truncated_at: tuple[float, float] | None = None

    def sample(self, num_frames: int) -> list[Any] | None:
        """The sampled frames converted, or None when they cannot be found by time (the caller samples by index)."""
        if self.time_base is None:
            return None
        try:
            last, declared_end = self._last_packet_time()
            # Plan from the stream's start time before decoding, so that the run that decodes the first frame
            # can go on to the next targets (a one-keyframe clip is then one pass, its first frame decoded once).
            start = self.stream.start_time
            self.first = 0.0 if start is None else float(start * self.time_base)
            plan = None if last is None or last <= self.first else self._plan(last, num_frames)
            run = self._run_from_start(None)
            first_frame = next(run, None)
            if first_frame is None:
                return []
            if self._time(first_frame) != self.first:  # the first frame that decodes is not the first packet
                self.first, plan, run = self._time(first_frame), None, None
            if last is None or last < self.first:
                return None
            first = (self.first, self.convert(first_frame))
            del first_frame
            if last == self.first:  # a single picture: one frame, as a still image gives
                return [first[1]]
            frames = self._sample_over(first, plan or self._plan(last, num_frames), run)
            if frames is None:  # decoding stops before the last packet: the data is cut or corrupt
                end = self._last_decodable_time(last)
                if declared_end is None and last - end > self.SLACK_SECONDS:
                    declared_end = last
                last = end
                frames = self._sample_over(first, self._plan(last, num_frames), None)
        except _NoTimeline:
            return None
        if frames is not None and declared_end is not None:
            self.truncated_at = (last, declared_end)
        return frames

    def _plan(self, last: float, num_frames: int) -> list[tuple[float, float | None, float]]:
        """For each target after the first: (threshold, where to seek, where decoding then starts)."""
        thresholds = np.linspace(self.first, last, num_frames)[1:] - self.tolerance
        return [(threshold, *self._seek_point(threshold)) for threshold in thresholds]

    def _sample_over(
        self, first: tuple[float, Any], plan: list[tuple[float, float | None, float]], run: Run | None
    ) -> list[Any] | None:
        """The first frame (its time, converted) and one converted frame per planned target, decoding on from `run`
        (the run that gave the first frame, None if the demuxer has moved since); None if decoding ends before a
        target."""
        position, converted = first
        frames = [converted]
        for threshold, seek_to, landing in plan:
            if position >= threshold:
                frames.append(frames[-1])  # several targets within one frame (a clip shorter than num_frames)
                continue
            if run is None or landing > position:  # the keyframe is ahead of where decoding stands: seek
                if run is not None:
                    run.close()
                run, frame = self._seek_run(threshold, seek_to)
            else:
                frame = self._next_at(run, threshold)
            if frame is None:
                return None
            position = self._time(frame)
            frames.append(self.convert(frame))
        return frames

    def _seek_point(self, threshold: float) -> tuple[float | None, float]:
        """Where to seek so that decoding starts at a keyframe at or before `threshold`, and that keyframe's time;
        (None, first) stands for decoding from the start."""
        seek_to, step = threshold, 1.0
        while self.seeks_work and seek_to > self.first:
            landing = self._landing(seek_to)
            if landing is not None and landing <= threshold:
                return seek_to, landing
            seek_to, step = seek_to - step, step * 2
        return None, self.first

    def _landing(self, seconds: float) -> float | None:
        """The time of the keyframe where decoding starts after a seek to `seconds`; None when there is none: past
        the last keyframe (try earlier), or none near or no seeking at all (`seeks_work` turns False)."""
        try:
            self.container.seek(self._pts(seconds), stream=self.stream, backward=True, any_frame=False)
            for packet in self.container.demux(self.stream):
                if packet.pts is None:
                    continue
                if packet.is_keyframe:
                    return float(packet.pts * self.time_base)
                if packet.pts * self.time_base > seconds + self.SCAN_SECONDS:
                    break
            else:
                return None
        except av.FFmpegError:
            pass
        self.seeks_work = False
        return None

    def _seek_run(self, threshold: float, seek_to: float | None) -> tuple[Run, av.VideoFrame | None]:
        """A run of decoding from a seek whose first frame is checked to be at or before `threshold` (else the
        seek is retried earlier), and the first frame of it at or after `threshold`."""
        step = 1.0
        while True:
            run = self._run_from_start(threshold) if seek_to is None else self._run_from(seek_to, threshold)
            first = next(run, None)
            if seek_to is None or (first is not None and self._time(first) <= threshold):
                break
            run.close()  # overshot: the decoder's first frame is past the target, or there was none
            seek_to = seek_to - step if seek_to - step > self.first else None
            step *= 2
        if first is None or self._time(first) >= threshold:
            return run, first
        return run, self._next_at(run, threshold)

    def _run_from(self, seconds: float, threshold: float) -> Run:
        self.container.seek(self._pts(seconds), stream=self.stream, backward=True, any_frame=False)
        return _decode(self.container, self.stream, skip_before=threshold)

    def _run_from_start(self, threshold: float | None) -> Run:
        _rewind(self.container, self.name)
        return _decode(self.container, self.stream, skip_before=threshold)

    def _next_at(self, run: Run, threshold: float) -> av.VideoFrame | None:
        """Decode on to the first frame shown at or after `threshold`; None if the stream ends first."""
        try:
            frame = run.send(threshold)
            while self._time(frame) < threshold:
                frame = next(run)
        except StopIteration:
            return None
        return frame

    def _last_decodable_time(self, last: float) -> float:
        """The time of the last frame that decodes, found by decoding to the end from ever earlier seeks."""
        step = 1.0
        while True:
            seek_to = last - step
            from_start = seek_to <= self.first or not self.seeks_work
            final = None
            for frame in self._run_from_start(None) if from_start else self._run_from(seek_to, seek_to):
                final = frame
            if final is not None or from_start:
                return self.first if final is None else self._time(final)
            step *= 2

    def _last_packet_time(self) -> tuple[float | None, float | None]:
        """The time of the stream's last packet, read at its end, and the end that an index declares when the
        packets stop short of it (a truncated file); headers alone may leave the duration out (mkv/webm written
        live), under-report it (written before the end) or give the container's length."""
        declared = self._declared_end()
        starts = [0.0] if declared is None else [max(declared - 2.0, 0.0), max(declared - 30.0, 0.0), 0.0]
        for attempt, seek_to in enumerate(dict.fromkeys(starts)):
            spans = self._packet_spans_from(seek_to)
            if not spans:
                continue
            last_start, last_end = max(spans)
            # Truncated: the index pointed past the data (nothing at its end), or an mp4/mov track's own duration
            # (the sum of its sample durations) goes on after its last packet.
            mp4_track = self.stream.duration is not None and self.container.format.name.startswith("mov,")
            short = attempt > 0 or (mp4_track and last_end < declared - self.tolerance)
            return last_start, declared - 1 / self.rate if short else None
        return None, None

    def _packet_spans_from(self, seconds: float) -> list[tuple[float, float]]:
        """(start, end) times of the packets from `seconds` (any frame, not only keyframes) to the end."""
        try:
            if seconds > 0:
                self.container.seek(self._pts(seconds), stream=self.stream, backward=True, any_frame=True)
            else:
                self.container.seek(0)
            return [
                (
                    float(packet.pts * self.time_base),
                    float((packet.pts + (packet.duration or 0)) * self.time_base),
                )
                for packet in self.container.demux(self.stream)
                if packet.pts is not None and packet.size > 0
            ]
        except av.FFmpegError:
            return []

    def _declared_end(self) -> float | None:
        stream, container = self.stream, self.container
        start = float(stream.start_time * self.time_base) if stream.start_time is not None else 0.0
        if stream.duration is not None:
            return start + float(stream.duration * self.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        return None

    def _pts(self, seconds: float) -> int:
        return int(seconds / self.time_base)

    def _time(self, frame: av.VideoFrame) -> float:
        if frame.time is None:
            raise _NoTimeline
        return frame.time


def _rewind(container: av.container.InputContainer, name: str) -> None:
    try:
        container.seek(0)
    except av.FFmpegError as error:
        raise MediaReadError(
            name,
            f"it cannot be rewound ({error}); remux it first, e.g. `ffmpeg -i clip.ts -c copy clip.mp4`",
        ) from error


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    skip_before: float | None = None,
) -> Run:
    """Decode video frames from the demuxer's position, skipping corrupt packets instead of giving up on the clip.

    With `skip_before` (seconds), decoding starts at the first keyframe (the packets before it, where a seek
    landed, would decode to garbage), and the decoder drops the non-reference frames (typically B-frames) shown
    before that time: no other frame is predicted from them and none of them can be the one sought, so the
    frames that come out from `skip_before` on are exactly those of a full decode. Sending a later time to the
    generator moves `skip_before` on (the next target of one run of decoding).
    """
    context = stream.codec_context
    threshold = None if skip_before is None else skip_before / stream.time_base
    before_keyframe = threshold is not None
    for packet in _readable(container.demux(stream)):
        early = threshold is not None and packet.pts is not None and packet.pts < threshold
        before_keyframe = before_keyframe and not packet.is_keyframe
        if before_keyframe and early:
            continue
        context.skip_frame = "NONREF" if early else "DEFAULT"
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue
        for frame in frames:
            moved = yield frame
            if moved is not None:
                threshold = moved / stream.time_base


def _frames_by_index(
    from_start: Callable[[], tuple[av.container.InputContainer, av.video.stream.VideoStream]],
    num_frames: int,
    name: str,
    strict: bool,
    convert: Callable[[av.VideoFrame], Any],
) -> list[Any]:
    """Without a timeline: count the packets (no decoding), then decode keeping only the sampled frames, each pass
    from the start that `from_start` gives.

    Fewer frames decoding than packets counted (a truncated tail) resamples over those that decode, instead of
    repeating the last one, and is reported.
    """
    container, stream = from_start()
    count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    wanted = uniform_indices(max(count, 1), num_frames).tolist()
    kept, decoded = _keep_frames(*from_start(), wanted, convert)
    if decoded and decoded < count:
        wanted = uniform_indices(decoded, num_frames).tolist()
        kept, _ = _keep_frames(*from_start(), wanted, convert)
        if count - decoded > 2:  # more than a trailing packet or two that does not decode
            _report_truncation(name, strict, f"only {decoded} of its {count} video frames decode", depth=5)
    return [kept[index] for index in wanted if index in kept]


def _keep_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    convert: Callable[[av.VideoFrame], Any],
) -> tuple[dict[int, Any], int]:
    """The frames at the `wanted` indices, converted, decoding from the demuxer's position up to the last of them;
    and how many frames decoded."""
    kept: dict[int, Any] = {}
    decoded = 0
    for index, frame in enumerate(_decode(container, stream)):
        decoded = index + 1
        if index in wanted:
            kept[index] = convert(frame)
        if index >= wanted[-1]:
            break
    return kept, decoded
