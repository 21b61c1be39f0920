"""Phase-1 audio data: speech (CommonVoice-15), captions (WavCaps) and sound labels (VGGSound), loaded from
the Hub or a local copy and mixed by weight into one set of TRL conversations.

Audio is never decoded here: `datasets` would need torchcodec for it, and the processor decodes with PyAV
anyway. Every row's audio becomes a file path instead; audio embedded in Parquet is written once to a
content-addressed folder, so that `audio_alignment_example` and the processor can read it.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import datasets
from datasets import Audio, ClassLabel, Dataset, Features, IterableDataset, Value

from .prompts import (
    AUDIO_TEXT_COLUMNS,
    AudioTask,
    Example,
    audio_alignment_example,
    build_prompts,
    count_tasks,
)

StoppingStrategy = Literal["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]


class AudioSourceError(ValueError):
    """A phase-1 audio source that is misspecified or cannot be loaded as specified; names the source."""


@dataclass(frozen=True, kw_only=True)
class AudioSourceSpec:
    """One phase-1 audio dataset, as a recipe's YAML names it.

    `path` is a Hub dataset id or a local folder in the Hub layout (Parquet/JSON/CSV files, or an
    audiofolder: audio files beside a `metadata.csv`/`metadata.jsonl` with a `file_name` column). `config`
    is the Hub config (CommonVoice's language). `text_column` defaults to the task's column in the Hub
    schemas (`prompts.AUDIO_TEXT_COLUMNS`). `weight` is relative to the other sources of a mix;
    `max_samples` keeps the first rows of the split, in the source's order.
    """

    name: str
    path: str
    task: AudioTask
    config: str | None = None
    split: str = "train"
    audio_column: str = "audio"
    text_column: str | None = None
    weight: float = 1.0
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.task not in AUDIO_TEXT_COLUMNS:
            raise self._invalid("task", f"one of {', '.join(AUDIO_TEXT_COLUMNS)}", self.task)
        if self.text_column is None:
            object.__setattr__(self, "text_column", AUDIO_TEXT_COLUMNS[self.task])
        for name in ("name", "path", "split", "audio_column", "text_column"):
            if not _is_text(getattr(self, name)):
                raise self._invalid(name, "a non-empty string", getattr(self, name))
        if self.audio_column == self.text_column:
            raise self._invalid(
                "text_column", f"a column other than audio_column {self.audio_column!r}", self.text_column
            )
        if self.config is not None and not _is_text(self.config):
            raise self._invalid("config", "a non-empty string or null", self.config)
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < math.inf:
            raise self._invalid("weight", "a finite number > 0", weight)
        if self.max_samples is not None and (
            isinstance(self.max_samples, bool)
            or not isinstance(self.max_samples, int)
            or self.max_samples < 1
        ):
            raise self._invalid("max_samples", "a whole number >= 1 or null", self.max_samples)

    def _invalid(self, field: str, expected: str, got: Any) -> AudioSourceError:
        return AudioSourceError(f"Audio source {self.name!r}: {field!r} should be {expected}, got {got!r}")

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> AudioSourceSpec:
        """The spec of one YAML entry; unknown or missing keys are an error that lists the valid ones."""
        valid = [field.name for field in fields(cls)]
        if not isinstance(entry, Mapping):
            raise AudioSourceError(
                f"An audio source should be a mapping with keys {', '.join(valid)}; got {entry!r}"
            )
        name = entry.get("name", "<unnamed>")
        unknown = sorted(set(entry) - set(valid))
        if unknown:
            raise AudioSourceError(
                f"Audio source {name!r}: unknown key(s) {', '.join(map(str, unknown))}; valid keys are {', '.join(valid)}"
            )
        missing = [key for key in ("name", "path", "task") if key not in entry]
        if missing:
            raise AudioSourceError(
                f"Audio source {name!r}: missing key(s) {', '.join(missing)}; name, path and task are required"
            )
        return cls(**entry)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


PAPER_AUDIO_SOURCES: dict[str, AudioSourceSpec] = {
    spec.name: spec
    for spec in (
        AudioSourceSpec(
            name="CommonVoice-15", path="mozilla-foundation/common_voice_15_0", config="en", task="asr"
        ),
        AudioSourceSpec(name="WavCaps", path="cvssp/WavCaps", task="caption"),
        AudioSourceSpec(name="VGGSound", path="Loie/VGGSound", task="sound_label"),
    )
}
"""The paper's phase-1 datasets with their Hub ids and schemas (`audio` plus `sentence` / `caption` /
`label`, where a ClassLabel `label` is turned into its names); equal weights are ours. None of these repos
loads with `datasets` 5 as published (see `LOCAL_COPY_LAYOUTS`): prepare a local copy and point at it with
`dataclasses.replace(PAPER_AUDIO_SOURCES["WavCaps"], path="/data/wavcaps")`."""

LOCAL_COPY_LAYOUTS: dict[str, str] = {
    "mozilla-foundation/common_voice_15_0": (
        "This repo is a loading script, which `datasets` >= 4 no longer runs. From the Common Voice 15.0 "
        "release (cv-corpus-15.0-*/<language>/), write a metadata.csv beside clips/ with columns "
        "file_name,sentence taken from train.tsv's path (prefixed with clips/) and sentence, point `path` "
        "at that folder and set `config` to null."
    ),
    "cvssp/WavCaps": (
        "This repo holds zipped FLAC and JSON metadata (json_files/<subset>/*.json, entries under `data` "
        'with `id` and `caption`). Unzip the audio and write metadata.jsonl lines {"file_name": '
        '"<subset>/<id>.flac", "caption": ...} in the folder that holds the subsets; point `path` at it.'
    ),
    "Loie/VGGSound": (
        "This repo holds tar.gz archives of MP4 clips and vggsound.csv (no header: YouTube id, start "
        "second, label, split). Unpack the clips and write a metadata.csv with columns file_name,label for "
        "the train rows (clips are named <YouTube id>_<start second as 6 digits>.mp4; the processor reads "
        "their audio track); point `path` at that folder."
    ),
}
"""How to turn each paper dataset's published form into a local copy that `load_audio_source` reads."""

_METADATA_BUILDERS = {"metadata.csv": "csv", "metadata.jsonl": "json", "metadata.parquet": "parquet"}


def _audiofolder_metadata(folder: Path, split: str) -> Path | None:
    """An audiofolder's metadata for `split`: `<folder>/<split>/metadata.*`, or `<folder>/metadata.*` for
    train. Read as a table rather than through `datasets`' audiofolder, which needs torchcodec to load."""
    directories = [folder / split] + ([folder] if split == "train" else [])
    for directory in directories:
        for name in _METADATA_BUILDERS:
            if (directory / name).is_file():
                return directory / name
    return None


def _load(
    spec: AudioSourceSpec, streaming: bool, cache_dir: str | None
) -> tuple[Dataset | IterableDataset, Path | None]:
    """The split of `spec` and the folder that relative audio paths start from (None for the Hub)."""
    folder = Path(spec.path).expanduser().absolute()
    kwargs = {"split": spec.split, "streaming": streaming, "cache_dir": cache_dir}
    metadata = _audiofolder_metadata(folder, spec.split) if folder.is_dir() else None
    if metadata is not None and spec.config is not None:
        raise AudioSourceError(
            f"Audio source {spec.name!r}: {folder} is an audiofolder, which has no configs; set config to null"
        )
    if folder.exists() and not folder.is_dir():
        raise AudioSourceError(f"Audio source {spec.name!r}: {folder} should be a folder in the Hub layout")
    try:
        if metadata is not None:
            builder = _METADATA_BUILDERS[metadata.name]
            data = datasets.load_dataset(builder, data_files={spec.split: str(metadata)}, **kwargs)
            return data.rename_column("file_name", "audio"), metadata.parent
        if folder.is_dir():
            return datasets.load_dataset(str(folder), name=spec.config, **kwargs), folder
        return datasets.load_dataset(spec.path, name=spec.config, **kwargs), None
    except (FileNotFoundError, RuntimeError, ValueError, ConnectionError) as error:
        raise AudioSourceError(
            f"Audio source {spec.name!r}: cannot load {spec.path!r} (config {spec.config!r}, split "
            f"{spec.split!r}): {error}{_layout_hint(spec)}"
        ) from error


def _layout_hint(spec: AudioSourceSpec) -> str:
    return f"\n{LOCAL_COPY_LAYOUTS[spec.path]}" if spec.path in LOCAL_COPY_LAYOUTS else ""


def _column_names(data: Dataset | IterableDataset) -> list[str]:
    if data.column_names is not None:
        return list(data.column_names)
    first = next(iter(data.take(1)), {})
    return list(first)


def _is_waveform(feature: Any) -> bool:
    """A struct of decoded samples (`array`, `sampling_rate`), which `audio_alignment_example` takes as is."""
    return isinstance(feature, dict) and {"array", "sampling_rate"} <= set(feature)


def _is_string(feature: Any) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


class _AudioFiles:
    """Turns audio values into paths: relative paths start from the source's folder, embedded bytes are
    written once under `directory` (named by their SHA-256, so reruns and duplicates reuse the file)."""

    def __init__(self, source: str, column: str, root: Path | None, directory: Path):
        self.source, self.column, self.root, self.directory = source, column, root, directory

    def __call__(self, values: list[Any]) -> dict[str, list[str]]:
        return {self.column: [self.path(value) for value in values]}

    def path(self, value: Any) -> str:
        if isinstance(value, str) and value:
            return self.resolve(value)
        if isinstance(value, Mapping):
            if value.get("bytes"):
                return self.write(value["bytes"], value.get("path"))
            if value.get("path"):
                return self.resolve(value["path"])
        raise AudioSourceError(
            f"Audio source {self.source!r}: an audio value is neither a path nor embedded audio: {value!r:.120}"
        )

    def resolve(self, path: str) -> str:
        if self.root is None or "://" in path or os.path.isabs(path):
            return path
        return str(self.root / path)

    def write(self, content: bytes, name: str | None) -> str:
        digest = hashlib.sha256(content).hexdigest()
        target = self.directory / digest[:2] / f"{digest}{PurePosixPath(name or '').suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.{os.getpid()}.part")
            partial.write_bytes(content)
            os.replace(partial, target)
        return str(target)


def _audio_as_paths(
    data: Dataset | IterableDataset, spec: AudioSourceSpec, root: Path | None, audio_dir: Path
) -> Dataset | IterableDataset:
    feature = data.features.get(spec.audio_column) if data.features is not None else None
    if _is_waveform(feature):
        return data
    if isinstance(feature, Audio):
        data = data.cast_column(spec.audio_column, Audio(decode=False))
    elif feature is not None and not _is_string(feature):
        raise AudioSourceError(
            f"Audio source {spec.name!r}: column {spec.audio_column!r} holds {feature}; expected an Audio "
            "feature, a path string, or a struct of 'array' and 'sampling_rate'"
        )
    features = None
    if data.features is not None:
        features = Features({**data.features, spec.audio_column: Value("string")})
    files = _AudioFiles(spec.name, spec.audio_column, root, audio_dir)
    kwargs = {} if isinstance(data, IterableDataset) else {"desc": f"{spec.name}: audio paths"}
    return data.map(files, input_columns=[spec.audio_column], batched=True, features=features, **kwargs)


def load_audio_source(
    spec: AudioSourceSpec,
    *,
    streaming: bool = False,
    audio_dir: str | Path | None = None,
    cache_dir: str | None = None,
) -> Dataset | IterableDataset:
    """The audio and text columns of `spec`'s split, its first `max_samples` rows, audio as file paths.

    Audio embedded in Parquet is written to `audio_dir` (default `<datasets cache>/omni_emotion_audio`),
    which must outlive the training run; decoded `{"array", "sampling_rate"}` structs are kept as they are.
    A ClassLabel text column keeps its feature, so that its names can be read. Errors name the source,
    the columns it has, and for the paper's datasets how to prepare a local copy.
    """
    data, root = _load(spec, streaming, cache_dir)
    columns = _column_names(data)
    missing = [column for column in (spec.audio_column, spec.text_column) if column not in columns]
    if missing:
        raise AudioSourceError(
            f"Audio source {spec.name!r}: {spec.path} (split {spec.split!r}) has no column(s) "
            f"{', '.join(missing)}; its columns are {', '.join(columns) or 'none'}. Set audio_column / "
            f"text_column to the right ones.{_layout_hint(spec)}"
        )
    data = data.select_columns([spec.audio_column, spec.text_column])
    if spec.max_samples is not None:
        data = data.take(spec.max_samples)
    directory = Path(audio_dir or Path(datasets.config.HF_DATASETS_CACHE) / "omni_emotion_audio")
    return _audio_as_paths(data, spec, root, directory.expanduser().absolute())


def _phase1_example(
    row: Mapping[str, Any], rng: random.Random, *, spec: AudioSourceSpec, label_names: Sequence[str] | None
) -> Example:
    example = audio_alignment_example(
        row,
        rng,
        task=spec.task,
        audio_column=spec.audio_column,
        text_column=spec.text_column,
        label_names=label_names,
    )
    return {**example, "source": spec.name, "task": spec.task}


def _conversations(data: Dataset, spec: AudioSourceSpec, seed: int) -> Dataset:
    feature = data.features[spec.text_column]
    label_names = feature.names if isinstance(feature, ClassLabel) else None
    # One seed per source, so that two sources of the same task do not draw the same instructions row by row.
    source_seed = zlib.crc32(f"{seed}:{spec.name}".encode())
    return build_prompts(
        data, _phase1_example, seed=source_seed, keep_columns=(), spec=spec, label_names=label_names
    )


def mix_audio_sources(
    specs: Sequence[AudioSourceSpec],
    *,
    seed: int = 0,
    stopping_strategy: StoppingStrategy = "first_exhausted",
    audio_dir: str | Path | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """The phase-1 conversations of every source, interleaved with probabilities proportional to `weight`.

    Rows hold `messages`, `source` (the spec's name) and `task`. The default `first_exhausted` stops when
    the first source runs out, so that each source's share of the mix is its share of the weights and no
    clip is seen twice (cap large sources with `max_samples`); `all_exhausted` keeps going until every
    source has been seen whole, repeating the others. The same seed gives the same mix.
    """
    if not specs:
        raise AudioSourceError("mix_audio_sources needs at least one audio source")
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AudioSourceError(f"Audio source names must be unique; repeated: {', '.join(repeated)}")
    parts = [
        _conversations(load_audio_source(spec, audio_dir=audio_dir, cache_dir=cache_dir), spec, seed)
        for spec in specs
    ]
    total = sum(spec.weight for spec in specs)
    return datasets.interleave_datasets(
        parts,
        probabilities=[spec.weight / total for spec in specs],
        seed=seed,
        stopping_strategy=stopping_strategy,
    )


def audio_mix_report(mix: Dataset, specs: Sequence[AudioSourceSpec]) -> str:
    """Rows per source of a phase-1 mix beside the share its weight asked for, then rows per task."""
    counts = Counter(mix.select_columns(["source"])["source"])
    total, weights = len(mix), sum(spec.weight for spec in specs)
    width = max(len(spec.name) for spec in specs)
    lines = [f"Phase-1 audio mix: {total:,} rows"]
    for spec in specs:
        share = 100 * counts[spec.name] / total if total else 0.0
        lines.append(
            f"  {spec.name:<{width}} {spec.task:<11} {counts[spec.name]:>9,} {share:5.1f}%"
            f"  (weight {100 * spec.weight / weights:.1f}%)"
        )
    by_task = ", ".join(f"{task} {count:,}" for task, count in count_tasks(mix).items())
    lines.append(f"  by task: {by_task}")
    return "\n".join(lines)
