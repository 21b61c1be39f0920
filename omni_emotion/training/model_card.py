"""The model card each training phase writes beside its checkpoint: phase, data, counts and settings."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from transformers import TrainerState
from trl import ModelConfig, SFTConfig

from .arguments import PAPER_GLOBAL_BATCH, OmniEmotionScriptArguments, global_batch_size
from .data import PhaseData
from .trainable import TrainableSummary

PHASE_TITLES = {
    "audio_alignment": "phase 1, audio alignment (the audio projector learns to map Whisper states into the LLM)",
    "face_alignment": "phase 2, face alignment (the face projector learns emotion-bearing face tokens)",
    "instruction": "phase 3, emotion-reasoning instruction tuning (projectors and LLM)",
    "finetune": "fine-tuning for a classification benchmark",
}


def write_model_card(
    output_dir: Path,
    script_args: OmniEmotionScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    data: PhaseData,
    summary: TrainableSummary,
    state: TrainerState,
) -> Path:
    """README.md in `output_dir`: YAML metadata for the Hub, then what was trained on what, and how."""
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-text-to-text",
        base_model=model_args.model_name_or_path
        if not Path(model_args.model_name_or_path).exists()
        else None,
        tags=["omni-emotion", "emotion-recognition", "multimodal", "trl", "sft", script_args.phase],
        license="other",
    )
    batch = global_batch_size(training_args)
    data_line = {
        "audio_alignment": "audio sources: "
        + ", ".join(entry.get("name", "?") for entry in script_args.audio_sources),
        "face_alignment": "source datasets (train splits): " + ", ".join(script_args.sources),
        "instruction": f"annotations {script_args.annotations} ({', '.join(script_args.annotation_configs)})",
        "finetune": f"{script_args.finetune_source} fold {script_args.fold} (train split)",
    }[script_args.phase]
    settings = {
        "started from": model_args.model_name_or_path,
        "learning rate": training_args.learning_rate,
        "global batch": f"{batch} (the paper: {PAPER_GLOBAL_BATCH[script_args.phase]})",
        "epochs": training_args.num_train_epochs,
        "steps": state.global_step,
        "max length": training_args.max_length,
        "LoRA": f"r={model_args.lora_r}, alpha={model_args.lora_alpha}" if model_args.use_peft else "no",
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "seed": training_args.seed,
    }
    final_loss = next(
        (entry["train_loss"] for entry in reversed(state.log_history) if "train_loss" in entry), None
    )
    if final_loss is not None:
        settings["mean training loss"] = f"{final_loss:.4f}"
    rows = "\n".join(f"| {key} | {value} |" for key, value in settings.items())
    content = f"""---
{card_data.to_yaml()}
---

# {output_dir.name}

An Omni-Emotion checkpoint after **{PHASE_TITLES[script_args.phase]}**, trained with
`omni-emotion train` (TRL's `SFTTrainer`). Load it with `AutoModelForImageTextToText` and `AutoProcessor`
(`trust_remote_code=True`).

## Data

{data_line}

```
{data.report}
```

The leakage guards ran before training: no evaluation clip (EMER / MER2023), no held-out DFEW/MAFW test fold, no
RAVDESS in SRE, SRE and HRE disjoint.

## What trained

{summary}

## Settings

| setting | value |
|---|---|
{rows}
"""
    path = Path(output_dir) / "README.md"
    ModelCard(content).save(path)
    return path
