"""The uar_war metric, loaded by path: text-to-class mapping, errors, and scikit-learn cross-checks."""

from __future__ import annotations

import warnings

import evaluate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from evaluate_metrics import metric_path

DFEW = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
UNMAPPED = "I cannot tell."
property_settings = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def uar_war():
    return evaluate.load(metric_path("uar_war"), keep_in_memory=True)


def test_worked_example_from_generated_text(uar_war):
    # happy 1/1, angry 1/1, neutral 1/2 -> UAR 5/6; 3 of 4 right -> WAR 3/4; "no idea" names no class.
    result = uar_war.compute(
        predictions=["Happiness.", "The primary emotion is anger", "no idea", "neutral"],
        references=["happy", "angry", "neutral", "neutral"],
        dataset="dfew",
    )
    assert result == {"uar": pytest.approx(5 / 6), "war": 0.75, "num_unmapped": 1}


@pytest.mark.parametrize(
    ("dataset", "text", "expected"),
    [
        ("dfew", "Neutral.", "neutral"),
        ("dfew", "happiness", "happy"),
        ("dfew", "The primary emotion is anger", "angry"),
        ("mafw", "The primary emotion is anger", "anger"),
        ("mafw", "She looks ANXIOUS", "anxiety"),
        ("mafw", "disappointed", "disappointment"),
    ],
)
def test_text_maps_to_the_class_it_names(uar_war, dataset, text, expected):
    result = uar_war.compute(predictions=[text], references=[expected], dataset=dataset)
    assert result == {"uar": 1.0, "war": 1.0, "num_unmapped": 0}


@pytest.mark.parametrize("text", ["unhappy", "happy or sad", "", "joyful"])
def test_text_naming_no_class_or_several_counts_as_wrong(uar_war, text):
    result = uar_war.compute(predictions=[text, "sad"], references=["happy", "sad"], dataset="dfew")
    assert result == {"uar": 0.5, "war": 0.5, "num_unmapped": 1}


def test_ids_and_integer_strings_are_class_ids(uar_war):
    # DFEW ids: 0 happy, 2 neutral. A string "2" is the id 2, not text.
    result = uar_war.compute(predictions=["2", "0"], references=[2, "happy"], dataset="DFEW")
    assert result == {"uar": 1.0, "war": 1.0, "num_unmapped": 0}


def test_custom_labels(uar_war):
    result = uar_war.compute(
        predictions=["Positive sentiment", "negative", "neutral"],
        references=["positive", "negative", "positive"],
        labels=["positive", "negative", "neutral"],
    )
    assert result == {"uar": 0.75, "war": pytest.approx(2 / 3), "num_unmapped": 0}


def test_unknown_reference_is_an_error_naming_the_sample(uar_war):
    with pytest.raises(ValueError, match=r"references\[1\] is 'contempt', which is not one of the classes"):
        uar_war.compute(predictions=["happy", "sad"], references=["happy", "contempt"], dataset="dfew")


def test_out_of_range_id_is_an_error_naming_the_sample(uar_war):
    with pytest.raises(ValueError, match=r"predictions\[0\] is the class id 7, outside 0\.\.6"):
        uar_war.compute(predictions=[7], references=[0], dataset="dfew")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of dataset="),
        ({"dataset": "dfew", "labels": DFEW}, "exactly one of dataset="),
        ({"dataset": "ferv39k"}, "'ferv39k' is not one of"),
        ({"labels": ["happy", "happiness"]}, "forms of one emotion"),
    ],
)
def test_label_set_errors(uar_war, kwargs, message):
    with pytest.raises(ValueError, match=message):
        uar_war.compute(predictions=[0], references=[0], **kwargs)


def test_five_fold_figure_is_the_mean_of_per_fold_figures(uar_war):
    folds = [
        uar_war.compute(predictions=[0, 0, 1], references=[0, 0, 1], dataset="dfew"),
        uar_war.compute(predictions=[1], references=[0], dataset="dfew"),
    ]
    assert uar_war.average_folds(folds) == {"uar": 0.5, "war": 0.5}
    # Not the figure of the pooled predictions (WAR 3/4 there).
    assert uar_war.compute(predictions=[0, 0, 1, 1], references=[0, 0, 1, 0], dataset="dfew")["war"] == 0.75
    with pytest.raises(ValueError, match="one result of `compute`"):
        uar_war.average_folds([])


samples = st.lists(st.tuples(st.integers(0, 6), st.integers(-1, 6)), min_size=1, max_size=40)


@property_settings
@given(samples=samples)
def test_matches_scikit_learn(uar_war, samples):
    """-1 stands for text naming no class: wrong for every reference, as in the metric."""
    references, predicted = map(list, zip(*samples, strict=True))
    texts = [UNMAPPED if p < 0 else f"It is {DFEW[p]}." for p in predicted]
    result = uar_war.compute(predictions=texts, references=references, dataset="dfew")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        assert result["uar"] == pytest.approx(balanced_accuracy_score(references, predicted))
    assert result["war"] == pytest.approx(accuracy_score(references, predicted))
    assert result["num_unmapped"] == predicted.count(-1)


@property_settings
@given(references=st.lists(st.sampled_from(DFEW), min_size=1, max_size=20))
def test_identical_inputs_score_one(uar_war, references):
    assert uar_war.compute(predictions=references, references=references, dataset="dfew") == {
        "uar": 1.0,
        "war": 1.0,
        "num_unmapped": 0,
    }


def test_a_value_neither_id_nor_text_is_refused_with_its_index(uar_war):
    with pytest.raises(TypeError, match=r"predictions\[1\] is 1\.5"):
        uar_war.compute(predictions=[0, 1.5], references=[0, 1], dataset="dfew")
