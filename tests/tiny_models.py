"""Raw model inputs for the tiny models of `omni_emotion.synthetic.tiny` (tensors laid out as the processor does),
one clip of them alone, and a smaller draft configuration for assisted decoding."""

from __future__ import annotations

import torch

from modeling_omni_emotion import OmniEmotionConfig
from omni_emotion.synthetic.tiny import (
    AU_END,
    AU_START,
    AUDIO_TOKEN_ID,
    VI_END,
    VI_START,
    VIDEO_TOKEN_ID,
    VOCAB_SIZE,
    tiny_config,
)


def clip_inputs(
    model,
    audio_mel_frames: list[int] | None = (100, 3500),
    with_faces: bool = True,
    num_frames: int | None = None,
    seed: int = 0,
) -> dict:
    """Model inputs for a batch of clips laid out as the processor does, left-padded to one length.

    `audio_mel_frames` gives each clip's real mel frames (None: no audio at all, the model fills zeros).
    """
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    batch_size = 2 if audio_mel_frames is None else len(audio_mel_frames)
    num_frames = num_frames or config.num_frames
    size, face_size = config.vision_config.image_size, config.face_config.image_size
    inputs = {"pixel_values_videos": torch.randn(batch_size, num_frames, 3, size, size, generator=generator)}
    if with_faces:
        inputs["face_pixel_values"] = torch.randn(
            batch_size, num_frames, 3, face_size, face_size, generator=generator
        )
        face_mask = torch.ones(batch_size, num_frames, dtype=torch.bool)
        face_mask[0, 1] = False
        inputs["face_mask"] = face_mask
    if audio_mel_frames is None:
        audio_tokens = [config.num_audio_tokens(round(config.missing_audio_seconds * 100))] * batch_size
    else:
        windows = max(-(-frames // 3000) for frames in audio_mel_frames)
        inputs["input_features"] = torch.randn(batch_size, windows, 128, 3000, generator=generator)
        inputs["audio_feature_lengths"] = torch.tensor(list(audio_mel_frames))
        audio_tokens = [config.num_audio_tokens(frames) for frames in audio_mel_frames]
    rows = [
        [VI_START] + [VIDEO_TOKEN_ID] * config.num_video_tokens(num_frames) + [VI_END, AU_START]
        + [AUDIO_TOKEN_ID] * count + [AU_END] + [5 + index, 6, 7]
        for index, count in enumerate(audio_tokens)
    ]  # fmt: skip
    length = max(map(len, rows))
    inputs["input_ids"] = torch.tensor([[0] * (length - len(row)) + row for row in rows])
    inputs["attention_mask"] = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in rows])
    return inputs


def clip_alone(inputs: dict, row: int) -> dict:
    """Row `row` of `clip_inputs(...)` as a batch of one, without its left padding: the clip generated alone."""
    single = {key: value[row : row + 1] for key, value in inputs.items()}
    real = single["attention_mask"][0].bool()
    single["input_ids"] = single["input_ids"][:, real]
    single["attention_mask"] = single["attention_mask"][:, real]
    return single


def draft_config(**overrides) -> OmniEmotionConfig:
    """A smaller language model (1 layer, width 16) with the same towers, pooling and vocabulary as `tiny_config()`:
    a draft for assisted decoding, as the 0.5b preset is for the 7b."""
    text_config = {
        "model_type": "qwen2",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    }
    return tiny_config(text_config=text_config, **overrides)
