"""`omni-emotion train RECIPE.yaml [--field value ...]`: one training phase of Omni-Emotion with TRL's SFTTrainer.

```bash
omni-emotion train recipes/phase3_instruct.yaml --learning_rate 2e-5
accelerate launch --config_file recipes/accelerate/multi_gpu.yaml -m omni_emotion.training recipes/phase3_instruct.yaml
```

Each phase starts from the previous phase's output folder (phase 1 from an `omni-emotion assemble`d checkpoint)
and saves the model, the processor, their code, the `video-emotion-analysis` pipeline's code and a model card
there, loadable with the Auto classes and `pipeline(..., trust_remote_code=True)`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.pipeline import save_pipeline_code
from processing import OmniEmotionProcessor

from .arguments import PAPER_GLOBAL_BATCH, OmniEmotionScriptArguments, global_batch_size
from .cache import ClipCache
from .collator import OmniEmotionDataCollator
from .data import PhaseData, build_phase_dataset
from .model_card import write_model_card
from .trainable import TrainableSummary, lora_config, row_masked_parameters, set_trainable

logger = logging.getLogger(__name__)


class OmniEmotionSFTTrainer(SFTTrainer):
    """SFTTrainer that keeps weight decay off the embedding matrix whose gradient is masked to a few rows."""

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        masked = set(row_masked_parameters(model))
        return [name for name in super().get_decay_parameter_names(model) if name not in masked]


def parse_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[OmniEmotionScriptArguments, SFTConfig, ModelConfig]:
    """A recipe path first (or `--config PATH`), then `--field value` overrides, as TRL's scripts take them.

    `--resume_from_checkpoint last` continues from the newest checkpoint in `output_dir`.
    """
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and not argv[0].startswith("-"):
        argv = ["--config", *argv]
    parser = TrlParser((OmniEmotionScriptArguments, SFTConfig, ModelConfig), prog="omni-emotion train")
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    if model_args.model_name_or_path is None:
        raise ValueError(
            "Give the checkpoint to train: `model_name_or_path` (the previous phase's output folder)."
        )
    # Our collator builds the batches: TRL must neither tokenize the rows nor drop their media columns.
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    return script_args, training_args, model_args


def load_model_and_processor(
    model_args: ModelConfig,
) -> tuple[OmniEmotionForConditionalGeneration, OmniEmotionProcessor]:
    """Our own classes (not the checkpoint's copied code), so that `set_trainable` and the tests see them."""
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = OmniEmotionForConditionalGeneration.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
    )
    processor = OmniEmotionProcessor.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision
    )
    return model, processor


def _clip_cache(
    script_args: OmniEmotionScriptArguments,
    training_args: SFTConfig,
    data: PhaseData,
    processor: OmniEmotionProcessor,
) -> ClipCache | None:
    where = script_args.preprocessing_cache_dir or str(Path(training_args.output_dir) / "clip_cache")
    if where.lower() == "none":
        return None
    # The main process decodes; the others wait, then load what it wrote.
    with training_args.main_process_first(desc="decoding clips into the preprocessing cache"):
        return ClipCache.build(data.dataset, processor, where, num_proc=script_args.preprocessing_num_proc)


def train(argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Runs one phase end to end and returns the output folder. `callbacks` go to the Trainer."""
    script_args, training_args, model_args = parse_arguments(argv)
    model, processor = load_model_and_processor(model_args)
    # The main process builds the rows first; the others reuse what it left in the datasets cache.
    with training_args.main_process_first(desc="building the phase's rows"):
        data = build_phase_dataset(script_args)
    summary = set_trainable(model, script_args.phase, lora=model_args.use_peft)
    peft_config = None
    if model_args.use_peft:
        peft_config = lora_config(
            model,
            script_args.phase,
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            target_modules=model_args.lora_target_modules,
            use_rslora=model_args.use_rslora,
            use_dora=model_args.use_dora,
        )
    cache = _clip_cache(script_args, training_args, data, processor)
    collator = OmniEmotionDataCollator(processor, max_length=training_args.max_length, clip_cache=cache)
    trainer = OmniEmotionSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=data.dataset,
        data_collator=collator,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    _report_start(trainer, script_args, training_args, data, summary, cache)
    resume = training_args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "last" else resume)
    return _save(trainer, script_args, training_args, model_args, data, summary)


def _report_start(
    trainer: SFTTrainer,
    script_args: OmniEmotionScriptArguments,
    training_args: SFTConfig,
    data: PhaseData,
    summary: TrainableSummary,
    cache: ClipCache | None,
) -> None:
    batch = global_batch_size(training_args)
    paper = PAPER_GLOBAL_BATCH[script_args.phase]
    lora = ""
    if hasattr(trainer.model, "peft_config"):
        adapters = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        lora = f" (with the LoRA adapters and peft's copies: {adapters:,})"
    lines = [
        data.report,
        f"{summary}{lora}",
        f"global batch {batch} = {training_args.per_device_train_batch_size} per device x "
        f"{training_args.gradient_accumulation_steps} accumulation x {max(training_args.world_size, 1)} processes"
        + ("" if batch == paper else f" (the paper: {paper})"),
        cache.describe() if cache is not None else "no preprocessing cache: clips are decoded at every step",
    ]
    trainer.accelerator.print("\n".join(lines))


def _save(
    trainer: SFTTrainer,
    script_args: OmniEmotionScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    data: PhaseData,
    summary: TrainableSummary,
) -> Path:
    """Model, processor, code and card in `output_dir` (with LoRA: the adapters in `adapter/`, the merged model
    beside), loadable with the Auto classes and by `pipeline("video-emotion-analysis", model=output_dir,
    trust_remote_code=True)`; pushed to `hub_model_id` when `push_to_hub` is set."""
    output_dir = Path(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        # Registers the pipeline in the config before the model saves it (peft's adapters save no config.json).
        save_pipeline_code(output_dir, trainer.accelerator.unwrap_model(trainer.model).config)
    if model_args.use_peft:
        trainer.save_model(str(output_dir / "adapter"))
        if trainer.accelerator.is_main_process:
            # Under DeepSpeed ZeRO-3 the weights are sharded: merge from `adapter/` after training instead.
            trainer.accelerator.unwrap_model(trainer.model).merge_and_unload().save_pretrained(output_dir)
    else:
        trainer.save_model(
            str(output_dir)
        )  # gathers sharded weights (ZeRO-3, FSDP) and saves on the main process
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(output_dir)
        write_model_card(output_dir, script_args, training_args, model_args, data, summary, trainer.state)
        if training_args.push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi(token=training_args.hub_token)
            api.create_repo(trainer.hub_model_id, private=training_args.hub_private_repo, exist_ok=True)
            api.upload_folder(
                repo_id=trainer.hub_model_id,
                folder_path=output_dir,
                ignore_patterns=["checkpoint-*", "clip_cache/*", "runs/*", "*.pt", "*.pth"],
                commit_message=f"omni-emotion {script_args.phase}",
            )
    trainer.accelerator.wait_for_everyone()
    return output_dir


def main(argv: Sequence[str] | None = None) -> None:
    output_dir = train(argv)
    logger.info("Saved to %s", output_dir)
