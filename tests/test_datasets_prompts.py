"""Phase prompts: TRL conversational rows, reproducible under a seed, and the phase-3 answer parser."""

from __future__ import annotations

import random
from collections import defaultdict

import evaluate
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from dataset_scripts import (
    INSTRUCTION_TASKS,
    SHARED_VOCABULARY,
    SOURCES,
    audio_alignment_example,
    build_instruction_prompts,
    build_prompts,
    classification_example,
    count_tasks,
    face_alignment_example,
    format_emotion_answer,
    format_task_counts,
    instruction_example,
    parse_emotion_answer,
    records_to_dataset_dict,
    shared_classes,
    shared_label,
    validate_records,
)
from dataset_scripts.vocabulary import overlapping_words
from evaluate_metrics import metric_path


def records(count: int = 24, **overrides) -> Dataset:
    sources = ["DFEW", "MAFW", "FERV39K", "CAER", "MER24", "RAVDESS", "AFEW-VA"]
    rows = []
    for index in range(count):
        source = sources[index % len(sources)]
        classes = SOURCES[source].classes
        rows.append(
            {
                "id": f"{source}/{index}",
                "video": f"clips/{index}.mp4",
                "source": source,
                "label": classes[index % len(classes)],
                "open_vocabulary": ["tense", "worried"] if index % 2 else [],
                "reasoning": "Her brows are drawn together and her voice shakes.",
                "intensity": None,
                "review_score": 6.0,
                "split": "train",
            }
            | overrides
        )
    return records_to_dataset_dict(validate_records(rows))["train"]


def question_options(messages: list[dict]) -> list[str]:
    question = messages[0]["content"][1]["text"]
    last = question.splitlines()[-1]
    assert last.startswith("Options: "), question
    return last.removeprefix("Options: ").split(", ")


def answer_text(messages: list[dict]) -> str:
    return messages[1]["content"][0]["text"]


@pytest.fixture(scope="module")
def uar_war():
    return evaluate.load(metric_path("uar_war"), keep_in_memory=True)


def texts(dataset: Dataset) -> list[tuple[str, ...]]:
    return [
        tuple(part.get("text", "") for turn in messages for part in turn["content"])
        for messages in dataset["messages"]
    ]


@pytest.mark.parametrize("formatter", [face_alignment_example, instruction_example, classification_example])
def test_prompts_are_reproducible_under_a_seed(formatter):
    data = records()

    first, again = build_prompts(data, formatter, seed=3), build_prompts(data, formatter, seed=3)
    other = build_prompts(data, formatter, seed=4)

    assert first.to_list() == again.to_list()
    assert texts(first) != texts(other)
    assert (
        build_prompts(data.select(range(5)), formatter, seed=3).to_list() == first.select(range(5)).to_list()
    )


def test_rows_are_trl_conversations_with_one_video_entry():
    row = build_prompts(records(), instruction_example)[0]

    assert [turn["role"] for turn in row["messages"]] == ["user", "assistant"]
    user, assistant = row["messages"]
    assert [part["type"] for part in user["content"]] == ["video", "text"]
    assert user["content"][0]["path"] == "clips/0.mp4"
    assert [part["type"] for part in assistant["content"]] == ["text"]
    assert not any(marker in user["content"][1]["text"] for marker in ("<video>", "<audio>", "<vi_start>"))
    assert {"id", "source", "open_vocabulary"} <= set(row)


def test_conversations_render_with_a_chat_template(tiny_tokenizer):
    row = build_prompts(records(), instruction_example)[1]

    rendered = tiny_tokenizer.apply_chat_template(row["messages"], tokenize=False)

    assert "Emotions: tense, worried<|im_end|>" in rendered


def test_resolved_video_paths_are_used():
    data = records(3).add_column("video_path", ["/data/a.mp4", "/data/b.mp4", "/data/c.mp4"])
    row = build_prompts(data, face_alignment_example)[2]
    assert row["messages"][0]["content"][0]["path"] == "/data/c.mp4"


@pytest.mark.parametrize("source", list(SOURCES))
def test_phase2_lists_6_to_8_distinct_shared_words_with_the_answer(source):
    counts = set()
    for label in SOURCES[source].classes:
        for seed in range(12):
            row = {"id": "r", "source": source, "label": label, "video": "x.mp4"}
            example = face_alignment_example(row, random.Random(seed))

            options = question_options(example["messages"])
            word = shared_label(source, label)
            assert 6 <= len(options) <= 8 and len(set(options)) == len(options)
            assert set(options) <= set(SHARED_VOCABULARY) and options == example["options"]
            assert answer_text(example["messages"]) == f"{word}." and options.count(word) == 1
            assert example["label"] == word and SOURCES[source].classes[example["label_id"]] == label
            counts.add(len(options))
    assert counts == {6, 7, 8}


@pytest.mark.parametrize("source", list(SOURCES))
def test_phase2_distractors_come_from_the_source_before_words_near_the_answer(source):
    classes = set(shared_classes(source))
    for label in SOURCES[source].classes:
        for seed in range(12):
            row = {"id": "r", "source": source, "label": label, "video": "x.mp4"}
            options = set(face_alignment_example(row, random.Random(seed))["options"])

            outside = options - classes
            assert not outside or classes <= options
            assert not outside & overlapping_words(shared_label(source, label))


def test_phase2_option_order_varies_with_the_seed():
    row = {"id": "DFEW/1", "source": "DFEW", "label": "sad", "video": "x.mp4"}
    orders = {tuple(face_alignment_example(row, random.Random(seed))["options"]) for seed in range(10)}
    assert len(orders) == 10


def test_phase2_clip_goes_in_without_its_sound():
    for row in build_prompts(records(7), face_alignment_example):
        assert row["messages"][0]["content"][0]["with_audio"] is False


def test_a_row_without_a_source_class_is_named():
    row = {"id": "DFEW/9", "source": "DFEW", "label": None, "video": "x.mp4"}
    with pytest.raises(ValueError, match=r"Row 'DFEW/9': Label None is not a DFEW class"):
        face_alignment_example(row, random.Random(0))


def test_phase3_answer_is_reasoning_then_labels_that_parse_back():
    prompts = build_prompts(records(), instruction_example)

    for row in prompts:
        answer = row["messages"][1]["content"][0]["text"]
        assert answer.startswith("Her brows are drawn together")
        assert answer.splitlines()[-1].startswith("Emotions: ")
        assert parse_emotion_answer(answer) == row["open_vocabulary"]
    assert prompts[0]["open_vocabulary"] == ["happy"]


@pytest.mark.parametrize("source", ["DFEW", "MAFW"])
def test_evaluation_prompts_list_every_class_shuffled_and_stop_before_the_answer(source):
    data = records(77).filter(lambda row: row["source"] == source)

    prompts = build_prompts(data, classification_example, with_answer=False)

    orders = set()
    for row in prompts:
        options = question_options(row["messages"])
        assert [turn["role"] for turn in row["messages"]] == ["user"]
        assert sorted(options) == sorted(shared_classes(source))
        assert row["messages"][0]["content"][0].get("with_audio") is None
        assert SOURCES[source].classes[row["label_id"]] == row["label"]
        orders.add(tuple(options))
    assert len(orders) > 1
    trained = build_prompts(data, classification_example)
    assert [answer_text(row["messages"]) for row in trained] == [
        f"{shared_label(source, label)}." for label in trained["label"]
    ]


@pytest.mark.parametrize("source", ["DFEW", "MAFW"])
def test_shared_words_score_as_their_own_class_in_uar_war(uar_war, source):
    answers = [f"{word}." for word in shared_classes(source)]

    by_name = uar_war.compute(predictions=answers, references=list(SOURCES[source].classes), dataset=source)
    by_id = uar_war.compute(predictions=answers, references=list(range(len(answers))), dataset=source)

    assert by_name == by_id

    assert by_id == {"uar": 1.0, "war": 1.0, "num_unmapped": 0}


def test_one_emotion_is_one_word_across_sources():
    for source in SOURCES:
        assert len(set(shared_classes(source))) == len(SOURCES[source].classes)
    assert {word for source in SOURCES for word in shared_classes(source)} == set(SHARED_VOCABULARY)
    assert len(SHARED_VOCABULARY) == len(set(SHARED_VOCABULARY))
    assert shared_label("DFEW", "surprise") == shared_label("RAVDESS", "surprised") == "surprised"
    assert shared_label("MAFW", "anxiety") == shared_label("MER24", "worried") == "anxious"
    assert shared_label("RAVDESS", "calm") == "calm"


def test_shared_label_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"Unknown source 'AffWild'"):
        shared_label("AffWild", "happy")
    with pytest.raises(ValueError, match=r"Label 'joy' is not a DFEW class; expected one of happy, sad"):
        shared_label("DFEW", "joy")


def test_phase3_expands_each_record_into_one_row_per_task():
    data = records(14)

    prompts = build_instruction_prompts(data)

    by_record = defaultdict(list)
    for row in prompts:
        by_record[row["id"]].append(row)
    assert list(by_record) == data["id"]
    for record in data:
        rows = by_record[record["id"]]
        assert [row["task"] for row in rows] == list(INSTRUCTION_TASKS)
        assert {row["source"] for row in rows} == {record["source"]}
        word = shared_label(record["source"], record["label"])
        emotions = record["open_vocabulary"] or [word]
        reasoning, words_only, coarse = (answer_text(row["messages"]) for row in rows)
        assert reasoning.startswith(record["reasoning"]) and parse_emotion_answer(reasoning) == emotions
        assert (
            words_only == f"Emotions: {', '.join(emotions)}" and parse_emotion_answer(words_only) == emotions
        )
        assert coarse == f"{word}." and sorted(question_options(rows[2]["messages"])) == sorted(
            shared_classes(record["source"])
        )
        assert (rows[2]["label"], rows[2]["open_vocabulary"]) == (record["label"], None)
        assert rows[0]["open_vocabulary"] == rows[1]["open_vocabulary"] == emotions


def test_phase3_skips_the_tasks_a_record_cannot_answer():
    prompts = build_instruction_prompts(records(4, label=None, reasoning="", open_vocabulary=["calm"]))

    assert prompts["task"] == ["open_vocabulary"] * 4
    assert prompts.features["label"] == Value("string")


def test_phase3_is_reproducible_whatever_the_batching_and_the_tasks():
    data = records()

    first = build_instruction_prompts(data, seed=3)

    assert first.to_list() == build_instruction_prompts(data, seed=3).to_list()
    assert texts(first) != texts(build_instruction_prompts(data, seed=4))
    assert build_instruction_prompts(data.select(range(5)), seed=3).to_list() == first.to_list()[:15]
    alone = build_instruction_prompts(data, seed=3, tasks=["coarse_class"])
    assert alone.to_list() == first.filter(lambda row: row["task"] == "coarse_class").to_list()
    with pytest.raises(ValueError, match=r"Unknown instruction task\(s\) summary"):
        build_instruction_prompts(data, tasks=["reasoning", "summary"])


def test_task_counts_are_reported_beside_the_papers():
    counts = count_tasks(build_instruction_prompts(records(10)))
    report = format_task_counts(counts)

    assert counts == {"reasoning": 10, "open_vocabulary": 10, "coarse_class": 10}
    assert report.splitlines()[1:3] == ["  reasoning              10", "  open_vocabulary        10"]
    assert report.splitlines()[-1].startswith("  total                  30  paper ~100,000 (approximate)")
    with pytest.raises(ValueError, match="no 'task' column"):
        count_tasks(records(2))


def test_phase1_asr_and_captions_from_paths_and_decoded_audio():
    common_voice = Dataset.from_dict(
        {"path": ["a.mp3"], "audio": ["/cv/a.mp3"], "sentence": [" Hello there. "]}
    )
    wavcaps = [
        {"audio": {"array": np.zeros(4, np.float32), "sampling_rate": 16000}, "caption": "Rain on a roof."}
    ]

    asr = build_prompts(common_voice, audio_alignment_example, task="asr")[0]
    caption = audio_alignment_example(wavcaps[0], random.Random(0), task="caption")

    assert asr["messages"][0]["content"][0] == {"type": "audio", "path": "/cv/a.mp3"}
    assert asr["messages"][1]["content"][0]["text"] == "Hello there."
    assert caption["messages"][0]["content"][0] == {
        "type": "audio",
        "array": [0.0] * 4,
        "sampling_rate": 16000,
    }
    assert caption["messages"][1]["content"][0]["text"] == "Rain on a roof."


def test_phase1_sound_labels_from_a_class_label_column():
    features = Features({"audio": Value("string"), "label": ClassLabel(names=["dog barking", "rain"])})
    vggsound = Dataset.from_dict({"audio": ["/v/1.wav", "/v/2.wav"], "label": [1, 0]}, features=features)

    prompts = build_prompts(
        vggsound, audio_alignment_example, task="sound_label", label_names=features["label"].names
    )

    assert [row["messages"][1]["content"][0]["text"] for row in prompts] == ["rain", "dog barking"]
    with pytest.raises(ValueError, match="pass label_names"):
        build_prompts(vggsound, audio_alignment_example, task="sound_label")


def test_phase1_errors_name_the_column():
    rng = random.Random(0)
    with pytest.raises(KeyError, match=r"no column 'sentence'"):
        audio_alignment_example({"audio": "a.wav", "text": "hi"}, rng, task="asr")
    with pytest.raises(ValueError, match=r"column 'audio': cannot make an audio entry from bytes"):
        audio_alignment_example({"audio": b"RIFF", "sentence": "hi"}, rng, task="asr")
    with pytest.raises(ValueError, match=r"Unknown audio task 'music'"):
        audio_alignment_example({"audio": "a.wav"}, rng, task="music")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (format_emotion_answer("She smiles.", ["happy", "relaxed"]), ["happy", "relaxed"]),
        ("He frowns.\nEmotions: Angry, frustrated.", ["angry", "frustrated"]),
        ("Reasoning...\n**Emotions:** sad; lonely", ["sad", "lonely"]),
        ("Emotion labels: ['happy', 'surprised']", ["happy", "surprised"]),
        ("The clip shows joy. Emotions: happy and excited", ["happy", "excited"]),
        ("She is calm.\n\nEmotions:\n- calm\n- content\n\nThat is all.", ["calm", "content"]),
        ("Emotions: happy, Happy, joyful (mild)", ["happy", "joyful"]),
        ("Emotions: anxious\nLater text.\nemotions: nervous, worried", ["nervous", "worried"]),
        ("Emotions: none", []),
        ("happy, relaxed", ["happy", "relaxed"]),
        ("Neutral.", ["neutral"]),
        ("The person seems to be in a good mood. They laugh a lot.", []),
        ("", []),
    ],
)
def test_parse_emotion_answer_reads_model_output_variations(text, expected):
    assert parse_emotion_answer(text) == expected


def test_audio_stored_as_bytes_is_refused_rather_than_read_from_a_name_that_does_not_exist():
    row = {"audio": {"bytes": b"RIFF....", "path": "clip_001.wav"}, "sentence": "Hello."}
    with pytest.raises(ValueError, match="load_audio_source"):
        audio_alignment_example(row, random.Random(0), task="asr")
