"""The training collator: a padded batch with labels; truncation only after the media blocks; the CLI entry."""

from __future__ import annotations

import logging

import pytest
import torch

from omni_emotion.cli import build_parser
from omni_emotion.synthetic import media as media_factory
from omni_emotion.synthetic.tiny import tiny_config, tiny_processor
from omni_emotion.training import OmniEmotionDataCollator


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media_factory.write_clip(tmp_path_factory.mktemp("collator") / "face.mp4", seconds=1.0)


@pytest.fixture
def processor(tiny_tokenizer):
    return tiny_processor(tiny_tokenizer, tiny_config())


def row(clip, answer: str, row_id: str) -> dict:
    return {
        "id": row_id,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "video", "path": str(clip)}, {"type": "text", "text": "Mood?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def test_a_batch_has_labels_on_the_answers_only(processor, clip):
    batch = OmniEmotionDataCollator(processor)([row(clip, "Happy.", "a"), row(clip, "Sad and tired.", "b")])
    assert batch["labels"].shape == batch["input_ids"].shape
    answer = batch["labels"][1][batch["labels"][1] != -100]
    assert processor.decode(answer) == "Sad and tired.<|im_end|>"
    assert batch["pixel_values_videos"].shape[0] == 2


def test_truncation_cuts_only_the_text_after_the_media_and_names_the_row(processor, clip, caplog):
    long_answer = "She smiles widely while speaking softly. " * 20
    full = OmniEmotionDataCollator(processor)([row(clip, long_answer, "long-one")])
    ids = full["input_ids"][0]
    short = OmniEmotionDataCollator(processor)([row(clip, "Calm.", "short-one")])["input_ids"].shape[1]
    max_length = short  # the short row fits exactly; the long one loses most of its answer
    collator = OmniEmotionDataCollator(processor, max_length=max_length)
    with caplog.at_level(logging.WARNING):
        batch = collator([row(clip, long_answer, "long-one"), row(clip, "Calm.", "short-one")])
    assert "long-one" in caplog.text and "short-one" not in caplog.text
    assert batch["input_ids"].shape[1] == max_length
    assert torch.equal(batch["input_ids"][0], ids[:max_length])
    assert (batch["input_ids"][0] == processor.video_token_id).sum() == (
        ids == processor.video_token_id
    ).sum()
    assert (batch["labels"][0] != -100).sum() > 0


def test_a_row_whose_media_alone_exceed_max_length_is_an_error(processor, clip):
    with pytest.raises(ValueError, match=r"Row too-long: its media blocks alone take \d+ tokens"):
        OmniEmotionDataCollator(processor, max_length=20)([row(clip, "Happy.", "too-long")])


def test_rows_without_messages_are_named(processor):
    with pytest.raises(KeyError, match="Row x has no 'messages'"):
        OmniEmotionDataCollator(processor)([{"id": "x", "text": "hello"}])


def test_the_train_command_passes_every_argument_to_the_recipe_parser():
    args = build_parser().parse_args(["train", "recipes/phase3_instruct.yaml", "--learning_rate", "2e-5"])
    assert args.recipe_arguments == ["recipes/phase3_instruct.yaml", "--learning_rate", "2e-5"]
