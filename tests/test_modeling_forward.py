"""Forward, loss, backward and generate() of tiny random Omni-Emotion models."""

from __future__ import annotations

import pytest
import torch
from tiny_models import clip_inputs

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.synthetic.tiny import tiny_config

FUSIONS = ["clip_concat", "frame_concat", "frame_cross_attention"]


def build(fusion: str = "clip_concat", **overrides) -> OmniEmotionForConditionalGeneration:
    torch.manual_seed(0)
    return OmniEmotionForConditionalGeneration(tiny_config(fusion=fusion, **overrides))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("with_audio", [True, False], ids=["audio", "no-audio"])
@pytest.mark.parametrize("with_faces", [True, False], ids=["faces", "no-faces"])
def test_forward_backward_and_generate(fusion, with_audio, with_faces):
    model = build(fusion)
    # Two clips of different audio lengths: 1 s and 35 s (two windows, the second partly filled).
    inputs = clip_inputs(model, audio_mel_frames=[100, 3500] if with_audio else None, with_faces=with_faces)
    outputs = model(**inputs, labels=inputs["input_ids"])
    assert outputs.logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert model.model.face_projector.linear_1.weight.grad is not None
    assert model.model.audio_projector.linear_1.weight.grad is not None
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None

    model.eval()
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 4)


def test_generate_with_cache_matches_generate_without_cache():
    model = build("frame_concat").eval()
    inputs = clip_inputs(model)
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=5, do_sample=False, use_cache=True)
        uncached = model.generate(**inputs, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_beam_search_keeps_each_clip_with_its_own_media():
    model = build().eval()
    inputs = clip_inputs(model)
    with torch.no_grad():
        beams = model.generate(
            **inputs, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False
        )
        alone = model.generate(
            **{key: value[1:] for key, value in inputs.items()},
            max_new_tokens=3,
            num_beams=2,
            do_sample=False,
        )
    assert beams.shape[0] == 4
    assert torch.equal(beams[2], alone[0])


def test_batch_results_match_single_clip_results():
    model = build("frame_cross_attention").eval()
    inputs = clip_inputs(model)
    with torch.no_grad():
        batched = model(**inputs).logits[1]
        single = model(**{key: value[1:] for key, value in inputs.items()}).logits[0]
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_missing_audio_is_filled_from_a_zero_input_of_the_configured_length():
    model = build().eval()
    inputs = clip_inputs(model, audio_mel_frames=None)
    explicit = dict(inputs)
    explicit["input_features"] = torch.zeros(2, 1, 128, 3000)
    explicit["audio_feature_lengths"] = torch.full((2,), round(model.config.missing_audio_seconds * 100))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, model(**explicit).logits)


def test_only_the_rows_holding_placeholders_are_filled_from_zero_media():
    model = build().eval()
    clip = clip_inputs(model, audio_mel_frames=None)["input_ids"][0]  # its media tensors are left out below
    text = torch.tensor([5, 6, 7, 8])
    input_ids = torch.stack([clip, torch.cat([torch.zeros(len(clip) - len(text), dtype=torch.long), text])])
    attention_mask = torch.stack([torch.ones_like(clip), (input_ids[1] != 0).long()])
    with torch.no_grad():
        batched = model(input_ids=input_ids, attention_mask=attention_mask).logits
        clip_alone = model(input_ids=clip[None]).logits[0]
        text_alone = model(input_ids=text[None]).logits[0]
    torch.testing.assert_close(batched[0], clip_alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched[1, -len(text) :], text_alone, atol=1e-4, rtol=1e-4)


def test_missing_video_is_filled_with_as_many_zero_frames_as_its_placeholders():
    model = build().eval()
    inputs = clip_inputs(model, audio_mel_frames=None, with_faces=False, num_frames=1)  # a still image
    with torch.no_grad():
        explicit = model(**inputs | {"pixel_values_videos": torch.zeros(2, 1, 3, 56, 56)}).logits
        filled = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    torch.testing.assert_close(filled, explicit)


def test_frames_without_a_face_get_the_features_of_a_zero_crop():
    model = build().eval()
    crops = torch.randn(2, 4, 3, 224, 224)
    face_mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    with torch.no_grad():
        masked = model.model.get_face_features(crops, face_mask).pooler_output
        zeroed = model.model.get_face_features(crops * face_mask[..., None, None, None]).pooler_output
    assert masked.shape == (2, 4, model.config.face_pool_size**2, model.config.text_config.hidden_size)
    torch.testing.assert_close(masked, zeroed, atol=1e-5, rtol=1e-5)


def test_audio_padding_of_the_window_never_becomes_tokens():
    model = build().eval()
    features = torch.randn(1, 1, 128, 3000)
    with torch.no_grad():
        tokens = model.model.get_audio_features(features, torch.tensor([500])).pooler_output
        full = model.model.audio_tower(features[0]).last_hidden_state[0]
    # 500 mel frames -> 250 encoder frames -> 84 tokens, the last one averaging the 250th frame alone.
    assert tokens.shape == (84, model.config.text_config.hidden_size)
    expected_last = model.model.audio_projector(full[249:250].mean(0))
    torch.testing.assert_close(tokens[-1], expected_last, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("seconds", "tokens"), [(1, 17), (5, 84), (10, 167), (30, 500)])
def test_audio_token_counts_follow_the_design_table(seconds, tokens):
    model = build()
    lengths = torch.tensor([seconds * 100])
    assert (
        int(model.model.audio_tokens_per_window(model.model.audio_window_lengths(lengths, 1)).sum()) == tokens
    )


def test_audio_longer_than_max_audio_seconds_is_cut():
    model = build(max_audio_seconds=45.0)
    windows = model.model.audio_window_lengths(torch.tensor([6000]), 2)
    assert windows.tolist() == [[3000, 1500]]
    assert int(model.model.audio_tokens_per_window(windows).sum()) == 500 + 250
    assert model.config.num_audio_tokens(9000) == 500 + 250


def test_video_token_count_is_the_same_for_every_fusion_and_matches_the_features():
    counts = set()
    for fusion in FUSIONS:
        model = build(fusion).eval()
        with torch.no_grad():
            video = model.model.get_video_features(torch.randn(1, 3, 3, 56, 56)).pooler_output
        assert video.shape[1] == model.config.num_video_tokens(3)
        counts.add(video.shape[1])
    assert counts == {3 * (4 + 4) + 1}


def test_clip_concat_places_frames_then_newline_then_faces():
    model = build("clip_concat").eval()
    frames, faces, newline = torch.randn(1, 2, 4, 32), torch.randn(1, 2, 3, 32), torch.randn(1, 1, 32)
    fused = model.model.fuse_face_and_frame_tokens(frames, faces, newline)
    torch.testing.assert_close(fused[0, :8], frames[0].flatten(0, 1))
    torch.testing.assert_close(fused[0, 8], newline[0, 0])
    torch.testing.assert_close(fused[0, 9:], faces[0].flatten(0, 1))


def test_frame_concat_interleaves_each_frame_with_its_face():
    model = build("frame_concat").eval()
    frames, faces, newline = torch.randn(1, 2, 4, 32), torch.randn(1, 2, 3, 32), torch.randn(1, 1, 32)
    fused = model.model.fuse_face_and_frame_tokens(frames, faces, newline)
    torch.testing.assert_close(fused[0, :4], frames[0, 0])
    torch.testing.assert_close(fused[0, 4:7], faces[0, 0])
    torch.testing.assert_close(fused[0, 7:11], frames[0, 1])
    torch.testing.assert_close(fused[0, -1], newline[0, 0])


def test_frame_cross_attention_lets_faces_see_only_their_own_frame():
    model = build("frame_cross_attention").eval()
    frames, faces, newline = torch.randn(1, 2, 4, 32), torch.randn(1, 2, 3, 32), torch.randn(1, 1, 32)
    changed = frames.clone()
    changed[0, 1] = torch.randn(4, 32)
    with torch.no_grad():
        before = model.model.fuse_face_and_frame_tokens(frames, faces, newline)
        after = model.model.fuse_face_and_frame_tokens(changed, faces, newline)
    torch.testing.assert_close(before[0, 4:7], after[0, 4:7])  # frame 0's faces are untouched
    assert not torch.allclose(before[0, 11:14], after[0, 11:14])  # frame 1's faces attended to the change


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_the_fusion_attention_computes_what_multihead_attention_does_with_its_weights(implementation):
    model = build("frame_cross_attention", attn_implementation=implementation)
    attention = model.model.face_frame_attention.attention
    reference = torch.nn.MultiheadAttention(32, model.config.fusion_num_heads, batch_first=True)
    reference.load_state_dict(attention.state_dict())  # same keys: checkpoints saved with it still load
    faces, frames = torch.randn(6, 3, 32), torch.randn(6, 4, 32)
    with torch.no_grad():
        expected, _ = reference(faces, frames, frames, need_weights=False)
        torch.testing.assert_close(attention(faces, frames), expected, atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_and_sdpa():
    model = build(attn_implementation="sdpa")
    assert model.config.text_config._attn_implementation == "sdpa"
    model.activation_checkpointing_enable()
    model.train()
    inputs = clip_inputs(model)
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_bfloat16_forward():
    model = build().to(torch.bfloat16).eval()
    inputs = clip_inputs(model)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()
