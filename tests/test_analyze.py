"""`omni-emotion analyze` and the `video-emotion-analysis` pipeline, on a tiny checkpoint and clips made here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from dataset_scripts import parse_emotion_answer
from omni_emotion import pipeline as emotion_pipeline
from omni_emotion.analyze import (
    ALL_MODALITIES,
    ClipResult,
    InputsNotFoundError,
    _prefetched,
    add_arguments,
    analyze,
    collect_inputs,
    main_from_args,
    run_analyze,
    shard_path,
)
from omni_emotion.pipeline import (
    VideoEmotionAnalysisPipeline,
    clip_messages,
    remove_modalities,
    split_emotion_answer,
)
from omni_emotion.synthetic import media as media_factory

NEW_TOKENS = 6


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """A face with sound, a face without sound, sound without a face, an audio file, and a file that is not media."""
    folder = tmp_path_factory.mktemp("clips")
    made = {
        "face": media_factory.write_clip(folder / "face.mp4", seconds=1.0),
        "silent": media_factory.write_clip(folder / "silent.mp4", seconds=1.0, audio=False),
        "no_face": media_factory.write_clip(
            folder / "no_face.mp4", seconds=1.5, frame_fn=media_factory.time_bar_frame
        ),
        "voice": media_factory.write_wav(folder / "voice.wav", seconds=0.7),
    }
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    made["broken"] = str(broken)
    return made


# -- inputs ----------------------------------------------------------------------------------------------------------


def test_inputs_from_files_folders_globs_and_lists_are_deduplicated_in_order(tmp_path):
    for name in ("b.mp4", "a.wav", "nested/c.png", "nested/deeper/d.mov", "notes.json"):
        (tmp_path / "clips" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "clips" / name).write_bytes(b"x")
    (tmp_path / "other.mkv").write_bytes(b"x")
    (tmp_path / "list.txt").write_text(
        "# clips to redo\n\nother.mkv\nclips/b.mp4\nhttps://example.org/clip.mp4\n  # indented comment\n"
    )
    clips = tmp_path / "clips"
    found = collect_inputs(
        [str(clips), str(tmp_path / "*.mkv"), str(tmp_path / "list.txt"), str(clips / "a.wav")]
    )
    assert found == [
        str(clips / "a.wav"),
        str(clips / "b.mp4"),
        str(clips / "nested/c.png"),
        str(clips / "nested/deeper/d.mov"),
        str(tmp_path / "other.mkv"),
        "https://example.org/clip.mp4",
    ]


def test_a_file_named_explicitly_is_taken_whatever_its_extension(tmp_path):
    clip = tmp_path / "recording.data"
    clip.write_bytes(b"x")
    assert collect_inputs([clip]) == [str(clip)]


def test_every_input_that_leads_nowhere_is_named_in_one_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.txt").write_text("gone.mp4\n")
    with pytest.raises(InputsNotFoundError) as caught:
        collect_inputs(
            [
                str(tmp_path / "missing.mp4"),
                str(tmp_path / "*.avi"),
                str(tmp_path / "empty"),
                str(tmp_path / "list.txt"),
            ]
        )
    message = str(caught.value)
    assert len(caught.value.problems) == 4
    assert "missing.mp4 (argument): no such file" in message
    assert "*.avi (argument): the pattern matches no media file" in message
    assert "a folder without media files" in message
    assert f"gone.mp4 ({tmp_path / 'list.txt'}:1)" in message


# -- results ---------------------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


RESULT_SCHEMA = {
    "path": str,
    "labels": list,
    "reasoning": str,
    "raw_text": str,
    "modalities": list,
    "face_found": bool,
    "face_frames": int,
    "decode_seconds": float,
    "face_seconds": (float, type(None)),
    "model_seconds": float,
    "error": (str, type(None)),
}


def _check_schema(record: dict) -> None:
    """A results line has exactly the documented fields, in order, each of its JSON type."""
    assert list(record) == list(RESULT_SCHEMA), list(record)
    for name, kind in RESULT_SCHEMA.items():
        assert isinstance(record[name], kind), (name, record[name])
    assert all(isinstance(label, str) for label in record["labels"])
    assert set(record["modalities"]) <= set(ALL_MODALITIES)


def test_each_clip_gets_a_line_and_a_broken_clip_fails_alone(loaded, clips, tmp_path):
    model, processor = loaded
    out = tmp_path / "results.jsonl"
    summary = run_analyze(
        list(clips.values()), out, model, processor, batch_size=2, max_new_tokens=NEW_TOKENS, progress=False
    )
    records = {Path(record["path"]).stem: record for record in _lines(out)}
    assert set(records) == {"face", "silent", "no_face", "voice", "broken"}
    assert list(RESULT_SCHEMA) == [f.name for f in dataclasses.fields(ClipResult)]
    for record in records.values():
        _check_schema(record)

    assert "broken.mp4" in records["broken"]["error"] and records["broken"]["raw_text"] == ""
    assert all(records[name]["error"] is None for name in ("face", "silent", "no_face", "voice"))
    assert records["face"]["modalities"] == ["frames", "faces", "audio"]
    assert records["silent"]["modalities"] == ["frames", "faces"]
    assert records["no_face"]["modalities"] == ["frames", "audio"]
    assert records["voice"]["modalities"] == ["audio"]
    assert records["face"]["face_found"] and records["face"]["face_frames"] == 4
    assert not records["no_face"]["face_found"] and records["no_face"]["face_frames"] == 0
    for name in ("face", "silent", "no_face"):
        record = records[name]
        assert 0 < record["face_seconds"] < record["decode_seconds"] and record["model_seconds"] > 0
        assert record["labels"] == parse_emotion_answer(record["raw_text"])
    assert records["voice"]["face_seconds"] is None

    assert (summary.total, summary.ok, summary.failed, summary.resumed) == (5, 4, 1, 0)
    table = summary.table()
    assert "failed         1" in table and str(clips["broken"]) in table


def test_the_command_line_exits_non_zero_when_a_clip_failed(checkpoint, clips, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "results.jsonl"
    common = ["--model", str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress"]
    args = parser.parse_args([clips["face"], clips["broken"], *common, "--max-new-tokens", "3"])
    assert main_from_args(args) == 1
    assert "failed         1" in capsys.readouterr().out
    assert main_from_args(parser.parse_args([clips["face"], *common])) == 0  # resumed: that clip succeeded

    assert main_from_args(parser.parse_args([str(tmp_path / "nowhere.mp4"), *common])) == 2
    assert "nowhere.mp4 (argument): no such file or folder" in capsys.readouterr().err


def test_every_option_has_help_and_the_modalities_are_checked():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert all(action.help for action in parser._actions)
    args = parser.parse_args(["clip.mp4", "--model", "m", "--modalities", "audio, frames"])
    assert args.modalities == ("frames", "audio") and args.batch_size == 4 and args.out == "results.jsonl"
    with pytest.raises(SystemExit):
        parser.parse_args(["clip.mp4", "--model", "m", "--modalities", "frames,smell"])
    assert ALL_MODALITIES == emotion_pipeline.MODALITIES


def test_building_the_command_line_imports_neither_torch_nor_transformers():
    script = (
        "import argparse, sys\n"
        "from omni_emotion.analyze import add_arguments\n"
        "add_arguments(argparse.ArgumentParser())\n"
        "print(sorted(name for name in ('torch', 'transformers') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_a_killed_run_resumes_without_redoing_finished_clips(loaded, clips, tmp_path):
    model, processor = loaded
    good = [clips["face"], clips["no_face"], clips["voice"]]
    out = tmp_path / "results.jsonl"
    run_analyze(good, out, model, processor, max_new_tokens=NEW_TOKENS, progress=False)
    first, second = out.read_text().splitlines()[:2]
    out.write_text(first + "\n" + second[: len(second) // 2])  # killed while writing the second line

    summary = run_analyze(good, out, model, processor, max_new_tokens=NEW_TOKENS, progress=False)
    lines = out.read_text().splitlines()
    assert lines[0] == first
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(good)
    assert (summary.resumed, summary.ok, summary.analyzed) == (1, 3, 2)

    # All done: nothing is analyzed, so the model is not even loaded.
    again = run_analyze(good, out, str(tmp_path / "no-such-model"), progress=False)
    assert (again.resumed, again.ok) == (3, 3) and out.read_text().splitlines() == lines


def test_shards_left_by_a_killed_run_are_merged_and_skipped(tmp_path):
    """Shards that a killed run of several processes left beside the output are merged before anything else, here
    by a single process with nothing left to do (so no model is loaded): each clip once, its newest complete line,
    the clips of an earlier run first, then the inputs in their order; no shard is left."""
    a, b, c = (str(tmp_path / f"{name}.mp4") for name in "abc")
    for clip in (a, b, c):
        Path(clip).write_bytes(b"x")
    out = tmp_path / "results.jsonl"

    def line(path: str, text: str) -> str:
        return ClipResult(path=path, raw_text=text).to_json() + "\n"

    out.write_text(line("/elsewhere/other.mp4", "an earlier run") + line(b, "old") + line(c, "cut")[:20])
    shard_path(out, 0).write_text(line(c, "c") + line(a, "killed while writing")[:30])
    shard_path(out, 3).write_text(line(b, "b") + line(a, "a"))  # from a run with more processes

    summary = run_analyze([a, b, c], out, str(tmp_path / "no-such-model"), progress=False)
    assert [(record["path"], record["raw_text"]) for record in _lines(out)] == [
        ("/elsewhere/other.mp4", "an earlier run"),
        (a, "a"),
        (b, "b"),
        (c, "c"),
    ]
    assert (summary.resumed, summary.total, summary.analyzed) == (3, 3, 0)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("results")) == [
        "results.jsonl"
    ]


def _free_port() -> str:
    """A free port for torchrun, so that concurrent runs on one machine do not collide."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_two_processes_resume_split_and_merge_one_output_in_input_order(checkpoint, clips, loaded, tmp_path):
    """`torchrun --nproc_per_node 2 -m omni_emotion.analyze` on the CPU, after a killed run: what that run finished
    (in the output, and in a shard of a run with three processes) is skipped, a partial line is redone, and the rest
    is split between the two processes; the output holds every clip once, in input order, with the answers of a
    single process, and the main process prints the summary of all of them (the broken clip is the second
    process's)."""
    model, processor = loaded
    inputs = [clips[name] for name in ("face", "silent", "no_face", "voice", "broken")]
    single = analyze(inputs, model, processor, batch_size=1, max_new_tokens=NEW_TOKENS, prefetch=0)
    reference = {result.path: result for result in single}
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()

    def finished(path: str) -> str:  # marked, to tell a skipped clip from a redone one
        return dataclasses.replace(reference[path], model_seconds=-1.0).to_json() + "\n"

    out.write_text(ClipResult(path="/elsewhere/other.mp4").to_json() + "\n" + finished(clips["face"]))
    shard_path(out, 2).write_text(finished(clips["silent"]))
    shard_path(out, 0).write_text(finished(clips["voice"])[:40])  # killed while writing this line

    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port(),
        "-m", "omni_emotion.analyze", *inputs, "--model", str(checkpoint), "--out", str(out), "--device", "cpu",
        "--batch-size", "1", "--max-new-tokens", str(NEW_TOKENS), "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-4000:]  # the broken clip failed

    records = _lines(out)
    assert [record["path"] for record in records] == ["/elsewhere/other.mp4", *inputs]
    for record in records[1:]:
        _check_schema(record)
        assert record["raw_text"] == reference[record["path"]].raw_text
        assert record["error"] == reference[record["path"]].error
    assert [record["path"] for record in records if record["model_seconds"] == -1.0] == inputs[:2]
    assert os.listdir(out.parent) == ["results.jsonl"], "the shards are merged and removed"
    assert result.stdout.count("Analyzed 3 clip(s)") == 1, result.stdout
    for name, count in (("ok", 4), ("failed", 1), ("resumed", 2), ("total", 5)):
        assert f"{name:<8} {count:>7}" in result.stdout


def test_batched_answers_equal_one_at_a_time_answers(loaded, clips, monkeypatch):
    model, processor = loaded
    inputs = [clips["face"], clips["voice"], clips["broken"], clips["silent"], clips["no_face"]]
    one_by_one = list(analyze(inputs, model, processor, batch_size=1, max_new_tokens=NEW_TOKENS, prefetch=0))
    calls = _recording_generate(model, monkeypatch)
    batched = list(analyze(inputs, model, processor, batch_size=4, max_new_tokens=NEW_TOKENS, prefetch=2))
    mask = calls[0]["attention_mask"]
    assert (
        len(mask) == 3 and not mask[:, 0].all() and mask[:, -1].all()
    )  # clips of unequal length, left-padded
    assert [r.path for r in batched] == [r.path for r in one_by_one] == inputs
    assert [r.raw_text for r in batched] == [r.raw_text for r in one_by_one]
    assert [r.ok for r in batched] == [True, True, False, True, True]


def test_decoding_runs_ahead_of_the_consumer_in_another_thread():
    started: list[int] = []
    second_started = threading.Event()

    def decode(item: int) -> int:
        started.append(item)
        if item == 1:
            second_started.set()
        return item * 10

    stream = _prefetched(range(4), decode, depth=2)
    assert next(stream) == 0
    assert second_started.wait(timeout=10), "the next clip is decoded while the first one is being used"
    assert list(stream) == [10, 20, 30] and started == [0, 1, 2, 3]


def test_a_decoding_thread_error_reaches_the_consumer_and_closing_stops_the_thread():
    def items():
        yield 1
        raise OSError("the list of clips went away")

    stream = _prefetched(items(), lambda item: item, depth=1)
    assert next(stream) == 1
    with pytest.raises(OSError, match="went away"):
        next(stream)

    endless = _prefetched(iter(int, 1), lambda item: item, depth=1)  # iter(int, 1): zeros forever
    next(endless)
    endless.close()
    assert not any(
        thread.name == "omni-emotion-decode" and thread.is_alive() for thread in threading.enumerate()
    )


def _recording_generate(model, monkeypatch, fail_when=None) -> list[dict]:
    calls = []
    generate = model.generate

    def record(**inputs):
        calls.append(inputs)
        if fail_when is not None and fail_when(inputs):
            raise RuntimeError("out of memory (simulated)")
        return generate(**inputs)

    monkeypatch.setattr(model, "generate", record)
    return calls


def test_a_clip_that_fails_to_generate_fails_alone(loaded, clips, monkeypatch):
    model, processor = loaded
    calls = _recording_generate(
        model, monkeypatch, fail_when=lambda inputs: not inputs["face_mask"].any(-1).all()
    )
    results = list(
        analyze([clips["face"], clips["no_face"]], model, processor, batch_size=2, max_new_tokens=3)
    )
    assert [len(call["input_ids"]) for call in calls] == [2, 1, 1]  # the batch, then each clip alone
    assert results[0].ok and results[0].raw_text
    assert results[1].error == "generation failed: RuntimeError: out of memory (simulated)"


@pytest.mark.parametrize(
    ("modalities", "given"),
    [
        ("frames,faces,audio", ["frames", "faces", "audio"]),
        ("frames,audio", ["frames", "audio"]),
        ("frames", ["frames"]),
        ("faces,audio", ["audio"]),
    ],
)
def test_left_out_modalities_reach_the_model_as_absent_inputs(loaded, clips, monkeypatch, modalities, given):
    model, processor = loaded
    calls = _recording_generate(model, monkeypatch)
    (result,) = analyze([clips["face"]], model, processor, modalities=modalities, max_new_tokens=2)
    (inputs,) = calls
    assert result.modalities == given
    video_tokens = processor.num_video_tokens(model.config.num_frames)
    assert int((inputs["input_ids"] == processor.video_token_id).sum()) == video_tokens  # markers kept
    assert bool(inputs["pixel_values_videos"].any()) == ("frames" in given)
    assert inputs["face_mask"].all() if "faces" in given else not inputs["face_mask"].any()
    if "faces" not in given:
        assert not inputs["face_pixel_values"].any()
    missing_audio = round(processor.missing_audio_seconds * 100)
    if "audio" in given:
        assert inputs["input_features"].any()
    else:  # the zero-filled block of a clip without sound
        assert inputs["audio_feature_lengths"].item() == missing_audio and not inputs["input_features"].any()


def test_removing_modalities_gives_the_processor_inputs_of_a_clip_without_them(loaded, clips):
    _, processor = loaded
    decoded = processor.decode_clip(clips["face"])
    silent = processor.decode_clip(clips["silent"])
    reduced = remove_modalities(decoded, ("frames", "faces"))
    assert reduced["audio"] is None and decoded["audio"] is not None  # the caller's clip is left as it was

    def tensors(clip):
        return processor.apply_chat_template(
            [clip_messages(clip, "How does the person feel?")],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )

    without_audio, silent_clip = tensors(reduced), tensors(silent)
    assert torch.equal(without_audio["input_features"], silent_clip["input_features"])
    assert torch.equal(without_audio["audio_feature_lengths"], silent_clip["audio_feature_lengths"])


# -- the answer ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reasoning", "labels"),
    [
        (
            "She smiles.\nHer voice is bright.\n\nEmotions: happy, relaxed",
            "She smiles.\nHer voice is bright.",
            ["happy", "relaxed"],
        ),
        (
            "He frowns.\n**Emotion labels**:\n- angry\n- tense\nHope this helps.",
            "He frowns.",
            ["angry", "tense"],
        ),
        ("happy, calm", "", ["happy", "calm"]),
        ("Nothing can be said. The face is hidden.", "Nothing can be said. The face is hidden.", []),
    ],
)
def test_an_answer_splits_into_reasoning_and_the_parsers_words(text, reasoning, labels):
    assert split_emotion_answer(text) == (reasoning, labels)


def test_the_answer_module_copied_into_checkpoints_needs_only_the_standard_library():
    import ast

    from dataset_scripts import emotion_answer

    tree = ast.parse(Path(emotion_answer.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# -- the pipeline ----------------------------------------------------------------------------------------------------


def test_the_pipeline_runs_one_clip_at_a_time_like_analyze(loaded, clips):
    model, processor = loaded
    pipe = VideoEmotionAnalysisPipeline(model=model, processor=processor, device="cpu")
    output = pipe(clips["face"], max_new_tokens=NEW_TOKENS)
    (result,) = analyze([clips["face"]], model, processor, max_new_tokens=NEW_TOKENS)
    assert output == {
        "labels": result.labels,
        "reasoning": result.reasoning,
        "raw_text": result.raw_text,
        "modalities": result.modalities,
        "face_found": result.face_found,
        "face_frames": result.face_frames,
    }
    assert pipe(clips["face"], modalities="frames", max_new_tokens=2)["modalities"] == ["frames"]
    with pytest.raises(ValueError, match="one clip at a time"):
        pipe([clips["face"], clips["silent"]], batch_size=2)


def test_a_checkpoint_saved_with_the_pipeline_runs_it_with_remote_code_only(loaded, clips, tmp_path):
    model, processor = loaded
    pipe = VideoEmotionAnalysisPipeline(model=model, processor=processor, device="cpu")
    saved = tmp_path / "with-pipeline"
    pipe.save_pretrained(saved)
    expected = pipe(clips["face"], max_new_tokens=NEW_TOKENS)
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import pipeline
        analyzer = pipeline("video-emotion-analysis", model={str(saved)!r}, trust_remote_code=True, device="cpu")
        ours = ("omni_emotion", "dataset_scripts", "processing", "modeling_omni_emotion")
        assert not any(name.split(".")[0] in ours for name in sys.modules), "the package itself was imported"
        print("pipeline-output", json.dumps(analyzer({clips["face"]!r}, max_new_tokens={NEW_TOKENS})))
        print("pipeline-class", type(analyzer).__module__)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith("pipeline-"))
    assert json.loads(lines["pipeline-output"]) == expected
    assert lines["pipeline-class"].startswith("transformers_modules.")
    config = json.loads((saved / "config.json").read_text())
    assert (
        config["custom_pipelines"]["video-emotion-analysis"]["impl"]
        == "pipeline.VideoEmotionAnalysisPipeline"
    )
