"""UAR and WAR: the unweighted and weighted average recall of dynamic facial expression benchmarks (DFEW, MAFW)."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence

import datasets
import evaluate

_CITATION = """\
@inproceedings{jiang2020dfew,
  title={DFEW: A Large-Scale Database for Recognizing Dynamic Facial Expressions in the Wild},
  author={Jiang, Xingxun and Zong, Yuan and Zheng, Wenming and Tang, Chuangao and Xia, Wanchuang and Lu, Cheng and Liu, Jiateng},
  booktitle={Proceedings of the 28th ACM International Conference on Multimedia},
  pages={2881--2889},
  year={2020}
}
@inproceedings{liu2022mafw,
  title={MAFW: A Large-scale, Multi-modal, Compound Affective Database for Dynamic Facial Expression Recognition in the Wild},
  author={Liu, Yuanyuan and Dai, Wei and Feng, Chuanxu and Wang, Wenbin and Yin, Guanghao and Zeng, Jiabei and Shan, Shiguang},
  booktitle={Proceedings of the 30th ACM International Conference on Multimedia},
  pages={24--32},
  year={2022}
}
"""

_DESCRIPTION = """\
UAR (unweighted average recall) is the mean, over the classes present in the references, of each class's
recall; it does not favour the frequent classes. WAR (weighted average recall) is the plain accuracy. Both are
the headline figures of DFEW (7 classes) and MAFW (11 classes), where the 5-fold result is the mean of the
per-fold figures (see `average_folds`).

Predictions may be class ids or the free text a model generated ("Neutral.", "happiness", "The primary
emotion is anger"): text maps to the one class whose name, or an obvious form of it, it mentions. Text that
mentions no class, or several, counts as wrong and is counted in `num_unmapped`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): a class id (an index into the label set) or the generated text of
        each sample. A string holding only an integer is read as an id.
    references (`list` of `int` or `str`): the class id or class name of each sample.
    dataset (`str`, *optional*): `"dfew"` or `"mafw"`, whose label set (in its official class order) is used.
    labels (`list` of `str`, *optional*): a custom label set, in id order, instead of `dataset`.

Returns:
    uar (`float`): mean per-class recall over the classes present in the references, in [0, 1].
    war (`float`): accuracy, in [0, 1].
    num_unmapped (`int`): predictions whose text names no class, or several (all counted as wrong).

Examples:
    >>> uar_war = evaluate.load("evaluate_metrics/uar_war")
    >>> uar_war.compute(
    ...     predictions=["Happiness.", "The primary emotion is anger", "no idea", "neutral"],
    ...     references=["happy", "angry", "neutral", "neutral"],
    ...     dataset="dfew",
    ... )
    {'uar': 0.8333333333333334, 'war': 0.75, 'num_unmapped': 1}
    >>> uar_war.average_folds([{"uar": 0.6, "war": 0.7}, {"uar": 0.5, "war": 0.8}])
    {'uar': 0.55, 'war': 0.75}
"""

DATASET_LABELS = {
    # DFEW's official ids 1-7, minus one.
    "dfew": ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
    "mafw": (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
}

# Word forms of one emotion: a label finds its class under any of them ("happiness" is DFEW's "happy").
EMOTION_FORMS = (
    ("happy", "happiness", "happily"),
    ("sad", "sadness", "sadly", "saddened"),
    ("neutral", "neutrality", "neutrally"),
    ("angry", "anger", "angrily", "angered"),
    ("surprise", "surprised", "surprising", "surprisingly"),
    ("disgust", "disgusted", "disgusting", "disgustingly"),
    ("fear", "fearful", "fearfully", "feared", "fears"),
    ("contempt", "contemptuous", "contemptuously"),
    ("anxiety", "anxious", "anxiously"),
    ("helplessness", "helpless", "helplessly"),
    ("disappointment", "disappointed", "disappointing"),
)


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


class LabelSet:
    """Class names in id order, and the patterns by which free text names each class."""

    def __init__(self, names: Sequence[str]):
        self.names = tuple(_normalise(name) for name in names)
        if not self.names or not all(self.names):
            raise ValueError(
                f"labels={list(names)!r}: give at least one class name, each with letters in it."
            )
        forms_of = {form: forms for forms in EMOTION_FORMS for form in forms}
        owner: dict[str, str] = {}
        self._patterns = []
        for name in self.names:
            forms = forms_of.get(name, (name,))
            for form in forms:
                if form in owner:
                    raise ValueError(
                        f"Labels {owner[form]!r} and {name!r} are forms of one emotion: keep one."
                    )
                owner[form] = name
            self._patterns.append(re.compile(r"\b(?:" + "|".join(map(re.escape, forms)) + r")\b"))

    def class_id(self, value: str, where: str) -> int | None:
        """The id of an id or of a text; None for text naming no class or several."""
        if value.strip().lstrip("-").isdigit():
            class_id = int(value)
            if not 0 <= class_id < len(self.names):
                raise ValueError(
                    f"{where} is the class id {class_id}, outside 0..{len(self.names) - 1} of the labels {self.names}."
                )
            return class_id
        text = _normalise(value)
        matches = [index for index, pattern in enumerate(self._patterns) if pattern.search(text)]
        return matches[0] if len(matches) == 1 else None


def _ids_as_text(values: Iterable[int | str], column: str) -> list[str]:
    """Ids as their digits: evaluate stores a column in one type, and an id may sit beside generated text."""
    texts = []
    for index, value in enumerate(values):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            texts.append(str(int(value)))
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise TypeError(f"{column}[{index}] is {value!r}: give a class id (an int) or a text.")
    return texts


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class UarWar(evaluate.Metric):
    """Unweighted and weighted average recall over a fixed emotion label set."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://dfew-dataset.github.io/", "https://mafw-database.github.io/MAFW/"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Store ids as text, so that ids and generated text can share a column."""
        super().add_batch(
            predictions=None if predictions is None else _ids_as_text(predictions, "predictions"),
            references=None if references is None else _ids_as_text(references, "references"),
            **kwargs,
        )

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """Store an id as text, as `add_batch` does."""
        super().add(
            prediction=None if prediction is None else _ids_as_text([prediction], "prediction")[0],
            reference=None if reference is None else _ids_as_text([reference], "reference")[0],
            **kwargs,
        )

    def _compute(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        dataset: str | None = None,
        labels: Sequence[str] | None = None,
    ) -> dict[str, float | int]:
        label_set = LabelSet(self._label_names(dataset, labels))
        if not references:
            raise ValueError("No samples: UAR and WAR need at least one prediction and reference.")
        true = []
        for index, reference in enumerate(references):
            class_id = label_set.class_id(reference, f"references[{index}]")
            if class_id is None:
                raise ValueError(
                    f"references[{index}] is {reference!r}, which is not one of the classes {label_set.names}: "
                    "give a class id or name (or pass `labels` for another label set)."
                )
            true.append(class_id)
        pred = [label_set.class_id(p, f"predictions[{index}]") for index, p in enumerate(predictions)]

        hits = [t == p for t, p in zip(true, pred, strict=True)]
        recalls = []
        for class_id in sorted(set(true)):
            class_hits = [hit for hit, t in zip(hits, true, strict=True) if t == class_id]
            recalls.append(sum(class_hits) / len(class_hits))
        return {
            "uar": sum(recalls) / len(recalls),
            "war": sum(hits) / len(hits),
            "num_unmapped": sum(p is None for p in pred),
        }

    @staticmethod
    def _label_names(dataset: str | None, labels: Sequence[str] | None) -> Sequence[str]:
        if (dataset is None) == (labels is None):
            raise ValueError(f"Pass exactly one of dataset= (one of {sorted(DATASET_LABELS)}) and labels=.")
        if labels is not None:
            return labels
        if dataset.lower() not in DATASET_LABELS:
            raise ValueError(
                f"dataset={dataset!r} is not one of {sorted(DATASET_LABELS)}: pass labels= instead."
            )
        return DATASET_LABELS[dataset.lower()]

    @staticmethod
    def average_folds(fold_results: Sequence[Mapping[str, float]]) -> dict[str, float]:
        """The k-fold figure of DFEW/MAFW papers: the mean of the per-fold UARs and of the per-fold WARs."""
        if not fold_results or not all({"uar", "war"} <= set(fold) for fold in fold_results):
            raise ValueError("Give one result of `compute` (with 'uar' and 'war') per fold.")
        return {key: sum(fold[key] for fold in fold_results) / len(fold_results) for key in ("uar", "war")}
