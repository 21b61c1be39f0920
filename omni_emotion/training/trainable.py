"""What each training phase trains: the one place that says it, used by the trainer and the tests.

| phase | trained fully | embedding rows trained alone |
|---|---|---|
| `audio_alignment` (1) | audio projector | `<au_start>`, `<au_end>` |
| `face_alignment` (2) | face projector (+ the face-to-frame cross-attention) | `<vi_start>`, `<vi_end>` |
| `instruction` (3), `finetune` | vision, audio and face projectors, frame embedding (+ cross-attention), the LLM | (the LLM's whole table) |

The vision, audio and face encoders are frozen in every phase. With LoRA (`lora=True`, phase 3 and fine-tuning)
the LLM takes adapters instead of full training, the other modules above are trained fully (peft's
`modules_to_save`) and the four marker rows through peft's `trainable_token_indices`. The placeholders `<video>`
and `<audio>` need no training: their embeddings are replaced by features, so they never receive a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from modeling_omni_emotion import OmniEmotionForConditionalGeneration

PHASES = ("audio_alignment", "face_alignment", "instruction", "finetune")

_FULL_MODEL_MODULES = (
    "multi_modal_projector",
    "audio_projector",
    "face_projector",
    "frame_embedding",
    "face_frame_attention",
)
PHASE_MODULES: dict[str, tuple[str, ...]] = {
    "audio_alignment": ("audio_projector",),
    "face_alignment": ("face_projector", "face_frame_attention"),
    "instruction": _FULL_MODEL_MODULES,
    "finetune": _FULL_MODEL_MODULES,
}
"""Modules of `OmniEmotionModel` trained fully in each phase (a module this model lacks is skipped)."""

PHASE_MARKERS: dict[str, tuple[str, ...]] = {
    "audio_alignment": ("au_start_token_id", "au_end_token_id"),
    "face_alignment": ("vi_start_token_id", "vi_end_token_id"),
    "instruction": ("vi_start_token_id", "vi_end_token_id", "au_start_token_id", "au_end_token_id"),
    "finetune": ("vi_start_token_id", "vi_end_token_id", "au_start_token_id", "au_end_token_id"),
}
"""Configuration fields naming the marker tokens of the modalities that appear in each phase's rows."""

LLM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""LoRA goes into the Qwen2 decoder only: SigLIP and Whisper have `q_proj`... layers too, and stay frozen."""

_ROW_MASK_HOOK = "_omni_emotion_row_mask_hook"


@dataclass(frozen=True)
class TrainableSummary:
    """What `set_trainable` left trainable, for the start-of-run report and the model card; a row-masked embedding
    matrix counts its trained rows only."""

    phase: str
    modules: tuple[str, ...]
    marker_token_ids: tuple[int, ...]
    trainable_parameters: int
    total_parameters: int

    def __str__(self) -> str:
        share = 100 * self.trainable_parameters / max(self.total_parameters, 1)
        rows = f"; embedding rows {list(self.marker_token_ids)}" if self.marker_token_ids else ""
        return (
            f"phase {self.phase}: {self.trainable_parameters:,} of {self.total_parameters:,} parameters trainable "
            f"({share:.2f}%): {', '.join(self.modules)}{rows}"
        )


def check_phase(model: OmniEmotionForConditionalGeneration, phase: str) -> None:
    """A phase must exist and fit the model: a model without the audio (face) tower has no phase 1 (2)."""
    if phase not in PHASES:
        raise ValueError(f"Unknown training phase {phase!r}: expected one of {', '.join(PHASES)}.")
    config = model.config
    if phase == "audio_alignment" and not config.use_audio_tower:
        raise ValueError(
            "This model has no audio tower (`use_audio_tower=False`): skip the audio-alignment phase."
        )
    if phase == "face_alignment" and not config.use_face_tower:
        raise ValueError(
            "This model has no face tower (`use_face_tower=False`): skip the face-alignment phase."
        )
    if getattr(config, PHASE_MARKERS[phase][0]) is None:
        raise ValueError(
            "The model configuration names no modality-marker token ids (`vi_start_token_id`, ...): build it with "
            "`omni-emotion assemble`, which takes them from the processor."
        )


def trainable_modules(
    model: OmniEmotionForConditionalGeneration, phase: str, lora: bool = False
) -> tuple[str, ...]:
    """Names (attributes of `model.model`) of the modules trained fully in `phase`; with `lora`, without the LLM."""
    check_phase(model, phase)
    names = [name for name in PHASE_MODULES[phase] if hasattr(model.model, name)]
    if phase in ("instruction", "finetune") and not lora:
        names.append("language_model")
    return tuple(names)


def marker_token_ids(model: OmniEmotionForConditionalGeneration, phase: str) -> tuple[int, ...]:
    """Ids of the marker tokens of the modalities that `phase` trains with."""
    return tuple(getattr(model.config, field) for field in PHASE_MARKERS[phase])


def set_trainable(
    model: OmniEmotionForConditionalGeneration, phase: str, *, lora: bool = False
) -> TrainableSummary:
    """Freeze everything, then unfreeze what `phase` trains (see the module docstring's table).

    In phases 1 and 2 the marker rows train alone: the embedding matrix takes a gradient hook that zeroes every
    other row, so those stay bit-identical (keep weight decay off that matrix: `row_masked_parameters`). With
    `lora`, the LLM and the marker rows are left to peft (see `lora_config`).
    """
    modules = trainable_modules(model, phase, lora)
    model.requires_grad_(False)
    embeddings = model.get_input_embeddings()
    _remove_row_mask(embeddings)
    for name in modules:
        getattr(model.model, name).requires_grad_(True)
    if "language_model" in modules:
        model.lm_head.requires_grad_(True)
    markers = marker_token_ids(model, phase)
    if not lora and "language_model" not in modules:
        _train_rows_only(embeddings, markers)
    row_masked = set(row_masked_parameters(model))
    trainable = sum(
        parameter.numel() if name not in row_masked else len(markers) * parameter.shape[1]
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    )
    return TrainableSummary(
        phase=phase,
        modules=modules + (("lm_head",) if "language_model" in modules else ()),
        marker_token_ids=() if "language_model" in modules else markers,
        trainable_parameters=trainable,
        total_parameters=sum(parameter.numel() for parameter in model.parameters()),
    )


def _train_rows_only(embeddings: nn.Embedding, rows: tuple[int, ...]) -> None:
    mask = torch.zeros(embeddings.num_embeddings, 1, dtype=embeddings.weight.dtype)
    mask[list(rows)] = 1
    embeddings.weight.requires_grad_(True)
    # A tensor hook runs before the gradient is accumulated (and before DDP reduces it), so the other rows always
    # see an exact zero gradient: Adam's moments stay zero and the rows do not move.
    handle = embeddings.weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
    setattr(embeddings, _ROW_MASK_HOOK, handle)


def _remove_row_mask(embeddings: nn.Embedding) -> None:
    handle = getattr(embeddings, _ROW_MASK_HOOK, None)
    if handle is not None:
        handle.remove()
        delattr(embeddings, _ROW_MASK_HOOK)


def row_masked_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters whose gradient `set_trainable` masks to a few rows: weight decay must skip them,
    or it would shrink the rows that are meant to stay bit-identical."""
    masked = [module.weight for module in model.modules() if hasattr(module, _ROW_MASK_HOOK)]
    return [name for name, parameter in model.named_parameters() if any(parameter is m for m in masked)]


def lora_config(
    model: OmniEmotionForConditionalGeneration,
    phase: str,
    *,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: list[str] | str | None = None,
    use_rslora: bool = False,
    use_dora: bool = False,
):
    """The peft `LoraConfig` of `phase` with LoRA on the LLM: adapters on its decoder layers (`LLM_LORA_TARGETS`
    unless `target_modules` says otherwise), the phase's other modules fully trained, and the marker rows."""
    from peft import LoraConfig

    if phase not in ("instruction", "finetune"):
        raise ValueError(f"LoRA is for the phases that train the LLM (instruction, finetune), not {phase!r}.")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or LLM_LORA_TARGETS,
        modules_to_save=list(trainable_modules(model, phase, lora=True)),
        trainable_token_indices={"embed_tokens": list(marker_token_ids(model, phase))},
        use_rslora=use_rslora,
        use_dora=use_dora,
        bias="none",
    )
