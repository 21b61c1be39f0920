"""The FaceXFormer face encoder: multi-scale Swin features fused into one facial map.

Module names follow FaceXFormer's own (`backbone.0` is torchvision's `SwinTransformer.features`, `linear_c`,
`linear_fuse`), so its released weights load key for key with [`load_facexformer_weights`].
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn
from torchvision.models.swin_transformer import ShiftedWindowAttention, SwinTransformer, SwinTransformerBlock
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

from .configuration_omni_emotion import OmniEmotionFaceConfig

logger = logging.get_logger(__name__)

# Outputs of `SwinTransformer.features[i]` for these `i` are the four stages (after each one's Swin blocks).
_STAGE_INDICES = (1, 3, 5, 7)
# Parts of a FaceXFormer checkpoint that are task heads or unused by the encoder.
_FACEXFORMER_UNUSED_PREFIXES = ("face_decoder.", "pe_layer.", "backbone.1.")


class FaceXFormerStageProjection(nn.Module):
    """Projects one stage's channels to the fused width (FaceXFormer's `FaceXFormerMLP`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, stage_features: torch.Tensor) -> torch.Tensor:
        return self.proj(stage_features)


def _swin_relative_position_index(window_size: list[int]) -> torch.Tensor:
    """The constant index torchvision builds in `ShiftedWindowAttention.define_relative_position_index`."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size[0]), torch.arange(window_size[1]), indexing="ij")
    )
    coords = torch.flatten(coords, 1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window_size[0] - 1
    relative[:, :, 1] += window_size[1] - 1
    relative[:, :, 0] *= 2 * window_size[1] - 1
    return relative.sum(-1).flatten()


class FaceXFormerWindowAttention(ShiftedWindowAttention):
    """torchvision's shifted-window attention (same parameters, same keys) that follows the face config's attention
    implementation: `"eager"` runs torchvision's own code; `"sdpa"` the same windows through
    `F.scaled_dot_product_attention`, with the relative-position bias and the shift mask as its additive mask (flash
    attention takes no such mask: see `OmniEmotionFaceEncoder.get_correct_attn_implementation`)."""

    def __init__(self, *args, config: OmniEmotionFaceConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = config

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.config._attn_implementation == "eager":
            return super().forward(hidden_states)
        return self._sdpa_forward(hidden_states)

    def _sdpa_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, H, W, C)` -> `(B, H, W, C)`: pad to whole windows, shift, attend within each window, undo both."""
        batch, height, width, channels = hidden_states.shape
        window_height, window_width = self.window_size
        padded = nn.functional.pad(
            hidden_states, (0, 0, 0, -width % window_width, 0, -height % window_height)
        )
        padded_height, padded_width = padded.shape[1:3]
        # A window as large as the map needs no shift (torchvision's rule).
        shift = [
            0 if window >= side else size
            for window, side, size in zip(
                self.window_size, (padded_height, padded_width), self.shift_size, strict=True
            )
        ]
        if any(shift):
            padded = torch.roll(padded, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        rows, columns = padded_height // window_height, padded_width // window_width
        windows = padded.view(batch, rows, window_height, columns, window_width, channels)
        windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(batch, rows * columns, -1, channels)

        head_dim = channels // self.num_heads
        # (B, windows, tokens, 3, heads, head_dim)
        qkv = self.qkv(windows).unflatten(-1, (3, self.num_heads, head_dim))
        # Every window's heads side by side in one axis, so the (windows * heads)-long mask broadcasts over the batch.
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).flatten(2, 3).unbind(0)
        mask = self.get_relative_position_bias().expand(rows * columns, -1, -1, -1)
        if any(shift):
            mask = mask + self._shift_mask(padded_height, padded_width, shift, mask.device)[:, None]
        attended = nn.functional.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask.flatten(0, 1).to(query.dtype),
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        attended = attended.unflatten(1, (rows * columns, self.num_heads)).transpose(2, 3).flatten(3)
        attended = nn.functional.dropout(self.proj(attended), p=self.dropout, training=self.training)

        output = attended.view(batch, rows, columns, window_height, window_width, channels)
        output = output.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_height, padded_width, channels)
        if any(shift):
            output = torch.roll(output, shifts=(shift[0], shift[1]), dims=(1, 2))
        return output[:, :height, :width].contiguous()

    def _shift_mask(self, height: int, width: int, shift: list[int], device: torch.device) -> torch.Tensor:
        """`(windows, tokens, tokens)`: -100 between tokens that the cyclic shift brought from different regions."""
        window_height, window_width = self.window_size
        regions = torch.zeros(height, width, device=device)
        row_slices = (slice(0, -window_height), slice(-window_height, -shift[0]), slice(-shift[0], None))
        column_slices = (slice(0, -window_width), slice(-window_width, -shift[1]), slice(-shift[1], None))
        for label, (row_slice, column_slice) in enumerate(itertools.product(row_slices, column_slices)):
            regions[row_slice, column_slice] = label
        regions = regions.view(height // window_height, window_height, width // window_width, window_width)
        regions = regions.permute(0, 2, 1, 3).reshape(-1, window_height * window_width)
        return (regions[:, None, :] != regions[:, :, None]).float() * -100.0


class OmniEmotionFaceEncoder(PreTrainedModel):
    """Swin backbone -> per-stage Linear -> bilinear upsampling to the stage-1 grid -> concat -> 1x1 conv.

    Input `(N, 3, S, S)` face crops normalised with ImageNet mean/std; output `(N, hidden_size, S/4, S/4)`.
    A sub-model of its own (like the Whisper encoder), so that `set_attn_implementation` reaches `face_config`.
    """

    config: OmniEmotionFaceConfig
    config_class = OmniEmotionFaceConfig
    main_input_name = "face_pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True

    def __init__(self, config: OmniEmotionFaceConfig):
        super().__init__(config)
        swin = SwinTransformer(
            patch_size=[config.patch_size, config.patch_size],
            embed_dim=config.embed_dim,
            depths=config.depths,
            num_heads=config.num_heads,
            window_size=[config.window_size, config.window_size],
            stochastic_depth_prob=config.drop_path_rate,
            block=partial(
                SwinTransformerBlock, attn_layer=partial(FaceXFormerWindowAttention, config=config)
            ),
        )
        self.backbone = nn.Sequential(swin.features)
        self.linear_c = nn.ModuleList(
            FaceXFormerStageProjection(channels, config.hidden_size) for channels in config.stage_hidden_sizes
        )
        self.linear_fuse = nn.Conv2d(4 * config.hidden_size, config.hidden_size, kernel_size=1, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ShiftedWindowAttention):
            # transformers knows nothing of torchvision's Swin: without this both would stay zero.
            init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            init.copy_(module.relative_position_index, _swin_relative_position_index(module.window_size))

    def get_correct_attn_implementation(
        self, requested_attention: str | None, is_init_check: bool = False
    ) -> str:
        """Flash and flex attention take no additive bias, which Swin's relative positions need: a model-wide
        request for them gives this tower SDPA (recorded in `face_config._attn_implementation`), not an error."""
        if requested_attention in ALL_ATTENTION_FUNCTIONS.valid_keys() and requested_attention != "sdpa":
            logger.info(f"The face encoder cannot use {requested_attention!r} attention; it uses 'sdpa'.")
            requested_attention = "sdpa"
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    def forward(self, face_pixel_values: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if face_pixel_values.ndim != 4 or tuple(face_pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(
                f"The face encoder expects crops of shape (N, 3, {size}, {size}), got {tuple(face_pixel_values.shape)}."
            )
        hidden_states = face_pixel_values
        stage_maps = []
        for index, layer in enumerate(self.backbone[0]):
            hidden_states = layer(hidden_states)
            if index in _STAGE_INDICES:
                stage_maps.append(hidden_states)  # channels-last (N, h, w, C_i)
        grid = stage_maps[0].shape[1:3]
        projected = []
        for stage_map, projection in zip(stage_maps, self.linear_c, strict=True):
            stage_map = projection(stage_map).permute(0, 3, 1, 2)
            projected.append(
                nn.functional.interpolate(stage_map, size=grid, mode="bilinear", align_corners=False)
            )
        # FaceXFormer concatenates the deepest stage first.
        return self.linear_fuse(torch.cat(projected[::-1], dim=1))


def load_facexformer_weights(
    face_encoder: OmniEmotionFaceEncoder, state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Loads a FaceXFormer checkpoint's encoder weights (its task heads are dropped); fails on any other mismatch."""
    state_dict = state_dict.get("state_dict_backbone", state_dict)
    encoder_weights = {
        key: value for key, value in state_dict.items() if not key.startswith(_FACEXFORMER_UNUSED_PREFIXES)
    }
    missing, unexpected = face_encoder.load_state_dict(encoder_weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            "The checkpoint does not match the FaceXFormer encoder: "
            f"missing keys {sorted(missing)[:5]} ({len(missing)} in all), "
            f"unexpected keys {sorted(unexpected)[:5]} ({len(unexpected)} in all). "
            "Give the state dict of FaceXFormer's `FaceXFormer` model (its `backbone`, `linear_c`, `linear_fuse`)."
        )
