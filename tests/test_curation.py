"""The curation pipeline: generated clips through the six stages, with scripted callables and a scripted
OpenAI-compatible server (faults included), resumed after a kill, rerun after a prompt change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from curation_fixtures import (
    CALLS,
    INCONSISTENT,
    LOW_SCORE,
    STAGE_NAMES,
    ScriptedServer,
    config,
    write_sources,
)

from curation.backends import TransformersBackend
from curation.config import STAGES, ConfigError, load_config, parse_config
from curation.inputs import Clip
from curation.media import track_faces
from curation.pipeline import CurationError, run_curation
from curation.prompts import ReplyFormatError, read_review, read_synthesis, read_verdict
from curation.selection import ClipOutcome, select
from dataset_scripts import RECORD_FIELDS, check_disjoint, read_records
from omni_emotion.cli import main

TESTS = Path(__file__).parent
RAVDESS_CLIP = "RAVDESS/01-01-04-01-01-01-01"
CURATED = ["MER24/sample_00000001", INCONSISTENT, "DFEW/clips/sad_1", LOW_SCORE, "DFEW/clips/silent_3"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture
def server():
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fresh_calls():
    CALLS.clear()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_config(data: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_pipeline_writes_records_drops_and_traces(sources, tmp_path):
    out = tmp_path / "out"
    result = run_curation(parse_config(config(sources, cpu_workers=2)), out, show_progress=False)

    sre, hre = read_records(out / "sre.jsonl"), read_records(out / "hre_candidates.jsonl")
    assert all(
        list(json.loads(line)) == list(RECORD_FIELDS) for line in (out / "sre.jsonl").read_text().splitlines()
    )
    check_disjoint(sre, hre)
    assert sorted(r["id"] for r in sre + hre) == [
        "DFEW/clips/sad_1",
        "DFEW/clips/silent_3",
        "MER24/sample_00000001",
    ]
    assert Counter(r["source"] for r in hre) == {"DFEW": 1, "MER24": 1}
    assert sre[0]["open_vocabulary"] == ["sad", "tired"] and sre[0]["intensity"] == "medium"
    assert sre[0]["review_score"] == 8.0 and sre[0]["label"] == "sad"

    dropped = {row.pop("id"): row for row in read_jsonl(out / "dropped.jsonl")}
    assert dropped[INCONSISTENT] == {
        "stage": "consistency",
        "reason": "inconsistent: the cues are inconsistent",
        "score": None,
    }
    assert dropped[LOW_SCORE]["stage"] == "self_review" and dropped[LOW_SCORE]["score"] == 3.0
    assert dropped[LOW_SCORE]["reason"] == "self-review score 3 is below 5: scored 3"
    assert dropped[RAVDESS_CLIP]["stage"] == "input"
    assert len(dropped) == 3 and result.failures == []

    trace = json.loads((out / "traces" / "DFEW__clips__sad_1.json").read_text())
    assert Path(trace["video"]).is_absolute() and Path(trace["video"]).is_file()
    assert list(trace["stages"]) == list(STAGES)
    assert all(set(entry) == {"output", "raw", "backend", "seconds"} for entry in trace["stages"].values())
    faces = trace["stages"]["faces"]["output"]
    assert faces["tracklets"][0]["attributes"] == {"age": 34, "gender": "female"}
    assert faces["facial_movements"] == "Inner brows raised, lip corners pulled down."
    assert trace["stages"]["audio"]["output"]["language"] == "english"
    silent = json.loads((out / "traces" / "DFEW__clips__silent_3.json").read_text())
    assert silent["stages"]["audio"]["output"]["has_audio"] is False
    assert len(list((out / "traces").iterdir())) == 6

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["clips"], summary["sre"], summary["hre_candidates"], summary["dropped"]) == (6, 1, 2, 3)
    assert summary["stages"]["description"]["computed"] == 5
    assert summary["stages"]["synthesis"]["skipped"] == 1  # the inconsistent clip


def test_an_endpoint_with_faults_loses_nothing_and_names_the_clip_and_stage(
    sources, server, tmp_path, capsys
):
    first, stubborn = "MER24/sample_00000001", "DFEW/clips/sad_1"
    server.faults[("description", first)] = ["timeout", "500", "malformed"]
    server.faults[("consistency", first)] = ["format"]
    server.faults[("synthesis", stubborn)] = ["format"] * 5
    data = config(sources, server.backend(max_retries=4))
    path, out = write_config(data, tmp_path / "curation.yaml"), tmp_path / "out"

    with pytest.raises(SystemExit) as exit_info:
        main(["curate", str(path), "--output", str(out), "--no-progress"])
    assert exit_info.value.code == 1
    assert (
        f"clip '{stubborn}', stage synthesis: openai:scripted@{server.url} failed 5 time(s)"
        in capsys.readouterr().err
    )
    assert (server.requests["description", first], server.requests["consistency", first]) == (4, 2)
    assert first in {r["id"] for r in read_records(out / "hre_candidates.jsonl")}
    failed = next(row for row in read_jsonl(out / "dropped.jsonl") if row["id"] == stubborn)
    assert failed["stage"] == "synthesis" and "does not follow the format" in failed["reason"]
    trace = json.loads((out / "traces" / "DFEW__clips__sad_1.json").read_text())
    assert trace["stages"]["synthesis"]["raw"] == "I would rather not say."
    assert "expected a JSON object" in trace["stages"]["synthesis"]["error"]

    summary = json.loads((out / "summary.json").read_text())["stages"]
    assert (summary["description"]["requests"], summary["description"]["failed_requests"]) == (5 + 3, 3)
    assert (
        summary["description"]["prompt_tokens"] == 100 * 5
    )  # the timeout, the 500 and the bad body report none
    assert summary["consistency"]["prompt_tokens"] == 100 * 6  # the reply that broke the format was paid for
    content = server.bodies["description", first]["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]  # a 1 s clip at 1 fps: one frame
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    audio = server.bodies["audio", first]["messages"][0]["content"][0]
    assert audio["type"] == "input_audio" and audio["input_audio"]["format"] == "wav"

    server.faults.clear()
    before = server.requests.copy()
    result = run_curation(load_config(path), out, show_progress=False)
    assert server.requests - before == Counter({("synthesis", stubborn): 1, ("self_review", stubborn): 1})
    assert result.failures == [] and result.summary["failed"] == 0


def test_a_run_stops_when_too_many_clips_fail(sources, server, tmp_path):
    for clip in CURATED:
        server.faults[("description", clip)] = ["500"]
    data = config(sources, server.backend(max_retries=0), max_failures=1, concurrency=1)
    with pytest.raises(CurationError, match=r"Stopped after 2 failed clips \(max_failures: 1\)"):
        run_curation(parse_config(data), tmp_path / "out", show_progress=False)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["stopped"] is True
    assert not (tmp_path / "out" / "sre.jsonl").exists()
    assert sum(server.requests.values()) == 2


def test_a_killed_run_resumes_without_asking_a_finished_clip_again(sources, server, tmp_path):
    hung = "DFEW/clips/sad_1"  # the first DFEW clip: both MER24 clips and RAVDESS come before it
    server.faults[("description", hung)] = ["hang"]
    path = write_config(config(sources, server.backend(), concurrency=1), tmp_path / "curation.yaml")
    out = tmp_path / "out"
    search_path = [os.environ.get("PYTHONPATH"), str(TESTS), str(TESTS.parent)]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, search_path))}
    command = [
        sys.executable,
        "-m",
        "omni_emotion.cli",
        "curate",
        str(path),
        "--output",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(command, env=environment, cwd=tmp_path)
    try:
        assert server.hanging.wait(180), "the run never reached the third clip"
    finally:
        process.kill()
        process.wait()
    server.release.set()
    finished = {json.loads(p.read_text())["id"] for p in (out / "traces").iterdir()}
    assert finished == {"MER24/sample_00000001", INCONSISTENT, RAVDESS_CLIP}

    before = server.requests.copy()
    run_curation(load_config(path), out, show_progress=False)
    asked = server.requests - before
    assert not [pair for pair in asked if pair[1] in finished]
    expected = {(stage, clip) for clip in (hung, LOW_SCORE, "DFEW/clips/silent_3") for stage in STAGE_NAMES}
    expected.discard(("audio", "DFEW/clips/silent_3"))  # no audio track: the audio model is not asked
    assert asked == Counter(dict.fromkeys(expected, 1))
    assert len(read_records(out / "sre.jsonl")) + len(read_records(out / "hre_candidates.jsonl")) == 3


def test_changing_one_prompt_reruns_that_stage_and_the_later_ones_only(sources, tmp_path):
    data, out = config(sources), tmp_path / "out"
    run_curation(parse_config(data), out, show_progress=False)
    CALLS.clear()

    data["stages"]["faces"]["prompt"] = "Describe how the face in these $crop_count crops moves."
    run_curation(parse_config(data), out, show_progress=False)
    asked = Counter(stage for stage, _ in CALLS.elements())
    assert asked == {"faces": 5, "consistency": 5, "synthesis": 4, "self_review": 4}
    CALLS.clear()

    data["backends"]["model"]["timeout"] = 300  # how long to wait is not what a model answers
    run_curation(parse_config(data), out, show_progress=False)
    assert not CALLS


def test_a_changed_label_reruns_the_self_review_alone(sources, tmp_path):
    data, out = config(sources), tmp_path / "out"
    run_curation(parse_config(data), out, show_progress=False)
    CALLS.clear()
    relabelled = tmp_path / "clips.csv"
    relabelled.write_text(sources["csv"].read_text().replace("silent_3.mp4,sad", "silent_3.mp4,angry"))
    data["inputs"][2] = {"csv": str(relabelled), "root": str(sources["csv"].parent)}
    run_curation(parse_config(data), out, show_progress=False)
    assert dict(CALLS) == {("self_review", "DFEW/clips/silent_3"): 1}


def _finished(clip_id: str, source: str, score: float) -> ClipOutcome:
    clip = Clip(clip_id, f"{clip_id}.mp4", Path("/data"), source, "happy", "train")
    synthesis = {"reasoning": "Smiling.", "open_vocabulary": ["joyful"], "intensity": "high"}
    return ClipOutcome(clip, synthesis=synthesis, review={"score": score, "reason": "fits"})


def test_hre_draws_n_per_source_seeded_and_disjoint_from_sre():
    outcomes = [
        _finished(f"{source}/{i:03d}", source, 5.0 + i % 6) for source in ("DFEW", "CAER") for i in range(40)
    ]
    outcomes.append(_finished("DFEW/low", "DFEW", 4.9))
    draw = select(outcomes, min_score=5.0, per_source=10, seed=1)
    assert Counter(r["source"] for r in draw.hre) == {"DFEW": 10, "CAER": 10}
    assert len(draw.sre) == 60 and min(r["review_score"] for r in draw.sre) == 5.0
    check_disjoint(draw.sre, draw.hre)
    assert [row["id"] for row in draw.dropped] == ["DFEW/low"]
    assert draw.hre == select(list(reversed(outcomes)), 5.0, 10, seed=1).hre
    assert draw.hre != select(outcomes, 5.0, 10, seed=2).hre


def test_tracklets_take_the_largest_persistent_face_first():
    big, small = np.array([10, 10, 110, 110.0]), np.array([200, 20, 240, 60.0])
    frames = [
        np.stack([small + np.array([4, 0, 4, 0]) * t, big + np.array([2, 0, 2, 0]) * t]) for t in range(4)
    ]
    main, second = track_faces(frames, max_faces=3)
    assert all(box is not None and box[2] - box[0] == 100 for box in main)
    assert all(box is not None and box[2] - box[0] == 40 for box in second)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"stages": {"description": {"backend": "model", "fps": 1, "colour": 1}}},
            "stages.description: unknown key(s) colour",
        ),
        ({"stages": {"description": {"backend": "missing"}}}, "no backend named 'missing'"),
        (
            {"stages": {"synthesis": {"backend": "model", "prompt": "Explain $transcrpt"}}},
            "unknown field(s) $transcrpt",
        ),
        (
            {"stages": {"audio": {"backend": "model", "asr": "model"}}},
            "stages.audio.asr: an OpenAI-compatible endpoint",
        ),
        ({"hre": {"per_source": -1}}, "hre.per_source: expected an integer >= 0"),
        ({"inputs": [{"source": "DFEW"}]}, "inputs[0]: give `source` and `root`"),
    ],
)
def test_config_errors_name_the_key(sources, change, message):
    data = config(sources, {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"})
    for key, value in change.items():
        data[key] = data[key] | value if key == "stages" else value
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert message in str(error.value)


def test_the_audio_stage_hears_whisper_large_v3_unless_told_otherwise(sources):
    data = config(sources)
    del data["stages"]["audio"]["asr"]
    asr = parse_config(data).stages["audio"].asr
    assert (asr.kind, asr.model, asr.task) == (
        "transformers",
        "openai/whisper-large-v3",
        "automatic-speech-recognition",
    )


def test_the_example_config_for_vllm_loads():
    example = load_config(TESTS.parent / "curation" / "configs" / "qwen2_vl_72b_vllm.yaml")
    assert example.stages["description"].backend.model == "Qwen/Qwen2-VL-72B-Instruct"
    assert example.stages["audio"].asr.model == "openai/whisper-large-v3"


@pytest.mark.parametrize(
    ("reader", "reply", "value"),
    [
        (read_verdict, 'Sure. {"verdict": "Uncertain", "reason": "too dark"}', {"verdict": "uncertain", "reason": "too dark"}),
        (read_review, '{"score": "6.5", "reason": "close"}', {"score": 6.5, "reason": "close"}),
        (read_synthesis, '{"reasoning": "r", "open_vocabulary": ["Calm", "calm"], "intensity": "LOW"}',
         {"reasoning": "r", "open_vocabulary": ["calm"], "intensity": "low"}),
    ],
)  # fmt: skip
def test_replies_are_read_from_json_among_words(reader, reply, value):
    assert reader(reply) == value


@pytest.mark.parametrize(
    ("reader", "reply"),
    [(read_verdict, '{"verdict": "maybe", "reason": "r"}'), (read_review, '{"score": 11, "reason": "r"}'),
     (read_synthesis, '{"reasoning": "r", "open_vocabulary": [], "intensity": "low"}'), (read_review, "8/10")],
)  # fmt: skip
def test_replies_that_break_the_format_are_refused(reader, reply):
    with pytest.raises(ReplyFormatError):
        reader(reply)


def test_local_pipelines_are_loaded_once_and_called_as_transformers_documents(monkeypatch):
    import transformers

    from curation.config import BackendConfig

    made, calls = [], []

    def pipeline(task, model, **kwargs):
        made.append((task, model, kwargs))

        def run(*args, **options):
            calls.append((args, options))
            if task == "automatic-speech-recognition":
                return {
                    "text": " hi",
                    "chunks": [{"timestamp": (0.0, 0.5), "text": " hi", "language": "english"}],
                }
            if task == "image-classification":
                return [{"label": "female", "score": 0.9}]
            return [{"generated_text": "A calm face."}]

        return run

    monkeypatch.setattr(transformers, "pipeline", pipeline)
    asr = TransformersBackend(
        BackendConfig(
            "transformers", model="openai/whisper-large-v3", task="automatic-speech-recognition", device="cpu"
        )
    )
    waveform = np.zeros(8000, np.float32)
    assert asr.transcribe(waveform) == {
        "transcript": "hi",
        "language": "english",
        "segments": [{"start": 0.0, "end": 0.5, "text": "hi"}],
    }
    asr.transcribe(waveform)
    assert made == [("automatic-speech-recognition", "openai/whisper-large-v3", {"device": "cpu"})]
    assert calls[0][1] == {"return_timestamps": True, "return_language": True}

    from curation.backends import ModelRequest
    from curation.media import jpeg

    face = jpeg(np.zeros((8, 8, 3), np.uint8))
    vlm = TransformersBackend(BackendConfig("transformers", model="tiny-vlm", task="image-text-to-text"))
    assert vlm.chat(ModelRequest("c", "faces", "Describe.", images=(face,))).text == "A calm face."
    (message,) = calls[-1][1]["text"]
    assert [part["type"] for part in message["content"]] == ["image", "text"]
    assert calls[-1][1]["max_new_tokens"] == 512 and calls[-1][1]["generate_kwargs"] == {"do_sample": False}
    classifier = TransformersBackend(
        BackendConfig("transformers", model="gender", task="image-classification")
    )
    assert classifier.classify(face) == "female"
