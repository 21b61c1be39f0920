"""The emer_ov metric, loaded by path as users load it: hand-worked cases, the real wheels, properties."""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

import datasets
import evaluate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluate_metrics import metric_path

WORKED_EXAMPLE = {
    "references": [["happy", "relaxed"], ["angry"], ["sad"]],
    "predictions": [["joyful"], ["furious", "happy"], []],
}
# The reference code's (MERTools wheel_metric_calculation) output on the worked example.
WORKED_EXAMPLE_SCORES = {
    "level1_fscore": 0.5428571428571429,
    "level1_precision": 0.5,
    "level1_recall": 0.6,
    "level2_fscore": 0.3888888888888889,
    "level2_precision": 0.36666666666666664,
    "level2_recall": 0.4333333333333333,
}


@pytest.fixture(scope="module")
def emer_ov():
    return evaluate.load(metric_path("emer_ov"), keep_in_memory=True)


@pytest.fixture
def wheel_dir(emotion_wheel_dir, monkeypatch):
    if emotion_wheel_dir is None:
        pytest.skip("emotion-wheel resources not found: set OMNI_EMOTION_WHEEL_DIR")
    monkeypatch.delenv("OMNI_EMOTION_WHEEL_DIR", raising=False)
    return emotion_wheel_dir


def test_metric_path_names_the_known_metrics():
    assert Path(metric_path("emer_ov"), "emer_ov.py").is_file()
    with pytest.raises(ValueError, match="emer_ov, emer_reasoning, uar_war"):
        metric_path("emer-ov")


def test_exact_counts_an_empty_prediction_as_zero_precision(emer_ov):
    # Sample 0: P = {happy, calm}, G = {happy} -> 1/2, 1/1. Sample 1: P empty -> 0, 0.
    result = emer_ov.compute(predictions=[["happy", "calm"], []], references=["['happy']", "sad, tired"])
    assert result == {"precision": 0.25, "recall": 0.5, "avg": 0.375}


def test_exact_lowercases_strips_and_counts_duplicates_once(emer_ov):
    result = emer_ov.compute(predictions=[["Happy", " happy ", "HAPPY"]], references=[["happy"]])
    assert result == {"precision": 1.0, "recall": 1.0, "avg": 1.0}


def test_strings_and_lists_mix_within_a_column(emer_ov):
    # A string after a list must be split into words, not letters: P = 1 and 1/2, R = 1 and 1.
    result = emer_ov.compute(predictions=[["happy"], "sad, angry"], references=["happy", ["sad"]])
    assert result == {"precision": 0.75, "recall": 1.0, "avg": 0.875}


def test_batches_accumulate(emer_ov):
    emer_ov.add_batch(predictions=[["happy"]], references=[["happy"]])
    emer_ov.add(prediction="sad", reference="['angry']")
    assert emer_ov.compute() == {"precision": 0.5, "recall": 0.5, "avg": 0.5}


def test_empty_reference_is_an_error_naming_the_sample(emer_ov):
    with pytest.raises(ValueError, match=r"references\[1\] holds no emotion word"):
        emer_ov.compute(predictions=[["happy"], ["sad"]], references=[["happy"], "[]"])


def test_a_word_list_of_numbers_is_refused_with_its_index(emer_ov):
    with pytest.raises(TypeError, match=r"predictions\[1\]"):
        emer_ov.compute(predictions=[["happy"], [1, 2]], references=[["happy"], ["sad"]])


def test_synonyms_map_each_group_to_its_first_word(emer_ov):
    # G = {happy, relaxed}; P = {happy, relaxed, angry}: precision 2/3, recall 1.
    result = emer_ov.compute(
        predictions=[["joyful", "calm", "angry"]],
        references=[["happy", "relaxed"]],
        grouping="synonyms",
        synonym_groups=[[["happy", "joyful"], ["relaxed", "calm"]]],
    )
    assert result == pytest.approx({"precision": 2 / 3, "recall": 1.0, "avg": 5 / 6})


def test_synonyms_a_word_in_two_groups_takes_the_last_group(emer_ov):
    # "happy" is in both groups, so it maps to "joy"; "glad" stays "glad": sample 0 misses, sample 1 hits.
    groups = [["glad", "happy"], ["joy", "happy"]]
    result = emer_ov.compute(
        predictions=[["happy"], ["happy"]],
        references=[["glad"], ["joy"]],
        grouping="synonyms",
        synonym_groups=[groups, "[['glad', 'happy'], ['joy', 'happy']]"],
    )
    assert result == {"precision": 0.5, "recall": 0.5, "avg": 0.5}


def test_synonyms_need_one_entry_per_sample(emer_ov):
    with pytest.raises(ValueError, match="2 samples, 1 given"):
        emer_ov.compute(
            predictions=[["a"], ["b"]],
            references=[["a"], ["b"]],
            grouping="synonyms",
            synonym_groups=[[["a"]]],
        )


def test_options_of_another_grouping_are_refused(emer_ov):
    with pytest.raises(ValueError, match="only used with grouping='synonyms'"):
        emer_ov.compute(predictions=[["a"]], references=[["a"]], synonym_groups=[[["a"]]])
    with pytest.raises(ValueError, match="grouping='lexicon' is not one of"):
        emer_ov.compute(predictions=[["a"]], references=[["a"]], grouping="lexicon")


def test_wheel_reproduces_the_reference_code_on_the_worked_example(emer_ov, wheel_dir):
    result = emer_ov.compute(**WORKED_EXAMPLE, grouping="wheel", wheel_dir=str(wheel_dir))
    assert result == WORKED_EXAMPLE_SCORES


def test_wheel_reads_the_directory_named_by_the_environment(emer_ov, wheel_dir, monkeypatch):
    monkeypatch.setenv("OMNI_EMOTION_WHEEL_DIR", str(wheel_dir))
    assert emer_ov.compute(**WORKED_EXAMPLE, grouping="wheel") == WORKED_EXAMPLE_SCORES


def test_wheel_drops_words_outside_every_wheel(emer_ov, wheel_dir):
    # A reference of unknown words only is skipped; an unknown prediction maps to nothing and scores 0.
    result = emer_ov.compute(
        predictions=[["happy"], ["qwertyish"]],
        references=[["qwertyish"], ["happy"]],
        grouping="wheel",
        wheel_dir=wheel_dir,
    )
    assert result == dict.fromkeys(WORKED_EXAMPLE_SCORES, 0.0)


def test_wheel_without_any_mapped_reference_is_an_error(emer_ov, wheel_dir):
    with pytest.raises(ValueError, match=r"No reference word maps into wheel1 \(level1\)"):
        emer_ov.compute(
            predictions=[["happy"]], references=[["qwertyish"]], grouping="wheel", wheel_dir=wheel_dir
        )


def test_wheel_refuses_an_altered_or_missing_resource(emer_ov, wheel_dir, tmp_path):
    copy = shutil.copytree(wheel_dir, tmp_path / "wheel", ignore=shutil.ignore_patterns("README.md"))
    (copy / "wheel3.xlsx").chmod(0o644)
    with (copy / "wheel3.xlsx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match=r"wheel3\.xlsx has sha256 .* expected d62f30bf"):
        emer_ov.compute(**WORKED_EXAMPLE, grouping="wheel", wheel_dir=copy)
    (copy / "format.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"format\.csv not found"):
        emer_ov.compute(**WORKED_EXAMPLE, grouping="wheel", wheel_dir=copy)


@pytest.fixture
def serve_directory():
    """An HTTP server on 127.0.0.1 for one directory, stopped after the test."""
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_wheel_downloads_the_pinned_files_when_no_directory_is_named(
    wheel_dir, serve_directory, tmp_path, monkeypatch
):
    metric = evaluate.load(metric_path("emer_ov"), cache_dir=str(tmp_path), keep_in_memory=True)
    monkeypatch.setattr(sys.modules[type(metric).__module__], "WHEEL_SOURCE_URL", serve_directory(wheel_dir))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert metric.compute(**WORKED_EXAMPLE, grouping="wheel") == WORKED_EXAMPLE_SCORES


def test_wheel_download_failure_says_how_to_work_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("OMNI_EMOTION_WHEEL_DIR", raising=False)
    metric = evaluate.load(metric_path("emer_ov"), cache_dir=str(tmp_path), keep_in_memory=True)
    monkeypatch.setattr(sys.modules[type(metric).__module__], "WHEEL_SOURCE_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(ConnectionError, match="OMNI_EMOTION_WHEEL_DIR"):
        metric.compute(**WORKED_EXAMPLE, grouping="wheel")


words = st.lists(st.sampled_from(["happy", "sad", "angry", "calm", "worried", "joyful", "tired"]), max_size=4)
samples = st.lists(st.tuples(words.filter(bool), words), min_size=1, max_size=5)
property_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@property_settings
@given(samples=samples, grouping=st.sampled_from(["exact", "synonyms"]))
def test_scores_stay_in_unit_interval(emer_ov, samples, grouping):
    references, predictions = map(list, zip(*samples, strict=True))
    groups = [[["happy", "joyful"], ["calm", "tired"]]] * len(samples) if grouping == "synonyms" else None
    result = emer_ov.compute(
        predictions=predictions, references=references, grouping=grouping, synonym_groups=groups
    )
    assert all(0.0 <= value <= 1.0 for value in result.values())


@property_settings
@given(references=st.lists(words.filter(bool), min_size=1, max_size=5))
def test_identical_inputs_score_one(emer_ov, references):
    assert emer_ov.compute(predictions=references, references=references) == {
        "precision": 1.0,
        "recall": 1.0,
        "avg": 1.0,
    }


@property_settings
@given(references=st.lists(words, max_size=4))
def test_identical_inputs_score_one_on_every_wheel(emer_ov, wheel_dir, references):
    references = [["happy", "sad", "angry"], *references]
    result = emer_ov.compute(
        predictions=references, references=references, grouping="wheel", wheel_dir=wheel_dir
    )
    assert result == dict.fromkeys(WORKED_EXAMPLE_SCORES, 1.0)
