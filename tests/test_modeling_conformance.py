"""The model-level behaviours transformers' own model tests check for every model of the library, on ours: attention
implementations, batching, hidden states and attentions, resized and tied embeddings, gradient checkpointing,
`device_map="auto"`. The deprecated cache name is in test_generation.py, `device_map` placement in
test_modeling_loading.py."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from tiny_models import clip_alone, clip_inputs

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.synthetic.tiny import tiny_config

FUSIONS = ["clip_concat", "frame_concat", "frame_cross_attention"]
SUB_CONFIGS = ("text_config", "vision_config", "audio_config", "face_config")


def build(**overrides) -> OmniEmotionForConditionalGeneration:
    torch.manual_seed(0)
    return OmniEmotionForConditionalGeneration(tiny_config(**overrides)).eval()


def tied_overrides(tied: bool) -> dict:
    """The configuration fields that tie (or untie) the LM head to the input embeddings, as the presets do."""
    text_config = tiny_config().text_config.to_dict() | {"tie_word_embeddings": tied}
    return {"text_config": text_config, "tie_word_embeddings": tied}


def logits_of(model: OmniEmotionForConditionalGeneration, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@contextmanager
def transformers_warnings() -> Iterator[list[str]]:
    """Collects what transformers logs at warning level and the Python warnings raised inside the block."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(warning.message) for warning in caught)
    finally:
        library_logger.removeHandler(handler)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_set_attn_implementation_reaches_every_sub_model_without_warnings(implementation):
    model = build(
        fusion="frame_cross_attention", attn_implementation="sdpa" if implementation == "eager" else "eager"
    )
    with transformers_warnings() as messages:
        model.set_attn_implementation(implementation)
    assert messages == []
    # The top-level setting is the one the fusion's cross-attention follows.
    assert model.config._attn_implementation == implementation
    assert {name: getattr(model.config, name)._attn_implementation for name in SUB_CONFIGS} == dict.fromkeys(
        SUB_CONFIGS, implementation
    )


def test_eager_and_sdpa_give_the_same_logits():
    model = build(fusion="frame_cross_attention", attn_implementation="eager")
    inputs = clip_inputs(model)
    # A padding position attends to nothing: its logits are meaningless.
    real = inputs["attention_mask"].bool()
    eager = logits_of(model, inputs)[real]
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(logits_of(model, inputs)[real], eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["flash_attention_2", "flex_attention"])
def test_the_face_tower_answers_attention_without_additive_bias_with_sdpa(implementation):
    # Swin's relative-position bias is an additive mask: flash attention cannot take it, so the face tower runs SDPA.
    model = build()
    assert model.model.face_encoder.get_correct_attn_implementation(implementation) == "sdpa"
    model.set_attn_implementation({"face_config": implementation})
    assert model.config.face_config._attn_implementation == "sdpa"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_row_of_a_padded_batch_gives_the_logits_of_the_clip_alone(fusion):
    model = build(fusion=fusion)
    inputs = clip_inputs(model)
    batched = logits_of(model, inputs)
    for row in range(2):
        alone = logits_of(model, clip_alone(inputs, row))[0]
        torch.testing.assert_close(batched[row, -alone.shape[0] :], alone, atol=1e-4, rtol=1e-4)


def test_hidden_states_and_attentions_have_the_decoder_shapes():
    model = build(attn_implementation="eager")
    inputs = clip_inputs(model)
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
    text = model.config.text_config
    batch, length = inputs["input_ids"].shape
    assert len(outputs.hidden_states) == text.num_hidden_layers + 1  # the embeddings, then each layer
    assert {tuple(state.shape) for state in outputs.hidden_states} == {(batch, length, text.hidden_size)}
    assert len(outputs.attentions) == text.num_hidden_layers
    assert {tuple(weights.shape) for weights in outputs.attentions} == {
        (batch, text.num_attention_heads, length, length)
    }
    torch.testing.assert_close(
        outputs.attentions[0].sum(-1), torch.ones(batch, text.num_attention_heads, length)
    )


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_resize_token_embeddings_keeps_the_old_rows_and_the_tie(tied):
    model = build(**tied_overrides(tied))
    old_vocab = model.config.text_config.vocab_size
    old_embeddings = model.get_input_embeddings().weight.clone()
    old_head = model.lm_head.weight.clone()
    model.resize_token_embeddings(old_vocab + 8)
    assert model.config.text_config.vocab_size == old_vocab + 8
    assert torch.equal(model.get_input_embeddings().weight[:old_vocab], old_embeddings)
    assert torch.equal(model.lm_head.weight[:old_vocab], old_head)
    assert (model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()) is tied
    assert logits_of(model, clip_inputs(model)).shape[-1] == old_vocab + 8


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_tied_and_untied_heads_survive_save_and_load(tied, tmp_path):
    model = build(**tied_overrides(tied))
    model.save_pretrained(tmp_path)
    loaded = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path).eval()
    shares = loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert shares is tied
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    inputs = clip_inputs(model)
    assert torch.equal(logits_of(loaded, inputs), logits_of(model, inputs))


def test_non_reentrant_gradient_checkpointing_gives_the_same_gradients():
    def gradients(model: OmniEmotionForConditionalGeneration) -> dict[str, torch.Tensor]:
        model.train()
        inputs = clip_inputs(model)
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        return {
            name: parameter.grad for name, parameter in model.named_parameters() if parameter.grad is not None
        }

    expected = gradients(build(fusion="frame_cross_attention"))
    model = build(fusion="frame_cross_attention")
    model.activation_checkpointing_enable({"use_reentrant": False})
    assert model.model.language_model.layers[0].gradient_checkpointing
    assert model.model.audio_tower.layers[0].gradient_checkpointing
    checkpointed = gradients(model)
    assert checkpointed.keys() == expected.keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


def test_a_device_map_auto_model_generates_the_same_tokens(tmp_path):
    model = build()
    model.save_pretrained(tmp_path)
    loaded = OmniEmotionForConditionalGeneration.from_pretrained(tmp_path, device_map="auto").eval()
    clip = clip_alone(clip_inputs(model), 0)
    with torch.no_grad():
        expected = model.generate(**clip, max_new_tokens=4, do_sample=False)
        assert torch.equal(loaded.generate(**clip, max_new_tokens=4, do_sample=False), expected)
