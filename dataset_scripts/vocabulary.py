"""One emotion vocabulary shared by the seven sources, so that one emotion is one word in every prompt.

The sources name the same emotion differently (DFEW "surprise", RAVDESS "surprised", MAFW "happiness",
FERV39K "happy"). Trained on the raw names, a model would learn several answers for one emotion and see
two right options in one question; mapped to one adjective each, every answer is one word, and the
``uar_war`` metric reads each word back to its DFEW or MAFW class.

*(ours)* MER2024's "worried" becomes "anxious", not a word of its own: worry is the anticipatory
apprehension that MAFW labels anxiety (the same unpleasant, aroused state in face and voice), neither
source has the other word to conflict with, ``uar_war`` reads "anxious" as MAFW's anxiety but names no
class "worried", and "worried" beside "anxious" in one option list would give a question two answers.
RAVDESS "calm" stays "calm" (a low-arousal class RAVDESS separates from neutral), and AFEW-VA's quadrant
names stay as they are (no categorical source covers them).
"""

from __future__ import annotations

from .catalog import SOURCES, get_source

_SHARED_WORDS: dict[str, str] = {
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "neutral": "neutral",
    "angry": "angry",
    "anger": "angry",
    "surprise": "surprised",
    "surprised": "surprised",
    "disgust": "disgusted",
    "fear": "fearful",
    "fearful": "fearful",
    "contempt": "contemptuous",
    "anxiety": "anxious",
    "worried": "anxious",
    "helplessness": "helpless",
    "disappointment": "disappointed",
    "calm": "calm",
    "excited": "excited",
    "relaxed": "relaxed",
    "distressed": "distressed",
    "depressed": "depressed",
}
"""Every class name of the catalogue -> its shared word (class names mean the same in every source)."""

SHARED_VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(_SHARED_WORDS[name] for info in SOURCES.values() for name in info.classes)
)
"""The shared words, each once, in the order they first appear in the catalogue's sources."""

CIRCUMPLEX_REGIONS: dict[str, tuple[str, ...]] = {
    "pleasant, aroused": ("happy", "excited", "surprised"),
    "pleasant, calm": ("happy", "calm", "relaxed"),
    "unpleasant, aroused": (
        "angry",
        "fearful",
        "anxious",
        "disgusted",
        "contemptuous",
        "distressed",
        "surprised",
    ),
    "unpleasant, calm": ("sad", "depressed", "disappointed", "helpless"),
    "centre": ("neutral", "calm", "relaxed"),
}
"""*(ours)* Where each shared word lies on Russell's valence-arousal circle (a word may lie in two).

Words of one region can describe one clip at once (AFEW-VA's "excited" clip may well be happy), so a
distractor taken from outside the answer's source must not share a region with the answer."""


def shared_label(source: str, label: str) -> str:
    """The shared word of `source`'s class `label`, or a `ValueError` naming the source's classes."""
    classes = get_source(source).classes
    if label not in classes:
        raise ValueError(f"Label {label!r} is not a {source} class; expected one of {', '.join(classes)}.")
    return _SHARED_WORDS[label]


def shared_classes(source: str) -> tuple[str, ...]:
    """The shared words of `source`'s classes, in the source's class order (so a class id still indexes it)."""
    return tuple(_SHARED_WORDS[name] for name in get_source(source).classes)


def overlapping_words(word: str) -> frozenset[str]:
    """The shared words that may describe the same clip as `word` (those of its circumplex regions)."""
    if word not in SHARED_VOCABULARY:
        raise ValueError(f"{word!r} is not a shared word; expected one of {', '.join(SHARED_VOCABULARY)}.")
    return frozenset(other for region in CIRCUMPLEX_REGIONS.values() if word in region for other in region)
