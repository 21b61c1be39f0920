"""Tiny random-weight Omni-Emotion configurations for CPU tests (no downloads)."""

from __future__ import annotations

import torch

from modeling_omni_emotion import OmniEmotionConfig

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


def tiny_processor(tokenizer, config: OmniEmotionConfig):
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
