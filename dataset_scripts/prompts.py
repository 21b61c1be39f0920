"""Rows -> TRL conversational examples for each training phase, and the phase-3 answer parser.

Every formatter takes one row and a `random.Random` and returns `{"messages": [...], ...}` with
content entries that the processor accepts (it adds the modality markers itself):
`{"type": "video", "path": ...}` for a clip and its sound, the same with `"with_audio": False` for the
clip's frames and faces alone, and `{"type": "audio", ...}` for audio alone. Emotion answers use the
shared vocabulary of `vocabulary.py`, so one emotion is one word whatever the source. `build_prompts`
seeds one RNG per row from `(seed, row index)` and `build_instruction_prompts` one per
`(seed, row index, task)`, so a run is reproducible whatever the batching or number of processes. The
instruction pools are our own phrasings.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from datasets import Dataset, Features, List, Value

from .catalog import get_source
from .emotion_answer import REASONING_QUESTIONS, format_emotion_answer
from .vocabulary import SHARED_VOCABULARY, overlapping_words, shared_classes, shared_label

Example = dict[str, Any]
Formatter = Callable[..., Example]
AudioTask = Literal["asr", "caption", "sound_label"]

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
"""Phase 2 and the DFEW/MAFW classification prompts: the question, followed by a line of options."""

PHASE2_OPTION_COUNTS: tuple[int, int] = (6, 8)
"""A phase-2 question lists between 6 and 8 options (both included), the answer among them."""

OPEN_VOCABULARY_QUESTIONS: tuple[str, ...] = (
    "Which emotions does the person in the video show? List the words only.",
    "Name the emotions you can see and hear in this clip, without explanation.",
    "List every emotion this person expresses, as words separated by commas.",
    "What is the person feeling? Answer with emotion words only.",
    "Give the emotion labels that fit the person in this clip.",
    "Using single words, name the feelings the speaker conveys.",
    "Tag this clip with the emotions of the person in it.",
    "Without reasoning, which emotional states does the person display?",
)

PAPER_INSTRUCTION_COUNT = 100_000
"""The paper's phase-3 figure: about 100K instructions from about 27.6K records (SRE + HRE); the paper
gives it rounded, so it is a scale to compare with, not a target."""


def _user_turn(media: Mapping[str, Any], text: str) -> dict[str, Any]:
    return {"role": "user", "content": [dict(media), {"type": "text", "text": text}]}


def _assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _video(row: Mapping[str, Any], *, with_audio: bool = True) -> dict[str, Any]:
    """The clip entry: `video_path` once `attach_videos` resolved it, else the row's own `video`;
    `with_audio=False` asks the processor for the frames and faces without the clip's sound."""
    entry: dict[str, Any] = {"type": "video", "path": row.get("video_path") or row["video"]}
    if not with_audio:
        entry["with_audio"] = False
    return entry


def _audio(value: Any, where: str) -> dict[str, Any]:
    """An audio entry from a path, a decoded `{"array", "sampling_rate"}` dict, or a `{"path"}` dict."""
    if isinstance(value, str):
        return {"type": "audio", "path": value}
    if isinstance(value, Mapping):
        if value.get("array") is not None:
            array = value["array"]
            samples = array.tolist() if hasattr(array, "tolist") else list(array)
            return {"type": "audio", "array": samples, "sampling_rate": int(value["sampling_rate"])}
        if value.get("bytes") is not None:
            raise ValueError(
                f"{where}: the audio is stored as bytes inside the dataset ({value.get('path')!r} is only its name in "
                "the archive); load it with dataset_scripts.load_audio_source, which writes such audio to files"
            )
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


def _labelled(row: Mapping[str, Any]) -> tuple[str, str]:
    """The row's class in its source's own name and as a shared word; the error names the row."""
    label = row.get("label")
    try:
        return label, shared_label(row["source"], label)
    except ValueError as error:
        raise ValueError(f"Row {row.get('id')!r}: {error}") from None


def _choice_question(rng: random.Random, options: Sequence[str]) -> str:
    return f"{rng.choice(FACE_QUESTIONS)}\nOptions: {', '.join(options)}"


def _face_options(source: str, answer: str, rng: random.Random) -> list[str]:
    """6-8 shared words in random order, `answer` among them (the choice is face_alignment_example's)."""
    classes = shared_classes(source)
    own = [word for word in classes if word != answer]
    close = overlapping_words(answer)
    outside = [word for word in SHARED_VOCABULARY if word not in classes and word not in close]
    rng.shuffle(own)
    rng.shuffle(outside)
    options = [answer, *(own + outside)[: rng.randint(*PHASE2_OPTION_COUNTS) - 1]]
    rng.shuffle(options)
    return options


def face_alignment_example(row: Mapping[str, Any], rng: random.Random) -> Example:
    """Phase 2: a question, then 6-8 shared emotion words as options; the answer is the shared word and a
    full stop. The clip goes in without its sound (phase 2 aligns the visual and face features only).
    `label` (the shared word), `label_id` (in the source's class order) and `options` are kept.

    *(ours)* The distractors are the source's other classes first, topped up from the rest of the
    shared vocabulary only where the source has fewer classes than the drawn count (AFEW-VA's 5,
    MER24's 6, the 7 of DFEW, CAER and FERV39K when 8 are drawn): the source's annotators chose between
    its own classes, so those are certainly wrong for this clip, whereas another source's word may fit
    it too. An outside word is therefore never one that shares a circumplex region with the answer
    (`overlapping_words`), such as "relaxed" for a calm clip.
    """
    label, answer = _labelled(row)
    options = _face_options(row["source"], answer, rng)
    question = _choice_question(rng, options)
    return {
        "messages": [_user_turn(_video(row, with_audio=False), question), _assistant_turn(f"{answer}.")],
        "label": answer,
        "label_id": get_source(row["source"]).classes.index(label),
        "options": options,
    }


def classification_example(
    row: Mapping[str, Any], rng: random.Random, *, with_answer: bool = True
) -> Example:
    """DFEW/MAFW fine-tuning (`with_answer=True`) and evaluation (user turn only, to generate from): the
    phase-2 question over all of the source's classes as shared words, shuffled, so that every class can
    be answered; the full clip, sound included; the answer is the shared word and a full stop.

    `label` keeps the source's own class name and `label_id` its index in the source's class order:
    both are references that `uar_war` reads as they are, and it reads the shared word a model answers
    with back to the same class.
    """
    label, answer = _labelled(row)
    options = list(shared_classes(row["source"]))
    rng.shuffle(options)
    messages = [_user_turn(_video(row), _choice_question(rng, options))]
    if with_answer:
        messages.append(_assistant_turn(f"{answer}."))
    return {"messages": messages, "label": label, "label_id": get_source(row["source"]).classes.index(label)}


def _emotions(row: Mapping[str, Any]) -> list[str]:
    """The open-vocabulary words, or the coarse class as a shared word where a row has none."""
    if row.get("open_vocabulary"):
        return list(row["open_vocabulary"])
    if row.get("label"):
        return [_labelled(row)[1]]
    raise ValueError(f"Row {row.get('id')!r} has neither open_vocabulary nor label to answer with")


def instruction_example(row: Mapping[str, Any], rng: random.Random) -> Example:
    """Phase 3: an open question about the person's emotional state; the answer is the reasoning and the
    open-vocabulary labels. `open_vocabulary` is kept for emer_ov."""
    emotions = _emotions(row)
    answer = format_emotion_answer(row.get("reasoning") or "", emotions)
    return {
        "messages": [_user_turn(_video(row), rng.choice(REASONING_QUESTIONS)), _assistant_turn(answer)],
        "open_vocabulary": emotions,
    }


def open_vocabulary_example(row: Mapping[str, Any], rng: random.Random) -> Example:
    """Phase 3: a question that asks for the emotion words alone; the answer is the `Emotions: a, b`
    line only, which `parse_emotion_answer` reads back. `open_vocabulary` is kept for emer_ov."""
    emotions = _emotions(row)
    answer = format_emotion_answer("", emotions)
    return {
        "messages": [_user_turn(_video(row), rng.choice(OPEN_VOCABULARY_QUESTIONS)), _assistant_turn(answer)],
        "open_vocabulary": emotions,
    }


INSTRUCTION_TASKS: dict[str, Formatter] = {
    "reasoning": instruction_example,
    "open_vocabulary": open_vocabulary_example,
    "coarse_class": classification_example,
}
"""Phase 3's instruction tasks: several instructions per record, as the paper's ~100K from ~27.6K records."""

_NEEDED_FIELD: dict[str, str] = {"reasoning": "reasoning", "coarse_class": "label"}
"""A task is skipped for a record whose field that it answers with is empty (a reasoning task without
reasoning would only repeat the open-vocabulary one)."""

_TASK_COLUMNS: tuple[str, ...] = ("open_vocabulary", "label", "label_id")


def instruction_examples(
    row: Mapping[str, Any], rng: random.Random, *, tasks: Sequence[str] = tuple(INSTRUCTION_TASKS)
) -> list[Example]:
    """Phase 3: one example per task of `tasks` that applies to the record, each with its `task` and
    every column of `_TASK_COLUMNS` (None where its task has none).

    Each task draws from its own RNG, seeded by one draw of `rng` and the task's name, so a task's
    example is the same whichever other tasks are asked for.
    """
    unknown = [task for task in tasks if task not in INSTRUCTION_TASKS]
    if unknown:
        raise ValueError(
            f"Unknown instruction task(s) {', '.join(unknown)}; expected {', '.join(INSTRUCTION_TASKS)}"
        )
    draw = rng.getrandbits(64)
    examples = []
    for task in tasks:
        needed = _NEEDED_FIELD.get(task)
        if needed and not (row.get(needed) or "").strip():
            continue
        example = INSTRUCTION_TASKS[task](row, random.Random(f"{draw}:{task}"))
        examples.append(
            {"messages": example["messages"], "task": task}
            | {column: example.get(column) for column in _TASK_COLUMNS}
        )
    return examples


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


_INSTRUCTION_FEATURES = Features(
    {
        "messages": List(
            {
                "role": Value("string"),
                "content": List({"type": Value("string"), "path": Value("string"), "text": Value("string")}),
            }
        ),
        "task": Value("string"),
        "open_vocabulary": List(Value("string")),
        "label": Value("string"),
        "label_id": Value("int64"),
    }
)
"""Declared, not inferred: a batch in which no record has a label would otherwise fix `label` as null."""


def build_instruction_prompts(
    dataset: Dataset,
    *,
    tasks: Sequence[str] = tuple(INSTRUCTION_TASKS),
    seed: int = 0,
    keep_columns: Sequence[str] = ("id", "source"),
) -> Dataset:
    """Phase 3: expand each record into one row per task of `tasks` that applies to it (see
    `instruction_examples`), seeded by `(seed, row index, task)`; the result holds `messages`, `task`,
    `open_vocabulary`, `label`, `label_id` and those of `keep_columns` the dataset has."""
    kept = [column for column in keep_columns if column in dataset.column_names]
    features = Features({**_INSTRUCTION_FEATURES, **{column: dataset.features[column] for column in kept}})

    def expand(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        expanded: dict[str, list[Any]] = {name: [] for name in features}
        for values, index in zip(zip(*batch.values(), strict=True), indices, strict=True):
            row = dict(zip(batch, values, strict=True))
            for example in instruction_examples(row, random.Random(f"{seed}:{index}"), tasks=tasks):
                for name in features:
                    expanded[name].append(example[name] if name in example else row[name])
        return expanded

    return dataset.map(
        expand,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=features,
        desc="instruction prompts",
    )


def count_tasks(dataset: Dataset) -> dict[str, int]:
    """Rows per task of a `build_instruction_prompts` result (in `INSTRUCTION_TASKS` order) or of a phase-1
    `mix_audio_sources` result (largest first)."""
    if "task" not in dataset.column_names:
        raise ValueError(
            f"The dataset has no 'task' column (columns: {', '.join(dataset.column_names)}); "
            "count the output of build_instruction_prompts or mix_audio_sources"
        )
    counts = dict(Counter(dataset.select_columns(["task"])["task"]).most_common())
    return {**{task: counts[task] for task in INSTRUCTION_TASKS if task in counts}, **counts}


def format_task_counts(counts: Mapping[str, int], title: str = "Phase-3 instructions") -> str:
    """The rows per task and their total, beside the paper's approximate ~100K instructions."""
    total = sum(counts.values())
    width = max(len(name) for name in [*counts, "total"])
    lines = [f"{title}:"]
    lines += [f"  {task:<{width}} {count:>9,}" for task, count in counts.items()]
    share = f" ({100 * total / PAPER_INSTRUCTION_COUNT:.0f}% of it)"
    lines.append(f"  {'total':<{width}} {total:>9,}  paper ~{PAPER_INSTRUCTION_COUNT:,} (approximate){share}")
    return "\n".join(lines)
