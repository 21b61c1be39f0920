"""The multimodal collator: rows of TRL conversations in, a padded batch with labels out."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from processing import OmniEmotionProcessor

if TYPE_CHECKING:
    from .cache import ClipCache

logger = logging.getLogger(__name__)

SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels")


class OmniEmotionDataCollator:
    """Builds a batch with `processor.apply_chat_template(..., return_labels=True)`: the clips are decoded (or
    taken from a `ClipCache`), the placeholders expanded, the rows padded, and `labels` are -100 but on answers.

    `max_length` truncates only the text after the media blocks, never through a placeholder run (the model would
    then get fewer placeholders than features): a longer row is cut with a warning that names it, and a row whose
    media blocks alone are longer is an error.
    """

    def __init__(
        self,
        processor: OmniEmotionProcessor,
        *,
        max_length: int | None = None,
        clip_cache: ClipCache | None = None,
        id_column: str = "id",
    ):
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens or None, got {max_length}.")
        self.processor = processor
        self.max_length = max_length
        self.clip_cache = clip_cache
        self.id_column = id_column
        self.media_token_ids = torch.tensor(
            [
                processor.video_token_id,
                processor.audio_token_id,
                processor.video_start_token_id,
                processor.video_end_token_id,
                processor.audio_start_token_id,
                processor.audio_end_token_id,
            ]
        )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        conversations = []
        for index, example in enumerate(examples):
            if "messages" not in example:
                raise KeyError(
                    f"Row {self._row_id(example, index)} has no 'messages' column (columns: {', '.join(example)}); "
                    "build the rows with dataset_scripts.build_prompts or the phase builders."
                )
            messages = example["messages"]
            conversations.append(self.clip_cache.substitute(messages) if self.clip_cache else messages)
        batch = self.processor.apply_chat_template(
            conversations, tokenize=True, return_dict=True, return_tensors="pt", return_labels=True
        )
        batch = dict(batch)
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            self._truncate(batch, [self._row_id(example, i) for i, example in enumerate(examples)])
        return batch

    def _row_id(self, example: Mapping[str, Any], index: int) -> str:
        return str(example.get(self.id_column) or f"#{index} of the batch")

    def _truncate(self, batch: dict[str, torch.Tensor], row_ids: list[str]) -> None:
        """Cuts each row to `max_length` real tokens after its media blocks and pads the batch again."""
        tokenizer = self.processor.tokenizer
        rows = []
        for row, row_id in enumerate(row_ids):
            real = batch["attention_mask"][row].bool()
            tokens = {key: batch[key][row][real] for key in SEQUENCE_KEYS}
            length = len(tokens["input_ids"])
            if length > self.max_length:
                media = torch.isin(tokens["input_ids"], self.media_token_ids).nonzero()
                media_end = int(media[-1]) + 1 if len(media) else 0
                if media_end > self.max_length:
                    raise ValueError(
                        f"Row {row_id}: its media blocks alone take {media_end} tokens, more than max_length="
                        f"{self.max_length}; raise max_length (an 8-frame clip with 30 s of audio takes about 2,500)."
                    )
                logger.warning(
                    "Row %s: %d tokens cut to max_length=%d (only the text after its media blocks).",
                    row_id,
                    length,
                    self.max_length,
                )
                tokens = {key: value[: self.max_length] for key, value in tokens.items()}
            rows.append(tokens)
        width = max(len(tokens["input_ids"]) for tokens in rows)
        fill = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "labels": -100}
        for key in SEQUENCE_KEYS:
            padded = torch.full((len(rows), width), fill[key], dtype=batch[key].dtype)
            for row, tokens in enumerate(rows):
                values = tokens[key]
                if tokenizer.padding_side == "left":
                    padded[row, width - len(values) :] = values
                else:
                    padded[row, : len(values)] = values
            batch[key] = padded
