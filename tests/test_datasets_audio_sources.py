"""Phase-1 audio sources: local copies in the Hub layouts load as paths without decoding, specs are checked
key by key, and the weighted mix is reproducible and renders in the phase-1 conversation format."""

from __future__ import annotations

import dataclasses
import io
import json
import wave
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from datasets import Audio, ClassLabel, Dataset, Features, Value

from dataset_scripts import (
    PAPER_AUDIO_SOURCES,
    AudioSourceError,
    AudioSourceSpec,
    audio_mix_report,
    load_audio_source,
    mix_audio_sources,
)
from dataset_scripts.audio_sources import LOCAL_COPY_LAYOUTS
from dataset_scripts.prompts import AUDIO_INSTRUCTIONS, count_tasks

SOUNDS = ["dog barking", "church bell ringing"]


def wav_bytes(frequency: float, seconds: float = 0.01, rate: int = 16_000) -> bytes:
    """A short 16-bit mono sine wave as a WAV file."""
    samples = 0.3 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def make_commonvoice(root: Path, rows: int) -> Path:
    """Hub Parquet with the audio embedded (an Audio feature of bytes) and CommonVoice's extra columns."""
    audio = [{"bytes": wav_bytes(200 + i), "path": f"common_voice_en_{i}.mp3"} for i in range(rows)]
    data = Dataset.from_dict(
        {
            "client_id": ["c"] * rows,
            "audio": audio,
            "sentence": [f"Sentence number {i}." for i in range(rows)],
        }
    ).cast_column("audio", Audio())
    (root / "data").mkdir(parents=True)
    data.to_parquet(str(root / "data/train-00000-of-00001.parquet"))
    return root


def make_wavcaps(root: Path, rows: int) -> Path:
    """An audiofolder: WAV files beside a metadata.jsonl naming them in `file_name`."""
    (root / "FreeSound").mkdir(parents=True)
    lines = []
    for i in range(rows):
        (root / f"FreeSound/{i}.wav").write_bytes(wav_bytes(500 + i))
        lines.append(json.dumps({"file_name": f"FreeSound/{i}.wav", "caption": f"Birds sing, take {i}."}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_vggsound(root: Path, rows: int) -> Path:
    """Hub Parquet holding relative clip paths and a ClassLabel `label`."""
    features = Features({"audio": Value("string"), "label": ClassLabel(names=SOUNDS)})
    data = Dataset.from_dict(
        {"audio": [f"clips/{i:05d}_000010.mp4" for i in range(rows)], "label": [i % 2 for i in range(rows)]},
        features=features,
    )
    (root / "data").mkdir(parents=True)
    data.to_parquet(str(root / "data/train-00000-of-00001.parquet"))
    return root


@pytest.fixture
def specs(tmp_path) -> list[AudioSourceSpec]:
    return [
        AudioSourceSpec(name="CommonVoice-15", path=str(make_commonvoice(tmp_path / "cv", 200)), task="asr"),
        AudioSourceSpec(name="WavCaps", path=str(make_wavcaps(tmp_path / "wavcaps", 200)), task="caption"),
        AudioSourceSpec(name="VGGSound", path=str(make_vggsound(tmp_path / "vgg", 200)), task="sound_label"),
    ]


@pytest.fixture
def dirs(tmp_path) -> dict[str, str]:
    return {"audio_dir": str(tmp_path / "audio"), "cache_dir": str(tmp_path / "cache")}


def test_embedded_audio_is_written_once_and_given_as_paths(specs, dirs):
    data = load_audio_source(specs[0], **dirs)

    assert data.column_names == ["audio", "sentence"]
    assert data.features["audio"] == Value("string")
    assert Path(data[3]["audio"]).read_bytes() == wav_bytes(203)
    assert data[3]["audio"].startswith(dirs["audio_dir"]) and data[3]["audio"].endswith(".mp3")
    assert load_audio_source(specs[0], **dirs)["audio"] == data["audio"]


def test_audiofolder_metadata_loads_without_decoding(specs, dirs, tmp_path):
    data = load_audio_source(specs[1], **dirs)

    assert data[0] == {"audio": str(tmp_path / "wavcaps/FreeSound/0.wav"), "caption": "Birds sing, take 0."}
    assert Path(data[199]["audio"]).is_file()


def test_relative_paths_start_from_the_source_folder_and_class_labels_stay(specs, dirs, tmp_path):
    data = load_audio_source(specs[2], **dirs)

    assert data[1]["audio"] == str(tmp_path / "vgg/clips/00001_000010.mp4")
    assert data.features["label"].names == SOUNDS


def test_max_samples_keeps_the_first_rows_and_streaming_agrees(specs, dirs):
    spec = dataclasses.replace(specs[0], max_samples=5)

    data = load_audio_source(spec, **dirs)
    streamed = list(load_audio_source(spec, streaming=True, **dirs))

    assert data["sentence"] == [f"Sentence number {i}." for i in range(5)]
    assert streamed == data.to_list()


def test_a_missing_column_lists_the_columns_it_has(specs, dirs):
    spec = dataclasses.replace(specs[0], text_column="transcript")

    with pytest.raises(
        AudioSourceError, match=r"no column\(s\) transcript; its columns are client_id, audio, sentence"
    ):
        load_audio_source(spec, **dirs)


def test_a_hub_repo_that_cannot_load_says_how_to_make_a_local_copy(monkeypatch, dirs):
    def script_repo(*args, **kwargs):
        raise RuntimeError("Dataset scripts are no longer supported, but found common_voice_15_0.py")

    monkeypatch.setattr(datasets, "load_dataset", script_repo)

    with pytest.raises(AudioSourceError, match=r"'CommonVoice-15': cannot load") as error:
        load_audio_source(PAPER_AUDIO_SOURCES["CommonVoice-15"], **dirs)
    assert "metadata.csv beside clips/" in str(error.value)


def test_paper_sources_use_the_hub_schemas():
    assert {
        name: (spec.path, spec.config, spec.task, spec.text_column)
        for name, spec in PAPER_AUDIO_SOURCES.items()
    } == {
        "CommonVoice-15": ("mozilla-foundation/common_voice_15_0", "en", "asr", "sentence"),
        "WavCaps": ("cvssp/WavCaps", None, "caption", "caption"),
        "VGGSound": ("Loie/VGGSound", None, "sound_label", "label"),
    }
    assert set(LOCAL_COPY_LAYOUTS) == {spec.path for spec in PAPER_AUDIO_SOURCES.values()}


def test_specs_are_read_from_yaml():
    entries = yaml.safe_load(
        """
        - {name: cv, path: /data/cv15, task: asr, weight: 2, max_samples: 1000}
        - {name: vgg, path: /data/vgg, task: sound_label, text_column: class}
        """
    )

    cv, vgg = (AudioSourceSpec.from_dict(entry) for entry in entries)

    assert (cv.text_column, cv.weight, cv.max_samples, cv.split) == ("sentence", 2, 1000, "train")
    assert vgg.text_column == "class"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "a", "path": "p", "task": "asr", "weights": 2},
            r"unknown key\(s\) weights; valid keys are name, path",
        ),
        ({"name": "a", "task": "asr"}, r"missing key\(s\) path"),
        ({"name": "a", "path": "p", "task": "speech"}, r"'task' should be one of asr, caption, sound_label"),
        (
            {"name": "a", "path": "p", "task": "asr", "weight": 0},
            r"'weight' should be a finite number > 0, got 0",
        ),
        ({"name": "a", "path": "p", "task": "asr", "weight": "2"}, r"'weight' should be .* got '2'"),
        ({"name": "a", "path": "p", "task": "asr", "weight": True}, r"'weight' should be .* got True"),
        (
            {"name": "a", "path": "p", "task": "asr", "max_samples": 0},
            r"'max_samples' should be a whole number",
        ),
        ({"name": "", "path": "p", "task": "asr"}, r"'name' should be a non-empty string"),
        (
            {"name": "a", "path": "p", "task": "asr", "text_column": "audio"},
            r"'text_column' should be a column other",
        ),
        (
            {"name": "a", "path": "p", "task": "asr", "config": ""},
            r"'config' should be a non-empty string or null",
        ),
    ],
)
def test_a_bad_spec_names_the_field(entry, message):
    with pytest.raises(AudioSourceError, match=message):
        AudioSourceSpec.from_dict(entry)


def test_the_mix_follows_the_weights_and_is_reproducible(specs, dirs):
    weighted = [dataclasses.replace(specs[0], weight=2), *specs[1:]]

    mix = mix_audio_sources(weighted, seed=7, **dirs)
    again = mix_audio_sources(weighted, seed=7, **dirs)
    other = mix_audio_sources(weighted, seed=8, **dirs)
    print(audio_mix_report(mix, weighted))

    shares = {task: count / len(mix) for task, count in count_tasks(mix).items()}
    assert shares["asr"] == pytest.approx(0.5, abs=0.07)
    assert shares["caption"] == pytest.approx(0.25, abs=0.07)
    assert shares["sound_label"] == pytest.approx(0.25, abs=0.07)
    assert count_tasks(mix)["asr"] == 200  # first_exhausted: the mix ends when CommonVoice runs out
    assert mix.to_list() == again.to_list()
    assert mix["source"] != other["source"]


def test_mixed_rows_are_phase1_conversations(specs, dirs):
    mix = mix_audio_sources(specs, seed=0, **dirs)

    assert mix.column_names == ["messages", "source", "task"]
    for row in mix:
        user, assistant = row["messages"]
        audio, instruction = user["content"]
        assert audio["type"] == "audio" and Path(audio["path"]).is_absolute()
        assert instruction["text"] in AUDIO_INSTRUCTIONS[row["task"]]
        answer = assistant["content"][0]["text"]
        if row["source"] == "VGGSound":
            assert answer in SOUNDS
        else:
            assert answer.startswith("Sentence number" if row["task"] == "asr" else "Birds sing")


def test_the_report_shows_rows_beside_the_weights(specs, dirs):
    mix = mix_audio_sources(specs[1:], seed=0, **dirs)

    lines = audio_mix_report(mix, specs[1:]).splitlines()

    assert lines[0] == f"Phase-1 audio mix: {len(mix):,} rows"
    assert lines[1].startswith("  WavCaps  caption") and lines[1].endswith("(weight 50.0%)")
    assert lines[-1].startswith("  by task: ")


def test_sources_must_have_unique_names(specs, dirs):
    with pytest.raises(AudioSourceError, match="repeated: WavCaps"):
        mix_audio_sources([specs[1], specs[1]], **dirs)
