"""The curation config: where the clips are, which model serves each stage, and the prompts, from one YAML file.

```yaml
inputs:
  - {source: DFEW, root: /data/DFEW, fold: 1, splits: [train]}
  - {csv: my_clips.csv, source: MAFW}      # path,label[,source][,split], paths relative to the CSV's folder
backends:                                  # named once, shared by the stages
  qwen2-vl: {kind: openai, base_url: http://gpu-node:8000/v1, model: Qwen/Qwen2-VL-72B-Instruct}
  whisper: {kind: transformers, model: openai/whisper-large-v3, device: cuda:0}
stages:
  description: {backend: qwen2-vl}
  faces: {backend: qwen2-vl, attributes: {age: {kind: callable, function: my_mivolo:age}}}
  audio: {asr: whisper, backend: qwen2-audio}
  consistency: {backend: qwen2-vl}
  synthesis: {backend: qwen2-vl}
  self_review: {backend: qwen2-vl}
```

Everything is checked when the file is loaded, so that a typo fails before the first clip is read, with the key that
holds it. `stage_hashes` fingerprints what shapes each stage's output (models, prompts, sampling), chained through the
stages it reads, which is what the cache is keyed by.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dataset_scripts.records import DEFAULT_SRE_MIN_SCORE

from .prompts import DEFAULT_PROMPTS, PROMPT_FIELDS

STAGES: tuple[str, ...] = ("description", "faces", "audio", "consistency", "synthesis", "self_review")
"""The stages in the order they run for a clip."""

DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "description": (),
    "faces": (),
    "audio": (),
    "consistency": ("description", "faces", "audio"),
    "synthesis": ("description", "faces", "audio", "consistency"),
    "self_review": ("synthesis",),
}
"""The stages whose results each stage reads: changing one reruns it and every stage that depends on it."""

BACKEND_KINDS = ("openai", "transformers", "callable")

ROLE_TASKS: dict[str, tuple[str, ...]] = {
    "chat": ("image-text-to-text", "text-generation", "any-to-any"),
    "asr": ("automatic-speech-recognition",),
    "classify": ("image-classification",),
}
"""The transformers pipeline tasks that can play each role; the first is the default."""

_RUNTIME_FIELDS = frozenset({"base_url", "api_key_env", "device", "timeout", "max_retries", "backoff"})
"""Backend fields that say where and how patiently a model is reached, not what it answers: left out of the hash,
so that moving a server or raising a timeout does not rerun anything."""


DEFAULT_ASR = {"kind": "transformers", "model": "openai/whisper-large-v3"}
"""The speech recogniser of the audio stage when the config names none: the paper's Whisper-large-v3, loaded locally
(give `device: cuda:0` in a backend of your own to run it on a GPU)."""


class ConfigError(ValueError):
    """A curation config that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class BackendConfig:
    """One model behind a stage: an OpenAI-compatible endpoint, a local transformers pipeline or a Python callable.

    `kind="openai"`: `base_url` (e.g. `http://127.0.0.1:8000/v1`) and the served `model` name; the API key, if the
    server wants one, is read from the environment variable `api_key_env`. `kind="transformers"`: `model` (Hub id or
    folder), the pipeline `task` (default: the role's, see `ROLE_TASKS`), `device` and more `pipeline_kwargs`; loaded
    on first use. `kind="callable"`: `function`, as `module:function` (see `curation.backends` for what it receives).
    `extra` goes into an API request body or into a pipeline call as it is (e.g. `{"top_p": 0.9}`).
    """

    kind: str
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    function: str | None = None
    task: str | None = None
    device: str | int | None = None
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    max_tokens: int = 512
    temperature: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    timeout: float = 120.0
    max_retries: int = 3
    backoff: float = 1.0

    def describe(self) -> str:
        """A short name for traces and errors, e.g. `openai:Qwen/Qwen2-VL-72B-Instruct@http://gpu:8000/v1`."""
        if self.kind == "openai":
            return f"openai:{self.model}@{self.base_url}"
        if self.kind == "transformers":
            return f"transformers:{self.task}:{self.model}"
        return f"callable:{self.function}"

    def identity(self) -> dict[str, Any]:
        """What decides this backend's answers (hashed into the cache key)."""
        return {
            name: value for name, value in dataclasses.asdict(self).items() if name not in _RUNTIME_FIELDS
        }


@dataclass(frozen=True)
class StageConfig:
    """A stage whose model is a chat model (text in, optionally images or audio, text out), with its prompt."""

    backend: BackendConfig
    prompt: str


@dataclass(frozen=True)
class DescriptionConfig(StageConfig):
    """Stage 1: frames at `fps` (at most `max_frames`, longer side at most `max_side` pixels) to the VLM."""

    fps: float = 1.0
    max_frames: int = 16
    max_side: int = 448


@dataclass(frozen=True)
class FacesConfig(StageConfig):
    """Stage 2: faces detected and tracked on frames at `fps`, tracklets of the `max_faces` largest persistent faces;
    each tracklet's largest crop to every classifier of `attributes` (name -> backend, e.g. age, gender); the VLM sees
    `crops` crops of the main face (`crop_size` pixels, `margin` around the box). `detector`: `module:factory` of a
    `processing.FaceDetector`, or None for the Haar cascade that ships with OpenCV."""

    fps: float = 4.0
    max_frames: int = 32
    detector: str | None = None
    max_faces: int = 3
    crops: int = 4
    crop_size: int = 224
    margin: float = 0.5
    attributes: dict[str, BackendConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioConfig(StageConfig):
    """Stage 3: the first `max_seconds` of the audio track to the speech recogniser `asr` (with timestamps and the
    language; `DEFAULT_ASR` if the config names none), then with the transcript to the audio-text model `backend`
    for a caption and the vocal emotion."""

    asr: BackendConfig
    max_seconds: float = 60.0


STAGE_CONFIG_CLASSES: dict[str, type[StageConfig]] = {
    "description": DescriptionConfig,
    "faces": FacesConfig,
    "audio": AudioConfig,
    "consistency": StageConfig,
    "synthesis": StageConfig,
    "self_review": StageConfig,
}


@dataclass(frozen=True)
class InputConfig:
    """One set of clips: a source dataset in its official layout (`source` + `root`, read by
    `dataset_scripts.read_source` with `options` such as `fold`), or a CSV of `path,label[,source][,split]` rows
    (`csv`; `source` is then the default for rows without one, `root` the folder paths are relative to, by default the
    CSV's). `splits` keeps only those splits (e.g. `[train]`, so that no test fold is annotated)."""

    source: str | None = None
    root: str | None = None
    csv: str | None = None
    splits: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HreConfig:
    """HRE candidates: `per_source` clips of each source drawn with `seed` (the paper reviewed 700 per source)."""

    per_source: int = 700
    seed: int = 0


@dataclass(frozen=True)
class CurationConfig:
    """A whole run. `concurrency`: clips in flight, hence model requests at once; `cpu_workers`: processes that
    decode frames and track faces (0: in the calling process); `max_failures`: the run stops once more clips than
    this have failed (a server that is down would fail them all)."""

    inputs: tuple[InputConfig, ...]
    stages: dict[str, StageConfig]
    concurrency: int = 8
    cpu_workers: int = 2
    sre_min_score: float = DEFAULT_SRE_MIN_SCORE
    hre: HreConfig = field(default_factory=HreConfig)
    max_failures: int = 50
    base_dir: Path = field(default_factory=Path.cwd)

    def backends(self) -> list[BackendConfig]:
        """Every backend the stages use (a shared one once per stage that uses it)."""
        used = []
        for stage in self.stages.values():
            used.append(stage.backend)
            if isinstance(stage, FacesConfig):
                used.extend(stage.attributes.values())
            if isinstance(stage, AudioConfig):
                used.append(stage.asr)
        return used


def _identity(value: Any) -> Any:
    if isinstance(value, BackendConfig):
        return value.identity()
    if dataclasses.is_dataclass(value):
        return {f.name: _identity(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: _identity(item) for key, item in value.items()}
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def stage_hashes(config: CurationConfig) -> dict[str, str]:
    """Each stage's config hash: its models, prompt and settings, and the hashes of the stages it depends on."""
    hashes: dict[str, str] = {}
    for name in STAGES:
        own = _identity(config.stages[name])
        hashes[name] = _digest([name, own, [hashes[dependency] for dependency in DEPENDENCIES[name]]])
    return hashes


# -- loading ---------------------------------------------------------------------------------------------------------


def _fields(
    cls: type, data: Any, where: str, skip: tuple[str, ...] = (), also: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Mapping `data`, whose keys must be fields of dataclass `cls` but `skip`, or `also` (an unknown key is an
    error naming it)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)} - set(skip) | set(also)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
        )
    return dict(data)


def _number(value: Any, where: str, *, minimum: float, integer: bool = False, strict: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or (value <= minimum if strict else value < minimum)
    ):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: expected {kind} {'>' if strict else '>='} {minimum}, got {value!r}")
    return value


def _backend(value: Any, role: str, named: Mapping[str, BackendConfig], where: str) -> BackendConfig:
    """A backend given by name (a key of `backends:`) or inline, checked for the role it plays at `where`."""
    if isinstance(value, str):
        if value not in named:
            raise ConfigError(
                f"{where}: no backend named {value!r}; define it under `backends:` (defined: {', '.join(named) or 'none'})"
            )
        backend = named[value]
    else:
        backend = _parse_backend(value, where)
    if backend.kind == "openai" and role != "chat":
        raise ConfigError(
            f"{where}: an OpenAI-compatible endpoint can only serve chat stages; use kind transformers or callable for "
            f"the {role} role"
        )
    if backend.kind == "transformers":
        task = backend.task or ROLE_TASKS[role][0]
        if task not in ROLE_TASKS[role]:
            raise ConfigError(
                f"{where}: pipeline task {task!r} cannot serve as {role}; use one of {', '.join(ROLE_TASKS[role])}"
            )
        backend = dataclasses.replace(backend, task=task)
    return backend


def _parse_backend(data: Any, where: str) -> BackendConfig:
    values = _fields(BackendConfig, data, where)
    kind = values.get("kind")
    if kind not in BACKEND_KINDS:
        raise ConfigError(f"{where}.kind: expected one of {', '.join(BACKEND_KINDS)}, got {kind!r}")
    required = {"openai": ("base_url", "model"), "transformers": ("model",), "callable": ("function",)}[kind]
    missing = [name for name in required if not values.get(name)]
    if missing:
        raise ConfigError(f"{where}: a {kind} backend needs {' and '.join(missing)}")
    if kind == "callable" and ":" not in values["function"]:
        raise ConfigError(f"{where}.function: expected 'module:function', got {values['function']!r}")
    for name in ("timeout", "backoff", "temperature"):
        if name in values:
            _number(values[name], f"{where}.{name}", minimum=0)
    for name, minimum in (("max_tokens", 1), ("max_retries", 0)):
        if name in values:
            _number(values[name], f"{where}.{name}", minimum=minimum, integer=True)
    return BackendConfig(**values)


def check_prompt(prompt: Any, stage: str, where: str) -> str:
    """`prompt` if it is a `string.Template` that uses only the fields `stage` fills in, else a `ConfigError`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"{where}: expected the prompt text, got {prompt!r}")
    template = string.Template(prompt)
    if not template.is_valid():
        raise ConfigError(f"{where}: not a valid template (a lone '$'? write '$$' for a dollar sign)")
    unknown = sorted(set(template.get_identifiers()) - PROMPT_FIELDS[stage])
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join('$' + name for name in unknown)}; the {stage} prompt can use "
            f"{', '.join('$' + name for name in sorted(PROMPT_FIELDS[stage]))}"
        )
    return prompt


def _parse_stage(name: str, data: Any, named: Mapping[str, BackendConfig]) -> StageConfig:
    where = f"stages.{name}"
    cls = STAGE_CONFIG_CLASSES[name]
    values = _fields(cls, data, where)
    if "backend" not in values:
        raise ConfigError(
            f"{where}: name the model of this stage with `backend:` (a name from `backends:`, or inline)"
        )
    values["backend"] = _backend(values["backend"], "chat", named, f"{where}.backend")
    values["prompt"] = check_prompt(values.get("prompt", DEFAULT_PROMPTS[name]), name, f"{where}.prompt")
    if cls is AudioConfig:
        values["asr"] = _backend(values.get("asr", DEFAULT_ASR), "asr", named, f"{where}.asr")
    if cls is FacesConfig:
        attributes = values.get("attributes", {})
        if not isinstance(attributes, Mapping):
            raise ConfigError(
                f"{where}.attributes: expected a mapping such as {{age: BACKEND, gender: BACKEND}}"
            )
        values["attributes"] = {
            attribute: _backend(backend, "classify", named, f"{where}.attributes.{attribute}")
            for attribute, backend in attributes.items()
        }
    for key in ("fps", "max_seconds"):
        if key in values:
            _number(values[key], f"{where}.{key}", minimum=0, strict=True)
    if "margin" in values:
        _number(values["margin"], f"{where}.margin", minimum=0)
    for key in ("max_frames", "max_side", "max_faces", "crops", "crop_size"):
        if key in values:
            _number(values[key], f"{where}.{key}", minimum=1, integer=True)
    return cls(**values)


def _parse_input(data: Any, where: str) -> InputConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{source: DFEW, root: /data/DFEW}}")
    values = dict(data)
    known = {name: values.pop(name) for name in ("source", "root", "csv", "splits") if name in values}
    if "csv" in known:
        if values:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(values))} for a CSV input")
    elif not known.get("source") or not known.get("root"):
        raise ConfigError(
            f"{where}: give `source` and `root` (a source dataset's folder), or `csv` (your own clips)"
        )
    splits = known.get("splits")
    if splits is not None:
        if (
            isinstance(splits, str)
            or not isinstance(splits, list)
            or not all(isinstance(s, str) for s in splits)
        ):
            raise ConfigError(
                f"{where}.splits: expected a list of split names such as [train], got {splits!r}"
            )
        known["splits"] = tuple(splits)
    return InputConfig(**known, options=values)


def parse_config(data: Any, base_dir: str | os.PathLike = ".", where: str = "config") -> CurationConfig:
    """A `CurationConfig` from the mapping a YAML file holds; relative paths are resolved against `base_dir`."""
    values = _fields(CurationConfig, data, where, skip=("base_dir",), also=("backends",))
    named_data = values.pop("backends", None) or {}
    if not isinstance(named_data, Mapping):
        raise ConfigError(f"{where}.backends: expected a mapping of name -> backend")
    named = {
        name: _parse_backend(backend, f"{where}.backends.{name}") for name, backend in named_data.items()
    }
    inputs = values.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError(f"{where}.inputs: list at least one input (a source dataset or a CSV of clips)")
    values["inputs"] = tuple(
        _parse_input(item, f"{where}.inputs[{index}]") for index, item in enumerate(inputs)
    )
    stages = values.get("stages")
    if not isinstance(stages, Mapping) or set(stages) != set(STAGES):
        given = sorted(stages) if isinstance(stages, Mapping) else stages
        raise ConfigError(f"{where}.stages: configure exactly the stages {', '.join(STAGES)}; got {given}")
    values["stages"] = {name: _parse_stage(name, stages[name], named) for name in STAGES}
    if "hre" in values:
        values["hre"] = HreConfig(**_fields(HreConfig, values["hre"], f"{where}.hre"))
        _number(values["hre"].per_source, f"{where}.hre.per_source", minimum=0, integer=True)
    for key, minimum in (("concurrency", 1), ("cpu_workers", 0), ("max_failures", 0)):
        if key in values:
            _number(values[key], f"{where}.{key}", minimum=minimum, integer=True)
    if "sre_min_score" in values:
        score = _number(values["sre_min_score"], f"{where}.sre_min_score", minimum=0)
        if score > 10:
            raise ConfigError(f"{where}.sre_min_score: the self-review scores lie in 0-10, got {score}")
    return CurationConfig(**values, base_dir=Path(base_dir).resolve())


def load_config(path: str | os.PathLike) -> CurationConfig:
    """Read and check a curation config file; paths in it are relative to the file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return parse_config(data, base_dir=path.parent, where=str(path))
