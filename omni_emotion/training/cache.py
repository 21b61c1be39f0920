"""The preprocessing cache: every training clip decoded once, for all its rows and all epochs.

Decoding a clip (seeking its frames, tracking its face, resampling its sound) costs far more than a training
step of the projectors, and phase 3 holds about three instructions per clip over three epochs. So the unique
clips of a dataset are decoded once with `OmniEmotionProcessor.decode_clip`, stored compactly (uint8 frames
and face crops, 16 kHz float32 audio; never float pixel tensors) in an Arrow dataset that is memory-mapped,
and the collator swaps each row's media part for its decoded clip (`ClipCache.substitute`), which gives the
processor exactly the tensors of the source file. The folder's name fingerprints the clips and every
processor setting that changes `decode_clip`'s output, so a rerun with the same data and settings decodes
nothing and a changed setting never reads a stale cache.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dill
import numpy as np
import torch
from datasets import Dataset, Features, List, Value, load_from_disk

from processing import HaarCascadeFaceDetector, OmniEmotionProcessor
from processing.processing_omni_emotion import DECODED_CLIP_KEYS, SAMPLING_RATE, _audio_entry, _first

CACHE_VERSION = 1
"""Bumped whenever the stored layout or the meaning of a setting changes: older caches are then ignored."""

VISUAL_TYPES = ("video", "image")
MEDIA_TYPES = (*VISUAL_TYPES, "audio")
# The keys the processor reads a part's source from, in its own order (`_multimodal_inputs_from_conversations`).
VISUAL_SOURCE_KEYS = ("video", "image", "url", "path")
AUDIO_SOURCE_KEYS = ("audio", "url", "path")

# Each decoded array is stored as raw bytes plus its shape: datasets 5.2 reads a null `Array4D` back as NaN
# (and its numpy formatter widens uint8 to int64), while a null binary value stays None and reads zero-copy.
_ARRAY_DTYPES = {"frames": np.uint8, "faces": np.uint8, "face_mask": np.bool_, "audio": np.float32}
_FEATURES = Features(
    {
        "key": Value("string"),
        **{name: Value("large_binary") for name in _ARRAY_DTYPES},
        **{f"{name}_shape": List(Value("int64")) for name in _ARRAY_DTYPES},
    }
)
# Rows buffered before a write: a real clip is about 5 MB, so the default of 1000 would hold gigabytes.
_WRITER_BATCH_SIZE = 16


class ClipNotCachedError(KeyError):
    """A conversation's clip is not in the cache: the cache was built from other data."""

    def __str__(self) -> str:
        return str(self.args[0])


def clip_key(part: Mapping[str, Any]) -> str | None:
    """A stable key for a user-turn media part: what the processor would decode from it; None for text.

    A path (or URL) part is keyed by its type, its source and whether its audio block is wanted (only
    `with_audio=False` drops it; datasets fills None for a missing key, which keeps it, as the chat template
    does). An inline `array` part is keyed by a hash of its samples and sampling rate.
    """
    kind = part.get("type")
    if kind == "audio":
        if part.get("array") is not None:
            digest = hashlib.blake2b(np.asarray(part["array"], np.float64).tobytes(), digest_size=16)
            digest.update(f"@{part.get('sampling_rate', SAMPLING_RATE)}".encode())
            return f"audio-array:{digest.hexdigest()}"
        return f"audio:{_source(part, AUDIO_SOURCE_KEYS)}"
    if kind in VISUAL_TYPES:
        blocks = kind if part.get("with_audio") is False else f"{kind}+audio"
        return f"{blocks}:{_source(part, VISUAL_SOURCE_KEYS)}"
    return None


def _source(part: Mapping[str, Any], keys: Sequence[str]) -> str:
    source = _first(part, keys)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"The clip cache keys a {part.get('type')!r} entry by its path or URL, but it holds a "
            f"{type(source).__name__}: store media as paths (or audio as an inline 'array') to cache it."
        )
    return os.fspath(source)


def media_part(messages: Sequence[Mapping[str, Any]], *, row: int | None = None) -> Mapping[str, Any] | None:
    """The one media part of a conversation's user turns (None for text alone); `row` names it in errors."""
    parts = [
        part
        for message in messages
        if message.get("role") == "user" and not isinstance(message.get("content"), str)
        for part in message.get("content") or ()
        if part.get("type") in MEDIA_TYPES
    ]
    if len(parts) > 1:
        where = "A conversation" if row is None else f"Row {row} of the dataset"
        raise ValueError(
            f"{where} holds {len(parts)} media parts ({', '.join(part['type'] for part in parts)}) in its user "
            "turns; the clip cache expects one clip per conversation (a video, a video without its audio, or an "
            "audio alone). Split the row, or train without the cache."
        )
    return parts[0] if parts else None


def cache_fingerprint(keys: Iterable[str], processor: OmniEmotionProcessor) -> str:
    """Hash of the clip keys and of every processor setting that changes `decode_clip`'s output."""
    settings = {
        "cache_version": CACHE_VERSION,
        "num_frames": processor.num_frames,
        "frame_size": _size(processor.video_processor.size),
        "frame_resample": _resample(processor.video_processor.resample),
        "face_size": _size(processor.image_processor.size),
        "face_resample": _resample(processor.image_processor.resample),
        "face_image_size": processor.face_image_size,
        "face_margin": processor.face_margin,
        "use_face_tower": processor.use_face_tower,
        "use_audio_tower": processor.use_audio_tower,
        "max_audio_seconds": processor.max_audio_seconds,
        "face_detector": _detector_fingerprint(processor.face_detector) if processor.use_face_tower else None,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for key in keys:
        digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:20]


def _size(size: Mapping[str, Any]) -> list[int]:
    return [size["height"], size["width"]]


def _resample(resample: Any) -> int | str | None:
    return int(resample) if isinstance(resample, int) else None if resample is None else str(resample)


def _detector_fingerprint(detector: Any) -> dict[str, Any]:
    """The detector's name (a function's own, else its class's) and its `cache_fingerprint` if it has one."""
    owner = detector if inspect.isfunction(detector) else type(detector)
    fingerprint = {
        "name": f"{owner.__module__}.{owner.__qualname__}",
        "cache_fingerprint": getattr(detector, "cache_fingerprint", None),
    }
    if isinstance(detector, HaarCascadeFaceDetector):  # ours: its settings are plain attributes
        fingerprint["settings"] = _haar_settings(detector)
    return fingerprint


def _haar_settings(detector: HaarCascadeFaceDetector) -> dict[str, float]:
    return {name: value for name, value in vars(detector).items() if not name.startswith("_")}


def _worker_processor(processor: OmniEmotionProcessor, num_proc: int) -> OmniEmotionProcessor:
    """A copy of the processor that worker processes can unpickle.

    OpenCV's Haar cascade does not pickle: a default one is dropped (each worker builds its own when it first
    needs it); any other detector must pickle as it is.
    """
    worker = copy.copy(processor)
    detector = processor._face_detector
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(HaarCascadeFaceDetector).parameters.items()
        if name != "cascade_file"
    }
    if isinstance(detector, HaarCascadeFaceDetector) and _haar_settings(detector) == defaults:
        worker._face_detector = None
    try:
        dill.dumps(worker)
    except Exception as error:
        raise TypeError(
            f"num_proc={num_proc} sends the processor to worker processes, but it cannot be pickled ({error}). "
            f"Its face detector ({type(detector).__name__}) is the usual cause: a custom detector must be "
            "picklable (build its model lazily, or define __getstate__), or build the cache with num_proc=1."
        ) from error
    return worker


def _decode(
    job: dict[str, Any], *, messages: Dataset, processor: OmniEmotionProcessor, in_worker: bool
) -> dict[str, Any]:
    """Decode one unique clip exactly as the processor would from the row's media part."""
    if in_worker:
        # A forked worker inherits the parent's OpenMP pool in a broken state and would hang in its first
        # parallel torch op; the workers already run in parallel, so each keeps to one thread.
        torch.set_num_threads(1)
    part = media_part(messages[job["row"]]["messages"], row=job["row"])
    try:
        if part["type"] == "audio":
            clip = processor.decode_clip(None, _audio_entry(part), with_video=False, with_audio=True)
        else:
            with_audio = part.get("with_audio") is not False and processor.use_audio_tower
            source = _first(part, VISUAL_SOURCE_KEYS)
            clip = processor.decode_clip(source, None, with_video=True, with_audio=with_audio)
    except Exception as error:
        error.add_note(f"while caching clip {job['key']!r} (row {job['row']} of the dataset)")
        raise
    return _encode(clip)


def _encode(clip: Mapping[str, np.ndarray | None]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, dtype in _ARRAY_DTYPES.items():
        array = None if clip[name] is None else np.ascontiguousarray(clip[name], dtype=dtype)
        row[name] = None if array is None else array.tobytes()
        row[f"{name}_shape"] = None if array is None else list(array.shape)
    return row


class ClipCache:
    """Decoded clips stored once per `clip_key` in a memory-mapped Arrow dataset at `path`.

    Build it with `ClipCache.build`; `ClipCache(path)` opens a built one.
    """

    def __init__(self, path: str | os.PathLike):
        self._path = Path(path)
        self._dataset = load_from_disk(str(self._path))
        self._rows = {key: index for index, key in enumerate(self._dataset["key"])}
        table = self._dataset.data.table
        self._columns = {name: table.column(name) for name in _FEATURES if name != "key"}

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        processor: OmniEmotionProcessor,
        cache_dir: str | os.PathLike,
        *,
        num_proc: int = 1,
        desc: str = "Decoding clips into the preprocessing cache",
    ) -> ClipCache:
        """Decode each unique clip of `dataset["messages"]` once into `cache_dir/<fingerprint>/`, or open it.

        The cache is written to a temporary folder that is renamed when complete, so an interrupted build
        leaves no cache behind (a killed process may leave a `.<fingerprint>.partial-*` folder to delete).
        With several ranks, build on the main process first (`TrainingArguments.main_process_first`): the
        others then open it. Decoding needs up to twice the cache's size on disk while it runs.
        """
        if num_proc < 1:
            raise ValueError(f"`num_proc` must be at least 1, got {num_proc}.")
        first_rows: dict[str, int] = {}
        for row, messages in enumerate(dataset["messages"]):
            part = media_part(messages, row=row)
            if part is not None:
                first_rows.setdefault(clip_key(part), row)
        keys = sorted(first_rows)
        final = Path(cache_dir) / cache_fingerprint(keys, processor)
        if final.is_dir():
            return cls(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
        try:
            _decode_into(
                partial,
                keys,
                [first_rows[key] for key in keys],
                dataset,
                processor,
                num_proc,
                desc,
                final.name,
            )
            try:
                os.rename(partial / "dataset", final)
            except OSError:
                if not final.is_dir():  # else another process finished the same cache first
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return cls(final)

    def __reduce__(self) -> tuple[type[ClipCache], tuple[Path]]:
        # Data-loader workers reopen the memory-mapped files rather than receive a copy of the clips.
        return type(self), (self._path,)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @property
    def path(self) -> Path:
        return self._path

    @property
    def nbytes(self) -> int:
        """Bytes of the Arrow files on disk."""
        return sum(file.stat().st_size for file in self._path.glob("*.arrow"))

    @property
    def bytes_per_clip(self) -> float:
        return self.nbytes / max(len(self), 1)

    def get(self, key: str) -> dict[str, np.ndarray | None]:
        """The `decode_clip` dict of a clip: frames and faces uint8, face_mask bool, audio float32, or None.

        The arrays are read-only views of the memory-mapped files (nothing is copied until the processor
        batches them).
        """
        index = self._rows.get(key)
        if index is None:
            raise ClipNotCachedError(
                f"Clip {key!r} is not in the preprocessing cache at {self._path} ({len(self)} clips): the cache "
                "was built from other data. Build it from the dataset being trained (ClipCache.build)."
            )
        return {name: self._array(name, index) for name in DECODED_CLIP_KEYS}

    def _array(self, name: str, index: int) -> np.ndarray | None:
        shape = self._columns[f"{name}_shape"][index].as_py()
        if shape is None:
            return None
        buffer = self._columns[name][index].as_buffer()
        return np.frombuffer(buffer, dtype=_ARRAY_DTYPES[name]).reshape(shape)

    def substitute(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A copy of the conversation whose media part is its cached clip; the processor gives the same tensors.

        A video part becomes `{"type": "video", "video": <decoded clip>, "with_audio": ...}` (the processor
        reads "video" before "path", so a "path" left in the part by datasets is ignored); an audio part
        alone becomes its 16 kHz waveform as an inline array.
        """
        part = media_part(messages)
        if part is None:
            return [dict(message) for message in messages]
        clip = self.get(clip_key(part))
        if part["type"] == "audio":
            cached = {"type": "audio", "array": clip["audio"], "sampling_rate": SAMPLING_RATE}
        else:
            cached = {"type": part["type"], "video": clip, "with_audio": part.get("with_audio")}
        return [
            {**message, "content": [cached if entry is part else entry for entry in message["content"]]}
            if message.get("role") == "user" and not isinstance(message.get("content"), str)
            else dict(message)
            for message in messages
        ]

    def describe(self) -> str:
        return (
            f"preprocessing cache: {len(self)} clips, {self.bytes_per_clip / 2**20:.2f} MiB per clip "
            f"({self.nbytes / 2**30:.2f} GiB) at {self._path}"
        )


def _decode_into(
    partial: Path,
    keys: list[str],
    rows: list[int],
    dataset: Dataset,
    processor: OmniEmotionProcessor,
    num_proc: int,
    desc: str,
    fingerprint: str,
) -> None:
    """Decode the clips of `keys` (each from its first row) and save them under `partial/dataset`."""
    if not keys:  # `map` leaves an empty dataset as it is
        decoded = Dataset.from_dict({name: [] for name in _FEATURES}, features=_FEATURES)
    else:
        worker = _worker_processor(processor, num_proc) if num_proc > 1 else processor
        decoded = Dataset.from_dict({"key": keys, "row": rows}).map(
            _decode,
            fn_kwargs={
                "messages": dataset.select_columns(["messages"]),
                "processor": worker,
                "in_worker": num_proc > 1,
            },
            remove_columns=["row"],
            features=_FEATURES,
            num_proc=num_proc if num_proc > 1 else None,
            writer_batch_size=_WRITER_BATCH_SIZE,
            cache_file_name=str(partial / "map" / "decoded.arrow"),
            new_fingerprint=fingerprint,  # our own: datasets need not hash the processor
            desc=desc,
        )
    decoded.save_to_disk(str(partial / "dataset"))


__all__ = [
    "CACHE_VERSION",
    "ClipCache",
    "ClipNotCachedError",
    "cache_fingerprint",
    "clip_key",
    "media_part",
]
