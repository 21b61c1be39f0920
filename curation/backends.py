"""The three kinds of model behind a stage, each playing one of three roles: chat, speech recognition, classification.

- `OpenAIBackend`: a chat-completions endpoint (vLLM, TGI, llama.cpp's server, a hosted API), with images as base64
  JPEG `image_url`s and audio as base64 WAV `input_audio`, through the standard library (one request per call, so
  that the run's thread pool bounds the requests in flight);
- `TransformersBackend`: a local `transformers.pipeline`, loaded on first use and called by one thread at a time;
- `CallableBackend`: a Python function named `module:function`. As chat model it receives the `ModelRequest` and
  returns the reply text; as speech recogniser `(waveform, sampling_rate)` and returns the text or a dict like the
  ASR pipeline's (`text`, `chunks`, `language`); as classifier a `PIL.Image` and returns a label or a number. It is
  called from several threads at once (set `concurrency: 1` if it cannot be).

Errors are `BackendError`s that say whether retrying may help (a timeout, HTTP 429 or 5xx, a body that is not JSON)
or not (a wrong URL, model name or key), and how to fix the latter.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import BackendConfig

SAMPLING_RATE = 16_000
"""The audio of every request, mono float32 at this rate (Whisper's)."""

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class BackendError(RuntimeError):
    """A backend that did not answer; `retryable` says whether asking again may help."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ModelRequest:
    """One question to a chat model: the prompt, the JPEG images and the audio it is about, and, for logs and
    callables that script replies, the clip and stage asking."""

    clip_id: str
    stage: str
    text: str
    images: tuple[bytes, ...] = ()
    audio: np.ndarray | None = None

    def pil_images(self) -> list[Any]:
        """The images decoded as `PIL.Image`s (RGB)."""
        from PIL import Image

        return [Image.open(io.BytesIO(data)).convert("RGB") for data in self.images]


@dataclass(frozen=True)
class Reply:
    """A chat model's reply text and, when the server reports it, its `usage` (prompt/completion tokens)."""

    text: str
    usage: dict[str, Any] | None = None


def wav_bytes(waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """Mono float waveform in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(sampling_rate)
        file.writeframes(pcm.tobytes())
    return buffer.getvalue()


def read_speech(value: Any) -> dict[str, Any]:
    """`{"transcript", "language", "segments": [{"start", "end", "text"}]}` from an ASR pipeline's output
    (`text`, `chunks` with `timestamp` and `language`) or a callable's plain text."""
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise BackendError(
            f"expected the speech recogniser to return a text or {{'text': ...}}, got {value!r:.200}"
        )
    chunks = value.get("chunks") or []
    language = value.get("language") or next((c.get("language") for c in chunks if c.get("language")), None)
    segments = []
    for chunk in chunks:
        start, end = chunk.get("timestamp") or (None, None)
        segments.append({"start": start, "end": end, "text": str(chunk.get("text", "")).strip()})
    return {"transcript": value["text"].strip(), "language": language, "segments": segments}


class OpenAIBackend:
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise BackendError(
                    f"The backend {config.describe()} reads its API key from ${config.api_key_env}, which is not set; "
                    f"export {config.api_key_env}=... before the run.",
                    retryable=False,
                )
            self.headers["Authorization"] = f"Bearer {key}"

    def chat(self, request: ModelRequest) -> Reply:
        content: list[dict[str, Any]] = [
            {
                "type": "image_url",
                "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(image).decode()},
            }
            for image in request.images
        ]
        if request.audio is not None:
            data = base64.b64encode(wav_bytes(request.audio)).decode()
            content.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
        content.append({"type": "text", "text": request.text})
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
            **self.config.extra,
        }
        # A request id that vLLM logs (and echoes with --enable-request-id-headers): the clip and stage asking.
        request_id = urllib.parse.quote(
            f"{request.stage}:{request.clip_id}:{uuid.uuid4().hex[:8]}", safe=":/"
        )
        http_request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={**self.headers, "X-Request-Id": request_id}
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self.config.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            raise self._http_error(error) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise BackendError(
                f"no reply from {self.url} within {self.config.timeout:g} s ({reason})"
            ) from None
        try:
            payload = json.loads(data)
            text = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                f"{self.url} answered something that is not a chat completion: {data[:200]!r}"
            ) from None
        if not isinstance(text, str):
            raise BackendError(f"{self.url} answered a chat completion without text: {data[:200]!r}")
        usage = payload.get("usage")
        return Reply(text, usage if isinstance(usage, dict) else None)

    def _http_error(self, error: urllib.error.HTTPError) -> BackendError:
        detail = error.read()[:300].decode("utf-8", "replace")
        message = f"{self.url} answered HTTP {error.code}: {detail}"
        if error.code in _RETRYABLE_STATUS or error.code >= 500:
            return BackendError(message)
        hint = {
            401: f"check the API key (api_key_env: {self.config.api_key_env})",
            403: f"check the API key (api_key_env: {self.config.api_key_env})",
            404: f"check base_url (it usually ends in /v1) and that the server serves model {self.config.model!r}",
        }.get(error.code, "check the request against the server's limits (images per prompt, context length)")
        return BackendError(f"{message}; {hint}", retryable=False)


class TransformersBackend:
    """A local transformers pipeline, built on first use; one call at a time (a GPU serves one batch anyway)."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self._pipeline = None
        self._lock = threading.Lock()

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._pipeline is None:
                import transformers

                device = {} if self.config.device is None else {"device": self.config.device}
                self._pipeline = transformers.pipeline(
                    self.config.task, model=self.config.model, **device, **self.config.pipeline_kwargs
                )
            return self._pipeline(*args, **kwargs)

    def chat(self, request: ModelRequest) -> Reply:
        temperature = self.config.temperature
        sampling = {"do_sample": temperature > 0} | ({"temperature": temperature} if temperature > 0 else {})
        lengths = {"max_new_tokens": self.config.max_tokens, "return_full_text": False}
        if self.config.task == "text-generation":
            if request.images or request.audio is not None:
                raise BackendError(
                    f"{self.config.describe()} is a text-generation pipeline, but stage {request.stage} sends images "
                    "or audio; use task image-text-to-text or any-to-any",
                    retryable=False,
                )
            messages = [{"role": "user", "content": request.text}]
            outputs = self._call(messages, **lengths, **sampling, **self.config.extra)
        else:
            content: list[dict[str, Any]] = [
                {"type": "image", "image": image} for image in request.pil_images()
            ]
            if request.audio is not None:
                content.append({"type": "audio", "audio": request.audio})
            content.append({"type": "text", "text": request.text})
            messages = [{"role": "user", "content": content}]
            outputs = self._call(text=messages, **lengths, generate_kwargs=sampling, **self.config.extra)
        return Reply(outputs[0]["generated_text"])

    def transcribe(self, waveform: np.ndarray) -> dict[str, Any]:
        inputs = {"raw": waveform, "sampling_rate": SAMPLING_RATE}
        return read_speech(
            self._call(inputs, return_timestamps=True, return_language=True, **self.config.extra)
        )

    def classify(self, image: bytes) -> Any:
        (picture,) = ModelRequest("", "", "", images=(image,)).pil_images()
        return self._call(picture, **self.config.extra)[0]["label"]


class CallableBackend:
    """A Python function named `module:function`, imported when the run starts."""

    def __init__(self, config: BackendConfig):
        self.config = config
        module_name, _, name = config.function.partition(":")
        try:
            self.function: Callable[..., Any] = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as error:
            raise BackendError(
                f"Cannot load the callable {config.function!r} ({error}); is its module importable from here?",
                retryable=False,
            ) from None

    def chat(self, request: ModelRequest) -> Reply:
        return Reply(self.function(request))

    def transcribe(self, waveform: np.ndarray) -> dict[str, Any]:
        return read_speech(self.function(waveform, SAMPLING_RATE))

    def classify(self, image: bytes) -> Any:
        (picture,) = ModelRequest("", "", "", images=(image,)).pil_images()
        value = self.function(picture)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BackendError(
                f"expected {self.config.function} to return a label or a number, got {value!r:.100}"
            )
        return value


Backend = OpenAIBackend | TransformersBackend | CallableBackend

_KINDS: dict[str, type[Backend]] = {
    "openai": OpenAIBackend,
    "transformers": TransformersBackend,
    "callable": CallableBackend,
}


def build_backend(config: BackendConfig) -> Backend:
    """The backend `config` describes (a transformers pipeline is loaded only on its first call)."""
    return _KINDS[config.kind](config)
