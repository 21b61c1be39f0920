"""Phase prompts: TRL conversational rows, reproducible under a seed, and the phase-3 answer parser."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from dataset_scripts import (
    DFEW_CLASSES,
    MAFW_CLASSES,
    SOURCES,
    audio_alignment_example,
    build_prompts,
    classification_example,
    face_alignment_example,
    format_emotion_answer,
    instruction_example,
    parse_emotion_answer,
    records_to_dataset_dict,
    validate_records,
)


def records(count: int = 24) -> Dataset:
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
        )
    return records_to_dataset_dict(validate_records(rows))["train"]


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


def test_every_phase2_question_lists_its_answer_exactly_once():
    prompts = build_prompts(records(), face_alignment_example, seed=7)

    orders = set()
    for row in prompts:
        question = row["messages"][0]["content"][1]["text"]
        answer = row["messages"][1]["content"][0]["text"]
        options = [line[2:] for line in question.splitlines() if line.startswith("- ")]
        classes = SOURCES[row["source"]].classes
        assert answer == row["label"] and options.count(answer) == 1
        assert sorted(options) == sorted(classes) and options == row["options"]
        assert classes[row["label_id"]] == row["label"]
        orders.add(tuple(options))
    assert len(orders) > len(SOURCES)


def test_a_row_without_a_source_class_is_named():
    row = {"id": "DFEW/9", "source": "DFEW", "label": None, "video": "x.mp4"}
    with pytest.raises(ValueError, match=r"Row 'DFEW/9': label None is not a DFEW class"):
        face_alignment_example(row, random.Random(0))


def test_phase3_answer_is_reasoning_then_labels_that_parse_back():
    prompts = build_prompts(records(), instruction_example)

    for row in prompts:
        answer = row["messages"][1]["content"][0]["text"]
        assert answer.startswith("Her brows are drawn together")
        assert answer.splitlines()[-1].startswith("Emotions: ")
        assert parse_emotion_answer(answer) == row["open_vocabulary"]
    assert prompts[0]["open_vocabulary"] == ["happy"]


@pytest.mark.parametrize(("source", "classes"), [("DFEW", DFEW_CLASSES), ("MAFW", MAFW_CLASSES)])
def test_evaluation_prompts_list_classes_in_metric_order_and_stop_before_the_answer(source, classes):
    data = records(21).filter(lambda row: row["source"] == source)

    prompts = build_prompts(data, classification_example, with_answer=False)

    for row in prompts:
        assert [turn["role"] for turn in row["messages"]] == ["user"]
        assert ", ".join(classes) in row["messages"][0]["content"][1]["text"]
        assert classes[row["label_id"]] == row["label"]
    trained = build_prompts(data, classification_example)
    assert [row["messages"][1]["content"][0]["text"] for row in trained] == trained["label"]


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
