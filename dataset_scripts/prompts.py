"""Rows -> TRL conversational examples for each training phase, and the phase-3 answer parser.

Every formatter takes one row and a `random.Random` and returns `{"messages": [...], ...}` with
content entries that the processor accepts: one `{"type": "video", "path": ...}` for a clip and its
sound (the processor adds the modality markers itself), `{"type": "audio", ...}` for audio alone.
`build_prompts` seeds one RNG per row from `(seed, row index)`, so a run is reproducible whatever
the batching or number of processes. The instruction pools are our own phrasings.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from datasets import Dataset

from .catalog import get_source

Example = dict[str, Any]
Formatter = Callable[..., Example]
AudioTask = Literal["asr", "caption", "sound_label"]

ANSWER_PREFIX = "Emotions:"
"""Phase-3 answers end with a line `Emotions: word, word`, which `parse_emotion_answer` reads back."""

AUDIO_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "asr": (
        "Transcribe the speech in this audio.",
        "Write down exactly what the speaker says.",
        "What is being said in this recording? Give the transcript.",
        "Listen to the clip and type out the spoken words.",
        "Provide a word-for-word transcription of the audio.",
        "Turn the speech you hear into text.",
        "Give the exact words spoken in this clip.",
        "Write out the sentence the speaker says.",
    ),
    "caption": (
        "Describe what you hear in this audio.",
        "Write a short caption for this sound recording.",
        "What is happening in this audio? Answer in one sentence.",
        "Summarise the sounds in this clip.",
        "Give a brief description of the audio.",
        "Listen and describe the acoustic scene.",
        "Caption this audio clip.",
        "In a sentence, what can be heard here?",
    ),
    "sound_label": (
        "What sound is this? Answer with its label.",
        "Name the main sound source in this clip.",
        "Classify the sound in this recording.",
        "Which category of sound do you hear?",
        "Identify the sound event in this audio.",
        "What is making this sound? Give a short label.",
        "Label the audio with the sound it contains.",
        "Give the class of the sound in this clip.",
    ),
}

AUDIO_TEXT_COLUMNS: dict[str, str] = {"asr": "sentence", "caption": "caption", "sound_label": "label"}
"""The answer column of each task in the Hub datasets' own schemas: CommonVoice `sentence`, WavCaps
`caption`, VGGSound `label`."""

FACE_QUESTIONS: tuple[str, ...] = (
    "Which emotion does the person in the video show?",
    "What is the main emotion of the person in this clip?",
    "Looking at the face, which emotion fits best?",
    "Pick the emotion that the person expresses.",
    "What is this person feeling?",
    "Which of these emotions best describes the person's expression?",
    "Judge the person's facial expression: which emotion is it?",
    "Select the emotion shown by the person in the video.",
)

REASONING_QUESTIONS: tuple[str, ...] = (
    "Describe the emotional state of the person in the video and explain the cues behind it.",
    "How does the person feel? Reason from their face, their voice and what they say.",
    "What emotions is this person experiencing, and what gives them away?",
    "Analyse the person's emotions using their expression, tone of voice and words.",
    "Explain what the person is feeling and why you think so.",
    "What is going on emotionally for the person in this clip? Walk through the evidence.",
    "Interpret the person's emotional state from what you see and hear.",
    "Identify the person's emotions and justify them with the visual and audio cues.",
)

CLASSIFICATION_QUESTIONS: tuple[str, ...] = (
    "Which emotion does the person in the video express? Choose from: {classes}.",
    "Classify the person's emotion as one of: {classes}.",
    "From the following emotions, pick the one the person shows: {classes}.",
    "What is the person's emotion? Possible answers: {classes}.",
    "Recognise the emotion in this clip. Options: {classes}.",
    "Name the emotion of the person in the video, using one of: {classes}.",
)


def _user_turn(media: Mapping[str, Any], text: str) -> dict[str, Any]:
    return {"role": "user", "content": [dict(media), {"type": "text", "text": text}]}


def _assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _video(row: Mapping[str, Any]) -> dict[str, str]:
    """The clip entry: `video_path` once `attach_videos` resolved it, else the row's own `video`."""
    return {"type": "video", "path": row.get("video_path") or row["video"]}


def _audio(value: Any, where: str) -> dict[str, Any]:
    """An audio entry from a path, a decoded `{"array", "sampling_rate"}` dict, or a `{"path"}` dict."""
    if isinstance(value, str):
        return {"type": "audio", "path": value}
    if isinstance(value, Mapping):
        if value.get("array") is not None:
            array = value["array"]
            samples = array.tolist() if hasattr(array, "tolist") else list(array)
            return {"type": "audio", "array": samples, "sampling_rate": int(value["sampling_rate"])}
        if value.get("path"):
            return {"type": "audio", "path": value["path"]}
    raise ValueError(
        f"{where}: cannot make an audio entry from {type(value).__name__}; expected a path, a dict with "
        "'array' and 'sampling_rate', or a dict with 'path' (cast the column with Audio(decode=False) to get one)"
    )


def audio_alignment_example(
    row: Mapping[str, Any],
    rng: random.Random,
    *,
    task: AudioTask,
    audio_column: str = "audio",
    text_column: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Example:
    """Phase 1: audio alone, an ASR / captioning / sound-label instruction, the reference as the answer.

    `label_names` turns integer labels (a `ClassLabel` column, as in VGGSound) into their names.
    """
    if task not in AUDIO_INSTRUCTIONS:
        raise ValueError(f"Unknown audio task {task!r}; expected one of {', '.join(AUDIO_INSTRUCTIONS)}")
    text_column = text_column or AUDIO_TEXT_COLUMNS[task]
    for column in (audio_column, text_column):
        if column not in row:
            raise KeyError(
                f"Row has no column {column!r} (columns: {', '.join(row)}); pass audio_column/text_column"
            )
    answer = row[text_column]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if label_names is None:
            raise ValueError(
                f"Column {text_column!r} holds class ids; pass label_names=ds.features[...].names"
            )
        answer = label_names[answer]
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"Column {text_column!r} should hold non-empty text, got {answer!r}")
    media = _audio(row[audio_column], f"column {audio_column!r}")
    return {
        "messages": [_user_turn(media, rng.choice(AUDIO_INSTRUCTIONS[task])), _assistant_turn(answer.strip())]
    }


def _labelled(row: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    classes = get_source(row["source"]).classes
    label = row.get("label")
    if label not in classes:
        raise ValueError(
            f"Row {row.get('id')!r}: label {label!r} is not a {row['source']} class ({', '.join(classes)})"
        )
    return classes, label


def face_alignment_example(row: Mapping[str, Any], rng: random.Random) -> Example:
    """Phase 2: a multiple-choice question over the row's source classes, shuffled per row; the answer
    is the label word. `label`, `label_id` (in the source's class order) and `options` are kept."""
    classes, label = _labelled(row)
    options = list(classes)
    rng.shuffle(options)
    listed = "\n".join(f"- {option}" for option in options)
    question = f"{rng.choice(FACE_QUESTIONS)}\nOptions:\n{listed}\nAnswer with one word from the options."
    return {
        "messages": [_user_turn(_video(row), question), _assistant_turn(label)],
        "label": label,
        "label_id": classes.index(label),
        "options": options,
    }


def format_emotion_answer(reasoning: str, emotions: Sequence[str]) -> str:
    """The phase-3 answer: the reasoning, a blank line, then `Emotions: a, b`."""
    line = f"{ANSWER_PREFIX} {', '.join(emotions)}"
    return f"{reasoning.strip()}\n\n{line}" if reasoning.strip() else line


def instruction_example(row: Mapping[str, Any], rng: random.Random) -> Example:
    """Phase 3: an open question about the person's emotional state; the answer is the reasoning and the
    open-vocabulary labels (the coarse label where a row has none). `open_vocabulary` is kept for emer_ov."""
    emotions = list(row.get("open_vocabulary") or ([row["label"]] if row.get("label") else []))
    if not emotions:
        raise ValueError(f"Row {row.get('id')!r} has neither open_vocabulary nor label to answer with")
    answer = format_emotion_answer(row.get("reasoning") or "", emotions)
    return {
        "messages": [_user_turn(_video(row), rng.choice(REASONING_QUESTIONS)), _assistant_turn(answer)],
        "open_vocabulary": emotions,
    }


def classification_example(
    row: Mapping[str, Any], rng: random.Random, *, with_answer: bool = True
) -> Example:
    """DFEW/MAFW fine-tuning (`with_answer=True`) and evaluation (user turn only, to generate from): the
    classes in the metric's order, the label as the answer; `label` and `label_id` are kept for UAR/WAR."""
    classes, label = _labelled(row)
    question = rng.choice(CLASSIFICATION_QUESTIONS).format(classes=", ".join(classes))
    messages = [_user_turn(_video(row), f"{question} Answer with a single word.")]
    if with_answer:
        messages.append(_assistant_turn(label))
    return {"messages": messages, "label": label, "label_id": classes.index(label)}


def build_prompts(
    dataset: Dataset,
    formatter: Formatter,
    *,
    seed: int = 0,
    keep_columns: Sequence[str] = ("id", "source"),
    **formatter_kwargs: Any,
) -> Dataset:
    """Map `formatter` over `dataset` with one RNG per row seeded by `(seed, index)`; the result holds
    `messages`, the formatter's extra columns and those of `keep_columns` the dataset has."""

    def format_row(row: dict[str, Any], index: int) -> Example:
        return formatter(row, random.Random(f"{seed}:{index}"), **formatter_kwargs)

    dropped = [column for column in dataset.column_names if column not in keep_columns]
    return dataset.map(
        format_row, with_indices=True, remove_columns=dropped, desc=getattr(formatter, "__name__", "prompts")
    )


_MARKER = re.compile(r"emotions?(?:[ \t]+(?:labels?|words?))?[ \t*_]*[:：]", re.IGNORECASE)
_SEPARATORS = re.compile(r"[,;/|、，；\n]|\band\b|\bor\b|&", re.IGNORECASE)
_NO_EMOTION = {"none", "n/a", "na", "unknown", "no emotion", "nothing"}


def _words(listing: str) -> list[str]:
    listing = re.sub(r"\([^)]*\)", " ", listing)
    words = []
    for item in _SEPARATORS.split(listing):
        word = re.sub(r"^[\s\-*•#>\d.)]+", "", item)
        word = word.strip(" \t\"'`‘’“”[]{}*_.!?:").lower()
        if word and word not in _NO_EMOTION and len(word.split()) <= 4 and word not in words:
            words.append(word)
    return words


def parse_emotion_answer(text: str) -> list[str]:
    """The emotion words of a generated phase-3 answer, lower-cased and de-duplicated in order.

    Reads the last `Emotions: ...` (also `Emotion labels:`, bold or bulleted, inline or followed by a
    bullet list, a Python-style list); an answer that is only a short list of words is read as one.
    Anything else gives `[]`, which emer_ov scores as an empty prediction.
    """
    markers = list(_MARKER.finditer(text))
    if markers:
        rest = text[markers[-1].end() :]
        line, _, following = rest.partition("\n")
        if line.strip(" \t*_"):
            return _words(line)
        bullets = []
        for candidate in following.splitlines():
            if not candidate.strip():
                if bullets:
                    break
                continue
            if not re.match(r"\s*(?:[-*•]|\d+[.)])\s*", candidate):
                break
            bullets.append(candidate)
        return _words("\n".join(bullets))
    stripped = text.strip()
    looks_like_list = "\n" not in stripped and not re.search(r"[.!?]\s+\S", stripped)
    words = _words(stripped) if looks_like_list else []
    return words if all(len(word.split()) <= 3 for word in words) and len(words) <= 10 else []
