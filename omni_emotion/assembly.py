"""Assembly of an Omni-Emotion model and its processor from the public pretrained parts.

LLaVA-OneVision gives the vision tower, projector and language model (and the tokenizer and frame processor);
Whisper-large-v3 gives the audio tower; FaceXFormer gives the face encoder. The audio and face projectors, the
frame-index embedding and the fusion layer start fresh: training phases 1-3 teach them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    LlavaOnevisionVideoProcessor,
    PreTrainedTokenizerBase,
    WhisperConfig,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import logging as transformers_logging

from modeling_omni_emotion import OmniEmotionForConditionalGeneration, load_facexformer_weights
from omni_emotion.pretrained_sources import (
    FACEXFORMER_FILENAME,
    FACEXFORMER_REPO,
    CheckpointUnavailableError,
    check_assembly_sources,
)
from processing import OmniEmotionProcessor

logger = logging.getLogger(__name__)

# Whisper checkpoints keep the encoder under `model.encoder.`; the audio tower is that encoder alone.
_WHISPER_ENCODER_KEYS = {r"^model\.encoder\.": ""}
# Processor settings that mirror configuration fields of the same name.
_PROCESSOR_FIELDS = ("fusion", "num_frames", "face_pool_size", "audio_pool_stride", "max_audio_seconds",
                     "missing_audio_seconds", "use_audio_tower", "use_face_tower")  # fmt: skip
# Qwen2's end of an assistant turn: where an answer stops.
END_OF_TURN_TOKEN = "<|im_end|>"
# Room for a reasoning answer, a paragraph of facial, vocal and verbal clues and the emotions they point to (about
# 150 words, 200 Qwen2 tokens), to end on its own; `omni-emotion analyze` and the EMER evaluation use 256 too.
DEFAULT_MAX_NEW_TOKENS = 256


def assemble(
    llava_onevision: str,
    whisper: str | None = "openai/whisper-large-v3",
    facexformer: str | None = FACEXFORMER_REPO,
    *,
    dtype: torch.dtype | str | None = None,
    **config_overrides,
) -> tuple[OmniEmotionForConditionalGeneration, OmniEmotionProcessor]:
    """Builds an Omni-Emotion model and a matching processor from pretrained parts.

    Args:
        llava_onevision: Hub id or local folder of a LLaVA-OneVision checkpoint in the `llava-hf` layout
            (e.g. `llava-hf/llava-onevision-qwen2-7b-ov-hf`), with its tokenizer and video processor.
        whisper: Hub id or folder of a Whisper checkpoint whose encoder becomes the audio tower; None leaves the
            audio tower randomly initialised (at the default, Whisper-large-v3, size). Ignored when
            `use_audio_tower=False` (and `facexformer` when `use_face_tower=False`): the paper's v / v+a models.
        facexformer: a FaceXFormer checkpoint file (`.pt`), or a Hub repository holding `ckpts/model.pt`; None
            leaves the face encoder randomly initialised.
        dtype: the parameters' dtype, e.g. `torch.bfloat16`.
        **config_overrides: [`OmniEmotionConfig`] fields (`fusion`, `num_frames`, `face_pool_size`, ...).

    Returns:
        The model and an [`OmniEmotionProcessor`] whose tokenizer holds the modality markers, whose token counts
        follow the model's configuration, and whose ids the configuration names.
    """
    # Every part is checked before any is loaded: a mistyped Whisper id should not wait for 16 GB of LLaVA.
    llava_access, whisper_access, face_access = check_assembly_sources(llava_onevision, whisper, facexformer)
    tokenizer = AutoTokenizer.from_pretrained(llava_onevision, **llava_access)
    processor = OmniEmotionProcessor(
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor.from_pretrained(llava_onevision, **llava_access),
        **{key: config_overrides[key] for key in _PROCESSOR_FIELDS if key in config_overrides},
    )
    if whisper is not None:
        config_overrides.setdefault(
            "audio_config", WhisperConfig.from_pretrained(whisper, **whisper_access).to_dict()
        )
    model = OmniEmotionForConditionalGeneration.from_llava_onevision(
        llava_onevision, dtype=dtype, **llava_access, **config_overrides, **config_token_ids(processor)
    )
    if len(tokenizer) > model.config.text_config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    _check_processor_matches(processor, model)
    model.generation_config = default_generation_config(tokenizer)
    if whisper is not None and model.config.use_audio_tower:
        load_whisper_encoder(model, whisper, **whisper_access)
    if facexformer is not None and model.config.use_face_tower:
        load_facexformer_checkpoint(model, facexformer, **face_access)
    return model, processor


def config_token_ids(processor: OmniEmotionProcessor) -> dict[str, int]:
    """The configuration fields that name the processor's placeholder and marker token ids."""
    return {
        "video_token_index": processor.video_token_id,
        "audio_token_id": processor.audio_token_id,
        "vi_start_token_id": processor.video_start_token_id,
        "vi_end_token_id": processor.video_end_token_id,
        "au_start_token_id": processor.audio_start_token_id,
        "au_end_token_id": processor.audio_end_token_id,
    }


def default_generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """What `generate()` does when told nothing: greedy, up to a reasoning answer's length, ending at the end of the
    assistant's turn, padding batches with the tokenizer's pad token (the end of turn when it has none)."""
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN_TOKEN)
    if end_of_turn is None or end_of_turn == tokenizer.unk_token_id:
        raise ValueError(
            f"The tokenizer has no {END_OF_TURN_TOKEN} token: Omni-Emotion needs Qwen2's chat tokens (use the "
            "LLaVA-OneVision checkpoint's own tokenizer)."
        )
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
        eos_token_id=end_of_turn,
        pad_token_id=end_of_turn if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
    )


def _check_processor_matches(
    processor: OmniEmotionProcessor, model: OmniEmotionForConditionalGeneration
) -> None:
    config = model.config
    vision = config.vision_config
    if (
        processor.video_processor.size["height"] != vision.image_size
        or processor.patch_size != vision.patch_size
    ):
        raise ValueError(
            f"The checkpoint's video processor makes {processor.video_processor.size['height']} px frames for "
            f"patch size {processor.patch_size}, but its vision tower takes {vision.image_size} px, patch "
            f"{vision.patch_size}: the LLaVA-OneVision checkpoint is inconsistent."
        )
    if processor.num_video_tokens(config.num_frames) != config.num_video_tokens():
        raise ValueError(
            f"The processor would expand a clip to {processor.num_video_tokens(config.num_frames)} video tokens "
            f"but the model makes {config.num_video_tokens()}."
        )


def load_whisper_encoder(
    model: OmniEmotionForConditionalGeneration, whisper: str, *, local_files_only: bool = False
) -> None:
    """Loads the encoder of a Whisper checkpoint (Hub id or folder) into the audio tower; strict on its keys."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the decoder's keys are reported unexpected, on purpose
    try:
        encoder, info = WhisperEncoder.from_pretrained(
            whisper,
            key_mapping=_WHISPER_ENCODER_KEYS,
            output_loading_info=True,
            local_files_only=local_files_only,
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(
            f"{whisper} does not hold a Whisper encoder of the configured size: missing "
            f"{sorted(info['missing_keys'])[:5]}, mismatched {[key for key, *_ in info['mismatched_keys']][:5]}."
        )
    audio_tower = model.model.audio_tower
    audio_tower.load_state_dict(encoder.state_dict())
    logger.info("Loaded the audio tower from %s", whisper)


def load_facexformer_checkpoint(
    model: OmniEmotionForConditionalGeneration, facexformer: str, *, local_files_only: bool = False
) -> None:
    """Loads FaceXFormer's released encoder weights: a `.pt` file, or a Hub repository (or a local copy of one)
    holding `ckpts/model.pt`."""
    path = Path(facexformer).expanduser()
    if path.is_dir():
        path = path / FACEXFORMER_FILENAME
        if not path.is_file():
            raise CheckpointUnavailableError(
                f"{facexformer} is a folder without {FACEXFORMER_FILENAME}: give the FaceXFormer .pt file itself."
            )
    elif not path.is_file():
        path = Path(hf_hub_download(facexformer, FACEXFORMER_FILENAME, local_files_only=local_files_only))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a FaceXFormer checkpoint: expected a dict of tensors.")
    load_facexformer_weights(model.model.face_encoder, checkpoint)
    logger.info("Loaded the face encoder from %s", path)
