"""EMER-OV: open-vocabulary emotion recognition, scored by the overlap of predicted and reference emotion words."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import evaluate

from .emotion_wheel import (
    LEVELS,
    WHEEL_DIR_ENV,
    WHEEL_NAMES,
    WHEEL_SHA256,
    WHEEL_SOURCE_URL,
    EmotionWheels,
    load_emotion_wheels,
    resource_paths,
    split_words,
)

_CITATION = """\
@inproceedings{lian2024mer,
  title={MER 2024: Semi-Supervised Learning, Noise Robustness, and Open-Vocabulary Multimodal Emotion Recognition},
  author={Lian, Zheng and Sun, Haiyang and Sun, Licai and others},
  booktitle={Proceedings of the 2nd International Workshop on Multimodal and Responsible Affective Computing},
  pages={41--48},
  year={2024}
}
@inproceedings{lian2025affectgpt,
  title={AffectGPT: A New Dataset, Model, and Benchmark for Emotion Understanding with Multimodal Large Language Models},
  author={Lian, Zheng and others},
  booktitle={International Conference on Machine Learning},
  year={2025}
}
"""

_DESCRIPTION = """\
EMER-OV compares the open set of emotion words a model predicts with the reference words of each sample.
Words are first mapped to groups, so that synonyms count as one emotion:

- `grouping="exact"`: no mapping;
- `grouping="synonyms"`: the caller gives each sample's synonym groups (as AffectGPT obtains them from an
  LLM); every word of a group maps to the group's first word;
- `grouping="wheel"`: the deterministic emotion-wheel mapping of MER2025 / AffectGPT (word form -> base word ->
  wheel word -> level-1 or level-2 cluster of each of five emotion wheels).

With G and P the sets of mapped reference and predicted words of a sample, precision = |G & P| / |P| (0 when
P is empty) and recall = |G & P| / |G|, averaged over samples. The wheel grouping reports, for level 1 and
level 2, F = 2PR / (P + R) of those means, with F, P and R averaged over the five wheels.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list[str]` or `str`): the predicted emotion words of each sample, as a list of
        words or a string such as `"['happy', 'relaxed']"` or `"happy, relaxed"`. Words are lower-cased and
        stripped; duplicates count once.
    references (`list` of `list[str]` or `str`): the reference emotion words of each sample, in the same forms.
    grouping (`str`, defaults to `"exact"`): `"exact"`, `"synonyms"` or `"wheel"`.
    synonym_groups (`list`, *optional*): with `grouping="synonyms"` only, one entry per sample: a list of
        groups, each a list of words (or a string of words). A word in several groups maps to the first word
        of the last of them; a word in no group stays itself.
    wheel_dir (`str`, *optional*): with `grouping="wheel"` only, a directory holding the seven MERTools
        emotion-wheel files (checked against pinned sha256 sums). Defaults to `$OMNI_EMOTION_WHEEL_DIR`, else
        the files are downloaded from MERTools at a pinned commit.

Returns:
    With `grouping="exact"` or `"synonyms"`:
        precision (`float`): mean per-sample precision (the papers' "accuracy"), in [0, 1].
        recall (`float`): mean per-sample recall, in [0, 1].
        avg (`float`): (precision + recall) / 2.
    With `grouping="wheel"`, averaged over the five wheels:
        level1_fscore, level1_precision, level1_recall (`float`): with words mapped to level-1 clusters.
        level2_fscore, level2_precision, level2_recall (`float`): with words mapped to level-2 clusters.
    Words that map to no wheel word are dropped; samples whose mapped references are empty are skipped.

Examples:
    >>> emer_ov = evaluate.load("evaluate_metrics/emer_ov")
    >>> emer_ov.compute(predictions=[["happy", "calm"], []], references=["['happy']", "sad, tired"])
    {'precision': 0.25, 'recall': 0.5, 'avg': 0.375}
    >>> emer_ov.compute(
    ...     predictions=[["joyful"]],
    ...     references=[["happy"]],
    ...     grouping="synonyms",
    ...     synonym_groups=[[["happy", "joyful"]]],
    ... )
    {'precision': 1.0, 'recall': 1.0, 'avg': 1.0}
"""

GROUPINGS = ("exact", "synonyms", "wheel")


def _words_of_column(values: Iterable[str | Sequence[str]], column: str) -> list[list[str]]:
    """Each sample's words, so that strings and lists are stored alike (and a string is never split into letters)."""
    words = []
    for index, value in enumerate(values):
        if not isinstance(value, Iterable) or not all(isinstance(word, str) for word in value):
            raise TypeError(
                f"{column}[{index}] is {value!r}: give each sample's emotion words as a list of strings or as "
                "one string such as \"['happy', 'sad']\"."
            )
        words.append(split_words(value))
    return words


def _synonym_map(groups: str | Sequence[str | Sequence[str]], index: int) -> dict[str, str]:
    """Word -> first word of its group; a later group overrides an earlier one, as in the reference code."""
    if not isinstance(groups, Iterable) or not all(isinstance(g, Iterable) for g in groups):
        raise TypeError(
            f"synonym_groups[{index}] is {groups!r}: give a list of groups, each a list of words, "
            "e.g. [['happy', 'joyful'], ['sad']]."
        )
    if isinstance(groups, str):
        # The LLM's reply "[['happy', 'joyful'], ['sad']]" as text: one group per bracketed list.
        groups = [chunk for chunk in groups.replace("]", "[").split("[") if chunk.strip(" ,")]
    mapping = {}
    for group in groups:
        words = split_words(group)
        for word in words:
            mapping[word] = words[0]
    return mapping


def _precision_recall(reference: set[str], prediction: set[str]) -> tuple[float, float]:
    hits = len(reference & prediction)
    return (hits / len(prediction) if prediction else 0.0), hits / len(reference)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmerOv(evaluate.Metric):
    """EMER-OV precision and recall of open-vocabulary emotion words."""

    _dl_manager: datasets.DownloadManager | None = None

    def _info(self) -> evaluate.MetricInfo:
        words = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": words, "references": words}),
            codebase_urls=[
                "https://github.com/zeroQiaoba/MERTools",
                "https://github.com/zeroQiaoba/AffectGPT",
            ],
            reference_urls=["https://arxiv.org/abs/2404.17113", "https://arxiv.org/abs/2501.16566"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Parse word strings before evaluate stores them, since its list features would split a string into letters."""
        super().add_batch(
            predictions=None if predictions is None else _words_of_column(predictions, "predictions"),
            references=None if references is None else _words_of_column(references, "references"),
            **kwargs,
        )

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """Parse word strings before evaluate stores them, as `add_batch` does."""
        super().add(
            prediction=None if prediction is None else _words_of_column([prediction], "prediction")[0],
            reference=None if reference is None else _words_of_column([reference], "reference")[0],
            **kwargs,
        )

    def _download_and_prepare(self, dl_manager: datasets.DownloadManager) -> None:
        # Download on first use of the wheel grouping, so that the other groupings work offline.
        self._dl_manager = dl_manager

    def _compute(
        self,
        predictions: list[list[str]],
        references: list[list[str]],
        grouping: str = "exact",
        synonym_groups: Sequence[str | Sequence[str | Sequence[str]]] | None = None,
        wheel_dir: str | os.PathLike | None = None,
    ) -> dict[str, float]:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping={grouping!r} is not one of {GROUPINGS}.")
        if synonym_groups is not None and grouping != "synonyms":
            raise ValueError(f"synonym_groups is only used with grouping='synonyms', not {grouping!r}.")
        if wheel_dir is not None and grouping != "wheel":
            raise ValueError(f"wheel_dir is only used with grouping='wheel', not {grouping!r}.")
        if grouping == "wheel":
            return self._compute_wheel(
                predictions, references, load_emotion_wheels(self._wheel_paths(wheel_dir))
            )

        for index, reference in enumerate(references):
            if not reference:
                raise ValueError(
                    f"references[{index}] holds no emotion word: give at least one, or drop the sample."
                )
        if grouping == "synonyms":
            if synonym_groups is None or len(synonym_groups) != len(references):
                given = "none" if synonym_groups is None else len(synonym_groups)
                raise ValueError(
                    f"grouping='synonyms' needs synonym_groups with one entry per sample: {len(references)} "
                    f"samples, {given} given."
                )
            mappings = [_synonym_map(groups, index) for index, groups in enumerate(synonym_groups)]
        else:
            mappings = [{}] * len(references)

        scores = [
            _precision_recall({m.get(w, w) for w in reference}, {m.get(w, w) for w in prediction})
            for reference, prediction, m in zip(references, predictions, mappings, strict=True)
        ]
        precision = _mean([p for p, _ in scores])
        recall = _mean([r for _, r in scores])
        return {"precision": precision, "recall": recall, "avg": (precision + recall) / 2}

    def _wheel_paths(self, wheel_dir: str | os.PathLike | None) -> dict[str, Path]:
        """The caller's directory, `$OMNI_EMOTION_WHEEL_DIR`, or the pinned download, in that order."""
        directory = wheel_dir or os.environ.get(WHEEL_DIR_ENV)
        if directory:
            return resource_paths(directory)
        if self._dl_manager is None:
            self.download_and_prepare()
        urls = {name: WHEEL_SOURCE_URL + name for name in WHEEL_SHA256}
        try:
            downloaded = self._dl_manager.download(urls)
        except OSError as err:
            raise ConnectionError(
                f"Could not download the emotion-wheel resources from {WHEEL_SOURCE_URL} ({err}). Download the "
                f"files {sorted(WHEEL_SHA256)} elsewhere and pass their directory as wheel_dir= or ${WHEEL_DIR_ENV}."
            ) from err
        return {name: Path(path) for name, path in downloaded.items()}

    @staticmethod
    def _compute_wheel(
        predictions: list[list[str]], references: list[list[str]], wheels: EmotionWheels
    ) -> dict[str, float]:
        results = {}
        for level in LEVELS:
            per_wheel = []
            for wheel in WHEEL_NAMES:
                scores = []
                for reference, prediction in zip(references, predictions, strict=True):
                    mapped_reference = {wheels.cluster(w, wheel, level) for w in reference} - {None}
                    if mapped_reference:
                        mapped_prediction = {wheels.cluster(w, wheel, level) for w in prediction} - {None}
                        scores.append(_precision_recall(mapped_reference, mapped_prediction))
                if not scores:
                    raise ValueError(
                        f"No reference word maps into {wheel} ({level}), so its precision and recall are "
                        "undefined: check that the references are emotion words."
                    )
                precision, recall = _mean([p for p, _ in scores]), _mean([r for _, r in scores])
                fscore = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
                per_wheel.append((fscore, precision, recall))
            for name, values in zip(
                ("fscore", "precision", "recall"), zip(*per_wheel, strict=True), strict=True
            ):
                results[f"{level}_{name}"] = _mean(list(values))
        return results
