"""The script arguments of `omni-emotion train`: which phase, which data, and the preprocessing cache.

Parsed with TRL's `TrlParser` beside `SFTConfig` (optimisation, saving, Hub) and `ModelConfig` (the checkpoint
and LoRA), from a recipe YAML plus command-line overrides, as TRL's own `sft.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from dataset_scripts import SOURCES
from dataset_scripts.prompts import INSTRUCTION_TASKS

from .trainable import PHASES

PAPER_GLOBAL_BATCH = {"audio_alignment": 256, "face_alignment": 256, "instruction": 128, "finetune": 128}
"""The paper's global batch per phase (the fine-tune's is not given: ours, as phase 3)."""


def global_batch_size(training_args: TrainingArguments) -> int:
    """Rows per optimizer step over all processes: per device x accumulation x processes."""
    return (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * max(training_args.world_size, 1)
    )


def _mapping(value: dict | str | None, name: str) -> dict[str, Any]:
    """A YAML mapping, or the same as a JSON string from the command line."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'--{name} must be a JSON object, e.g. \'{{"DFEW": "/data/DFEW"}}\': {error}'
            ) from None
    if not isinstance(value, dict):
        raise ValueError(f"`{name}` must be a mapping, got {type(value).__name__}.")
    return value


@dataclass
class OmniEmotionScriptArguments:
    """What a recipe trains on. Fields that a phase does not use are ignored by it."""

    phase: str = field(
        default=None,
        metadata={"help": f"Training phase: {', '.join(PHASES)}.", "choices": list(PHASES)},
    )
    audio_sources: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "Phase 1: the audio datasets, each a mapping of dataset_scripts.AudioSourceSpec fields "
            "(name, path, task, config, split, audio_column, text_column, weight, max_samples)."
        },
    )
    sources: dict | str | None = field(
        default=None,
        metadata={
            "help": "Source datasets by name (DFEW, MAFW, MER24, CAER, AFEW-VA, FERV39K, RAVDESS): the folder "
            "their official archive unpacks to, or a mapping with `root` and reader options (e.g. "
            "video_template). Phase 2 trains on their train splits, the fine-tune on one of them; in every "
            "phase the DFEW/MAFW test split of `fold` is checked to be absent from the training data."
        },
    )
    fold: int = field(
        default=1,
        metadata={
            "help": "DFEW/MAFW official fold (1-5): its train split trains, its test split is held out."
        },
    )
    finetune_source: str | None = field(default=None, metadata={"help": "Fine-tune: DFEW or MAFW."})
    annotations: str | None = field(
        default=None,
        metadata={"help": "Phase 3: the SRE/HRE export (a folder from export_to_hub_layout, or its Hub id)."},
    )
    annotation_configs: list[str] = field(
        default_factory=lambda: ["sre", "hre"],
        metadata={"help": "Phase 3: the export's configs to train on."},
    )
    annotation_split: str = field(default="train", metadata={"help": "Phase 3: the split of each config."})
    video_roots: dict | str | None = field(
        default=None,
        metadata={
            "help": "Phase 3: the folder of each source's clips, to resolve the export's relative paths."
        },
    )
    instruction_tasks: list[str] = field(
        default_factory=lambda: list(INSTRUCTION_TASKS),
        metadata={"help": f"Phase 3: instructions made of each record ({', '.join(INSTRUCTION_TASKS)})."},
    )
    evaluation_clips: str | None = field(
        default=None,
        metadata={
            "help": "A file naming the EMER / EMER-OV / MER2023 evaluation clips (one per line, or a CSV with a "
            "`name` column): none may be trained on. Required whenever the data holds MER24 clips."
        },
    )
    prompt_seed: int = field(
        default=0, metadata={"help": "Seed of the instruction phrasings and option orders."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N rows only (quick runs and tests)."}
    )
    preprocessing_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where decoded clips are stored once (uint8 frames and face crops, 16 kHz audio) and reused "
            "by every epoch and rerun with the same processor settings. Default: <output_dir>/clip_cache; "
            "'none' decodes in the collator every time."
        },
    )
    preprocessing_num_proc: int = field(
        default=1, metadata={"help": "Processes that decode clips for the cache."}
    )

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"`phase` must be one of {', '.join(PHASES)}, got {self.phase!r}.")
        self.sources = _mapping(self.sources, "sources")
        self.video_roots = _mapping(self.video_roots, "video_roots")
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown:
            raise ValueError(
                f"Unknown source(s) {unknown} in `sources`: expected names among {', '.join(SOURCES)}."
            )
        if self.fold not in range(1, 6):
            raise ValueError(f"`fold` must be one of DFEW/MAFW's official folds 1-5, got {self.fold}.")
        if self.phase == "finetune" and self.finetune_source not in ("DFEW", "MAFW"):
            raise ValueError(
                f"The fine-tune phase needs `finetune_source: DFEW` or `MAFW`, got {self.finetune_source!r}."
            )
        unknown_tasks = sorted(set(self.instruction_tasks) - set(INSTRUCTION_TASKS))
        if unknown_tasks:
            raise ValueError(
                f"Unknown instruction task(s) {unknown_tasks}: expected among {list(INSTRUCTION_TASKS)}."
            )
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"`max_train_samples` must be positive, got {self.max_train_samples}.")

    def source_root(self, name: str) -> tuple[str, dict[str, Any]]:
        """The folder of source `name` and its reader options, from `sources`."""
        if name not in self.sources:
            raise ValueError(
                f"`sources` names no folder for {name}: add `{name}: /path/to/{name}` to the recipe."
            )
        entry = self.sources[name]
        if isinstance(entry, str):
            return entry, {}
        if not isinstance(entry, dict) or "root" not in entry:
            raise ValueError(f"`sources.{name}` must be a folder or a mapping with `root`, got {entry!r}.")
        options = {key: value for key, value in entry.items() if key != "root"}
        return entry["root"], options
