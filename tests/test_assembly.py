"""Assembling a model and processor from pretrained parts saved locally in the Hub's layouts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import huggingface_hub
import pytest
import torch
from huggingface_hub.utils import httpx
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
from omni_emotion import pretrained_sources
from omni_emotion.assembly import DEFAULT_MAX_NEW_TOKENS, assemble, default_generation_config
from omni_emotion.pretrained_sources import (
    CheckpointUnavailableError,
    check_pretrained_source,
    looks_like_local_path,
)
from omni_emotion.synthetic.media import write_clip
from omni_emotion.synthetic.tiny import tiny_config
from processing import OmniEmotionProcessor

TINY = tiny_config()
OVERRIDES = {"face_config": TINY.face_config.to_dict(), "num_frames": 4, "face_pool_size": 2}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer

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


def test_the_assembled_checkpoint_generates_greedily_up_to_the_end_of_the_turn(assembled, tmp_path):
    model, processor = assembled
    model.save_pretrained(tmp_path)
    config = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path).generation_config
    assert (config.do_sample, config.num_beams, config.max_new_tokens) == (False, 1, DEFAULT_MAX_NEW_TOKENS)
    assert config.eos_token_id == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config.pad_token_id == processor.tokenizer.pad_token_id


def test_a_tokenizer_without_the_end_of_turn_token_is_refused():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "calm": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"no <\|im_end\|> token"):
        default_generation_config(PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]"))


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
    # The checkpoint carries the video-emotion-analysis pipeline too.
    assert (tmp_path / "out" / "pipeline.py").is_file() and (tmp_path / "out" / "emotion_answer.py").is_file()
    assert "video-emotion-analysis" in model.config.custom_pipelines


def test_a_missing_local_path_is_named_as_a_path(tmp_path):
    missing = tmp_path / "llava-onevision"
    with pytest.raises(
        CheckpointUnavailableError, match=rf"'{missing}' does not exist: there is no file or folder"
    ):
        assemble(str(missing), None, None)


@pytest.mark.parametrize(
    "name", ["./llava", "../checkpoints/llava", "~/llava", "/data/llava", "a/b/c", "model.pt", "a\\b"]
)
def test_paths_are_told_from_hub_ids(name):
    assert looks_like_local_path(name)


def test_org_slash_name_is_a_hub_id_unless_its_parent_folder_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_like_local_path("outputs/omni-emotion-7b")
    (tmp_path / "outputs").mkdir()
    assert looks_like_local_path("outputs/omni-emotion-7b")


def test_offline_an_uncached_hub_id_fails_at_once_and_names_the_repository(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(pretrained_sources, "get_hf_file_metadata", network_call)
    start = time.perf_counter()
    with pytest.raises(
        CheckpointUnavailableError, match="'omni-emotion-tests/no-such-llava' is neither"
    ) as error:
        assemble("omni-emotion-tests/no-such-llava", None, None)
    assert "HF_HUB_OFFLINE is set" in str(error.value)
    assert time.perf_counter() - start < 1


def test_an_unreachable_hub_is_reported_with_the_repository_without_retries(monkeypatch):
    attempts = []

    def unreachable(url, **kwargs):
        attempts.append(url)
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(pretrained_sources, "get_hf_file_metadata", unreachable)
    with pytest.raises(CheckpointUnavailableError, match="no network may be available") as error:
        assemble("omni-emotion-tests/no-such-llava", None, None)
    assert "Could not reach the Hugging Face Hub to download the LLaVA-OneVision checkpoint " in str(
        error.value
    )
    assert "'omni-emotion-tests/no-such-llava'" in str(error.value)
    assert len(attempts) == 1


def test_an_unreachable_hub_falls_back_to_the_cached_copy(monkeypatch):
    def unreachable(url, **kwargs):
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(pretrained_sources, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(
        pretrained_sources, "try_to_load_from_cache", lambda repo, filename: "/cache/config.json"
    )
    assert check_pretrained_source("org/cached", "Whisper checkpoint") == {"local_files_only": True}


def test_the_command_line_names_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    from omni_emotion.cli import main

    with pytest.raises(
        SystemExit, match=r"^omni-emotion assemble: error: The Whisper checkpoint '.*' does not"
    ):
        main(
            [
                "assemble",
                "--llava-onevision",
                str(tmp_path),
                "--whisper",
                str(tmp_path / "w"),
                "--output",
                "o",
            ]
        )


def network_call(*args, **kwargs):
    raise AssertionError("no request may reach the network in tests")


def test_with_hf_hub_offline_the_command_fails_in_one_line_without_loading_anything(tmp_path):
    environment = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "omni_emotion.cli", "assemble", "--output", str(tmp_path / "out")]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "'llava-hf/llava-onevision-qwen2-7b-ov-hf' is neither a local file or folder" in result.stderr
    assert time.perf_counter() - start < 10  # huggingface_hub retries a file for over 20 s
