"""generate() on tiny random models: every decoding strategy on a left-padded batch of clips with different audio
lengths (each row as the clip generated alone), the static cache and a compiled decoding step, assisted and prompt
lookup decoding, the media encoded once per call, the checkpoints' generation defaults, the deprecated cache name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from tiny_models import clip_alone, clip_inputs, draft_config
from torch._dynamo.utils import counters
from transformers import AutoTokenizer, CompileConfig

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.assembly import DEFAULT_MAX_NEW_TOKENS
from omni_emotion.synthetic.tiny import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, tiny_config

NEW_TOKENS = 6
GREEDY = {"max_new_tokens": NEW_TOKENS, "do_sample": False}
ONCE = {"vision_tower": 1, "face_encoder": 1, "audio_tower": 1}
STRATEGIES = {
    "greedy": {},
    "beam-search": {"num_beams": 3},
    "beam-search-2-sequences": {"num_beams": 2, "num_return_sequences": 2},
    "static-cache": {"cache_implementation": "static"},
}


@pytest.fixture(scope="module")
def model() -> OmniEmotionForConditionalGeneration:
    torch.manual_seed(0)
    return OmniEmotionForConditionalGeneration(tiny_config(fusion="frame_cross_attention")).eval()


@pytest.fixture(scope="module")
def inputs(model) -> dict:
    # 1 s and 35 s of audio, 17 and 500 audio tokens (35 s is cut at `max_audio_seconds`, 30): the first clip is
    # left-padded by 483 tokens.
    return clip_inputs(model, audio_mel_frames=[100, 3500])


@pytest.fixture(scope="module")
def draft() -> OmniEmotionForConditionalGeneration:
    torch.manual_seed(1)
    return OmniEmotionForConditionalGeneration(draft_config(fusion="frame_cross_attention")).eval()


def generate(model: OmniEmotionForConditionalGeneration, inputs: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, **kwargs)


@contextmanager
def tower_calls(model: OmniEmotionForConditionalGeneration) -> Iterator[dict[str, int]]:
    """Counts the forward calls of each tower of `model` inside the block."""
    calls = dict.fromkeys(ONCE, 0)
    handles = [
        getattr(model.model, name).register_forward_hook(
            lambda *_, name=name: calls.update({name: calls[name] + 1})
        )
        for name in calls
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_each_row_of_a_padded_batch_generates_what_the_clip_generates_alone(model, inputs, strategy):
    kwargs = GREEDY | STRATEGIES[strategy]
    batched = generate(model, inputs, **kwargs)
    per_clip = kwargs.get("num_return_sequences", 1)
    for row in range(2):
        alone = generate(model, clip_alone(inputs, row), **kwargs)
        assert torch.equal(
            batched[row * per_clip : (row + 1) * per_clip, -NEW_TOKENS:], alone[:, -NEW_TOKENS:]
        )


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_media_are_encoded_once_per_generate_never_per_step(model, inputs, strategy):
    with tower_calls(model) as calls:
        generate(model, inputs, **GREEDY | STRATEGIES[strategy])
    assert calls == ONCE


def test_sampling_draws_each_row_from_the_distribution_of_the_clip_alone(model, inputs):
    # The rows share one random stream, so a row's draws depend on the batch; what must not is each step's logits.
    sampling = {
        "do_sample": True,
        "max_new_tokens": NEW_TOKENS,
        # A random model may draw a placeholder, which the check below would then read as a missing clip.
        "suppress_tokens": [IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, AUDIO_TOKEN_ID],
    }
    torch.manual_seed(7)
    sampled = generate(model, inputs, output_logits=True, return_dict_in_generate=True, **sampling)
    torch.manual_seed(7)
    assert torch.equal(generate(model, inputs, **sampling), sampled.sequences)  # seeded: reproducible
    step_logits = torch.stack(sampled.logits, dim=1)  # (batch, steps, vocab), before any logits processor
    for row in range(2):
        clip = clip_alone(inputs, row)
        clip["input_ids"] = torch.cat(
            [clip["input_ids"], sampled.sequences[row : row + 1, -NEW_TOKENS:-1]], 1
        )
        clip["attention_mask"] = torch.ones_like(clip["input_ids"])
        with torch.no_grad():
            alone = model(**clip).logits[0, -NEW_TOKENS:]
        torch.testing.assert_close(step_logits[row], alone, atol=1e-4, rtol=1e-4)


def test_a_compiled_decoding_step_with_a_static_cache_gives_the_same_tokens(model, inputs):
    # The whole step in one graph (fullgraph), traced as for inductor; `aot_eager` skips inductor's C++ code
    # generation, which takes ~35 s on 2 CPU cores and says nothing about our code.
    compile_config = CompileConfig(fullgraph=True, backend="aot_eager", mode=None, dynamic=False)
    compile_config._compile_all_devices = True  # transformers compiles only on accelerators unless told
    static = GREEDY | STRATEGIES["static-cache"]
    expected = generate(model, inputs, **static)
    torch._dynamo.reset()
    counters.clear()
    try:
        with tower_calls(model) as calls:
            compiled = generate(model, inputs, compile_config=compile_config, **static)
        assert counters["stats"]["unique_graphs"] >= 1  # the steps did run compiled
    finally:
        torch._dynamo.reset()
    assert torch.equal(compiled, expected)
    assert calls == ONCE


@pytest.mark.parametrize("row", [0, 1], ids=["1s-audio", "35s-audio"])
def test_assisted_decoding_with_a_smaller_draft_gives_the_greedy_tokens(model, draft, inputs, row):
    clip = clip_alone(inputs, row)
    with tower_calls(model) as calls, tower_calls(draft) as draft_calls:
        assisted = generate(model, clip, assistant_model=draft, **GREEDY)
    assert torch.equal(assisted, generate(model, clip, **GREEDY))
    # Each model encodes the media once: the draft its own audio, and zero frames (see `prepare_inputs_for_generation`).
    assert calls == ONCE
    assert draft_calls == ONCE


def test_a_draft_with_a_smaller_embedding_matrix_drafts_once_resized(inputs):
    # LLaVA-OneVision's 0.5B and 7B pad Qwen2's vocabulary to different sizes, which transformers reads as two
    # tokenizers.
    torch.manual_seed(0)
    model = OmniEmotionForConditionalGeneration(
        tiny_config(text_config=tiny_config().text_config.to_dict() | {"vocab_size": 168})
    ).eval()
    draft = OmniEmotionForConditionalGeneration(draft_config()).eval()
    draft.resize_token_embeddings(model.config.text_config.vocab_size)
    clip = clip_alone(inputs, 1)
    assert torch.equal(
        generate(model, clip, assistant_model=draft, **GREEDY), generate(model, clip, **GREEDY)
    )


def test_the_draft_hears_the_clip_through_its_own_audio_tower(model, draft, inputs):
    clip = clip_alone(inputs, 1)
    heard = []
    handle = draft.model.audio_tower.register_forward_hook(lambda _, args, __: heard.append(args[0]))
    try:
        generate(model, clip, assistant_model=draft, **GREEDY)
    finally:
        handle.remove()
    assert torch.equal(heard[0], clip["input_features"][0, :1])  # the window that holds its 30 s


def test_prompt_lookup_decoding_gives_the_greedy_tokens(model, inputs):
    clip = clip_alone(inputs, 1)
    with tower_calls(model) as calls:
        looked_up = generate(model, clip, prompt_lookup_num_tokens=3, **GREEDY)
    assert torch.equal(looked_up, generate(model, clip, **GREEDY))
    assert calls == ONCE


@pytest.mark.parametrize("part", ["model", "generator"])
def test_the_deprecated_past_key_values_name_carries_the_cache_with_a_warning(model, inputs, part):
    module, output = (model.model, "last_hidden_state") if part == "model" else (model, "logits")
    next_tokens = torch.tensor([[5, 6], [7, 8]])
    attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(next_tokens)], dim=1)
    whole = inputs | {
        "input_ids": torch.cat([inputs["input_ids"], next_tokens], 1),
        "attention_mask": attention_mask,
    }
    with torch.no_grad():
        expected = getattr(module(**whole), output)[:, -2:]
        cache = module(**inputs, use_cache=True).cache
        with pytest.warns(FutureWarning, match="`past_key_values` is deprecated .* Use `cache` instead"):
            step = module(input_ids=next_tokens, attention_mask=attention_mask, past_key_values=cache)
    torch.testing.assert_close(getattr(step, output), expected, atol=1e-4, rtol=1e-4)


def test_a_saved_checkpoint_generates_greedily_up_to_the_end_of_the_turn(checkpoint):
    config = OmniEmotionForConditionalGeneration.from_pretrained(checkpoint).generation_config
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert (config.do_sample, config.num_beams, config.max_new_tokens) == (False, 1, DEFAULT_MAX_NEW_TOKENS)
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config.pad_token_id == tokenizer.pad_token_id != config.eos_token_id
