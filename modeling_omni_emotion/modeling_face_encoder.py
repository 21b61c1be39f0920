"""The FaceXFormer face encoder: multi-scale Swin features fused into one facial map.

Module names follow FaceXFormer's own (`backbone.0` is torchvision's `SwinTransformer.features`, `linear_c`,
`linear_fuse`), so its released weights load key for key with [`load_facexformer_weights`].
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

from .configuration_omni_emotion import OmniEmotionFaceConfig

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


class OmniEmotionFaceEncoder(nn.Module):
    """Swin backbone -> per-stage Linear -> bilinear upsampling to the stage-1 grid -> concat -> 1x1 conv.

    Input `(N, 3, S, S)` face crops normalised with ImageNet mean/std; output `(N, hidden_size, S/4, S/4)`.
    """

    def __init__(self, config: OmniEmotionFaceConfig):
        super().__init__()
        self.config = config
        swin = SwinTransformer(
            patch_size=[config.patch_size, config.patch_size],
            embed_dim=config.embed_dim,
            depths=config.depths,
            num_heads=config.num_heads,
            window_size=[config.window_size, config.window_size],
            stochastic_depth_prob=config.drop_path_rate,
        )
        self.backbone = nn.Sequential(swin.features)
        self.linear_c = nn.ModuleList(
            FaceXFormerStageProjection(channels, config.hidden_size) for channels in config.stage_hidden_sizes
        )
        self.linear_fuse = nn.Conv2d(4 * config.hidden_size, config.hidden_size, kernel_size=1, bias=False)

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
