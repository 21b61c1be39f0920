"""Shared fixtures: tiny tokenizers and paths, built in the test session (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omni_emotion.synthetic.tiny import build_tiny_tokenizer


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
    from omni_emotion.synthetic.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny")


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """`checkpoint` loaded for inference on the CPU: (model, processor)."""
    from omni_emotion.analyze import load_for_inference

    return load_for_inference(checkpoint, device="cpu")
