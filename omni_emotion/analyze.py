"""`omni-emotion analyze PATH... --model ID|DIR`: emotion words and reasoning for many clips, one JSON line each.

```bash
omni-emotion analyze clips/ more/*.mp4 list.txt --model omni-emotion-7b --out results.jsonl
omni-emotion analyze clips/ --model omni-emotion-7b --modalities frames,audio --out v+a.jsonl  # the paper's v+a
accelerate launch -m omni_emotion.analyze clips/ --model omni-emotion-7b --out results.jsonl  # a process per GPU
torchrun --nproc_per_node 8 -m omni_emotion.analyze clips/ --model omni-emotion-7b --out results.jsonl
```

The model is loaded once; clips are decoded (frames, tracked face, sound) by a background thread while the model
generates for the previous batch; batches are left-padded and decoded greedily. A clip that fails to decode or to
generate is written with its `error` and the run goes on. Each line is flushed as it is written, and a rerun skips
the clips already in the output, so a killed run resumes where it stopped.

Launched as several processes (`accelerate launch`, `torchrun`; across nodes, `--out` must be on a file system
they all share), the clips left to do are split between the processes, each on its own device: with `--device
auto` or `cuda`, the process's local GPU; with `--device cpu`, or where there is no GPU, the CPU (start CPU
processes with `torchrun --nproc_per_node N`: without MPI, `accelerate launch --cpu` starts only one). Each process
appends its lines to its own shard beside the output (`results.jsonl.shard-00001`, flushed line by line); when all
are done, the main process merges the shards into the output, rewritten in input order (a new file renamed over
it), and removes them. A killed run leaves its shards: the next run, with any number of processes, merges them
first and skips what they hold. A single process writes to the output directly, as above.

Heavy imports (torch, transformers, the model) happen inside the functions, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import itertools
import json
import os
import queue
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from accelerate import PartialState

    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from processing import OmniEmotionProcessor

ALL_MODALITIES = ("frames", "faces", "audio")
"""`omni_emotion.pipeline.MODALITIES`, repeated here so that `--help` needs no transformers import (a test checks
that the two agree)."""
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".3gp", ".ogv"}
)  # fmt: skip
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus", ".wma"})
LIST_SUFFIX = ".txt"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# -- inputs --------------------------------------------------------------------------------------------------------


class InputsNotFoundError(FileNotFoundError):
    """Some of the given paths, folders, globs or list entries do not lead to a clip; `problems` names each one."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} input(s) lead to no clip:\n" + "\n".join(f"  {p}" for p in self.problems)
        )


def media_suffixes() -> frozenset[str]:
    """File extensions taken from folders and globs: videos, audio files and the images the media reader reads."""
    from processing.media_reading import IMAGE_SUFFIXES

    return VIDEO_SUFFIXES | AUDIO_SUFFIXES | IMAGE_SUFFIXES


def collect_inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The clips named by `paths`, de-duplicated, in the order given.

    Each entry is a media file (taken whatever its extension), an HTTP(S) URL, a folder (searched recursively for
    media extensions, in name order), a glob (`clips/**/*.mp4`), or a `.txt` list with one such entry a line (`#`
    starts a comment line; relative entries are relative to the list's folder). Local paths become absolute, so that
    resuming from another working directory still recognises them. Every entry that leads to no clip is named in
    one `InputsNotFoundError`, before any model is loaded.
    """
    collector = _InputCollector(media_suffixes())
    for path in paths:
        collector.add(os.fspath(path), where="argument")
    if collector.problems:
        raise InputsNotFoundError(collector.problems)
    if not collector.found:
        raise InputsNotFoundError(["no input was given"])
    return list(collector.found)


@dataclass
class _InputCollector:
    suffixes: frozenset[str]
    found: dict[str, None] = field(default_factory=dict)  # an ordered set
    problems: list[str] = field(default_factory=list)
    lists_read: set[str] = field(default_factory=set)

    def add(self, entry: str, where: str, base: str | None = None) -> None:
        entry = entry.strip()
        if entry.startswith(("http://", "https://")):
            self.found[entry] = None
            return
        path = os.path.abspath(os.path.join(base, entry) if base else entry)
        if os.path.isfile(path):
            if path.lower().endswith(LIST_SUFFIX):
                self._add_list(path)
            else:
                self.found[path] = None
        elif os.path.isdir(path):
            if not self._add_media_under(path):
                self.problems.append(f"{entry} ({where}): a folder without media files")
        elif glob.has_magic(entry):
            matches = sorted(glob.glob(path, recursive=True))
            added = [match for match in matches if self._add_match(match)]
            if not added:
                self.problems.append(f"{entry} ({where}): the pattern matches no media file")
        else:
            self.problems.append(f"{entry} ({where}): no such file or folder")

    def _add_list(self, path: str) -> None:
        if path in self.lists_read:
            return
        self.lists_read.add(path)
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip() and not line.lstrip().startswith("#"):
                    self.add(line, where=f"{path}:{number}", base=os.path.dirname(path))

    def _add_match(self, match: str) -> bool:
        if os.path.isdir(match):
            return self._add_media_under(match)
        if os.path.isfile(match) and Path(match).suffix.lower() in self.suffixes:
            self.found[match] = None
            return True
        return False

    def _add_media_under(self, folder: str) -> bool:
        added = False
        for root, folders, files in os.walk(folder):
            folders.sort()
            for name in sorted(files):
                if Path(name).suffix.lower() in self.suffixes:
                    self.found[os.path.join(root, name)] = None
                    added = True
        return added


# -- results -------------------------------------------------------------------------------------------------------


@dataclass
class ClipResult:
    """What the model said about one clip, and what it took.

    `modalities` lists what the model was given (a frame-less audio file gives no frames; `faces` only where a face
    was found and faces were asked for). `face_found` / `face_frames` are the tracker's result over the sampled
    frames, whether or not the faces were then given. `decode_seconds` covers all of `decode_clip` (reading, frame
    resizing, face tracking); `face_seconds` is the face detector's part of it (None when no detection ran: no
    frames, frames left out, or no face tower). `model_seconds` is the clip's share of its batch's generation time.
    `error` is set when the clip failed; the other fields then keep their defaults.
    """

    path: str
    labels: list[str] = field(default_factory=list)
    reasoning: str = ""
    raw_text: str = ""
    modalities: list[str] = field(default_factory=list)
    face_found: bool = False
    face_frames: int = 0
    decode_seconds: float = 0.0
    face_seconds: float | None = None
    model_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        """One line of the results file (no newline)."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ClipResult:
        record = json.loads(line)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in known})


@dataclass
class _DecodedClip:
    path: str
    clip: dict[str, Any] | None
    decode_seconds: float
    face_seconds: float | None
    error: str | None = None
    prompt: str = ""


class _TimedFaceDetector:
    """The processor's face detector, timed: `seconds` sums the time spent in it since the last reset."""

    def __init__(self, detector: Callable[[Any], Any]):
        self.detector = detector
        self.seconds = 0.0

    @property
    def max_side(self) -> int | None:
        """The wrapped detector's working size (see `FaceDetector`), so that the processor's copy is made for it."""
        return getattr(self.detector, "max_side", None)

    def __call__(self, image: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.detector(image)
        finally:
            self.seconds += time.perf_counter() - start


def _describe_error(error: BaseException) -> str:
    # Our media errors already name the file and the problem; others get their type for context.
    from processing.media_reading import MediaReadError

    return str(error) if isinstance(error, MediaReadError) else f"{type(error).__name__}: {error}"


# -- the run -------------------------------------------------------------------------------------------------------


def analyze(
    inputs: Iterable[str],
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    *,
    batch_size: int = 4,
    max_new_tokens: int = 256,
    prompt: str | Sequence[str] | None = None,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    prefetch: int = 2,
) -> Iterator[ClipResult]:
    """One `ClipResult` per input, in input order, generated `batch_size` clips at a time (greedy, left-padded).

    A background thread decodes up to `prefetch` batches ahead (0: decode in this thread, no overlap). A thread
    rather than DataLoader workers: decoding spends its time in PyAV, OpenCV and torch, which release the GIL; the
    processor (with its OpenCV detector) and the model need no pickling or copying into worker processes, and
    nothing forks a process that holds CUDA. `modalities` leaves frames, faces or audio out by giving the model
    the processor's input for a clip that lacks them (see `omni_emotion.pipeline.remove_modalities`). `prompt` is
    the question asked about every clip (default: the first phase-3 reasoning question), or a sequence of one
    question per input, in input order (a benchmark whose options are shuffled per clip).
    """
    from omni_emotion.pipeline import DEFAULT_PROMPT, check_modalities

    if batch_size < 1 or prefetch < 0 or max_new_tokens < 1:
        raise ValueError(
            f"Need batch_size >= 1, prefetch >= 0 and max_new_tokens >= 1; got {batch_size}, {prefetch}, "
            f"{max_new_tokens}."
        )
    keep = check_modalities(modalities)
    if prompt is None or isinstance(prompt, str):
        prompts: Iterable[str] = itertools.repeat(prompt or DEFAULT_PROMPT)
    else:
        inputs, prompts = list(inputs), list(prompt)
        if len(prompts) != len(inputs):
            raise ValueError(f"Give one prompt per input: {len(inputs)} inputs, {len(prompts)} prompts.")
    decode_clip = _clip_decoder(processor, keep)

    def decode(pair: tuple[str, str]) -> _DecodedClip:
        item = decode_clip(pair[0])
        item.prompt = pair[1]
        return item

    pairs = zip(inputs, prompts, strict=False)  # the prompts repeat, or were checked to match
    decoded = _prefetched(pairs, decode, depth=prefetch * batch_size) if prefetch else map(decode, pairs)
    for batch in _batches(decoded, batch_size):
        yield from _answer_batch(model, processor, batch, keep, max_new_tokens)


def _clip_decoder(processor: OmniEmotionProcessor, keep: Sequence[str]) -> Callable[[str], _DecodedClip]:
    """`decode_clip` on one input, timed, with its error caught; the face detector of a shallow copy of the
    processor is wrapped to time detection, so that the caller's processor is left as it was."""
    import copy

    decoder, timer = processor, None
    if processor.use_face_tower and "frames" in keep:
        decoder = copy.copy(processor)
        timer = _TimedFaceDetector(processor.face_detector)
        decoder._face_detector = timer  # the processor's only hook for its detector (a constructor argument)

    def decode(path: str) -> _DecodedClip:
        if timer is not None:
            timer.seconds = 0.0
        start = time.perf_counter()
        try:
            clip = decoder.decode_clip(path, with_video="frames" in keep, with_audio="audio" in keep)
            error = None
        except Exception as caught:
            clip, error = None, _describe_error(caught)
        seconds = time.perf_counter() - start
        detected = timer is not None and clip is not None and clip["frames"] is not None
        return _DecodedClip(str(path), clip, seconds, timer.seconds if detected else None, error)

    return decode


_DONE = object()


def _prefetched(items: Iterable[Any], work: Callable[[Any], Any], depth: int) -> Iterator[Any]:
    """`map(work, items)` computed by one background thread at most `depth` items ahead of the consumer.

    An exception in the thread is raised in the consumer; closing the generator stops the thread.
    """
    results: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if stop.is_set() or not put(work(item)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)
        put(_DONE)

    worker = threading.Thread(target=run, name="omni-emotion-decode", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=30)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _answer_batch(
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    batch: list[_DecodedClip],
    keep: Sequence[str],
    max_new_tokens: int,
) -> list[ClipResult]:
    """Results for one batch in its order: failed decodes as they are; the rest generated together, or one by
    one when the batch fails, so that one bad clip cannot take the others down with it."""
    from omni_emotion.pipeline import face_summary, given_modalities, remove_modalities, split_emotion_answer

    results = [_result_of(item) for item in batch]
    todo = [index for index, item in enumerate(batch) if item.clip is not None]
    given = {index: remove_modalities(batch[index].clip, keep) for index in todo}
    groups = [todo] if todo else []
    while groups:
        group = groups.pop(0)
        start = time.perf_counter()
        try:
            clips = [given[index] for index in group]
            prompts = [batch[index].prompt for index in group]
            texts = _generate(model, processor, clips, prompts, max_new_tokens)
        except Exception as error:
            if len(group) > 1:
                groups = [[index] for index in group] + groups
            else:
                results[group[0]].error = f"generation failed: {_describe_error(error)}"
            continue
        share = (time.perf_counter() - start) / len(group)
        for index, text in zip(group, texts, strict=True):
            reasoning, labels = split_emotion_answer(text)
            face_found, face_frames = face_summary(batch[index].clip)
            result = results[index]
            result.labels, result.reasoning, result.raw_text = labels, reasoning, text
            result.modalities = given_modalities(given[index])
            result.face_found, result.face_frames, result.model_seconds = face_found, face_frames, share
    return results


def _result_of(item: _DecodedClip) -> ClipResult:
    return ClipResult(
        path=item.path, decode_seconds=item.decode_seconds, face_seconds=item.face_seconds, error=item.error
    )


def _generate(
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    clips: list[dict[str, Any]],
    prompts: list[str],
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers for decoded clips, each to its prompt, batched with left padding (generation appends at the right end)."""
    import torch

    from omni_emotion.pipeline import clip_messages, generation_defaults

    inputs = processor.apply_chat_template(
        [clip_messages(clip, prompt) for clip, prompt in zip(clips, prompts, strict=True)],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding_side": "left"},
    ).to(model.device, dtype=model.dtype)  # only the floating tensors take the dtype
    with torch.inference_mode():  # here, not around the generator: it would leak into the caller's code
        generated = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            **generation_defaults(model, processor.tokenizer),
        )
    return processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


# -- loading -------------------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA if available, else Apple's MPS, else the CPU; an explicit device must be available."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device auto or cpu.")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use --device auto or cpu.")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA (what the 7B model is trained and benchmarked in), float32 elsewhere (CPU kernels
    are fastest and exact in float32, and MPS's bfloat16 support varies by macOS version)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    name = DTYPES.get(dtype, dtype)
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}: choose auto, {', '.join(DTYPES)}.")
    return getattr(torch, name)


def load_for_inference(
    model_id_or_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto"
) -> tuple[OmniEmotionForConditionalGeneration, OmniEmotionProcessor]:
    """Our model and processor classes from a Hub id or a folder, on `device` in `dtype`, in eval mode, with the
    tokenizer padding on the left as batched generation needs."""
    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from processing import OmniEmotionProcessor

    target = resolve_device(device)
    model = OmniEmotionForConditionalGeneration.from_pretrained(
        model_id_or_dir, dtype=resolve_dtype(dtype, target), device_map=str(target)
    ).eval()
    processor = OmniEmotionProcessor.from_pretrained(model_id_or_dir)
    processor.tokenizer.padding_side = "left"
    return model, processor


# -- the output and its summary ------------------------------------------------------------------------------------


@dataclass
class AnalyzeSummary:
    """The outcome of `run_analyze` over the clips it was asked for, including those done by an earlier run."""

    out_path: str
    total: int
    ok: int
    failed: int
    resumed: int
    labels: Counter[str]
    seconds: float
    analyzed_seconds: float
    failures: list[tuple[str, str]]

    @property
    def analyzed(self) -> int:
        return self.total - self.resumed

    def table(self, top_labels: int = 20) -> str:
        """A printable report: counts, clip rate, the most frequent labels and each failure."""
        rate = self.analyzed / self.analyzed_seconds if self.analyzed_seconds > 0 else 0.0
        lines = [
            f"Analyzed {self.analyzed} clip(s) in {self.seconds:.1f} s ({rate:.2f} clips/s after loading) "
            f"-> {self.out_path}",
            f"  {'ok':<8} {self.ok:>7}",
            f"  {'failed':<8} {self.failed:>7}",
            f"  {'resumed':<8} {self.resumed:>7}  (already in the output, skipped)",
            f"  {'total':<8} {self.total:>7}",
        ]
        if self.labels:
            width = max(len(label) for label, _ in self.labels.most_common(top_labels))
            lines.append(f"Labels (clips with each; {len(self.labels)} distinct):")
            lines += [
                f"  {label:<{width}} {count:>7}" for label, count in self.labels.most_common(top_labels)
            ]
        if self.failures:
            lines.append("Failed:")
            lines += [f"  {path}\n    {error}" for path, error in self.failures]
        return "\n".join(lines)


class ResultsFileError(ValueError):
    """The output file (or a shard) holds a line that `omni-emotion analyze` did not write, so it cannot be resumed."""


def _parse_results(text: str, path: Path) -> list[tuple[ClipResult, str]]:
    """Each result line of `text` (read from `path`) with what it says."""
    results = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            results.append((ClipResult.from_json(line), line))
        except (json.JSONDecodeError, TypeError) as error:
            raise ResultsFileError(
                f"{path}:{number} is not a result line of `omni-emotion analyze` ({error}); write to another "
                "--out, or remove that line."
            ) from error
    return results


def _complete_part(data: bytes) -> bytes:
    """`data` up to its last newline: what is left of a results file once a partial last line is cut."""
    return data[: data.rfind(b"\n") + 1]


def read_results(out_path: str | os.PathLike) -> dict[str, ClipResult]:
    """The results already in `out_path` by clip path (the last line wins), after cutting a partial last line that
    a killed run may have left (that clip is then analyzed again)."""
    path = Path(out_path)
    if not path.exists():
        return {}
    complete = read_complete_lines(path)
    return {result.path: result for result, _ in _parse_results(complete.decode("utf-8"), path)}


def read_complete_lines(path: Path) -> bytes:
    """An append-only JSON-lines file up to its last newline. A partial last line, left by a killed writer, is also
    cut from the file, so that the next appended line starts clean (its record is written again)."""
    data = path.read_bytes()
    complete = _complete_part(data)
    if len(complete) != len(data):
        with open(path, "r+b") as file:
            file.truncate(len(complete))
    return complete


# -- several processes ---------------------------------------------------------------------------------------------

SHARD_SUFFIX = ".shard-"
PROCESS_GROUP_TIMEOUT = timedelta(hours=24)
"""How long a process waits for the others at the end of a run with several processes: a process that finishes
its share early waits for the slowest, which torch.distributed's default (10 or 30 minutes) would cut short."""
_WORLD_SIZE_VARIABLES = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]
_RANK_VARIABLES = ["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"]


def shard_path(out_path: str | os.PathLike, process_index: int) -> Path:
    """The file that process `process_index` of a run with several processes appends its results to, beside
    `out_path` (`results.jsonl.shard-00001`) so that every process, on any node, writes where the merge reads."""
    out = Path(out_path)
    return out.with_name(f"{out.name}{SHARD_SUFFIX}{process_index:05d}")


def _shards(out_path: str | os.PathLike) -> list[Path]:
    out = Path(out_path)
    pattern = re.compile(re.escape(out.name + SHARD_SUFFIX) + r"\d+")
    candidates = out.parent.glob(glob.escape(out.name + SHARD_SUFFIX) + "*")
    return sorted(path for path in candidates if pattern.fullmatch(path.name))


def merge_shards(out_path: str | os.PathLike, order: Sequence[str] = ()) -> bool:
    """Merges the shards beside `out_path` (see `shard_path`) into it and removes them; False when there are none.

    `out_path` is rewritten whole, to a temporary file renamed over it, so that a kill leaves either the old file
    and the shards or the merged file (and perhaps some shards, merged again next time). It then holds each clip
    once (a shard's line wins over the output's, being newer): first the clips not in `order`, in the order found,
    then those in `order`, in that order. Lines are kept verbatim; a partial last line, left by a killed process, is
    dropped (that clip is analyzed again).
    """
    shards = _shards(out_path)
    if not shards:
        return False
    out = Path(out_path)
    lines: dict[str, str] = {}
    for path in ([out] if out.exists() else []) + shards:
        for result, line in _parse_results(_complete_part(path.read_bytes()).decode("utf-8"), path):
            lines[result.path] = line
    position = {path: index for index, path in enumerate(order)}
    merged = sorted(lines, key=lambda path: position.get(path, -1))  # stable: the others first, as found
    temporary = out.with_name(out.name + ".merging")
    with open(temporary, "w", encoding="utf-8") as file:
        file.writelines(lines[path] + "\n" for path in merged)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, out)
    for shard in shards:
        shard.unlink()
    return True


def _launched_processes(device: str) -> PartialState | None:
    """accelerate's state of the processes that `accelerate launch` or `torchrun` started, or None when this
    process runs alone. They synchronise through NCCL when they run on CUDA, through gloo otherwise (`--device
    cpu`, `accelerate launch --cpu`, or no GPU)."""
    from accelerate.utils import get_int_from_env, parse_flag_from_env

    world_size = get_int_from_env(_WORLD_SIZE_VARIABLES, 1)
    if world_size == 1:
        return None
    if device.startswith("cuda:"):
        raise ValueError(
            f"--device {device} with {world_size} processes would put them all on one GPU: use --device auto or "
            "cuda, and each process takes its local GPU."
        )
    import torch
    from accelerate import PartialState

    cpu = (
        device in ("cpu", "mps") or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    )
    state = PartialState(cpu=cpu, timeout=PROCESS_GROUP_TIMEOUT)
    if state.num_processes != world_size:
        raise RuntimeError(
            f"{world_size} processes were launched, but accelerate found {state.num_processes}: each would analyze "
            "every clip into the same output. Start them with `accelerate launch` or `torchrun`."
        )
    return state


def _process_device(device: str, state: PartialState) -> str:
    """`auto` (and `cuda` on CUDA): the device accelerate gave this process, its local GPU or the CPU."""
    if device == "auto" or (device == "cuda" and state.device.type == "cuda"):
        return str(state.device)
    return device


def _is_main_process() -> bool:
    """Whether this is the only process, or the first of those a launcher started (before any process group)."""
    from accelerate.utils import get_int_from_env

    return get_int_from_env(_RANK_VARIABLES, 0) == 0


# -- the resumable runner ------------------------------------------------------------------------------------------


def run_analyze(
    paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    model: str | os.PathLike | OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 4,
    max_new_tokens: int = 256,
    prompt: str | None = None,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    prefetch: int = 2,
    progress: bool = True,
) -> AnalyzeSummary:
    """Analyzes the clips of `paths` (see `collect_inputs`) into `out_path`, one JSON line per clip.

    Lines are appended and flushed one by one; clips already in `out_path` are skipped, so rerunning a killed run
    resumes it. `model` is a Hub id or folder (loaded once with `load_for_inference` on `device` in `dtype`, and only
    if there is something left to do) or a loaded model, given with its `processor`.

    Under a launcher with several processes (see the module's documentation), each process analyzes its share of
    the clips left into its shard, the main process merges the shards (`merge_shards`), and every process returns
    the summary of the whole run. Shards that a killed run left are merged first, in a single process too.
    """
    from tqdm.auto import tqdm

    from omni_emotion.pipeline import check_modalities

    start = time.perf_counter()
    keep = check_modalities(modalities)
    inputs = collect_inputs(paths)
    state = _launched_processes(device)
    main = state is None or state.is_main_process
    with state.main_process_first() if state is not None else contextlib.nullcontext():
        if main:
            merge_shards(out_path, inputs)
        done = read_results(out_path)  # the main process cut a partial last line before the others read
    todo = [path for path in inputs if path not in done]
    mine = todo
    if state is not None:
        with state.split_between_processes(todo) as share:  # consecutive runs of clips, as even as can be
            mine = share
    loop_start = time.perf_counter()
    if mine:
        if isinstance(model, (str, os.PathLike)):
            target = device if state is None else _process_device(device, state)
            model, processor = load_for_inference(model, target, dtype)
        elif processor is None:
            raise ValueError("Pass the processor with a loaded model (or pass the model's id or folder).")
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        loop_start = time.perf_counter()
        results = analyze(
            mine,
            model,
            processor,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prompt=prompt,
            modalities=keep,
            prefetch=prefetch,
        )
        written = out_path if state is None else shard_path(out_path, state.process_index)
        description = "analyze" if state is None else f"analyze (process 1 of {state.num_processes})"
        with (
            open(written, "a", encoding="utf-8") as out,
            tqdm(
                results,
                total=len(mine),
                unit="clip",
                desc=description,
                disable=not progress or not main,
                file=sys.stderr,
            ) as bar,
        ):
            for result in bar:
                out.write(result.to_json() + "\n")
                out.flush()
                done[result.path] = result
    if state is not None:  # every share is in its shard: merge them, then all read the merged output
        state.wait_for_everyone()
        if main:
            merge_shards(out_path, inputs)
        state.wait_for_everyone()
        done = read_results(out_path)
    analyzed_seconds = time.perf_counter() - loop_start if todo else 0.0
    return _summarize(
        inputs, done, out_path, resumed=len(inputs) - len(todo), start=start, analyzed=analyzed_seconds
    )


def _summarize(
    inputs: list[str],
    results: dict[str, ClipResult],
    out_path: str | os.PathLike,
    *,
    resumed: int,
    start: float,
    analyzed: float,
) -> AnalyzeSummary:
    mine = [results[path] for path in inputs if path in results]
    labels: Counter[str] = Counter(label for result in mine if result.ok for label in result.labels)
    failures = [(result.path, result.error or "") for result in mine if not result.ok]
    return AnalyzeSummary(
        out_path=os.fspath(out_path),
        total=len(inputs),
        ok=len(mine) - len(failures),
        failed=len(failures),
        resumed=resumed,
        labels=labels,
        seconds=time.perf_counter() - start,
        analyzed_seconds=analyzed,
        failures=failures,
    )


# -- command line --------------------------------------------------------------------------------------------------


def _modalities_argument(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(names) - set(ALL_MODALITIES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown modalities {unknown}; choose among {', '.join(ALL_MODALITIES)}"
        )
    return tuple(name for name in ALL_MODALITIES if name in names)


def _device_argument(value: str) -> str:
    kind = value.split(":")[0]
    if kind not in ("auto", "cpu", "cuda", "mps") or (":" in value and kind != "cuda"):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size, --device and --dtype: how a command that generates runs the model (analyze, evaluate)."""
    parser.add_argument(
        "--batch-size", type=_positive, default=4, help="clips generated together (default: %(default)s)"
    )
    parser.add_argument(
        "--device",
        type=_device_argument,
        default="auto",
        help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="weights and inputs: auto is bf16 on CUDA, fp32 elsewhere (default: %(default)s)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `omni-emotion analyze`, on a parser (or subparser) that the caller owns."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="clips to analyze: media files, folders (searched recursively), globs, HTTP(S) URLs, or .txt files "
        "listing such entries one a line (# starts a comment)",
    )
    parser.add_argument(
        "--model", required=True, metavar="ID|DIR", help="the checkpoint: a Hub id or a folder"
    )
    parser.add_argument(
        "--out",
        default="results.jsonl",
        help="the JSON-lines file to append to; clips already in it are skipped. Under a launcher with several "
        "processes, each appends to a shard beside it, merged into it in input order at the end "
        "(default: %(default)s)",
    )
    add_runtime_arguments(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=_positive,
        default=256,
        help="longest answer, in tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt", help="the question asked about each clip (default: the first phase-3 reasoning question)"
    )
    parser.add_argument(
        "--modalities",
        type=_modalities_argument,
        default=ALL_MODALITIES,
        help="what the model is given, comma-separated among frames,faces,audio; a left-out one gets the zero input "
        "of a clip without it, e.g. frames,audio for the paper's v+a (default: all three)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=2,
        help="batches decoded ahead by a background thread while the model generates; 0 decodes in between "
        "(default: %(default)s)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def main_from_args(args: argparse.Namespace) -> int:
    """Runs `omni-emotion analyze` and prints the summary; 0 when every clip succeeded, 1 when some failed, 2 when
    an input cannot be found or the output cannot be resumed.

    Under a launcher, the main process prints and returns the status of the whole run, and the others return 0: a
    process that exits with an error makes the launcher stop the others, the main one perhaps before it printed.
    """
    main = _is_main_process()
    try:
        summary = run_analyze(
            args.paths,
            args.out,
            args.model,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            prompt=args.prompt,
            modalities=args.modalities,
            prefetch=args.prefetch,
            progress=args.progress,
        )
    except (InputsNotFoundError, ResultsFileError) as error:
        if not main:
            return 0
        print(f"omni-emotion analyze: error: {error}", file=sys.stderr)
        return 2
    finally:
        _destroy_process_group()
    if not main:
        return 0
    print(summary.table())
    return 1 if summary.failed else 0


def _destroy_process_group() -> None:
    """Ends the process group of a launched run, as a script should before it exits (torch warns otherwise)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m omni_emotion.analyze`, the entry that `accelerate launch -m` and `torchrun -m` start: the same
    arguments as `omni-emotion analyze`."""
    parser = argparse.ArgumentParser(
        prog="python -m omni_emotion.analyze",
        description="Emotion words and reasoning for many clips, one JSON line each (as omni-emotion analyze); "
        "under accelerate launch or torchrun, the clips are split between the processes.",
    )
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


__all__ = [
    "ALL_MODALITIES",
    "AnalyzeSummary",
    "ClipResult",
    "InputsNotFoundError",
    "ResultsFileError",
    "add_arguments",
    "analyze",
    "collect_inputs",
    "load_for_inference",
    "main",
    "main_from_args",
    "media_suffixes",
    "merge_shards",
    "read_results",
    "resolve_device",
    "resolve_dtype",
    "run_analyze",
    "shard_path",
]

if __name__ == "__main__":
    sys.exit(main())
