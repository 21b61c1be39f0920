"""Omni-Emotion: LLaVA-OneVision with a Whisper audio tower, a FaceXFormer face tower and face/frame fusion.

The SigLIP vision tower, its projector, pooling and `image_newline`, and the Qwen2 language model are transformers'
LLaVA-OneVision modules, so a LLaVA-OneVision checkpoint loads with only the new parts missing
(see [`OmniEmotionForConditionalGeneration.from_llava_onevision`]).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionCausalLMOutputWithPast,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionModel,
    LlavaOnevisionModelOutputWithPast,
    LlavaOnevisionPreTrainedModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import is_torchdynamo_compiling
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults

from .configuration_omni_emotion import OmniEmotionConfig
from .modeling_face_encoder import OmniEmotionFaceEncoder

# LLaVA-OneVision checkpoints (Hub and `save_pretrained`) keep the pre-v5 key layout; transformers' own fix-up is
# bound to model_type "llava_onevision", so loading one into this class needs this mapping.
LLAVA_ONEVISION_KEY_MAPPING = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^image_newline$": "model.image_newline",
}


class OmniEmotionModelOutputWithPast(LlavaOnevisionModelOutputWithPast):
    """LLaVA-OneVision's output; `video_outputs.pooler_output` holds the fused frame+face tokens."""


class OmniEmotionCausalLMOutputWithPast(LlavaOnevisionCausalLMOutputWithPast):
    """LLaVA-OneVision's causal-LM output, with `audio_outputs` filled when audio was encoded."""


class OmniEmotionProjector(nn.Module):
    """Linear-GELU-Linear into the language model's width (the audio and the face projector)."""

    def __init__(self, in_features: int, hidden_size: int, activation: str = "gelu"):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden_size)
        self.act = ACT2FN[activation]
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scaling + mask) V in plain matmuls: `(B, heads, L, d)` in, `(B, L, heads, d)` out, the layout of
    transformers' attention functions."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class OmniEmotionFusionAttention(nn.Module):
    """Multi-head attention stored as `nn.MultiheadAttention` stores it (`in_proj_weight`, `in_proj_bias`,
    `out_proj`), so that checkpoints keep their keys, but computed by the attention function that the model's
    `config._attn_implementation` names (eager, SDPA, flash, flex), like transformers' own layers."""

    def __init__(self, config: OmniEmotionConfig):
        super().__init__()
        self.config = config
        self.hidden_size = config.text_config.hidden_size
        self.num_heads = config.fusion_num_heads
        self.head_dim = self.hidden_size // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.in_proj_weight = nn.Parameter(torch.empty(3 * self.hidden_size, self.hidden_size))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * self.hidden_size))
        self.out_proj = nn.Linear(self.hidden_size, self.hidden_size)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """`(N, Lq, D)` queries attend to `(N, Lk, D)` context (keys and values) -> `(N, Lq, D)`."""
        query_weight, key_value_weight = self.in_proj_weight.split([self.hidden_size, 2 * self.hidden_size])
        query_bias, key_value_bias = self.in_proj_bias.split([self.hidden_size, 2 * self.hidden_size])
        query = nn.functional.linear(queries, query_weight, query_bias)
        query = query.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        key_value = nn.functional.linear(context, key_value_weight, key_value_bias)
        key, value = key_value.unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attended, _ = attention_interface(self, query, key, value, None, scaling=self.scaling, dropout=0.0)
        return self.out_proj(attended.flatten(2))


class OmniEmotionFaceFrameCrossAttention(nn.Module):
    """Face tokens query the tokens of their own frame (the `frame_cross_attention` fusion), with a residual."""

    def __init__(self, config: OmniEmotionConfig, eps: float = 1e-6):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        self.face_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.frame_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = OmniEmotionFusionAttention(config)

    def forward(self, face_tokens: torch.Tensor, frame_tokens: torch.Tensor) -> torch.Tensor:
        return face_tokens + self.attention(self.face_norm(face_tokens), self.frame_norm(frame_tokens))


class OmniEmotionFrameEmbedding(nn.Embedding):
    """The learnable embedding of each frame index, added to that frame's frame and face tokens; zero at init.

    A module rather than a bare parameter, so that peft can train it fully beside LoRA adapters (`modules_to_save`).
    """


class OmniEmotionPreTrainedModel(LlavaOnevisionPreTrainedModel):
    config: OmniEmotionConfig
    config_class = OmniEmotionConfig
    input_modalities = ("image", "video", "audio", "text")
    _no_split_modules = [
        "Qwen2DecoderLayer",
        "SiglipEncoderLayer",
        "WhisperEncoderLayer",
        "OmniEmotionFaceEncoder",
        "OmniEmotionFaceFrameCrossAttention",
    ]
    _skip_keys_device_placement = "cache"

    def _init_weights(self, module):
        super()._init_weights(module)
        # `LlavaOnevisionModel.__init__` runs `post_init` before the subclass adds its modules.
        if isinstance(module, OmniEmotionFrameEmbedding):
            # Zero, so that a freshly assembled model's frame tokens equal LLaVA-OneVision's.
            init.zeros_(module.weight)
        elif isinstance(module, OmniEmotionFusionAttention):
            # `nn.MultiheadAttention`'s own initialisation (`out_proj` is a Linear, initialised as every other).
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)


class OmniEmotionModel(OmniEmotionPreTrainedModel, LlavaOnevisionModel):
    """The towers, projectors and fusion around the Qwen2 decoder (no LM head)."""

    def __init__(self, config: OmniEmotionConfig):
        super().__init__(config)
        hidden_size = config.text_config.hidden_size
        if config.use_audio_tower:
            self.audio_tower = WhisperEncoder(config.audio_config)
            self.audio_projector = OmniEmotionProjector(config.audio_config.d_model, hidden_size)
        if config.use_face_tower:
            self.face_encoder = OmniEmotionFaceEncoder(config.face_config)
            self.face_projector = OmniEmotionProjector(config.face_config.hidden_size, hidden_size)
        self.frame_embedding = OmniEmotionFrameEmbedding(config.num_frames, hidden_size)
        if config.use_face_tower and config.fusion == "frame_cross_attention":
            self.face_frame_attention = OmniEmotionFaceFrameCrossAttention(config)
        self.post_init()

    # ----------------------------------------------------------------------------------------------- audio

    def audio_window_lengths(self, audio_feature_lengths: torch.Tensor, num_windows: int) -> torch.Tensor:
        """Real mel frames in each 30 s window, `(B, W)`, from each clip's total (capped at `max_audio_seconds`)."""
        window = 2 * self.config.audio_config.max_source_positions
        total = audio_feature_lengths.clamp(max=round(self.config.max_audio_seconds * 100))
        starts = torch.arange(num_windows, device=total.device) * window
        return (total[:, None] - starts[None, :]).clamp(min=0, max=window)

    def audio_tokens_per_window(self, window_lengths: torch.Tensor) -> torch.Tensor:
        """Tokens of windows with L real mel frames: ceil(((L - 1) // 2 + 1) / stride), zero for empty windows."""
        encoder_frames = torch.where(window_lengths > 0, (window_lengths - 1) // 2 + 1, 0)
        return -(-encoder_frames // self.config.audio_pool_stride)

    @can_return_tuple
    def get_audio_features(
        self, input_features: torch.Tensor, audio_feature_lengths: torch.Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        r"""
        Whisper encoder on each 30 s window holding audio, average pooling (kernel = stride = `audio_pool_stride`)
        over the frames of real audio only, then the audio projector.

        input_features (`torch.FloatTensor` of shape `(batch_size, num_windows, num_mel_bins, 3000)`):
            Log-mel windows of each clip, zero-padded to the batch's most windows.
        audio_feature_lengths (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Real mel frames of each clip over all its windows; every window counts as full when omitted.

        Returns `pooler_output` of shape `(total_audio_tokens, hidden_size)`: the tokens of clip 0, then clip 1, ...
        A clip whose length is 0 (a row without an audio block) gives no tokens.
        """
        if not self.config.use_audio_tower:
            raise ValueError(
                "This model was built without an audio tower (`use_audio_tower=False`): give it no audio inputs."
            )
        expected = (self.config.audio_config.num_mel_bins, 2 * self.config.audio_config.max_source_positions)
        if input_features.ndim != 4 or tuple(input_features.shape[2:]) != expected:
            raise ValueError(
                f"`input_features` must have shape (batch, windows, {expected[0]}, {expected[1]}), got "
                f"{tuple(input_features.shape)}. Use the processor, which cuts audio into 30 s Whisper windows."
            )
        batch_size, num_windows = input_features.shape[:2]
        if audio_feature_lengths is None:
            audio_feature_lengths = torch.full(
                (batch_size,), num_windows * expected[1], device=input_features.device
            )
        elif audio_feature_lengths.shape != (batch_size,):
            raise ValueError(
                f"`audio_feature_lengths` must have shape ({batch_size},), one length per clip, "
                f"got {tuple(audio_feature_lengths.shape)}."
            )
        window_lengths = self.audio_window_lengths(
            audio_feature_lengths.to(input_features.device), num_windows
        )
        has_audio = window_lengths > 0
        if not has_audio.any():
            empty = input_features.new_zeros(0, self.config.text_config.hidden_size, dtype=self.dtype)
            return BaseModelOutputWithPooling(last_hidden_state=empty, pooler_output=empty)
        encoder_outputs = self.audio_tower(
            input_features[has_audio].to(self.audio_tower.conv1.weight.dtype), return_dict=True, **kwargs
        )
        hidden_states = encoder_outputs.last_hidden_state  # (windows with audio, 1500, d_model)

        stride = self.config.audio_pool_stride
        lengths = window_lengths[has_audio]
        encoder_frames = (lengths - 1) // 2 + 1
        num_tokens = self.audio_tokens_per_window(lengths)
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        real = (positions[None, :] < encoder_frames[:, None]).to(hidden_states.dtype)
        padding = (-hidden_states.shape[1]) % stride
        # Sum over each group of `stride` frames, divided by the count of real frames in it (a partial last group
        # averages only its real frames), so the padding of the 30 s window never leaks into a token.
        sums = nn.functional.pad(hidden_states * real[..., None], (0, 0, 0, padding)).unflatten(
            1, (-1, stride)
        )
        counts = nn.functional.pad(real, (0, padding)).unflatten(1, (-1, stride)).sum(-1)
        pooled = sums.sum(2) / counts.clamp(min=1)[..., None]
        keep = torch.arange(pooled.shape[1], device=pooled.device)[None, :] < num_tokens[:, None]
        encoder_outputs.pooler_output = self.audio_projector(pooled[keep])
        return encoder_outputs

    # ------------------------------------------------------------------------------------------------ face

    @can_return_tuple
    def get_face_features(
        self, face_pixel_values: torch.Tensor, face_mask: torch.Tensor | None = None
    ) -> BaseModelOutputWithPooling:
        r"""
        Face encoder on one crop a frame, adaptive average pooling of its map to `face_pool_size`^2 positions, then
        the face projector.

        face_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, 224, 224)`):
            The tracked face of each frame, ImageNet-normalised; a zero crop where there is none.
        face_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
            True where a face was found. Frames without one get the features of a zero crop, computed once.

        Returns `pooler_output` of shape `(batch_size, num_frames, face_pool_size**2, hidden_size)`.
        """
        if not self.config.use_face_tower:
            raise ValueError(
                "This model was built without a face tower (`use_face_tower=False`): it takes no face crops."
            )
        size = self.config.face_config.image_size
        if face_pixel_values.ndim != 5 or tuple(face_pixel_values.shape[2:]) != (3, size, size):
            raise ValueError(
                f"`face_pixel_values` must have shape (batch, frames, 3, {size}, {size}), got "
                f"{tuple(face_pixel_values.shape)}."
            )
        batch_size, num_frames = face_pixel_values.shape[:2]
        crops = face_pixel_values.flatten(0, 1).to(self.face_encoder.linear_fuse.weight.dtype)
        if face_mask is None:
            face_maps, tokens = self._encode_faces(crops)
        else:
            if face_mask.shape != (batch_size, num_frames):
                raise ValueError(
                    f"`face_mask` must have shape ({batch_size}, {num_frames}) like the crops, got "
                    f"{tuple(face_mask.shape)}."
                )
            present = face_mask.flatten().to(crops.device, torch.bool)
            face_maps, encoded = self._encode_faces(
                torch.cat([crops[present], crops.new_zeros(1, *crops.shape[1:])])
            )
            # Frames without a face get the tokens of the zero crop, encoded once.
            no_face = encoded[-1:].expand(len(present), *encoded.shape[1:])
            tokens = no_face.index_put((present.nonzero().squeeze(1),), encoded[:-1])
        return BaseModelOutputWithPooling(
            last_hidden_state=face_maps, pooler_output=tokens.unflatten(0, (batch_size, num_frames))
        )

    def _encode_faces(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Face maps `(N, C, 56, 56)` of `(N, 3, 224, 224)` crops and their projected tokens `(N, F, D)`."""
        face_maps = self.face_encoder(crops)
        pooled = nn.functional.adaptive_avg_pool2d(face_maps, self.config.face_pool_size)
        return face_maps, self.face_projector(pooled.flatten(2).transpose(1, 2))

    # ----------------------------------------------------------------------------------------------- video

    @merge_with_config_defaults
    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        face_pixel_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        r"""
        LLaVA-OneVision's frame tokens fused with the face tokens of the same frames, each frame's tokens plus the
        learnable embedding of its index.

        pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, height, width)`):
            The sampled frames.
        face_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, 224, 224)`, *optional*):
            The face crop of each frame; zero crops (no face) when omitted.
        face_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
            True where a face was found; all False when `face_pixel_values` is omitted.

        Returns `pooler_output` of shape `(batch_size, config.num_video_tokens(num_frames), hidden_size)`.
        """
        if pixel_values_videos.ndim != 5:
            raise ValueError(
                "`pixel_values_videos` must have shape (batch, frames, 3, height, width), got "
                f"{tuple(pixel_values_videos.shape)}."
            )
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if num_frames > self.config.num_frames:
            raise ValueError(
                f"Got {num_frames} frames a clip but the frame embedding has {self.config.num_frames}: sample at "
                "most `config.num_frames` frames."
            )
        if face_pixel_values is None and self.config.use_face_tower:
            size = self.config.face_config.image_size
            face_pixel_values = pixel_values_videos.new_zeros(batch_size, num_frames, 3, size, size)
            face_mask = torch.zeros(
                batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device
            )
        elif face_pixel_values is not None and face_pixel_values.shape[:2] != (batch_size, num_frames):
            raise ValueError(
                f"`face_pixel_values` has {tuple(face_pixel_values.shape[:2])} (batch, frames) but the video has "
                f"{(batch_size, num_frames)}: give one face crop per sampled frame."
            )

        video_outputs = super().get_video_features(
            pixel_values_videos,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            return_dict=True,
            **kwargs,
        )
        # LLaVA-OneVision appends `image_newline` after all frames; fusion needs them frame by frame.
        frame_tokens = video_outputs.pooler_output[:, :-1].unflatten(1, (num_frames, -1))
        image_newline = video_outputs.pooler_output[:, -1:]
        frame_index = self.frame_embedding.weight[:num_frames, None, :].to(frame_tokens.dtype)
        face_tokens = None
        if self.config.use_face_tower:
            face_tokens = self.get_face_features(face_pixel_values, face_mask, return_dict=True).pooler_output
            face_tokens = face_tokens.to(frame_tokens.dtype) + frame_index
        video_outputs.pooler_output = self.fuse_face_and_frame_tokens(
            frame_tokens + frame_index, face_tokens, image_newline
        )
        return video_outputs

    def fuse_face_and_frame_tokens(
        self, frame_tokens: torch.Tensor, face_tokens: torch.Tensor | None, image_newline: torch.Tensor
    ) -> torch.Tensor:
        """`(B, T, P, D)` frame and `(B, T, F, D)` face tokens -> `(B, T * (P + F) + 1, D)` in `config.fusion` order.

        Without a face tower (`face_tokens` None) this is LLaVA-OneVision's layout: all frame tokens, `image_newline`.
        """
        if face_tokens is None:
            return torch.cat([frame_tokens.flatten(1, 2), image_newline], dim=1)
        if self.config.fusion == "clip_concat":
            return torch.cat([frame_tokens.flatten(1, 2), image_newline, face_tokens.flatten(1, 2)], dim=1)
        if self.config.fusion == "frame_cross_attention":
            face_tokens = self.face_frame_attention(
                face_tokens.flatten(0, 1), frame_tokens.flatten(0, 1)
            ).unflatten(0, face_tokens.shape[:2])
        return torch.cat([torch.cat([frame_tokens, face_tokens], dim=2).flatten(1, 2), image_newline], dim=1)

    # ---------------------------------------------------------------------------------------------- forward

    def get_audio_placeholder_mask(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        if input_ids is None:
            audio_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.audio_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            return (inputs_embeds == audio_embedding).all(-1)
        return input_ids == self.config.audio_token_id

    def scatter_features(
        self,
        inputs_embeds: torch.Tensor,
        placeholder_mask: torch.Tensor,
        features: torch.Tensor,
        modality: str,
    ) -> torch.Tensor:
        """Puts feature rows where the placeholders are, after checking that the two counts agree."""
        features = features.reshape(-1, inputs_embeds.shape[-1])
        num_placeholders = int(placeholder_mask.sum())
        if num_placeholders != features.shape[0]:
            raise ValueError(
                f"The text holds {num_placeholders} {modality} placeholder tokens but the {modality} encoder gave "
                f"{features.shape[0]} feature rows. Build the inputs with OmniEmotionProcessor, whose token counts "
                "follow the model configuration (frames, fusion, pooling, audio length)."
            )
        mask = placeholder_mask.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)
        return inputs_embeds.masked_scatter(mask, features.to(inputs_embeds.device, inputs_embeds.dtype))

    def _zero_inputs_for_missing_media(
        self,
        input_ids: torch.Tensor,
        pixel_values_videos: torch.Tensor | None,
        input_features: torch.Tensor | None,
        audio_feature_lengths: torch.Tensor | None,
        video_is_encoded: bool,
    ):
        """A clip whose video or audio is absent keeps its placeholders; they are filled from zero inputs.

        Row by row: `forward` encodes video only for the rows holding video placeholders, and a row without audio
        placeholders (text only, or a clip without an audio block) gets an audio length of 0, hence no tokens. The
        zero video has as many frames as the placeholders stand for (a still image is a one-frame clip).
        Only at prefill: later generation steps hold no placeholders, and this check would cost a sync each step.
        """
        batch_size = input_ids.shape[0]
        video_tokens = (input_ids == self.config.video_token_id).sum(-1)
        if not video_is_encoded and pixel_values_videos is None and video_tokens.any():
            tokens_per_frame = self.config.frame_tokens_per_frame + self.config.face_tokens_per_frame
            num_frames = min(
                max((int(video_tokens.max()) - 1) // tokens_per_frame, 1), self.config.num_frames
            )
            size = self.config.vision_config.image_size
            pixel_values_videos = torch.zeros(
                batch_size, num_frames, 3, size, size, device=input_ids.device, dtype=self.dtype
            )
        audio_rows = (input_ids == self.config.audio_token_id).any(-1)
        if input_features is None and self.config.use_audio_tower and audio_rows.any():
            audio_config = self.config.audio_config
            input_features = torch.zeros(
                batch_size, 1, audio_config.num_mel_bins, 2 * audio_config.max_source_positions,
                device=input_ids.device, dtype=self.dtype,
            )  # fmt: skip
            audio_feature_lengths = audio_rows.long() * round(self.config.missing_audio_seconds * 100)
        return pixel_values_videos, input_features, audio_feature_lengths

    @staticmethod
    def _is_prefill(cache: Cache | None) -> bool:
        """Whether this forward fills an empty cache, the one that may hold placeholders.

        A static cache's length is a tensor: reading it is a device sync, and under `torch.compile` a graph break.
        A fresh cache answers without it; so do the compiled decoding steps, which never hold placeholders.
        """
        if cache is None or not cache.is_initialized:
            return True
        return not is_torchdynamo_compiling() and cache.get_seq_length() == 0

    @merge_with_config_defaults
    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        face_pixel_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> OmniEmotionModelOutputWithPast:
        r"""
        face_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, 224, 224)`, *optional*):
            One face crop per sampled frame.
        face_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
            True where a face was found in that frame.
        input_features (`torch.FloatTensor` of shape `(batch_size, num_windows, num_mel_bins, 3000)`, *optional*):
            Whisper log-mel windows of each clip's audio.
        audio_feature_lengths (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Real mel frames of each clip; ignored when `input_features` is None (it reaches every generation step).
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        mm_encoder_outputs = dict(mm_encoder_outputs or {})
        if pixel_values_videos is not None and mm_encoder_outputs.get("video") is not None:
            raise ValueError("Give either `pixel_values_videos` or pre-computed video features, not both.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if input_ids is not None and self._is_prefill(cache):
            pixel_values_videos, input_features, audio_feature_lengths = self._zero_inputs_for_missing_media(
                input_ids,
                pixel_values_videos,
                input_features,
                audio_feature_lengths,
                mm_encoder_outputs.get("video") is not None,
            )

        if pixel_values is not None and mm_encoder_outputs.get("image") is None:
            mm_encoder_outputs["image"] = self.get_image_features(
                pixel_values,
                image_sizes,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                vision_aspect_ratio=vision_aspect_ratio,
                batch_num_images=batch_num_images,
                return_dict=True,
            )
        if mm_encoder_outputs.get("image") is not None:
            image_features = torch.cat(mm_encoder_outputs["image"].pooler_output, dim=0)
            image_mask, _ = self.get_placeholder_mask(input_ids, inputs_embeds=inputs_embeds)
            inputs_embeds = self.scatter_features(
                inputs_embeds, image_mask.squeeze(-1), image_features, "image"
            )

        if pixel_values_videos is not None or mm_encoder_outputs.get("video") is not None:
            _, video_mask = self.get_placeholder_mask(input_ids, inputs_embeds=inputs_embeds)
            video_mask = video_mask.squeeze(-1)
            # Rows without a video block (audio-only clips, text only) are not encoded: the tensors are batch-first.
            video_rows = video_mask.any(-1)
        if pixel_values_videos is not None and video_rows.any():
            if not video_rows.all():
                pixel_values_videos, face_pixel_values, face_mask = (
                    None if tensor is None else tensor[video_rows.to(tensor.device)]
                    for tensor in (pixel_values_videos, face_pixel_values, face_mask)
                )
            mm_encoder_outputs["video"] = self.get_video_features(
                pixel_values_videos,
                face_pixel_values=face_pixel_values,
                face_mask=face_mask,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                return_dict=True,
            )
        if mm_encoder_outputs.get("video") is not None:
            video_features = mm_encoder_outputs["video"].pooler_output
            if len(video_features) == len(video_rows) and len(video_features) != int(video_rows.sum()):
                video_features = video_features[video_rows.to(video_features.device)]  # encoded for every row
            inputs_embeds = self.scatter_features(inputs_embeds, video_mask, video_features, "video")

        audio_outputs = None
        if input_features is not None:
            audio_outputs = self.get_audio_features(input_features, audio_feature_lengths, return_dict=True)
            audio_mask = self.get_audio_placeholder_mask(input_ids, inputs_embeds)
            inputs_embeds = self.scatter_features(
                inputs_embeds, audio_mask, audio_outputs.pooler_output, "audio"
            )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return OmniEmotionModelOutputWithPast(
            **outputs,
            image_outputs=mm_encoder_outputs.get("image"),
            video_outputs=mm_encoder_outputs.get("video"),
            audio_outputs=audio_outputs,
        )


class OmniEmotionForConditionalGeneration(OmniEmotionPreTrainedModel, LlavaOnevisionForConditionalGeneration):
    """Omni-Emotion with its language-model head: the loss on `labels` and `generate()`."""

    def __init__(self, config: OmniEmotionConfig):
        # Not LlavaOnevisionForConditionalGeneration.__init__: it would build a plain LlavaOnevisionModel first.
        LlavaOnevisionPreTrainedModel.__init__(self, config)
        self.model = OmniEmotionModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_llava_onevision(
        cls, pretrained_model_name_or_path: str, **kwargs
    ) -> OmniEmotionForConditionalGeneration:
        """Loads a LLaVA-OneVision checkpoint (e.g. `llava-hf/llava-onevision-qwen2-7b-ov-hf`) into this model.

        Its vision tower, projector, `image_newline` and language model are loaded; the audio and face towers,
        their projectors, the frame embedding and the fusion are reported missing and freshly initialised.
        Keyword arguments other than `from_pretrained`'s own override the Omni-Emotion configuration.
        """
        from transformers import AutoConfig

        config_kwargs = {
            key: kwargs.pop(key) for key in list(kwargs) if key in OmniEmotionConfig.__dataclass_fields__
        }
        llava_config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **{
            key: kwargs[key] for key in ("revision", "token", "cache_dir", "local_files_only") if key in kwargs
        })  # fmt: skip
        if llava_config.model_type != "llava_onevision":
            raise ValueError(
                f"{pretrained_model_name_or_path} is a {llava_config.model_type!r} checkpoint, not 'llava_onevision'."
            )
        llava_fields = llava_config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version"):
            llava_fields.pop(key, None)
        config = OmniEmotionConfig(**{**llava_fields, **config_kwargs})
        loaded = cls.from_pretrained(
            pretrained_model_name_or_path, config=config, key_mapping=LLAVA_ONEVISION_KEY_MAPPING, **kwargs
        )
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        # `save_pretrained` reverts the renamings a model was loaded with; ours are saved in the new layout.
        model._weight_conversions = None
        return loaded

    def get_audio_features(
        self, input_features: torch.Tensor, audio_feature_lengths: torch.Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        return self.model.get_audio_features(input_features, audio_feature_lengths, **kwargs)

    def get_face_features(
        self, face_pixel_values: torch.Tensor, face_mask: torch.Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        return self.model.get_face_features(face_pixel_values, face_mask, **kwargs)

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        face_pixel_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        return self.model.get_video_features(
            pixel_values_videos,
            face_pixel_values=face_pixel_values,
            face_mask=face_mask,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            **kwargs,
        )

    @merge_with_config_defaults
    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        face_pixel_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> OmniEmotionCausalLMOutputWithPast:
        r"""
        See [`OmniEmotionModel.forward`]; `labels` (`(batch_size, sequence_length)`, -100 where no loss is taken) give
        the causal language-modelling loss.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            pixel_values_videos=pixel_values_videos,
            face_pixel_values=face_pixel_values,
            face_mask=face_mask,
            input_features=input_features,
            audio_feature_lengths=audio_feature_lengths,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            vision_aspect_ratio=vision_aspect_ratio,
            batch_num_images=batch_num_images,
            use_cache=use_cache,
            mm_encoder_outputs=mm_encoder_outputs,
            return_dict=True,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return OmniEmotionCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
            video_outputs=outputs.video_outputs,
            audio_outputs=outputs.audio_outputs,
        )

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Cache | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        """transformers' preparation, except for the first forward of an assistant (a draft model).

        transformers runs that forward with `is_first_iteration=False`, which would drop the raw media the draft was
        given, and hands the draft the main model's pre-encoded `mm_encoder_outputs`, which live in the main model's
        embedding space. The forward that fills this model's empty cache gets the raw media instead (the audio: the
        main model's encoding consumed the frames), and the draft's video placeholders are filled from zero frames.
        """
        if not is_first_iteration and cache is not None and not cache.is_initialized:
            kwargs.pop("mm_encoder_outputs", None)
            is_first_iteration = True
        return super().prepare_inputs_for_generation(
            input_ids, cache=cache, is_first_iteration=is_first_iteration, **kwargs
        )


__all__ = [
    "LLAVA_ONEVISION_KEY_MAPPING",
    "OmniEmotionForConditionalGeneration",
    "OmniEmotionModel",
    "OmniEmotionPreTrainedModel",
]
