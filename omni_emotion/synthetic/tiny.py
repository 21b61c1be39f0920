"""Tiny random-weight Omni-Emotion models for the demo, the tests and the benchmarks: a config, a byte-level BPE
tokenizer trained on the spot, the processor that mirrors the config, and a saved checkpoint (no downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerFast

from modeling_omni_emotion import OmniEmotionConfig, OmniEmotionForConditionalGeneration
from omni_emotion.assembly import config_token_ids, default_generation_config
from omni_emotion.pipeline import save_pipeline_code

if TYPE_CHECKING:
    from processing import OmniEmotionProcessor

VOCAB_SIZE = 160
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, AUDIO_TOKEN_ID = 150, 151, 152
VI_START, VI_END, AU_START, AU_END = 153, 154, 155, 156


def tiny_config(**overrides) -> OmniEmotionConfig:
    """SigLIP 56 px / patch 14 (4 frame tokens after pooling), 2-layer Qwen2, 1-layer Whisper, 4-stage mini Swin."""
    fields = {
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
            "vision_use_head": False,
        },
        "text_config": {
            "model_type": "qwen2",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": False,
        },
        "audio_config": {
            "model_type": "whisper",
            "num_mel_bins": 128,
            "d_model": 16,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 32,
            "decoder_layers": 1,
            "decoder_attention_heads": 2,
            "decoder_ffn_dim": 32,
            "max_source_positions": 1500,
        },
        "face_config": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 2], "hidden_size": 16},
        "image_token_index": IMAGE_TOKEN_ID,
        "video_token_index": VIDEO_TOKEN_ID,
        "audio_token_id": AUDIO_TOKEN_ID,
        "vi_start_token_id": VI_START,
        "vi_end_token_id": VI_END,
        "au_start_token_id": AU_START,
        "au_end_token_id": AU_END,
        "num_frames": 4,
        "face_pool_size": 2,
        "fusion_num_heads": 2,
    }
    fields.update(overrides)
    return OmniEmotionConfig(**fields)


QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_CORPUS = [
    "The person looks happy and relaxed, smiling while speaking softly.",
    "She frowns, her voice trembles: sadness, worry and fear.",
    "He shouts angrily; the tone is harsh and the brows are lowered.",
    "Describe the emotional state of the person in the video.",
    "A calm, neutral expression with no clear emotional cue.",
    "Surprise, disgust, contempt, anxiety, helplessness, disappointment.",
] * 20


def build_tiny_tokenizer(
    vocab_size: int = 400, corpus: Sequence[str] = TINY_CORPUS
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen2's chat markup and special tokens, trained on `corpus` in a blink."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>", "<video>"],
    )
    fast.chat_template = QWEN2_CHAT_TEMPLATE
    return fast


def tiny_processor(tokenizer: PreTrainedTokenizerFast, config: OmniEmotionConfig) -> OmniEmotionProcessor:
    """An OmniEmotionProcessor whose frame size, frame count, pooling and fusion mirror `config`."""
    from transformers import LlavaOnevisionVideoProcessor

    from processing import OmniEmotionProcessor

    size = config.vision_config.image_size
    return OmniEmotionProcessor(
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}),
        fusion=config.fusion,
        num_frames=config.num_frames,
        face_pool_size=config.face_pool_size,
        max_audio_seconds=config.max_audio_seconds,
        face_image_size=config.face_config.image_size,
        patch_size=config.vision_config.patch_size,
        use_audio_tower=config.use_audio_tower,
        use_face_tower=config.use_face_tower,
    )


def write_tiny_checkpoint(
    folder: str | Path, tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0, **config_overrides
) -> Path:
    """A tiny random model (`tiny_config(**config_overrides)`, weights seeded by `seed`) and the processor that
    mirrors it, with `tokenizer` (default: `build_tiny_tokenizer()`), saved as `omni-emotion assemble` saves them."""
    tokenizer = build_tiny_tokenizer() if tokenizer is None else tokenizer
    config = tiny_config(**config_overrides)
    processor = tiny_processor(tokenizer, config)  # adds the marker tokens to the tokenizer
    config_overrides.pop("text_config", None)
    config = tiny_config(
        text_config=config.text_config.to_dict() | {"vocab_size": len(processor.tokenizer)},
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
        **config_token_ids(processor),
        **config_overrides,
    )
    torch.manual_seed(seed)
    model = OmniEmotionForConditionalGeneration(config)
    model.generation_config = default_generation_config(processor.tokenizer)
    save_pipeline_code(folder, model.config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)
