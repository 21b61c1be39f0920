"""`omni-emotion evaluate`: DFEW, MAFW, EMER-OV and EMER end to end on a tiny checkpoint and mini-benchmarks made
here, with scripted judges (a Python callable, and an OpenAI-compatible server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from chat_server import ChatCompletionsServer
from training_fixtures import DFEW_TEST, write_sources

from omni_emotion import analyze as analyze_module
from omni_emotion.analyze import analyze
from omni_emotion.cli import build_parser
from omni_emotion.evaluate import (
    FOLDS,
    PAPER_FIGURES,
    BenchmarkDataError,
    PredictionsFileError,
    evaluate_classification,
    evaluate_open_vocabulary,
    evaluate_reasoning,
    main_from_args,
    read_emer,
    read_emer_ov,
)
from omni_emotion.judge import Judge, JudgeError, load_judge, parse_synonym_groups
from omni_emotion.synthetic.media import write_clip

NEW_TOKENS = 3


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """DFEW with all 5 folds (each a copy of the fixture's fold 1) and MAFW with fold 1 only."""
    made = write_sources(tmp_path_factory.mktemp("sources"))
    for split in ("train", "test"):
        folder = made["DFEW"] / f"EmoLabel_DataSplit/{split}(single-labeled)"
        for fold in FOLDS[1:]:
            shutil.copy(folder / "set_1.csv", folder / f"set_{fold}.csv")
    return made


@pytest.fixture(scope="module")
def emer_ov_data(sources, tmp_path_factory) -> Path:
    """An EMER-OV folder: `emer_ov.csv` (name, openset) and its clips in video/."""
    folder = tmp_path_factory.mktemp("emer_ov")
    (folder / "video").mkdir()
    clip = sources["DFEW"] / "Clip/original/00007.mp4"
    for name in ("sample_a", "sample_b"):
        shutil.copy(clip, folder / "video" / f"{name}.mp4")
    (folder / "emer_ov.csv").write_text('name,openset\nsample_a,"happy, relaxed"\nsample_b,"[\'sad\']"\n')
    return folder


def _answering(monkeypatch, *answers: str) -> list[list[str]]:
    """Makes the generated answers `answers`, clip after clip in order (the last one repeated), recording the prompts
    of each generation call."""
    calls: list[list[str]] = []

    def generate(model, processor, clips, prompts, max_new_tokens):
        calls.append(list(prompts))
        done = sum(len(call) for call in calls[:-1])
        return [answers[min(done + index, len(answers) - 1)] for index in range(len(clips))]

    monkeypatch.setattr(analyze_module, "_generate", generate)
    return calls


def _lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- analyze with one prompt per clip ------------------------------------------------------------------------------


def test_analyze_asks_each_clip_its_own_prompt(loaded, sources, monkeypatch):
    model, processor = loaded
    calls = []

    def echo(model, processor, clips, prompts, max_new_tokens):
        calls.append(list(prompts))
        return list(prompts)

    monkeypatch.setattr(analyze_module, "_generate", echo)
    clip = str(sources["DFEW"] / "Clip/original/00007.mp4")
    results = list(
        analyze([clip] * 3, model, processor, batch_size=2, prompt=["one", "two", "three"], prefetch=1)
    )
    assert [result.raw_text for result in results] == ["one", "two", "three"]
    assert calls == [["one", "two"], ["three"]]
    with pytest.raises(ValueError, match="one prompt per input: 3 inputs, 2 prompts"):
        list(analyze([clip] * 3, model, processor, prompt=["one", "two"]))


# -- DFEW / MAFW ---------------------------------------------------------------------------------------------------


def test_dfew_runs_every_fold_and_writes_predictions_and_summary(loaded, sources, tmp_path):
    model, processor = loaded
    report = evaluate_classification(
        model,
        processor,
        "dfew",
        sources["DFEW"],
        batch_size=2,
        max_new_tokens=NEW_TOKENS,
        output_dir=tmp_path,
        progress=False,
    )
    assert sorted(report.folds) == list(FOLDS)
    assert report.samples == len(FOLDS) * len(DFEW_TEST)
    for scores in [report.scores, *report.folds.values()]:
        assert 0.0 <= scores["uar"] <= 100.0 and 0.0 <= scores["war"] <= 100.0
    assert report.scores["war"] == pytest.approx(sum(f["war"] for f in report.folds.values()) / len(FOLDS))
    assert not report.notes  # all 5 folds: the paper's protocol

    predictions, summary = (tmp_path / "dfew_predictions.jsonl", tmp_path / "dfew_summary.json")
    assert report.files == [str(predictions), str(summary)]
    lines = _lines(predictions)
    assert len(lines) == report.samples
    assert {line["fold"] for line in lines} == set(FOLDS)
    assert all(isinstance(line["correct"], bool) and line["error"] is None for line in lines)
    assert all(Path(line["path"]).is_file() and "Options:" in line["prompt"] for line in lines)
    saved = json.loads(summary.read_text())
    assert saved["scores"] == report.scores and saved["paper"] == PAPER_FIGURES["dfew"]

    table = report.table()
    assert "68.80" in table and "78.35" in table and "mean of 5" in table


def test_dfew_scores_and_per_sample_correctness_agree(loaded, sources, tmp_path, monkeypatch):
    model, processor = loaded
    calls = _answering(monkeypatch, "fear.")  # fold 1's test clips: 00007 is fear, 00008 happy
    report = evaluate_classification(
        model, processor, "DFEW", sources["DFEW"], folds=1, output_dir=tmp_path, progress=False
    )
    assert report.folds == {1: {"uar": 50.0, "war": 50.0, "num_unmapped": 0}}
    assert report.scores == {"uar": 50.0, "war": 50.0}
    lines = _lines(tmp_path / "dfew_predictions.jsonl")
    assert [(line["id"], line["predicted"], line["correct"]) for line in lines] == [
        ("DFEW/00007", "fear", True),
        ("DFEW/00008", "fear", False),
    ]
    # Every class is an option, in an order that is reproducible and differs between clips.
    (prompts,) = calls
    assert all(
        word in prompt
        for prompt in prompts
        for word in ("happy", "sad", "neutral", "angry", "surprised", "fear")
    )
    assert report.notes and "mean of the 5 official folds" in report.notes[0]
    again = evaluate_classification(model, processor, "dfew", sources["DFEW"], folds=[1], progress=False)
    assert calls[1] == prompts and again.scores == report.scores


def test_mafw_runs_one_fold(loaded, sources, tmp_path):
    model, processor = loaded
    report = evaluate_classification(
        model, processor, "mafw", sources["MAFW"], folds=1, max_new_tokens=NEW_TOKENS, output_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    assert list(report.folds) == [1] and report.samples == 1
    assert 0.0 <= report.scores["uar"] <= 100.0 and 0.0 <= report.scores["war"] <= 100.0
    assert (tmp_path / "mafw_summary.json").is_file() and len(
        _lines(tmp_path / "mafw_predictions.jsonl")
    ) == 1
    assert "53.81" in report.table() and "64.23" in report.table()


def test_a_fold_outside_the_official_ones_is_refused(loaded, sources):
    with pytest.raises(ValueError, match="official folds"):
        evaluate_classification(*loaded, "dfew", sources["DFEW"], folds=6)
    with pytest.raises(ValueError, match="classification benchmarks"):
        evaluate_classification(*loaded, "ferv39k", sources["DFEW"])


# -- EMER-OV -------------------------------------------------------------------------------------------------------


def test_emer_ov_layout_is_read_and_missing_clips_are_named(emer_ov_data, tmp_path):
    clips = read_emer_ov(emer_ov_data)
    assert [(clip.name, clip.reference) for clip in clips] == [
        ("sample_a", "happy, relaxed"),
        ("sample_b", "['sad']"),
    ]
    assert read_emer_ov(emer_ov_data / "emer_ov.csv") == clips
    bad = tmp_path / "bad.csv"
    bad.write_text("name,words\nsample_a,happy\n")
    with pytest.raises(BenchmarkDataError, match="`name` and openset or open_vocabulary or reference"):
        read_emer_ov(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("name,openset\nnowhere_1,happy\nnowhere_2,sad\n")
    with pytest.raises(FileNotFoundError, match=r"2 EMER-OV clip.*nowhere_1, nowhere_2"):
        read_emer_ov(missing)


@pytest.fixture
def wheel_dir(emotion_wheel_dir):
    if emotion_wheel_dir is None:
        pytest.skip("emotion-wheel resources not found: set OMNI_EMOTION_WHEEL_DIR")
    return emotion_wheel_dir


def test_emer_ov_with_the_wheel_end_to_end(loaded, emer_ov_data, wheel_dir, tmp_path):
    model, processor = loaded
    report = evaluate_open_vocabulary(
        model, processor, emer_ov_data, wheel_dir=wheel_dir, max_new_tokens=NEW_TOKENS, output_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    assert report.samples == 2 and report.failed == 0
    for scores in report.levels.values():
        assert all(0.0 <= value <= 100.0 for value in scores.values())
    assert report.scores == report.levels["level1"]
    assert len(_lines(tmp_path / "emer_ov_predictions.jsonl")) == 2
    assert json.loads((tmp_path / "emer_ov_summary.json").read_text())["paper"] == PAPER_FIGURES["emer-ov"]
    table = report.table()
    assert all(figure in table for figure in ("65.9", "61.3", "70.6")) and "LLM judge" in table


def test_emer_ov_reads_the_words_of_each_answer(loaded, emer_ov_data, wheel_dir, tmp_path, monkeypatch):
    model, processor = loaded
    calls = _answering(monkeypatch, "She beams.\n\nEmotions: happy, relaxed")
    report = evaluate_open_vocabulary(
        model, processor, emer_ov_data, wheel_dir=wheel_dir, output_dir=tmp_path
    )
    assert calls[0][0].startswith("Which emotions does the person in the video show?")
    lines = _lines(tmp_path / "emer_ov_predictions.jsonl")
    assert [line["predicted"] for line in lines] == [["happy", "relaxed"], ["happy", "relaxed"]]
    # The first clip is answered exactly, the second not at all: precision and recall are each one half.
    assert report.scores["precision"] == pytest.approx(50.0) and report.scores["recall"] == pytest.approx(
        50.0
    )


# -- command line --------------------------------------------------------------------------------------------------


def _args(*words: str):
    return build_parser(with_arguments=["evaluate"]).parse_args(["evaluate", *words])


def test_the_command_line_runs_a_benchmark_in_process(checkpoint, sources, tmp_path, capsys):
    args = _args(
        "--benchmark", "mafw", "--data", str(sources["MAFW"]), "--model", str(checkpoint), "--fold", "1",
        "--device", "cpu", "--max-new-tokens", "2", "--output-dir", str(tmp_path), "--no-progress",
    )  # fmt: skip
    assert main_from_args(args) == 0
    printed = capsys.readouterr().out
    assert "MAFW" in printed and "53.81" in printed and "64.23" in printed
    assert (tmp_path / "mafw_predictions.jsonl").is_file() and (tmp_path / "mafw_summary.json").is_file()


def test_the_command_line_names_missing_data_and_bad_arguments(checkpoint, tmp_path, capsys):
    args = _args("--benchmark", "dfew", "--data", str(tmp_path / "absent"), "--model", str(checkpoint))
    assert main_from_args(args) == 2
    assert "omni-emotion evaluate: error:" in capsys.readouterr().err
    args = _args("--benchmark", "emer-ov", "--data", str(tmp_path), "--model", str(checkpoint))
    assert main_from_args(args) == 2  # no emer_ov.csv: refused before the model is loaded
    args = _args("--benchmark", "emer-ov", "--data", str(tmp_path), "--model", str(checkpoint), "--fold", "1")
    assert main_from_args(args) == 2
    assert "--fold applies to dfew and mafw only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--benchmark", "dfew", "--data", "x", "--model", "y", "--fold", "6")
    with pytest.raises(SystemExit):
        _args("--benchmark", "emer-ov", "--data", "x", "--model", "y", "--grouping", "thesaurus")


# -- scripted judges -----------------------------------------------------------------------------------------------


def scripted_judge(prompt: str) -> str:
    """Replies as a judge would to our EMER-OV grouping prompt and to emer_reasoning's prompts, per sample."""
    if "Sort them into groups" in prompt:
        if '"relaxed"' in prompt:
            return 'Groups: [["happy", "joyful"], ["relaxed", "calm"]]'
        if '"tired"' in prompt:
            return '```json\n[["sad"], ["tired"], ["angry"]]\n```'
        return "They name the same emotion."  # no list of groups: unreadable
    if "List the emotions" in prompt:
        return "happy" if "smile" in prompt else "angry"
    if "Reference emotions:" in prompt:
        return "7" if "happy" in prompt else "n/a"  # the second sample's label score is unreadable
    return "9" if "smile" in prompt else "5"


OV_CLIPS = {  # name: (reference words, the model's answer)
    "ov_a": ("happy, relaxed", "She beams.\n\nEmotions: joyful, calm"),
    "ov_b": ("['sad', 'tired']", "Emotions: sad, angry"),
    "ov_c": ("surprised", "Emotions: shocked"),
    "ov_d": ("neutral", ""),
}
OV_ANSWERS = [answer for _, answer in OV_CLIPS.values()]
# ov_a: all grouped together (precision 1, recall 1); ov_b: 1/2 and 1/2; ov_c: unreadable reply, left out;
# ov_d: no word predicted, 0 and 0 without asking. Means over a, b, d: precision = recall = 1.5 / 3.
OV_SCORES = {"avg": 50.0, "precision": 50.0, "recall": 50.0}

EMER_CLIPS = {  # name: (reference explanation, the model's answer)
    "sample_00000000": (
        "Her bright smile and lively voice show joy.",
        "She smiles widely.\n\nEmotions: happy",
    ),
    "sample_00000007": ("His frown and raised voice show anger.", "He frowns and shouts.\n\nEmotions: angry"),
}
EMER_ANSWERS = [answer for _, answer in EMER_CLIPS.values()]
# Clue overlap 9 and 5; label overlap 7 and an unreadable "n/a" (left out).
EMER_SCORES = {"clue_overlap": 7.0, "label_overlap": 7.0}


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return Path(write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.5, width=160, height=120))


@pytest.fixture(scope="module")
def judge_ov_data(short_clip, tmp_path_factory) -> Path:
    """EMER-OV in its layout: `emer_ov.csv` (name, openset) and the clips in video/."""
    folder = tmp_path_factory.mktemp("emer_ov_judge")
    (folder / "video").mkdir()
    rows = "".join(f'{name},"{words}"\n' for name, (words, _) in OV_CLIPS.items())
    (folder / "emer_ov.csv").write_text("name,openset\n" + rows)
    for name in OV_CLIPS:
        shutil.copy(short_clip, folder / "video" / f"{name}.mp4")
    return folder


@pytest.fixture(scope="module")
def emer_data(short_clip, tmp_path_factory) -> Path:
    """EMER as AffectGPT releases it: `final-EMER-reason.csv` (name, chinese, english), the MER clips in video/."""
    folder = tmp_path_factory.mktemp("emer")
    (folder / "video").mkdir()
    rows = "".join(f'{name},"(中文)","{english}"\n' for name, (english, _) in EMER_CLIPS.items())
    (folder / "final-EMER-reason.csv").write_text("name,chinese,english\n" + rows, encoding="utf-8")
    for name in EMER_CLIPS:
        shutil.copy(short_clip, folder / "video" / f"{name}.mp4")
    return folder


@pytest.fixture
def chat_server():
    """Replies as `scripted_judge`, with a `usage` block."""
    server = ChatCompletionsServer(
        scripted_judge, usage={"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    )
    yield server
    server.close()


class Counting:
    """`scripted_judge`, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        return scripted_judge(prompt)


def _no_model_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the evaluated model was loaded")

    monkeypatch.setattr(analyze_module, "load_for_inference", refuse)


# -- EMER-OV with a judge ------------------------------------------------------------------------------------------


def test_emer_ov_judge_grouping_with_a_callable_and_its_cache(loaded, judge_ov_data, tmp_path, monkeypatch):
    model, processor = loaded
    calls = _answering(monkeypatch, *OV_ANSWERS)
    judge = Counting()
    report = evaluate_open_vocabulary(
        model, processor, judge_ov_data, grouping="judge", judge=judge, output_dir=tmp_path, progress=False
    )
    assert sum(map(len, calls)) == 4
    assert report.scores == OV_SCORES and report.grouping == "judge" and report.failed == 0
    assert report.paper == PAPER_FIGURES["emer-ov"]
    assert [item["name"] for item in report.unreadable] == ["ov_c"]
    assert report.unreadable[0]["reply"] == "They name the same emotion."
    assert judge.calls == 3  # ov_d predicted nothing: nothing to group
    cost = {key: report.judge[key] for key in ("requests", "cache_hits", "prompt_tokens", "usage_reported")}
    assert cost == {"requests": 3, "cache_hits": 0, "prompt_tokens": None, "usage_reported": 0}
    table = report.table()
    assert "3 request(s), 0 cache hit(s), tokens not reported" in table
    assert "Unreadable judge replies: 1" in table and "61.30" in table

    rows = {row["name"]: row for row in _lines(tmp_path / "emer_ov_scores.jsonl")}
    assert rows["ov_a"]["groups"] == [["happy", "joyful"], ["relaxed", "calm"]]
    assert (rows["ov_a"]["precision"], rows["ov_a"]["recall"]) == (1.0, 1.0)
    assert (rows["ov_b"]["precision"], rows["ov_b"]["recall"]) == (0.5, 0.5)
    assert rows["ov_c"]["groups"] is None and rows["ov_d"]["reply"] is None
    assert len(_lines(tmp_path / "judge_cache.jsonl")) == 3

    # Scored again from the predictions file, without the model: every reply comes from the cache.
    again = Counting()
    rescored = evaluate_open_vocabulary(
        None, None, judge_ov_data, grouping="judge", judge=again, output_dir=tmp_path
    )
    assert again.calls == 0 and rescored.scores == OV_SCORES
    assert (rescored.judge["requests"], rescored.judge["cache_hits"]) == (0, 3)
    assert sum(map(len, calls)) == 4  # nothing generated


def test_emer_ov_judge_grouping_over_http_from_the_command_line(
    checkpoint, judge_ov_data, chat_server, tmp_path, monkeypatch, capsys
):
    _answering(monkeypatch, *OV_ANSWERS)
    monkeypatch.setenv("TEST_JUDGE_KEY", "secret")
    command = [
        "--benchmark", "emer-ov", "--data", str(judge_ov_data), "--grouping", "judge", "--judge", chat_server.url,
        "--judge-model", "judge-72b", "--judge-api-key-env", "TEST_JUDGE_KEY", "--output-dir", str(tmp_path),
        "--no-progress",
    ]  # fmt: skip
    assert (
        main_from_args(_args(*command, "--model", str(checkpoint), "--device", "cpu")) == 1
    )  # one unreadable
    printed = capsys.readouterr().out
    assert "4 generated now, 0 from an earlier run" in printed
    assert "50.00" in printed and "65.90" in printed
    assert "3 request(s), 0 cache hit(s), 300 prompt + 30 completion tokens" in printed
    assert len(chat_server.requests) == 3
    request = chat_server.requests[0]
    assert request["auth"] == "Bearer secret" and request["body"]["model"] == "judge-72b"
    assert request["body"]["temperature"] == 0
    summary = json.loads((tmp_path / "emer_ov_summary.json").read_text())
    assert summary["scores"] == OV_SCORES and summary["judge"]["prompt_tokens"] == 300
    assert summary["modalities"] == ["frames", "faces", "audio"]

    _no_model_loading(monkeypatch)  # --judge-only: no model, and the cache answers everything
    assert main_from_args(_args(*command, "--judge-only")) == 1
    assert "0 request(s), 3 cache hit(s), tokens not reported" in capsys.readouterr().out
    assert len(chat_server.requests) == 3


# -- EMER ----------------------------------------------------------------------------------------------------------


def test_emer_layout_is_read_and_bad_files_are_named(emer_data, tmp_path):
    clips = read_emer(emer_data)
    assert [(clip.name, clip.reference) for clip in clips] == [
        (name, english) for name, (english, _) in EMER_CLIPS.items()
    ]
    assert all(Path(clip.path).is_file() for clip in clips)
    with pytest.raises(FileNotFoundError, match=r"final-EMER-reason\.csv"):
        read_emer(tmp_path)
    (tmp_path / "v1.csv").write_text("names,reasons\nsample_00000000,She smiles.\n")
    (tmp_path / "sample_00000000.mp4").write_bytes(b"")  # beside the CSV
    assert [clip.reference for clip in read_emer(tmp_path / "v1.csv")] == ["She smiles."]
    (tmp_path / "bad.csv").write_text("name,chinese\nsample_00000000,她笑了\n")
    with pytest.raises(BenchmarkDataError, match="`name` or `names` and english or reason"):
        read_emer(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text('name,english\nsample_00000000,""\n')
    with pytest.raises(BenchmarkDataError, match=r"1 clip.* empty `english`.*sample_00000000"):
        read_emer(tmp_path / "empty.csv")


def test_emer_with_a_callable_judge(loaded, emer_data, tmp_path, monkeypatch):
    model, processor = loaded
    calls = _answering(monkeypatch, *EMER_ANSWERS)
    report = evaluate_reasoning(model, processor, emer_data, judge=scripted_judge, output_dir=tmp_path)
    assert calls[0][0].startswith("Describe the emotional state of the person")
    assert report.scores == EMER_SCORES and report.paper == PAPER_FIGURES["emer"]
    assert report.unreadable == [{"name": "sample_00000007", "score": "label_overlap", "reply": "n/a"}]
    assert (report.judge["requests"], report.judge["cache_hits"]) == (8, 0)  # 4 prompts a sample
    rows = _lines(tmp_path / "emer_scores.jsonl")
    assert [(row["clue_overlap"], row["label_overlap"]) for row in rows] == [(9.0, 7.0), (5.0, None)]
    assert rows[1]["unreadable"] == ["n/a"]
    lines = _lines(tmp_path / "emer_predictions.jsonl")
    assert [line["answer"] for line in lines] == EMER_ANSWERS
    table = report.table()
    assert "8.22" in table and "6.78" in table and "7.00" in table


def test_emer_over_http_then_judge_only_from_the_cache(
    checkpoint, emer_data, chat_server, tmp_path, monkeypatch, capsys
):
    _answering(monkeypatch, *EMER_ANSWERS)
    command = [
        "--benchmark", "emer", "--data", str(emer_data), "--judge", chat_server.url, "--judge-model", "judge-72b",
        "--output-dir", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    assert main_from_args(_args(*command, "--model", str(checkpoint), "--device", "cpu")) == 1
    printed = capsys.readouterr().out
    assert "8 request(s), 0 cache hit(s), 800 prompt + 80 completion tokens" in printed
    assert len(chat_server.requests) == 8 and chat_server.requests[0]["auth"] is None
    summary = json.loads((tmp_path / "emer_summary.json").read_text())
    assert summary["scores"] == EMER_SCORES and summary["judge"]["completion_tokens"] == 80

    _no_model_loading(monkeypatch)
    assert main_from_args(_args(*command, "--judge-only")) == 1
    printed = capsys.readouterr().out
    assert "0 request(s), 8 cache hit(s)" in printed and "7.00" in printed
    assert len(chat_server.requests) == 8


def test_a_failing_judge_stops_the_run_and_keeps_what_it_has(
    checkpoint, emer_data, tmp_path, monkeypatch, capsys
):
    _answering(monkeypatch, *EMER_ANSWERS)
    command = [
        "--benchmark", "emer", "--data", str(emer_data), "--judge", "http://127.0.0.1:9/v1", "--judge-model", "m",
        "--output-dir", str(tmp_path), "--no-progress", "--model", str(checkpoint), "--device", "cpu",
    ]  # fmt: skip
    assert main_from_args(_args(*command)) == 2
    error = capsys.readouterr().err
    assert "Could not get a reply from the judge" in error and "--judge-only" in error
    assert len(_lines(tmp_path / "emer_predictions.jsonl")) == 2


# -- resuming ------------------------------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_with_the_missing_clips_only(loaded, judge_ov_data, tmp_path, monkeypatch):
    model, processor = loaded
    answered = _answering(monkeypatch, *OV_ANSWERS)
    real = analyze_module._generate

    def killed_after_two(*args, **kwargs):
        if sum(map(len, answered)) >= 2:
            raise KeyboardInterrupt  # as a kill: not a clip failure, nothing after it is written
        return real(*args, **kwargs)

    monkeypatch.setattr(analyze_module, "_generate", killed_after_two)
    run = {"grouping": "exact", "batch_size": 1, "output_dir": tmp_path, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        evaluate_open_vocabulary(model, processor, judge_ov_data, **run)
    predictions = tmp_path / "emer_ov_predictions.jsonl"
    assert [line["name"] for line in _lines(predictions)] == ["ov_a", "ov_b"]
    with open(predictions, "a") as torn:  # a kill in the middle of a line
        torn.write('{"benchmark": "emer-ov", "name": "ov_c", "ans')

    monkeypatch.setattr(analyze_module, "_generate", real)
    report = evaluate_open_vocabulary(model, processor, judge_ov_data, **run)
    assert sum(map(len, answered)) == 4  # ov_c and ov_d only, this time
    assert [line["name"] for line in _lines(predictions)] == ["ov_a", "ov_b", "ov_c", "ov_d"]
    assert [line["predicted"] for line in _lines(predictions)] == [
        ["joyful", "calm"],
        ["sad", "angry"],
        ["shocked"],
        [],
    ]
    assert report.samples == 4 and report.scores["precision"] == pytest.approx(100 * 0.5 / 4)

    with pytest.raises(PredictionsFileError, match="another modalities"):
        evaluate_open_vocabulary(model, processor, judge_ov_data, **run, modalities=("frames",))


def test_judge_only_needs_every_prediction(judge_ov_data, tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    (tmp_path / "emer_ov_predictions.jsonl").write_text(
        json.dumps({"benchmark": "emer-ov", "name": "ov_a", "answer": "", "predicted": [], "error": None})
        + "\n"
    )
    args = _args("--benchmark", "emer-ov", "--data", str(judge_ov_data), "--grouping", "exact", "--judge-only",
                 "--output-dir", str(tmp_path))  # fmt: skip
    assert main_from_args(args) == 2
    assert "3 of 4 clip(s) have no prediction" in capsys.readouterr().err


# -- modalities ----------------------------------------------------------------------------------------------------


def test_modalities_reach_analyze_and_the_summary(checkpoint, judge_ov_data, tmp_path, monkeypatch, capsys):
    _answering(monkeypatch, *OV_ANSWERS)
    asked = []
    real = analyze_module.analyze

    def recording(*args, **kwargs):
        asked.append(kwargs["modalities"])
        return real(*args, **kwargs)

    monkeypatch.setattr(analyze_module, "analyze", recording)
    args = _args(
        "--benchmark", "emer-ov", "--data", str(judge_ov_data), "--grouping", "exact", "--modalities", "audio,frames",
        "--model", str(checkpoint), "--device", "cpu", "--output-dir", str(tmp_path), "--no-progress",
    )  # fmt: skip
    assert main_from_args(args) == 0
    assert asked == [["frames", "audio"]]
    assert "modalities given: frames, audio" in capsys.readouterr().out
    assert json.loads((tmp_path / "emer_ov_summary.json").read_text())["modalities"] == ["frames", "audio"]
    assert {tuple(line["modalities"]) for line in _lines(tmp_path / "emer_ov_predictions.jsonl")} == {
        ("frames", "audio")
    }


# -- arguments -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("--benchmark emer --model m", "emer needs --judge"),
        ("--benchmark emer-ov --grouping judge --model m", "emer-ov --grouping judge needs --judge"),
        (
            "--benchmark emer --judge http://127.0.0.1:9/v1 --model m",
            "name the model to ask with --judge-model",
        ),
        (
            "--benchmark emer --judge judge-dir --judge-model x --model m",
            "apply to a --judge that is an http(s) URL",
        ),
        (
            "--benchmark emer --judge http://h/v1 --judge-model x --judge-api-key-env UNSET_TEST_KEY --model m",
            "UNSET_TEST_KEY: that environment variable is not set",
        ),
        ("--benchmark dfew --judge http://h/v1 --model m", "--judge is used only by emer"),
        ("--benchmark dfew --grouping exact --model m", "--grouping applies to emer-ov only"),
        ("--benchmark emer", "--model is required (or --judge-only"),
    ],
)
def test_bad_argument_combinations_are_refused_before_loading(words, message, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    monkeypatch.delenv("UNSET_TEST_KEY", raising=False)
    assert main_from_args(_args("--data", "nowhere", *words.split())) == 2
    assert message in capsys.readouterr().err


def test_help_explains_resuming_and_the_judge(capsys):
    with pytest.raises(SystemExit):
        build_parser(with_arguments=["evaluate"]).parse_args(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rerunning the same command skips the clips already there" in text
    assert "--judge-api-key-env" in text and "--judge-only" in text and "--modalities" in text


# -- the judge -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "groups"),
    [
        ('[["Happy", "joyful"], ["sad"]]', [["happy", "joyful"], ["sad"]]),
        (
            "Sure! Here they are:\n```json\n[['calm', 'relaxed'], ['tense']]\n```",
            [["calm", "relaxed"], ["tense"]],
        ),
        ('Groups [1]: [["it\'s ok", "fine"]] (done)', [["it's ok", "fine"]]),
        ('["happy", "joyful"]', None),  # a flat list: which words go together is unknown
        ("happy and joyful are one emotion", None),
        ('[["happy", "joyful"], ["sad"]', None),  # never closed
        ("[[1, 2]]", None),
    ],
)
def test_synonym_groups_are_read_robustly_and_never_guessed(reply, groups):
    assert parse_synonym_groups(reply) == groups


def test_the_cache_is_keyed_by_judge_and_survives_a_torn_line(tmp_path):
    cache = tmp_path / "cache.jsonl"
    first = Judge(lambda prompt: f"reply to {prompt}", "judge-a", cache)
    assert first("one") == "reply to one" and first("one") == "reply to one"
    assert (first.cost.requests, first.cost.cache_hits) == (1, 1)
    with open(cache, "a") as torn:
        torn.write('{"key": "abc", "rep')
    again = Judge(lambda prompt: pytest.fail("asked again"), "judge-a", cache)
    assert again("one") == "reply to one" and again.cost.requests == 0
    other = Judge(lambda prompt: "another judge", "judge-b", cache)
    assert other("one") == "another judge"  # another identity never reuses judge-a's replies
    assert [record["judge"] for record in _lines(cache)] == ["judge-a", "judge-b"]

    def broken(prompt):
        raise ConnectionError("unreachable")

    with pytest.raises(JudgeError, match="judge-c failed: unreachable"):
        Judge(broken, "judge-c", cache)("two")


def test_a_local_judge_model_runs_in_a_process_of_its_own(tiny_tokenizer, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(
        vocab_size=len(tiny_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
        eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id,
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():  # a constant state and a head that only sees "7": every greedy reply is "7"
        for parameter in model.parameters():
            parameter.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight[tiny_tokenizer.convert_tokens_to_ids("7")] = 1.0
    model.save_pretrained(tmp_path / "sevens")
    tiny_tokenizer.save_pretrained(tmp_path / "sevens")

    with load_judge(str(tmp_path / "sevens"), max_new_tokens=1, cache_path=tmp_path / "cache.jsonl") as judge:
        assert judge("Score this from 1 to 10.") == "7"
        process = judge.ask._process
        assert process.pid != os.getpid() and process.is_alive()
    assert not process.is_alive()
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub id"):
        load_judge(str(tmp_path / "absent"))
