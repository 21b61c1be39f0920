"""The answer format of Omni-Emotion's emotion reasoning: the default questions, how an answer is written and
how its emotion words are read back.

Standard library only: `omni_emotion.pipeline` copies this file into checkpoints as it is, so that the
`video-emotion-analysis` pipeline parses answers the same way where this package is not installed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ANSWER_PREFIX = "Emotions:"
"""Phase-3 answers end with a line `Emotions: word, word`, which `parse_emotion_answer` reads back."""

REASONING_QUESTIONS: tuple[str, ...] = (
    "Describe the emotional state of the person in the video and explain the cues behind it.",
    "How does the person feel? Reason from their face, their voice and what they say.",
    "What emotions is this person experiencing, and what gives them away?",
    "Analyse the person's emotions using their expression, tone of voice and words.",
    "Explain what the person is feeling and why you think so.",
    "What is going on emotionally for the person in this clip? Walk through the evidence.",
    "Interpret the person's emotional state from what you see and hear.",
    "Identify the person's emotions and justify them with the visual and audio cues.",
)

"""Open questions about the person's emotional state: phase 3's reasoning instructions and the default prompt."""


def format_emotion_answer(reasoning: str, emotions: Sequence[str]) -> str:
    """The phase-3 answer: the reasoning, a blank line, then `Emotions: a, b`."""
    line = f"{ANSWER_PREFIX} {', '.join(emotions)}"
    return f"{reasoning.strip()}\n\n{line}" if reasoning.strip() else line


_MARKER = re.compile(r"emotions?(?:[ \t]+(?:labels?|words?))?[ \t*_]*[:：]", re.IGNORECASE)
_SEPARATORS = re.compile(r"[,;/|、，；\n]|\band\b|\bor\b|&", re.IGNORECASE)
_NO_EMOTION = {"none", "n/a", "na", "unknown", "no emotion", "nothing"}


def _words(listing: str) -> list[str]:
    listing = re.sub(r"\([^)]*\)", " ", listing)
    words = []
    for item in _SEPARATORS.split(listing):
        word = re.sub(r"^[\s\-*•#>\d.)]+", "", item)
        word = word.strip(" \t\"'`‘’“”[]{}*_.!?:").lower()
        if word and word not in _NO_EMOTION and len(word.split()) <= 4 and word not in words:
            words.append(word)
    return words


def parse_emotion_answer(text: str) -> list[str]:
    """The emotion words of a generated phase-3 answer, lower-cased and de-duplicated in order.

    Reads the last `Emotions: ...` (also `Emotion labels:`, bold or bulleted, inline or followed by a
    bullet list, a Python-style list); an answer that is only a short list of words is read as one.
    Anything else gives `[]`, which emer_ov scores as an empty prediction.
    """
    markers = list(_MARKER.finditer(text))
    if markers:
        rest = text[markers[-1].end() :]
        line, _, following = rest.partition("\n")
        if line.strip(" \t*_"):
            return _words(line)
        bullets = []
        for candidate in following.splitlines():
            if not candidate.strip():
                if bullets:
                    break
                continue
            if not re.match(r"\s*(?:[-*•]|\d+[.)])\s*", candidate):
                break
            bullets.append(candidate)
        return _words("\n".join(bullets))
    stripped = text.strip()
    looks_like_list = "\n" not in stripped and not re.search(r"[.!?]\s+\S", stripped)
    words = _words(stripped) if looks_like_list else []
    return words if all(len(word.split()) <= 3 for word in words) and len(words) <= 10 else []
