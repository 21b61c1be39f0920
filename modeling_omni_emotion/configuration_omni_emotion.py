"""Configuration of Omni-Emotion: LLaVA-OneVision extended with a Whisper audio tower and a FaceXFormer face tower."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import LlavaOnevisionConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto import AutoConfig

FUSION_MODES = ("clip_concat", "frame_concat", "frame_cross_attention")

# Where a checkpoint's copied code defines each Auto class (transformers records only one per registered class).
AUTO_MAP = {
    "AutoConfig": "configuration_omni_emotion.OmniEmotionConfig",
    "AutoModel": "modeling_omni_emotion.OmniEmotionModel",
    "AutoModelForImageTextToText": "modeling_omni_emotion.OmniEmotionForConditionalGeneration",
    "AutoProcessor": "processing_omni_emotion.OmniEmotionProcessor",
}


@strict
class OmniEmotionFaceConfig(PreTrainedConfig):
    r"""
    The FaceXFormer encoder: a Swin Transformer (torchvision layout, Swin-B by default) whose four stage outputs are
    each projected to `hidden_size` channels, upsampled to the stage-1 grid, concatenated and fused by a 1x1
    convolution. A `image_size` crop gives a `hidden_size x image_size/4 x image_size/4` map (256x56x56 for 224 px).

    Args:
        image_size (`int`, defaults to 224): side of the square face crop.
        patch_size (`int`, defaults to 4): Swin patch size.
        embed_dim (`int`, defaults to 128): channels of stage 1; stage `i` has `embed_dim * 2**i`.
        depths (`list[int]`, defaults to `[2, 2, 18, 2]`): blocks per stage (Swin-B).
        num_heads (`list[int]`, defaults to `[4, 8, 16, 32]`): attention heads per stage (Swin-B).
        window_size (`int`, defaults to 7): Swin window side.
        drop_path_rate (`float`, defaults to 0.0): stochastic depth. Zero by default because Omni-Emotion uses the
            encoder as a (mostly frozen) feature extractor; FaceXFormer trained it with 0.5.
        hidden_size (`int`, defaults to 256): channels of the fused multi-scale map.
    """

    model_type = "omni_emotion_face"

    image_size: int = 224
    patch_size: int = 4
    embed_dim: int = 128
    depths: list[int] | None = None
    num_heads: list[int] | None = None
    window_size: int = 7
    drop_path_rate: float = 0.0
    hidden_size: int = 256

    def __post_init__(self, **kwargs):
        self.depths = list(self.depths) if self.depths is not None else [2, 2, 18, 2]
        self.num_heads = list(self.num_heads) if self.num_heads is not None else [4, 8, 16, 32]
        if len(self.depths) != 4 or len(self.num_heads) != 4:
            raise ValueError(
                f"The face encoder has 4 Swin stages: `depths` and `num_heads` need 4 entries each, got "
                f"depths={self.depths} and num_heads={self.num_heads}."
            )
        if self.image_size % (self.patch_size * 8) != 0:
            raise ValueError(
                f"`image_size` ({self.image_size}) must be divisible by patch_size * 8 = {self.patch_size * 8} "
                "so that all four Swin stages have whole grids."
            )
        super().__post_init__(**kwargs)

    @property
    def stage_hidden_sizes(self) -> list[int]:
        return [self.embed_dim * 2**stage for stage in range(4)]

    @property
    def feature_map_size(self) -> int:
        """Side of the fused multi-scale map (the stage-1 grid)."""
        return self.image_size // self.patch_size


@strict
class OmniEmotionConfig(LlavaOnevisionConfig):
    r"""
    Configuration of [`OmniEmotionForConditionalGeneration`]: a LLaVA-OneVision configuration (SigLIP `vision_config`,
    Qwen2 `text_config`) plus the Whisper `audio_config` (its encoder is the audio tower), the FaceXFormer
    `face_config`, and how face and frame tokens are fused.

    Args:
        audio_config (`dict` or `WhisperConfig`, *optional*): Whisper configuration; defaults to the large-v3 encoder.
        face_config (`dict` or `OmniEmotionFaceConfig`, *optional*): face encoder configuration (Swin-B by default).
        fusion (`str`, defaults to `"clip_concat"`): where face tokens go among the frame tokens. `"clip_concat"`:
            all frame tokens, `image_newline`, then all face tokens; `"frame_concat"`: per frame, its frame tokens
            then its face tokens, `image_newline` last; `"frame_cross_attention"`: as `frame_concat`, but face
            tokens first attend to their frame's tokens.
        num_frames (`int`, defaults to 8): frames a clip; also the size of the learnable frame-index embedding.
        face_pool_size (`int`, defaults to 7): the 56x56 face map is average-pooled to this side (49 tokens a frame).
        audio_pool_stride (`int`, defaults to 3): Whisper frames (20 ms each) averaged into one token.
        max_audio_seconds (`float`, defaults to 30.0): longer audio is cut; it is encoded in 30 s windows.
        missing_audio_seconds (`float`, defaults to 1.0): duration of the zero input that stands for absent audio.
        fusion_num_heads (`int`, *optional*): heads of the face-to-frame cross-attention; defaults to the text
            model's attention heads.
        use_audio_tower (`bool`, defaults to `True`): build the audio tower and projector. Without them a clip has
            no audio block (the paper's "v" and "v+f" models of its Table 1).
        use_face_tower (`bool`, defaults to `True`): build the face encoder and projector. Without them the video
            block holds the frame tokens alone, as in LLaVA-OneVision (the paper's "v" and "v+a" models).
        audio_token_id (`int`): id of the `<audio>` placeholder (`video_token_id` is LLaVA-OneVision's `<video>`).
        vi_start_token_id, vi_end_token_id, au_start_token_id, au_end_token_id (`int`, *optional*): modality markers.

    Example:

    ```python
    >>> from modeling_omni_emotion import OmniEmotionConfig, OmniEmotionForConditionalGeneration

    >>> config = OmniEmotionConfig.from_preset("omni-emotion-0.5b", fusion="frame_concat")
    >>> model = OmniEmotionForConditionalGeneration(config)  # random weights; see `omni_emotion.assemble`
    ```
    """

    model_type = "omni_emotion"
    sub_configs_defaults = {
        **LlavaOnevisionConfig.sub_configs_defaults,
        "audio_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="whisper",
            init_kwargs={
                "num_mel_bins": 128,
                "d_model": 1280,
                "encoder_layers": 32,
                "encoder_attention_heads": 20,
                "encoder_ffn_dim": 5120,
                "max_source_positions": 1500,
                "vocab_size": 51866,
            },
        ),
        "face_config": SubConfigSpec(config_class=OmniEmotionFaceConfig),
    }

    audio_config: dict | PreTrainedConfig | None = None
    face_config: dict | PreTrainedConfig | None = None
    fusion: str = "clip_concat"
    num_frames: int = 8
    face_pool_size: int = 7
    audio_pool_stride: int = 3
    max_audio_seconds: float = 30.0
    missing_audio_seconds: float = 1.0
    fusion_num_heads: int | None = None
    use_audio_tower: bool = True
    use_face_tower: bool = True
    audio_token_id: int = 151648
    vi_start_token_id: int | None = None
    vi_end_token_id: int | None = None
    au_start_token_id: int | None = None
    au_end_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"Unknown fusion {self.fusion!r}: expected one of {', '.join(FUSION_MODES)}.")
        for name in ("num_frames", "face_pool_size", "audio_pool_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if not 0 < self.missing_audio_seconds <= 30 or self.max_audio_seconds <= 0:
            raise ValueError(
                "`missing_audio_seconds` must lie in (0, 30] and `max_audio_seconds` be positive, got "
                f"{self.missing_audio_seconds} and {self.max_audio_seconds}."
            )
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        if self.fusion_num_heads is None:
            self.fusion_num_heads = self.text_config.num_attention_heads
        if self.text_config.hidden_size % self.fusion_num_heads != 0:
            raise ValueError(
                f"`fusion_num_heads` ({self.fusion_num_heads}) must divide the text hidden size "
                f"({self.text_config.hidden_size})."
            )

    # Token counts: the processor mirrors these formulas to expand `<video>` and `<audio>`.

    @property
    def frame_tokens_per_frame(self) -> int:
        """LLaVA-OneVision's tokens a frame: the SigLIP patch grid after its 2x2 bilinear pooling."""
        side = self.vision_config.image_size // self.vision_config.patch_size
        return math.ceil(side / 2) ** 2

    @property
    def face_tokens_per_frame(self) -> int:
        return self.face_pool_size**2 if self.use_face_tower else 0

    def num_video_tokens(self, num_frames: int | None = None) -> int:
        """Fused visual tokens of a clip: frame (and face) tokens of every frame plus one `image_newline`."""
        num_frames = self.num_frames if num_frames is None else num_frames
        return num_frames * (self.frame_tokens_per_frame + self.face_tokens_per_frame) + 1

    def num_audio_tokens(self, mel_frames: int) -> int:
        """Audio tokens of a clip with `mel_frames` real 10 ms mel frames, cut in 30 s windows and capped at
        `max_audio_seconds`: each window of L frames gives ceil(((L - 1) // 2 + 1) / audio_pool_stride)."""
        window = 2 * self.audio_config.max_source_positions
        remaining = min(mel_frames, round(self.max_audio_seconds * 100))
        total = 0
        while remaining > 0:
            length = min(remaining, window)
            total += math.ceil(((length - 1) // 2 + 1) / self.audio_pool_stride)
            remaining -= length
        return total

    @classmethod
    def from_preset(cls, name: str, **overrides) -> OmniEmotionConfig:
        """A configuration whose parts have the sizes of the public checkpoints (`omni-emotion-7b`, `-0.5b`)."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}: expected one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


_SIGLIP_SO400M_384 = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "patch_size": 14,
    "image_size": 384,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "vision_use_head": False,
}

# Sizes of llava-hf/llava-onevision-qwen2-{7b,0.5b}-ov-hf (SigLIP-so400m + Qwen2); towers take their defaults
# (Whisper-large-v3 encoder, Swin-B FaceXFormer encoder).
PRESETS: dict[str, dict] = {
    "omni-emotion-7b": {
        "vision_config": _SIGLIP_SO400M_384,
        "text_config": {
            "model_type": "qwen2",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152128,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
    },
    "omni-emotion-0.5b": {
        "vision_config": _SIGLIP_SO400M_384,
        "text_config": {
            "model_type": "qwen2",
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 152000,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
        },
        "tie_word_embeddings": True,
    },
}
