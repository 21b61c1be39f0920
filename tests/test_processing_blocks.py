"""Clips made of one block (audio alone, video alone), text-only rows, decoded clips, and models without a tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.synthetic import media as mf
from omni_emotion.synthetic.tiny import tiny_config, tiny_processor
from processing.processing_omni_emotion import AUDIO_MARKUP, CLIP_MARKUP, VIDEO_MARKUP


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    mf.write_clip(root / "face.mp4", seconds=2)
    mf.write_wav(root / "tone.wav", seconds=3)
    return root


def tiny_pair(tokenizer, **overrides):
    """A tiny model and the processor that mirrors it, with the processor's token ids in the config."""
    config = tiny_config(**overrides)
    processor = tiny_processor(tokenizer, config)
    ids = {
        "video_token_index": processor.video_token_id,
        "audio_token_id": processor.audio_token_id,
        "image_token_index": processor.tokenizer.convert_tokens_to_ids("<image>"),
    }
    text_config = config.text_config.to_dict() | {"vocab_size": len(processor.tokenizer)}
    torch.manual_seed(0)
    model = OmniEmotionForConditionalGeneration(tiny_config(text_config=text_config, **ids, **overrides))
    return model.eval(), processor


def count(ids: torch.Tensor, token_id: int) -> list[int]:
    return (ids == token_id).sum(-1).tolist()


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "Feeling?"}]}]


def test_an_audio_entry_alone_is_an_audio_block_and_makes_no_video_tensors(tiny_tokenizer, media):
    model, processor = tiny_pair(tiny_tokenizer)
    conversation = user({"type": "audio", "path": str(media / "tone.wav")})
    prompt = processor.apply_chat_template(conversation)
    assert AUDIO_MARKUP + "Feeling?" in prompt and "<vi_start>" not in prompt
    out = processor.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt")
    assert "pixel_values_videos" not in out and "face_pixel_values" not in out
    assert count(out["input_ids"], processor.audio_token_id) == [processor.num_audio_tokens(300)]
    assert count(out["input_ids"], processor.video_token_id) == [0]
    assert torch.isfinite(model(**out).logits).all()


def test_a_video_without_audio_is_a_video_block_and_reads_no_sound(tiny_tokenizer, media, monkeypatch):
    model, processor = tiny_pair(tiny_tokenizer)
    conversation = user({"type": "video", "path": str(media / "face.mp4"), "with_audio": False})
    assert VIDEO_MARKUP + "Feeling?" in processor.apply_chat_template(conversation)

    import processing.processing_omni_emotion as module

    read_clip = module.read_clip
    asked = []
    monkeypatch.setattr(
        module, "read_clip", lambda *a, **k: asked.append(k["with_audio"]) or read_clip(*a, **k)
    )
    out = processor.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt")
    assert asked == [False]
    assert "input_features" not in out and out["face_mask"].all()
    assert count(out["input_ids"], processor.audio_token_id) == [0]
    assert torch.isfinite(model(**out).logits).all()


def test_a_batch_mixing_full_clips_single_blocks_and_text_gives_each_row_its_own_tokens(
    tiny_tokenizer, media
):
    model, processor = tiny_pair(tiny_tokenizer)
    texts = [CLIP_MARKUP + "a", VIDEO_MARKUP + "b", AUDIO_MARKUP + "c", "text only"]
    clip = media / "face.mp4"
    out = processor(
        text=texts, videos=[clip, clip, None], audio=[None, None, media / "tone.wav"], return_tensors="pt"
    )
    lengths = out["audio_feature_lengths"].tolist()
    assert lengths[0] > 0 and lengths[1:] == [0, 300, 0]
    assert out["pixel_values_videos"][2:].abs().sum() == 0
    video_tokens = processor.num_video_tokens(model.config.num_frames)
    assert count(out["input_ids"], processor.video_token_id) == [video_tokens, video_tokens, 0, 0]
    audio_tokens = [processor.num_audio_tokens(lengths[0]), 0, 50, 0]
    assert count(out["input_ids"], processor.audio_token_id) == audio_tokens
    batched = model(**out).logits
    # Each row alone gives the same logits as in the batch (rows without a block are never encoded).
    alone = processor(text=texts[1:2], videos=[clip], return_tensors="pt")
    alone_logits = model(**alone).logits[0]
    length = alone["input_ids"].shape[1]
    torch.testing.assert_close(batched[1, :length], alone_logits, atol=1e-4, rtol=1e-4)  # right-padded


def test_a_decoded_clip_gives_exactly_the_tensors_of_its_source(tiny_tokenizer, media):
    _, processor = tiny_pair(tiny_tokenizer)
    clip = media / "face.mp4"
    decoded = processor.decode_clip(clip)
    size = processor.video_processor.size["height"]
    assert decoded["frames"].dtype == np.uint8 and decoded["frames"].shape == (4, size, size, 3)
    assert decoded["faces"].dtype == np.uint8 and decoded["faces"].shape == (4, 224, 224, 3)
    assert decoded["face_mask"].all() and decoded["audio"].dtype == np.float32
    as_lists = {key: value.tolist() for key, value in decoded.items()}  # as a dataset row gives it back
    direct = processor(text=[CLIP_MARKUP], videos=[clip], return_tensors="pt")
    cached = processor(text=[CLIP_MARKUP], videos=[as_lists], return_tensors="pt")
    for key in direct:
        assert torch.equal(direct[key], cached[key]), key


def test_a_decoded_clip_of_other_settings_is_refused(tiny_tokenizer, media):
    _, processor = tiny_pair(tiny_tokenizer)
    decoded = processor.decode_clip(media / "face.mp4")
    decoded["frames"] = decoded["frames"][:, :20, :20]
    with pytest.raises(ValueError, match="stale"):
        processor(text=[CLIP_MARKUP], videos=[decoded])
    with pytest.raises(ValueError, match="needs the keys"):
        processor(text=[CLIP_MARKUP], videos=[{"frames": None}])


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_cross_attention"])
def test_a_model_without_a_face_tower_has_llava_onevision_video_tokens(tiny_tokenizer, media, fusion):
    model, processor = tiny_pair(tiny_tokenizer, use_face_tower=False, fusion=fusion)
    assert not hasattr(model.model, "face_encoder") and not hasattr(model.model, "face_frame_attention")
    out = processor(text=[CLIP_MARKUP], videos=[media / "face.mp4"], return_tensors="pt")
    assert "face_pixel_values" not in out
    assert count(out["input_ids"], processor.video_token_id) == [4 * model.config.frame_tokens_per_frame + 1]
    assert model.config.num_video_tokens() == processor.num_video_tokens(4)
    assert torch.isfinite(model(**out).logits).all()


def test_a_model_without_an_audio_tower_has_no_audio_block(tiny_tokenizer, media):
    model, processor = tiny_pair(tiny_tokenizer, use_audio_tower=False)
    assert not hasattr(model.model, "audio_tower") and not hasattr(model.model, "audio_projector")
    conversation = user({"type": "video", "path": str(media / "face.mp4")})
    assert "<au_start>" not in processor.apply_chat_template(conversation)
    out = processor.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt")
    assert "input_features" not in out
    assert torch.isfinite(model(**out).logits).all()
    with pytest.raises(ValueError, match="without an audio tower"):
        processor(text=[CLIP_MARKUP], videos=[media / "face.mp4"])
