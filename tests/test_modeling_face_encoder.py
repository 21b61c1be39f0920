"""The face encoder against FaceXFormer's own layout and computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import swin_b
from torchvision.models.swin_transformer import SwinTransformer

from modeling_omni_emotion import OmniEmotionFaceConfig, OmniEmotionFaceEncoder, load_facexformer_weights

SMALL = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 2], "hidden_size": 16}


def facexformer_reference(config: OmniEmotionFaceConfig) -> nn.Module:
    """FaceXFormer's encoder as its repository builds it: the Swin minus its head, stage outputs taken by hooks."""

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            swin = SwinTransformer(
                patch_size=[4, 4],
                embed_dim=config.embed_dim,
                depths=config.depths,
                num_heads=config.num_heads,
                window_size=[7, 7],
                stochastic_depth_prob=0.0,
            )
            self.backbone = nn.Sequential(*list(swin.children())[:-1])
            self.linear_c = nn.ModuleList(
                nn.ModuleDict({"proj": nn.Linear(channels, config.hidden_size)})
                for channels in config.stage_hidden_sizes
            )
            self.linear_fuse = nn.Conv2d(
                4 * config.hidden_size, config.hidden_size, kernel_size=1, bias=False
            )
            self.face_decoder = nn.Linear(config.hidden_size, 3)  # a task head: not part of the encoder
            self.features = []
            for name, module in self.backbone.named_modules():
                if name in ("0.1", "0.3", "0.5", "0.7"):
                    module.register_forward_hook(
                        lambda _m, _i, out: self.features.append(out.permute(0, 3, 1, 2))
                    )

        def forward(self, x):
            self.features.clear()
            self.backbone(x)
            grid = self.features[0].shape[2:]
            maps = []
            for feature, mlp in zip(self.features, self.linear_c, strict=True):
                height, width = feature.shape[2:]
                projected = mlp["proj"](feature.flatten(2).transpose(1, 2)).permute(0, 2, 1)
                projected = projected.reshape(x.shape[0], -1, height, width)
                maps.append(
                    nn.functional.interpolate(projected, size=grid, mode="bilinear", align_corners=False)
                )
            return self.linear_fuse(torch.cat(maps[::-1], dim=1))

    return Reference()


def test_facexformer_weights_load_key_for_key_and_give_the_same_map():
    config = OmniEmotionFaceConfig(**SMALL)
    torch.manual_seed(0)
    reference = facexformer_reference(config).eval()
    encoder = OmniEmotionFaceEncoder(config).eval()
    load_facexformer_weights(encoder, {"state_dict_backbone": reference.state_dict()})
    crops = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(crops)
        fused = encoder(crops)
    assert fused.shape == (2, 16, 56, 56)
    torch.testing.assert_close(fused, expected)


def test_swin_b_backbone_keys_match_torchvision_swin_b():
    encoder_keys = {
        key
        for key in OmniEmotionFaceEncoder(OmniEmotionFaceConfig()).state_dict()
        if key.startswith("backbone.")
    }
    swin_keys = {f"backbone.0.{key}" for key in swin_b(weights=None).features.state_dict()}
    assert encoder_keys == swin_keys


def test_swin_b_multiscale_shapes_and_fused_map():
    encoder = OmniEmotionFaceEncoder(OmniEmotionFaceConfig()).eval()
    with torch.no_grad():
        fused = encoder(torch.randn(1, 3, 224, 224))
    assert fused.shape == (1, 256, 56, 56)


def test_a_foreign_checkpoint_is_refused_with_the_mismatching_keys():
    encoder = OmniEmotionFaceEncoder(OmniEmotionFaceConfig(**SMALL))
    state = encoder.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["linear_fuse.weight"]
    with pytest.raises(
        ValueError, match=r"missing keys \['linear_fuse.weight'\].*unexpected keys \['extra.weight'\]"
    ):
        load_facexformer_weights(encoder, state)


def test_wrong_crop_size_is_an_error():
    encoder = OmniEmotionFaceEncoder(OmniEmotionFaceConfig(**SMALL))
    with pytest.raises(ValueError, match=r"crops of shape \(N, 3, 224, 224\), got \(1, 3, 112, 112\)"):
        encoder(torch.zeros(1, 3, 112, 112))


def test_face_config_rejects_a_wrong_number_of_stages():
    with pytest.raises(ValueError, match="4 Swin stages"):
        OmniEmotionFaceConfig(depths=[2, 2, 2])


def test_sdpa_windows_give_torchvisions_eager_map_with_shifted_and_padded_windows():
    # Two blocks a stage (the second one shifted); 96 px gives 24, 12, 6 and 3 px grids: padded to whole 7 px
    # windows, and the last two stages fit in one window, hence unshifted.
    config = OmniEmotionFaceConfig(**SMALL | {"depths": [2, 2, 2, 2], "image_size": 96})
    torch.manual_seed(0)
    encoder = OmniEmotionFaceEncoder(config).eval()
    crops = torch.randn(2, 3, 96, 96)
    config._attn_implementation = "eager"
    with torch.no_grad():
        eager = encoder(crops)
        config._attn_implementation = "sdpa"
        sdpa = encoder(crops)
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)
