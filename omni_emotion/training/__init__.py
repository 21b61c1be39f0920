"""Training of Omni-Emotion's phases with TRL: what trains, the data of each phase, the collator, the clip cache.

The entry point is `omni-emotion train RECIPE.yaml` (or `accelerate launch -m omni_emotion.training RECIPE.yaml`);
the recipes of the paper's phases are in `recipes/`.
"""

from .arguments import PAPER_GLOBAL_BATCH, OmniEmotionScriptArguments, global_batch_size
from .cache import ClipCache
from .collator import OmniEmotionDataCollator
from .data import PhaseData, build_phase_dataset, guard_leakage
from .sft import OmniEmotionSFTTrainer, parse_arguments, train
from .trainable import (
    LLM_LORA_TARGETS,
    PHASE_MARKERS,
    PHASE_MODULES,
    PHASES,
    TrainableSummary,
    lora_config,
    marker_token_ids,
    row_masked_parameters,
    set_trainable,
    trainable_modules,
)

__all__ = [
    "LLM_LORA_TARGETS",
    "PAPER_GLOBAL_BATCH",
    "PHASES",
    "PHASE_MARKERS",
    "PHASE_MODULES",
    "ClipCache",
    "OmniEmotionDataCollator",
    "OmniEmotionSFTTrainer",
    "OmniEmotionScriptArguments",
    "PhaseData",
    "TrainableSummary",
    "build_phase_dataset",
    "global_batch_size",
    "guard_leakage",
    "lora_config",
    "marker_token_ids",
    "parse_arguments",
    "row_masked_parameters",
    "set_trainable",
    "train",
    "trainable_modules",
]
