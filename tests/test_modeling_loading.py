"""Saving, loading (by class, Auto classes, remote code), LLaVA-OneVision checkpoints, presets, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_models import clip_inputs
from torchvision.models import swin_b
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from modeling_omni_emotion import (
    PRESETS,
    OmniEmotionConfig,
    OmniEmotionForConditionalGeneration,
    OmniEmotionModel,
)
from omni_emotion.synthetic.tiny import AUDIO_TOKEN_ID, VIDEO_TOKEN_ID, tiny_config


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = OmniEmotionForConditionalGeneration(tiny_config(fusion="frame_cross_attention")).eval()
    directory = tmp_path_factory.mktemp("omni-emotion")
    model.save_pretrained(directory)
    return model, directory


def logits_of(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_save_pretrained_writes_safetensors_code_and_full_auto_map(saved_model):
    _, directory = saved_model
    files = {path.name for path in directory.iterdir()}
    assert {"model.safetensors", "config.json"} <= files
    assert {"configuration_omni_emotion.py", "modeling_omni_emotion.py", "modeling_face_encoder.py"} <= files
    auto_map = json.loads((directory / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_omni_emotion.OmniEmotionConfig",
        "AutoModel": "modeling_omni_emotion.OmniEmotionModel",
        "AutoModelForImageTextToText": "modeling_omni_emotion.OmniEmotionForConditionalGeneration",
        "AutoProcessor": "processing_omni_emotion.OmniEmotionProcessor",
    }


def test_round_trip_by_class_gives_identical_logits(saved_model):
    model, directory = saved_model
    loaded = OmniEmotionForConditionalGeneration.from_pretrained(directory).eval()
    inputs = clip_inputs(model)
    assert torch.equal(logits_of(model, inputs), logits_of(loaded, inputs))


def test_round_trip_by_auto_classes(saved_model):
    model, directory = saved_model
    assert type(AutoConfig.from_pretrained(directory)) is OmniEmotionConfig
    generator = AutoModelForImageTextToText.from_pretrained(directory).eval()
    assert type(generator) is OmniEmotionForConditionalGeneration
    inputs = clip_inputs(model)
    assert torch.equal(logits_of(model, inputs), logits_of(generator, inputs))
    base = AutoModel.from_pretrained(directory).eval()
    assert type(base) is OmniEmotionModel
    with torch.no_grad():
        hidden = base(**inputs).last_hidden_state
    torch.testing.assert_close(model.lm_head(hidden), logits_of(model, inputs))


def test_trust_remote_code_load_in_a_fresh_interpreter_uses_the_copied_code(saved_model, tmp_path):
    model, directory = saved_model
    inputs = clip_inputs(model)
    torch.save({"inputs": inputs, "logits": logits_of(model, inputs)}, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        directory = {str(directory)!r}
        config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained(directory, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(directory, trust_remote_code=True)
        for obj in (config, model, base):
            assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__
        assert not any(name.split(".")[0] in ("modeling_omni_emotion", "omni_emotion") for name in sys.modules)
        with torch.no_grad():
            logits = model(**expected["inputs"]).logits
        assert torch.equal(logits, expected["logits"])
        print("remote-code-ok", type(model).__module__)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-code-ok transformers_modules." in result.stdout


@pytest.fixture(scope="module")
def llava_onevision_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    ours = tiny_config()
    llava_config = LlavaOnevisionConfig(
        vision_config=ours.vision_config.to_dict(),
        text_config=ours.text_config.to_dict(),
        image_token_index=ours.image_token_id,
        video_token_index=ours.video_token_id,
    )
    llava = LlavaOnevisionForConditionalGeneration(llava_config).eval()
    directory = tmp_path_factory.mktemp("llava-onevision")
    llava.save_pretrained(directory)
    return llava, directory


def test_llava_onevision_checkpoint_loads_with_only_the_new_parts_missing(llava_onevision_checkpoint):
    llava, directory = llava_onevision_checkpoint
    model, info = OmniEmotionForConditionalGeneration.from_llava_onevision(
        directory,
        audio_config=tiny_config().audio_config.to_dict(),
        face_config=tiny_config().face_config.to_dict(),
        audio_token_id=AUDIO_TOKEN_ID,
        num_frames=4,
        face_pool_size=2,
        output_loading_info=True,
    )
    new_parts = (
        "model.audio_tower.",
        "model.audio_projector.",
        "model.face_encoder.",
        "model.face_projector.",
    )
    assert info["missing_keys"], "the new parts must be reported missing"
    assert all(
        key.startswith(new_parts) or key == "model.frame_embedding.weight" for key in info["missing_keys"]
    )
    assert not info["unexpected_keys"]
    ours = model.state_dict()
    for key, value in llava.state_dict().items():
        assert torch.equal(ours[key], value), key
    assert torch.count_nonzero(model.model.frame_embedding.weight) == 0


def test_without_faces_the_frame_part_of_video_features_equals_llava_onevision(llava_onevision_checkpoint):
    llava, directory = llava_onevision_checkpoint
    model = OmniEmotionForConditionalGeneration.from_llava_onevision(
        directory,
        audio_config=tiny_config().audio_config.to_dict(),
        face_config=tiny_config().face_config.to_dict(),
        num_frames=4,
        face_pool_size=2,
    ).eval()
    frames = torch.randn(2, 3, 3, 56, 56)
    with torch.no_grad():
        expected = llava.model.get_video_features(frames).pooler_output
        fused = model.model.get_video_features(frames).pooler_output
    torch.testing.assert_close(fused[:, : expected.shape[1]], expected)
    assert fused.shape[1] == expected.shape[1] + 3 * 2**2


def test_from_llava_onevision_refuses_another_model_type(saved_model):
    _, directory = saved_model
    with pytest.raises(ValueError, match="not 'llava_onevision'"):
        OmniEmotionForConditionalGeneration.from_llava_onevision(directory)


def _parameter_count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_match_the_sum_of_their_public_parts(preset):
    config = OmniEmotionConfig.from_preset(preset)
    with torch.device("meta"):
        ours = _parameter_count(OmniEmotionForConditionalGeneration(config))
        llava = _parameter_count(
            LlavaOnevisionForConditionalGeneration(
                LlavaOnevisionConfig(
                    vision_config=config.vision_config.to_dict(),
                    text_config=config.text_config.to_dict(),
                    tie_word_embeddings=config.tie_word_embeddings,
                )
            )
        )
        whisper = _parameter_count(WhisperEncoder(config.audio_config))
        swin = _parameter_count(swin_b(weights=None).features)
    parts = llava + whisper + swin
    print(
        f"{preset}: ours {ours:,} | LLaVA-OV {llava:,} + Whisper encoder {whisper:,} + Swin-B {swin:,} = {parts:,}"
    )
    assert whisper == pytest.approx(635e6, rel=0.01)  # Whisper-large-v3's encoder
    assert abs(ours - parts) / parts < 0.01


def test_mismatched_placeholder_count_names_both_numbers():
    model = OmniEmotionForConditionalGeneration(tiny_config()).eval()
    inputs = clip_inputs(model)
    first = (inputs["input_ids"][0] == VIDEO_TOKEN_ID).nonzero()[0, 0]
    inputs["input_ids"][0, first] = 9  # clip 0 loses one of its video placeholders
    expected = model.config.num_video_tokens()
    with pytest.raises(
        ValueError, match=rf"holds {2 * expected - 1} video placeholder tokens .* gave {2 * expected} feature"
    ):
        model(**inputs)


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        ("pixel_values_videos", (2, 3, 56, 56), r"pixel_values_videos.*\(batch, frames, 3, height, width\)"),
        ("face_pixel_values", (2, 4, 3, 112, 112), r"face_pixel_values.*\(batch, frames, 3, 224, 224\)"),
        ("face_mask", (2, 3), r"face_mask.*shape \(2, 4\)"),
        ("input_features", (2, 2, 80, 3000), r"input_features.*\(batch, windows, 128, 3000\)"),
        ("audio_feature_lengths", (3,), r"audio_feature_lengths.*\(2,\)"),
    ],
)
def test_wrong_tensor_shapes_say_what_was_expected(key, shape, message):
    model = OmniEmotionForConditionalGeneration(tiny_config()).eval()
    inputs = clip_inputs(model)
    inputs[key] = torch.zeros(shape, dtype=inputs[key].dtype)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_more_frames_than_the_frame_embedding_is_an_error():
    model = OmniEmotionForConditionalGeneration(tiny_config()).eval()
    with pytest.raises(ValueError, match="6 frames a clip but the frame embedding has 4"):
        model.model.get_video_features(torch.zeros(1, 6, 3, 56, 56))


def test_unknown_fusion_is_rejected():
    with pytest.raises(ValueError, match="Unknown fusion 'late_fusion': expected one of clip_concat"):
        tiny_config(fusion="late_fusion")


def test_fresh_model_initialises_frame_embedding_to_zero_and_swin_position_index():
    model = OmniEmotionForConditionalGeneration(tiny_config())
    assert torch.count_nonzero(model.model.frame_embedding.weight) == 0
    attention = model.model.face_encoder.backbone[0][1][0].attn
    reference = swin_b(weights=None).features[1][0].attn
    assert torch.equal(
        attention.relative_position_index,
        reference.relative_position_index[: attention.relative_position_index.numel()],
    )
    assert attention.relative_position_bias_table.std() > 0


def test_device_map_auto_keeps_whole_blocks_and_gives_the_same_logits(saved_model):
    from accelerate import infer_auto_device_map

    model, directory = saved_model
    assert {
        "Qwen2DecoderLayer",
        "SiglipEncoderLayer",
        "WhisperEncoderLayer",
        "OmniEmotionFaceEncoder",
    } <= set(model._no_split_modules)
    # A memory budget that forces the model over several devices still never cuts a block in two.
    device_map = infer_auto_device_map(
        model,
        max_memory={0: "300KB", 1: "300KB", "cpu": "1GB"},
        no_split_module_classes=model._no_split_modules,
    )
    assert not any(".face_encoder." in name or ".layers.0." in name for name in device_map)
    loaded = OmniEmotionForConditionalGeneration.from_pretrained(directory, device_map="auto").eval()
    inputs = clip_inputs(model)
    assert torch.equal(logits_of(model, inputs), logits_of(loaded, inputs))


def test_a_model_loaded_from_llava_onevision_saves_in_our_own_layout(llava_onevision_checkpoint, tmp_path):
    _, directory = llava_onevision_checkpoint
    model = OmniEmotionForConditionalGeneration.from_llava_onevision(
        directory,
        audio_config=tiny_config().audio_config.to_dict(),
        face_config=tiny_config().face_config.to_dict(),
    ).eval()
    model.save_pretrained(tmp_path)
    reloaded, info = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    state = reloaded.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
