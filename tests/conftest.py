"""Shared fixtures: tiny tokenizers and paths, built in the test session (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The person looks happy and relaxed, smiling while speaking softly.",
    "She frowns, her voice trembles: sadness, worry and fear.",
    "He shouts angrily; the tone is harsh and the brows are lowered.",
    "Describe the emotional state of the person in the video.",
    "A calm, neutral expression with no clear emotional cue.",
    "Surprise, disgust, contempt, anxiety, helplessness, disappointment.",
] * 20


def build_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with Qwen2's chat markup, trained on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>", "<video>"],
    )
    fast.chat_template = QWEN2_CHAT_TEMPLATE
    return fast


@pytest.fixture
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def emotion_wheel_dir() -> Path | None:
    """The real emotion-wheel resources: $OMNI_EMOTION_WHEEL_DIR, else ../shared/emotion_wheel."""
    candidates = [
        os.environ.get("OMNI_EMOTION_WHEEL_DIR"),
        Path(__file__).parents[2] / "shared" / "emotion_wheel",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "wheel1.xlsx").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random model and its processor saved as `omni-emotion assemble` saves them (one per test module)."""
    from training_fixtures import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny")


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """`checkpoint` loaded for inference on the CPU: (model, processor)."""
    from omni_emotion.analyze import load_for_inference

    return load_for_inference(checkpoint, device="cpu")
