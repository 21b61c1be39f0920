"""The six model stages of a clip, and the context that asks their models with retries and counts the cost.

Each stage is a function of a `StageContext` that returns its parsed output (a JSON-able dict); the context renders
the stage's prompt, reaches its backends through `ask` / `transcribe` / `classify` (each retried with backoff, the
attempts, failures and tokens counted in the stage's `StageStats`), and keeps the last raw reply for the trace.
A stage that cannot be completed raises `StageFailure`, which names the clip and the stage.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from dataset_scripts import SOURCES

from .backends import Backend, BackendError, ModelRequest, build_backend
from .config import AudioConfig, BackendConfig, DescriptionConfig, FacesConfig, StageConfig
from .inputs import Clip
from .media import ClipMedia, FaceRequest, FrameRequest, MediaRequest
from .prompts import ReplyFormatError, read_audio_cues, read_review, read_synthesis, read_text, read_verdict

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 60.0


class StageFailure(RuntimeError):
    """A stage that could not be completed for a clip (its backend kept failing, or the media is unreadable)."""

    def __init__(self, clip_id: str, stage: str, reason: str):
        super().__init__(f"clip {clip_id!r}, stage {stage}: {reason}")
        self.clip_id = clip_id
        self.stage = stage
        self.reason = reason


@dataclass
class StageStats:
    """What one stage cost in a run: clips computed, read from the cache, failed or skipped (dropped before), the
    requests sent (every attempt) and those that failed, the tokens the servers reported and the seconds spent."""

    computed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if not name.startswith("_")} | {
            "seconds": round(self.seconds, 3)
        }


class BackendPool:
    """One backend object per distinct backend config, so that stages sharing a model share its loaded pipeline."""

    def __init__(self, configs: list[BackendConfig]):
        self._backends = {repr(config): build_backend(config) for config in configs}

    def __getitem__(self, config: BackendConfig) -> Backend:
        return self._backends[repr(config)]


@dataclass
class StageContext:
    """What a stage function needs for one clip: its config, the outputs of the stages before it, the clip's media
    (decoded on first use) and its backends."""

    clip: Clip
    stage: str
    config: StageConfig
    outputs: dict[str, dict[str, Any]]
    backends: BackendPool
    stats: StageStats
    media: Callable[[], ClipMedia]
    raw: str = ""
    used: list[str] = field(default_factory=list)

    def prompt(self, **fields: Any) -> str:
        """The stage's template filled with the clip's fields, the cues of the stages before and `fields`."""
        values = {
            "id": self.clip.id,
            "source": self.clip.source,
            "label": self.clip.label,
            "classes": ", ".join(SOURCES[self.clip.source].classes),
            **cue_fields(self.outputs),
            **fields,
        }
        return string.Template(self.config.prompt).substitute({k: _text(v) for k, v in values.items()})

    def ask(
        self,
        backend: BackendConfig,
        text: str,
        read: Callable[[str], T],
        images: tuple[bytes, ...] = (),
        audio: np.ndarray | None = None,
    ) -> T:
        """The chat model's reply to `text` (with `images` / `audio`), read by `read`; a reply that `read` refuses
        is retried like a failed request, and kept in `raw` for the trace."""
        request = ModelRequest(self.clip.id, self.stage, text, images, audio)

        def attempt() -> T:
            reply = self.backends[backend].chat(request)
            usage = reply.usage or {}
            self.stats.add(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
            self.raw = reply.text
            return read(reply.text)

        return self._retrying(backend, attempt)

    def transcribe(self, backend: BackendConfig, waveform: np.ndarray) -> dict[str, Any]:
        return self._retrying(backend, lambda: self.backends[backend].transcribe(waveform))

    def classify(self, backend: BackendConfig, image: bytes) -> Any:
        return self._retrying(backend, lambda: self.backends[backend].classify(image))

    def _retrying(self, backend: BackendConfig, attempt: Callable[[], T]) -> T:
        name = backend.describe()
        if name not in self.used:
            self.used.append(name)
        attempts = backend.max_retries + 1
        for number in range(attempts):
            self.stats.add(requests=1)
            try:
                return attempt()
            except BackendError as error:
                last = str(error)
                if not error.retryable:
                    self.stats.add(failed_requests=1)
                    raise StageFailure(self.clip.id, self.stage, f"{name}: {error}") from None
            except ReplyFormatError as error:
                last = f"the reply does not follow the format: {error}"
            # A local pipeline or a callable that raised: its message is the reason, and another try may pass.
            except Exception as error:
                last = f"{type(error).__name__}: {error}"
            self.stats.add(failed_requests=1)
            if number + 1 < attempts:
                time.sleep(min(MAX_BACKOFF_SECONDS, backend.backoff * 2**number) * random.uniform(0.5, 1.0))
        raise StageFailure(
            self.clip.id,
            self.stage,
            f"{name} failed {attempts} time(s), last: {last}. Fix the backend (or raise its max_retries / timeout) "
            "and run again: the finished stages are cached.",
        )


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _attributes_text(attributes: dict[str, Any]) -> str:
    return ", ".join(f"{name}: {value}" for name, value in attributes.items())


def describe_faces(faces: dict[str, Any]) -> str:
    """The tracklets in words, e.g. '2 faces; face 1 seen in 7 of 8 frames (age: 31, gender: female); ...'."""
    tracklets = faces["tracklets"]
    if not tracklets:
        return f"no face found in {faces['frames_searched']} frames"
    parts = [f"{len(tracklets)} face{'s' if len(tracklets) > 1 else ''}"]
    for number, tracklet in enumerate(tracklets, start=1):
        attributes = _attributes_text(tracklet["attributes"])
        seen = f"face {number} seen in {len(tracklet['times'])} of {faces['frames_searched']} frames"
        parts.append(f"{seen} ({attributes})" if attributes else seen)
    return "; ".join(parts)


def cue_fields(outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The prompt fields that the outputs of stages 1-3 (and of the synthesis) provide."""
    fields: dict[str, Any] = {}
    if "description" in outputs:
        fields["description"] = outputs["description"]["description"]
    if "faces" in outputs:
        fields["facial_movements"] = outputs["faces"]["facial_movements"] or "no face found"
        fields["faces"] = describe_faces(outputs["faces"])
    if "audio" in outputs:
        audio = outputs["audio"]
        fields["transcript"] = audio["transcript"] if audio["has_audio"] else "no audio track"
        fields |= {
            "language": audio["language"],
            "audio_caption": audio["caption"],
            "vocal_emotion": audio["vocal_emotion"],
        }
    if "synthesis" in outputs:
        fields |= outputs["synthesis"]
    return fields


# -- the stages ------------------------------------------------------------------------------------------------------


def describe_scene(context: StageContext) -> dict[str, Any]:
    """Stage 1: the VLM describes the scene and the people from frames at about 1 fps."""
    frames = context.media().frames
    if not frames:
        raise StageFailure(context.clip.id, context.stage, f"{context.clip.path} has no video frames")
    prompt = context.prompt(frame_count=len(frames))
    return {"description": context.ask(context.config.backend, prompt, read_text, images=tuple(frames))}


def read_faces(context: StageContext) -> dict[str, Any]:
    """Stage 2: tracklets with their attributes, and the VLM on the main face's crops for the facial movements."""
    config: FacesConfig = context.config
    media = context.media()
    tracklets = [
        {
            "times": tracklet.times,
            "boxes": tracklet.boxes,
            "attributes": {
                name: context.classify(backend, tracklet.portrait)
                for name, backend in config.attributes.items()
            },
        }
        for tracklet in media.tracklets
    ]
    movements = None
    if tracklets:
        main = media.tracklets[0]
        attributes = _attributes_text(tracklets[0]["attributes"])
        prompt = context.prompt(
            crop_count=len(main.crops), face_attributes=attributes or "age and gender not estimated"
        )
        movements = context.ask(config.backend, prompt, read_text, images=tuple(main.crops))
    return {"frames_searched": media.face_frames, "tracklets": tracklets, "facial_movements": movements}


def listen(context: StageContext) -> dict[str, Any]:
    """Stage 3: speech recognition, then the audio-text model for a caption and the vocal emotion."""
    config: AudioConfig = context.config
    audio = context.media().audio
    if audio is None or audio.size == 0:
        empty = {"transcript": None, "language": None, "segments": [], "caption": None, "vocal_emotion": None}
        return {"has_audio": False, **empty}
    speech = context.transcribe(config.asr, audio)
    prompt = context.prompt(transcript=speech["transcript"] or "(no speech)", language=speech["language"])
    return {"has_audio": True, **speech, **context.ask(config.backend, prompt, read_audio_cues, audio=audio)}


def check_consistency(context: StageContext) -> dict[str, Any]:
    """Stage 4: the LLM checks the cues against each other."""
    return context.ask(context.config.backend, context.prompt(), read_verdict)


def synthesize(context: StageContext) -> dict[str, Any]:
    """Stage 5: the LLM writes the reasoning, the open-vocabulary labels and the intensity."""
    return context.ask(context.config.backend, context.prompt(), read_synthesis)


def self_review(context: StageContext) -> dict[str, Any]:
    """Stage 6: the LLM scores how well the reasoning agrees with the source's coarse label, 0-10."""
    return context.ask(context.config.backend, context.prompt(), read_review)


def inconsistent(output: dict[str, Any]) -> str | None:
    """Why the consistency check drops a clip (None: it does not)."""
    if output["verdict"] == "consistent":
        return None
    return f"{output['verdict']}: {output['reason']}"


@dataclass(frozen=True)
class StageSpec:
    """A stage: its function, the clip fields its result depends on (beyond its config), and what ends a clip."""

    run: Callable[[StageContext], dict[str, Any]]
    clip_fields: tuple[str, ...] = ("video",)
    drop_reason: Callable[[dict[str, Any]], str | None] = lambda output: None


STAGE_SPECS: dict[str, StageSpec] = {
    "description": StageSpec(describe_scene),
    "faces": StageSpec(read_faces),
    "audio": StageSpec(listen),
    "consistency": StageSpec(check_consistency, drop_reason=inconsistent),
    "synthesis": StageSpec(synthesize),
    "self_review": StageSpec(self_review, clip_fields=("video", "source", "label")),
}


def media_request(stages: dict[str, StageConfig], missing: set[str]) -> MediaRequest:
    """What the `missing` stages need decoded: frames for the description, faces, the audio track."""
    description: DescriptionConfig = stages["description"]
    faces: FacesConfig = stages["faces"]
    audio: AudioConfig = stages["audio"]
    return MediaRequest(
        frames=FrameRequest(description.fps, description.max_frames, description.max_side)
        if "description" in missing
        else None,
        faces=FaceRequest(
            faces.fps,
            faces.max_frames,
            faces.detector,
            faces.max_faces,
            faces.crops,
            faces.crop_size,
            faces.margin,
        )
        if "faces" in missing
        else None,
        audio_seconds=audio.max_seconds if "audio" in missing else None,
    )
