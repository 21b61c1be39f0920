"""What the curation tests share: generated source datasets, scripted model replies (as callables and as an
OpenAI-compatible HTTP server with faults), and configs that point the pipeline at them.

The callables are named `curation_fixtures:<function>` in configs: the tests folder is on `sys.path` under pytest,
and on `PYTHONPATH` for the subprocess of the kill-and-resume test.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

from omni_emotion.synthetic.media import write_clip

STAGE_NAMES = ("description", "faces", "audio", "consistency", "synthesis", "self_review")

INCONSISTENT = "MER24/sample_00000002"
"""The clip whose cues the consistency check finds contradictory."""
LOW_SCORE = "DFEW/clips/neutral_2"
"""The clip whose reasoning the self-review scores 3."""

CALLS: Counter = Counter()
"""(stage, clip id) -> requests the scripted callables answered."""


def reply_for(stage: str, clip_id: str) -> str:
    """The reply a well-behaved model gives for `stage` of `clip_id`."""
    if stage == "description":
        return f"A person sits before a grey wall ({clip_id})."
    if stage == "faces":
        return "Inner brows raised, lip corners pulled down."
    if stage == "audio":
        return json.dumps({"caption": "A low, steady voice.", "vocal_emotion": "subdued"})
    if stage == "consistency":
        verdict = "inconsistent" if clip_id == INCONSISTENT else "consistent"
        return json.dumps({"verdict": verdict, "reason": f"the cues are {verdict}"})
    if stage == "synthesis":
        reasoning = "The lowered lip corners and the subdued voice suggest sadness."
        return (
            "```json\n"
            + json.dumps({"reasoning": reasoning, "open_vocabulary": ["Sad", "tired"], "intensity": "medium"})
            + "\n```"
        )
    score = 3 if clip_id == LOW_SCORE else 8
    return json.dumps({"score": score, "reason": f"scored {score}"})


def chat(request) -> str:
    """A chat model as a callable: the scripted reply, counted."""
    CALLS[request.stage, request.clip_id] += 1
    return reply_for(request.stage, request.clip_id)


def asr(waveform, sampling_rate: int) -> dict[str, Any]:
    """A speech recogniser as a callable, answering like the transformers ASR pipeline with timestamps."""
    seconds = len(waveform) / sampling_rate
    return {
        "text": " I am fine.",
        "chunks": [{"timestamp": (0.0, seconds), "text": " I am fine.", "language": "english"}],
    }


def age(image) -> int:
    """An age estimator as a callable (it checks that it got the face crop as a picture)."""
    assert image.size == (224, 224)
    return 34


def gender(image) -> str:
    return "female"


# -- data ------------------------------------------------------------------------------------------------------------


def write_sources(root: Path) -> dict[str, Path]:
    """MER2024 (official layout, 2 clips), RAVDESS (1 clip) and a user's CSV of DFEW-labelled clips (3 clips, one
    without sound), all 1 s of the moving face photo."""
    mer = root / "MER24"
    (mer / "video-labeled").mkdir(parents=True)
    (mer / "label-disdim.csv").write_text(
        "name,discrete,valence\nsample_00000001,sad,-2\nsample_00000002,happy,3\n"
    )
    for name in ("sample_00000001", "sample_00000002"):
        write_clip(mer / "video-labeled" / f"{name}.mp4", seconds=1.0)
    ravdess = root / "RAVDESS"
    (ravdess / "Actor_01").mkdir(parents=True)
    write_clip(ravdess / "Actor_01" / "01-01-04-01-01-01-01.mp4", seconds=1.0)
    mine = root / "mine"
    (mine / "clips").mkdir(parents=True)
    rows = ["path,label,source"]
    for name, label, audio in (
        ("sad_1", "sad", True),
        ("neutral_2", "neutral", True),
        ("silent_3", "sad", False),
    ):
        write_clip(mine / "clips" / f"{name}.mp4", seconds=1.0, audio=audio)
        rows.append(f"clips/{name}.mp4,{label},DFEW")
    (mine / "clips.csv").write_text("\n".join(rows) + "\n")
    return {"MER24": mer, "RAVDESS": ravdess, "csv": mine / "clips.csv"}


def config(
    sources: dict[str, Path], chat_backend: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A config over `sources`: every chat stage on `chat_backend` (default: the `chat` callable), the scripted
    ASR and age/gender callables, decoding in the calling process, 1 HRE candidate per source."""
    backend = chat_backend or {"kind": "callable", "function": "curation_fixtures:chat"}
    stages = {name: {"backend": "model"} for name in STAGE_NAMES}
    stages["audio"]["asr"] = {"kind": "callable", "function": "curation_fixtures:asr"}
    stages["faces"]["attributes"] = {
        "age": {"kind": "callable", "function": "curation_fixtures:age"},
        "gender": {"kind": "callable", "function": "curation_fixtures:gender"},
    }
    return {
        "inputs": [
            {"source": "MER24", "root": str(sources["MER24"])},
            {"source": "RAVDESS", "root": str(sources["RAVDESS"])},
            {"csv": str(sources["csv"])},
        ],
        "backends": {"model": backend},
        "stages": stages,
        "concurrency": 2,
        "cpu_workers": 0,
        "hre": {"per_source": 1, "seed": 0},
    } | overrides


# -- an OpenAI-compatible server with scripted replies and faults ----------------------------------------------------


class ScriptedServer:
    """A chat-completions server on 127.0.0.1 answering `reply_for`, identifying the clip and stage by the
    request id the pipeline sends. `faults[(stage, clip)]` lists what the next requests of that pair get, in order:
    "timeout" (a reply later than the client waits), "500", "malformed" (a body that is not JSON), "format" (a
    reply that breaks the stage's format) or "hang" (no reply until `release` is set)."""

    def __init__(self, delay: float = 4.0):
        self.faults: dict[tuple[str, str], list[str]] = {}
        self.requests: Counter = Counter()
        self.bodies: dict[tuple[str, str], dict] = {}
        self.hanging = threading.Event()
        self.release = threading.Event()
        self.delay = delay
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stage, clip_id, _ = urllib.parse.unquote(self.headers["X-Request-Id"]).split(":")
                with server._lock:
                    server.requests[stage, clip_id] += 1
                    server.bodies[stage, clip_id] = body
                    queued = server.faults.get((stage, clip_id))
                    fault = queued.pop(0) if queued else None
                if fault == "hang":
                    server.hanging.set()
                    server.release.wait(60)
                    return
                if fault == "timeout":
                    time.sleep(server.delay)
                if fault == "500":
                    self._send(500, b'{"error": "internal"}')
                    return
                if fault == "malformed":
                    self._send(200, b'{"choices": [')
                    return
                content = "I would rather not say." if fault == "format" else reply_for(stage, clip_id)
                completion = {
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                }
                self._send(200, json.dumps(completion).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout fault)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def backend(self, **settings: Any) -> dict[str, Any]:
        """The config of a backend served here (timeout 3 s, fast retries)."""
        return {
            "kind": "openai",
            "base_url": self.url,
            "model": "scripted",
            "timeout": 3.0,
            "backoff": 0.01,
        } | settings

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
