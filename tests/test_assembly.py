"""Assembling a model and processor from pretrained parts saved locally in the Hub's layouts."""

from __future__ import annotations

import pytest
import torch
from media_factory import write_clip
from tiny_models import tiny_config
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    WhisperConfig,
    WhisperForConditionalGeneration,
)

from modeling_omni_emotion import OmniEmotionFaceEncoder, OmniEmotionForConditionalGeneration
from omni_emotion.assembly import assemble
from processing import OmniEmotionProcessor

TINY = tiny_config()
OVERRIDES = {"face_config": TINY.face_config.to_dict(), "num_frames": 4, "face_pool_size": 2}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    size = TINY.vision_config.image_size
    llava = LlavaOnevisionForConditionalGeneration(
        LlavaOnevisionConfig(
            vision_config=TINY.vision_config.to_dict(),
            text_config=TINY.text_config.to_dict() | {"vocab_size": len(tokenizer)},
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        )
    )
    llava.save_pretrained(root / "llava")
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}),
    ).save_pretrained(root / "llava")

    whisper = WhisperForConditionalGeneration(WhisperConfig(**TINY.audio_config.to_dict()))
    whisper.save_pretrained(root / "whisper")

    face_encoder = OmniEmotionFaceEncoder(TINY.face_config)
    facexformer = {
        "state_dict_backbone": face_encoder.state_dict()
        | {"face_decoder.pose_token.weight": torch.zeros(1, 16)}
    }
    torch.save(facexformer, root / "facexformer.pt")
    return {"root": root, "llava": llava, "whisper": whisper, "face_encoder": face_encoder}


@pytest.fixture(scope="module")
def assembled(parts):
    root = parts["root"]
    return assemble(str(root / "llava"), str(root / "whisper"), str(root / "facexformer.pt"), **OVERRIDES)


def same_weights(module_a: torch.nn.Module, module_b: torch.nn.Module) -> bool:
    state_b = module_b.state_dict()
    return all(torch.equal(value, state_b[key]) for key, value in module_a.state_dict().items())


def test_every_pretrained_part_is_loaded(parts, assembled):
    model, _ = assembled
    assert same_weights(parts["whisper"].model.encoder, model.model.audio_tower)
    assert same_weights(parts["face_encoder"], model.model.face_encoder)
    assert same_weights(parts["llava"].model.vision_tower, model.model.vision_tower)
    assert same_weights(parts["llava"].model.multi_modal_projector, model.model.multi_modal_projector)
    layers = parts["llava"].model.language_model.layers
    assert same_weights(layers, model.model.language_model.layers)


def test_processor_and_config_agree_on_tokens_and_counts(assembled):
    model, processor = assembled
    config = model.config
    assert (config.video_token_id, config.audio_token_id) == (
        processor.video_token_id,
        processor.audio_token_id,
    )
    assert (config.vi_start_token_id, config.au_end_token_id) == (
        processor.video_start_token_id,
        processor.audio_end_token_id,
    )
    # The markers were new to the tokenizer: the embeddings grew to hold them.
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer)
    assert processor.num_video_tokens(config.num_frames) == config.num_video_tokens()


def test_assembled_checkpoint_generates_from_a_video_and_round_trips(assembled, tmp_path):
    model, processor = assembled
    clip = write_clip(tmp_path / "clip.mp4", seconds=1)
    messages = [
        {"role": "user", "content": [{"type": "video", "path": clip}, {"type": "text", "text": "Mood?"}]}
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        generated = model.eval().generate(**inputs, max_new_tokens=4, do_sample=False)
    model.save_pretrained(tmp_path / "omni")
    processor.save_pretrained(tmp_path / "omni")
    reloaded = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path / "omni").eval()
    reloaded_processor = OmniEmotionProcessor.from_pretrained(tmp_path / "omni")
    again = reloaded_processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        assert torch.equal(reloaded.generate(**again, max_new_tokens=4, do_sample=False), generated)


def test_a_whisper_of_another_size_is_refused(parts, tmp_path):
    other = WhisperForConditionalGeneration(WhisperConfig(**TINY.audio_config.to_dict() | {"d_model": 32}))
    other.save_pretrained(tmp_path / "whisper")
    model = OmniEmotionForConditionalGeneration(tiny_config())
    from omni_emotion.assembly import load_whisper_encoder

    with pytest.raises(RuntimeError, match="size mismatch"):
        load_whisper_encoder(model, str(tmp_path / "whisper"))


def test_without_whisper_and_facexformer_the_towers_stay_fresh(parts):
    root = parts["root"]
    model, _ = assemble(
        str(root / "llava"), None, None, audio_config=TINY.audio_config.to_dict(), **OVERRIDES
    )
    assert not same_weights(parts["face_encoder"], model.model.face_encoder)


def test_cli_assemble_saves_a_loadable_checkpoint(parts, tmp_path):
    import json

    from omni_emotion.cli import main

    root = parts["root"]
    overrides = {key: value for key, value in OVERRIDES.items() if key != "num_frames"}
    main([
        "assemble", "--llava-onevision", str(root / "llava"), "--whisper", str(root / "whisper"),
        "--facexformer", str(root / "facexformer.pt"), "--fusion", "frame_concat", "--num-frames", "4",
        "--dtype", "float32", "--config-overrides", json.dumps(overrides), "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    model = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path / "out")
    processor = OmniEmotionProcessor.from_pretrained(tmp_path / "out")
    assert model.config.fusion == processor.fusion == "frame_concat"
    assert same_weights(parts["whisper"].model.encoder, model.model.audio_tower)
