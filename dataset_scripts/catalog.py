"""The seven source datasets: their canonical names, coarse class orders, homepages and licences.

The DFEW and MAFW class orders are those of the ``uar_war`` metric (which keeps its own copy), so that a
class id means the same class in training rows and in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

DFEW_CLASSES: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
"""DFEW's official label ids 1-7, minus one."""

MAFW_CLASSES: tuple[str, ...] = (
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
)
"""MAFW's 11 single-expression classes, in the order of its label files."""

FERV39K_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""FERV39K's 7 classes (its folder names, lower-cased)."""

CAER_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""CAER's 7 classes (its folder names, lower-cased)."""

MER24_CLASSES: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
"""MER2024's 6 discrete labels, in the order of the MERTools baseline."""

RAVDESS_CLASSES: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
"""RAVDESS's emotion codes 01-08 of its file names, minus one."""

AFEW_VA_CLASSES: tuple[str, ...] = ("neutral", "excited", "relaxed", "distressed", "depressed")
"""*(ours)* AFEW-VA has only valence and arousal: a clip's class is its quadrant of the circumplex
(neutral when both means are near zero), so that it can enter multiple-choice prompts like the others."""


@dataclass(frozen=True)
class SourceInfo:
    """What an exported dataset card and a prompt need to know about one source dataset."""

    name: str
    classes: tuple[str, ...]
    homepage: str
    license: str


SOURCES: dict[str, SourceInfo] = {
    info.name: info
    for info in (
        SourceInfo(
            "DFEW",
            DFEW_CLASSES,
            "https://dfew-dataset.github.io/",
            "DFEW EULA: non-commercial research only, no redistribution",
        ),
        SourceInfo(
            "MAFW",
            MAFW_CLASSES,
            "https://mafw-database.github.io/MAFW/",
            "MAFW EULA: non-commercial research only, no redistribution",
        ),
        SourceInfo(
            "MER24",
            MER24_CLASSES,
            "https://github.com/zeroQiaoba/MERTools/tree/master/MER2024",
            "MER2024 EULA: academic research only, no redistribution",
        ),
        SourceInfo(
            "CAER",
            CAER_CLASSES,
            "https://caer-dataset.github.io/",
            "CAER terms: non-commercial research only, no redistribution",
        ),
        SourceInfo(
            "AFEW-VA",
            AFEW_VA_CLASSES,
            "https://ibug.doc.ic.ac.uk/resources/afew-va-database/",
            "AFEW-VA terms: non-commercial research only, no redistribution",
        ),
        SourceInfo(
            "FERV39K",
            FERV39K_CLASSES,
            "https://wangyanckxx.github.io/Proj_CVPR2022_FERV39k.html",
            "FERV39k terms: non-commercial research only, no redistribution",
        ),
        SourceInfo(
            "RAVDESS",
            RAVDESS_CLASSES,
            "https://zenodo.org/records/1188976",
            "CC BY-NC-SA 4.0",
        ),
    )
}
"""The sources of docs/architecture.md ("Data"), by the name that a record's ``source`` field holds."""


def get_source(name: str) -> SourceInfo:
    """The source called `name`, or a `ValueError` that lists the known names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"Unknown source {name!r}; expected one of {', '.join(SOURCES)}.") from None
