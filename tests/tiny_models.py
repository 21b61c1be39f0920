"""Tiny random-weight Omni-Emotion configurations for CPU tests (no downloads)."""

from __future__ import annotations

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
