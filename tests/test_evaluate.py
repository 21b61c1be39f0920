"""`omni-emotion evaluate`: DFEW, MAFW and EMER-OV end to end on a tiny checkpoint and mini-benchmarks made here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training_fixtures import DFEW_TEST, write_sources

from omni_emotion import analyze as analyze_module
from omni_emotion.analyze import analyze
from omni_emotion.cli import build_parser
from omni_emotion.evaluate import (
    FOLDS,
    PAPER_FIGURES,
    BenchmarkDataError,
    evaluate_classification,
    evaluate_open_vocabulary,
    main_from_args,
    read_emer_ov,
)

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


def _answering(monkeypatch, answer: str) -> list[list[str]]:
    """Makes every generated answer `answer`, recording the prompts of each generation call."""
    calls: list[list[str]] = []

    def generate(model, processor, clips, prompts, max_new_tokens):
        calls.append(list(prompts))
        return [answer] * len(clips)

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
        _args("--benchmark", "emer-ov", "--data", "x", "--model", "y", "--grouping", "judge")
