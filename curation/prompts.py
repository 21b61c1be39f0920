"""Our prompt templates, the fields each stage fills in, and the readers of the models' replies.

The paper does not publish its prompts; these are ours. Each is a `string.Template` (`$description`, `${label}`), so
that the JSON examples in a prompt need no escaping; a config can replace any of them (`stages.<name>.prompt`) and
may use the fields of `PROMPT_FIELDS[stage]`. Every reader raises `ReplyFormatError` saying what was expected, so that
the stage retries and, if the model keeps breaking the format, the clip fails with the reply kept in its trace.
"""

from __future__ import annotations

import json
import math
from typing import Any

COMMON_FIELDS = frozenset({"id", "source", "label", "classes"})
"""Fields of every prompt: the clip id, its source dataset, its coarse label and the source's classes."""

CUE_FIELDS = frozenset(
    {"description", "facial_movements", "faces", "transcript", "language", "audio_caption", "vocal_emotion"}
)
"""The cues of stages 1-3, for the prompts of the stages that read them."""

PROMPT_FIELDS: dict[str, frozenset[str]] = {
    "description": COMMON_FIELDS | {"frame_count"},
    "faces": COMMON_FIELDS | {"crop_count", "face_attributes"},
    "audio": COMMON_FIELDS | {"transcript", "language"},
    "consistency": COMMON_FIELDS | CUE_FIELDS,
    "synthesis": COMMON_FIELDS | CUE_FIELDS,
    "self_review": COMMON_FIELDS | CUE_FIELDS | {"reasoning", "open_vocabulary", "intensity"},
}

_CUES = """\
Scene and people: $description
Facial movements of the main face: $facial_movements
Faces tracked: $faces
Speech transcript ($language): $transcript
Sound: $audio_caption
Emotion in the voice: $vocal_emotion"""

DEFAULT_PROMPTS: dict[str, str] = {
    "description": (
        "These are $frame_count frames of a video clip, about one per second, in order. Describe the scene and the "
        "people in it: the setting, what each person looks like and does, their posture, gestures, gaze and facial "
        "expressions, and how these change over time. Describe what is visible; do not name emotions. Answer in one "
        "paragraph."
    ),
    "faces": (
        "These are $crop_count close-ups of one person's face from a video, in time order ($face_attributes). "
        "Describe the facial movements and how they change: eyebrows, eyelids, eyes and gaze, nose, cheeks, lips, "
        "mouth, jaw and head pose, in plain words such as 'inner brows raised' or 'lip corners pulled down'. Do not "
        "name emotions. Answer in a few sentences."
    ),
    "audio": (
        'Listen to this audio clip; its speech transcript is "$transcript" (language: $language). Reply with a JSON '
        'object with two keys: "caption", one or two sentences on the sound (the voices and their tone, pitch, '
        'speed and loudness, and any other sounds), and "vocal_emotion", the emotion the voice conveys in a few '
        'words, or "none" when there is no voice.'
    ),
    "consistency": (
        "These cues were gathered about one video clip to explain the emotion of its main person:\n\n"
        f"{_CUES}\n\n"
        "Do the cues agree with each other about the person and what they feel? Reply with a JSON object "
        '{"verdict": "consistent" | "inconsistent" | "uncertain", "reason": "<one sentence>"}: "inconsistent" when '
        "cues contradict each other (e.g. the face described is not the person of the scene, or the voice and the "
        'face convey opposite feelings), "uncertain" when they are too thin to tell.'
    ),
    "synthesis": (
        "Explain the emotion of the main person of a video clip from these cues:\n\n"
        f"{_CUES}\n\n"
        'Reply with a JSON object with three keys: "reasoning", a paragraph that explains the person\'s emotion '
        "from the visual clues (scene, body, face), the acoustic clues (the voice) and the textual clues (what is "
        'said), saying which clue supports what; "open_vocabulary", a list of one to five words naming the '
        'emotions, such as ["frustrated", "tense"]; "intensity", one of "low", "medium" or "high".'
    ),
    "self_review": (
        'A clip of the $source dataset is labelled "$label" (its classes: $classes). An annotator explained the '
        "emotion of its main person as follows.\n\n"
        "Reasoning: $reasoning\n"
        "Emotion words: $open_vocabulary\n\n"
        "How well does the explanation agree with the label? Score it from 0 (it contradicts the label) to 10 (it "
        'fully supports it). Reply with a JSON object {"score": <0-10>, "reason": "<one sentence>"}.'
    ),
}

VERDICTS = ("consistent", "inconsistent", "uncertain")
INTENSITIES = ("low", "medium", "high")


class ReplyFormatError(ValueError):
    """A reply that does not follow the format its prompt asks for."""


def _excerpt(reply: str) -> str:
    return repr(reply if len(reply) <= 200 else reply[:200] + "...")


def read_text(reply: str) -> str:
    """A free-text answer: the reply itself, which must not be empty."""
    if not isinstance(reply, str) or not reply.strip():
        raise ReplyFormatError(f"expected a text answer, got {reply!r}")
    return reply.strip()


def read_json_object(reply: str) -> dict[str, Any]:
    """The JSON object in a reply, bare, fenced or among words (from its first `{` to its last `}`)."""
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end < start:
        raise ReplyFormatError(f"expected a JSON object, got {_excerpt(reply)}")
    try:
        value = json.loads(reply[start : end + 1])
    except json.JSONDecodeError as error:
        raise ReplyFormatError(f"expected a JSON object ({error.msg}), got {_excerpt(reply)}") from None
    if not isinstance(value, dict):
        raise ReplyFormatError(f"expected a JSON object, got {_excerpt(reply)}")
    return value


def _text(value: dict[str, Any], key: str, reply: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text.strip():
        raise ReplyFormatError(f"expected a non-empty string under {key!r}, got {_excerpt(reply)}")
    return text.strip()


def _choice(value: dict[str, Any], key: str, choices: tuple[str, ...], reply: str) -> str:
    choice = value.get(key)
    normalised = choice.strip().lower() if isinstance(choice, str) else None
    if normalised not in choices:
        raise ReplyFormatError(f"expected {key!r} to be one of {', '.join(choices)}, got {_excerpt(reply)}")
    return normalised


def read_audio_cues(reply: str) -> dict[str, Any]:
    """`{"caption", "vocal_emotion"}` of the audio-text model."""
    value = read_json_object(reply)
    return {"caption": _text(value, "caption", reply), "vocal_emotion": _text(value, "vocal_emotion", reply)}


def read_verdict(reply: str) -> dict[str, Any]:
    """`{"verdict", "reason"}` of the consistency check."""
    value = read_json_object(reply)
    return {"verdict": _choice(value, "verdict", VERDICTS, reply), "reason": _text(value, "reason", reply)}


def read_synthesis(reply: str) -> dict[str, Any]:
    """`{"reasoning", "open_vocabulary", "intensity"}`; the words lower-cased, without repeats."""
    value = read_json_object(reply)
    words = value.get("open_vocabulary")
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ReplyFormatError(f"expected 'open_vocabulary' to be a list of words, got {_excerpt(reply)}")
    return {
        "reasoning": _text(value, "reasoning", reply),
        "open_vocabulary": list(dict.fromkeys(word.strip().lower() for word in words)),
        "intensity": _choice(value, "intensity", INTENSITIES, reply),
    }


def read_review(reply: str) -> dict[str, Any]:
    """`{"score", "reason"}` of the self-review, the score a number in 0-10."""
    value = read_json_object(reply)
    score = value.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ReplyFormatError(f"expected 'score' to be a number from 0 to 10, got {_excerpt(reply)}")
    if not 0 <= score <= 10:
        raise ReplyFormatError(f"expected 'score' to lie in 0-10, got {score}")
    return {"score": float(score), "reason": _text(value, "reason", reply)}
