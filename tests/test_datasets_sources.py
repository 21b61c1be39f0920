"""The seven source adapters read miniature copies of each official layout, with tiny generated clips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from dataset_scripts import (
    DFEW_CLASSES,
    MAFW_CLASSES,
    AnnotationError,
    MissingVideosError,
    read_source,
)


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    """A real 16x16, 4-frame MPEG-4 clip, written once and copied wherever a layout needs a clip."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 60 * index, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path.read_bytes()


def _write(root: Path, relative: str, content: str | bytes = b"") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)


def make_dfew(root: Path, clip: bytes) -> None:
    _write(root, "EmoLabel_DataSplit/train(single-labeled)/set_1.csv", "video_name,label\n1,1\n2,4\n")
    _write(root, "EmoLabel_DataSplit/test(single-labeled)/set_1.csv", "video_name,label\n3,7\n")
    for number in (1, 2, 3):
        _write(root, f"Clip/original/{number:05d}.mp4", clip)


def make_mafw(root: Path, clip: bytes) -> None:
    split_dir = "Train & Test Set/single/no_caption/set_1"
    _write(root, f"{split_dir}/train.txt", "00001.mp4 anger\n00002.mp4 helplessness\n")
    _write(root, f"{split_dir}/test.txt", "00003.mp4 neutral\n")
    for number in (1, 2, 3):
        _write(root, f"data/clips/{number:05d}.mp4", clip)


def make_ferv39k(root: Path, clip: bytes) -> None:
    _write(root, "4_setups/All_scenes/train_All.csv", "Action/Happy/0001 Happy\nTalkshow/Sad/0002 Sad\n")
    _write(root, "4_setups/All_scenes/test_All.csv", "Crime/Fear/0003 Fear\n")
    for clip_dir in ("Action/Happy/0001", "Talkshow/Sad/0002", "Crime/Fear/0003"):
        _write(root, f"2_ClipsforFaceCrop/{clip_dir}/0001.jpg")


def make_caer(root: Path, clip: bytes) -> None:
    for relative in ("train/Anger/0001.avi", "validation/Happy/0002.avi", "test/Sad/0003.avi"):
        _write(root, relative, clip)


def make_afew_va(root: Path, clip: bytes) -> None:
    for name, valence, arousal in (("001", 5.0, 6.0), ("002", -4.0, -3.0), ("003", 0.5, -1.0)):
        frames = {f"{i:05d}": {"valence": valence, "arousal": arousal, "landmarks": []} for i in range(2)}
        _write(root, f"{name}/{name}.json", json.dumps({"actor": "x", "video_id": name, "frames": frames}))
        _write(root, f"{name}/00000.png")


def make_mer24(root: Path, clip: bytes) -> None:
    _write(
        root,
        "label-disdim.csv",
        "name,discrete,valence\nsample_00000001,worried,-1.5\nsample_00000002,happy,2.0\n",
    )
    for name in ("sample_00000001", "sample_00000002"):
        _write(root, f"video-labeled/{name}.mp4", clip)


def make_ravdess(root: Path, clip: bytes) -> None:
    for name in (
        "Actor_01/01-01-03-02-01-01-01.mp4",
        "Actor_01/02-01-03-02-01-01-01.mp4",
        "Actor_02/01-01-01-01-02-02-02.mp4",
    ):
        _write(root, name, clip)


LAYOUTS = {
    "DFEW": (
        make_dfew,
        {"train": [("DFEW/00001", "happy"), ("DFEW/00002", "angry")], "test": [("DFEW/00003", "fear")]},
    ),
    "MAFW": (
        make_mafw,
        {
            "train": [("MAFW/00001", "anger"), ("MAFW/00002", "helplessness")],
            "test": [("MAFW/00003", "neutral")],
        },
    ),
    "FERV39K": (
        make_ferv39k,
        {
            "train": [("FERV39K/Action/Happy/0001", "happy"), ("FERV39K/Talkshow/Sad/0002", "sad")],
            "test": [("FERV39K/Crime/Fear/0003", "fear")],
        },
    ),
    "CAER": (
        make_caer,
        {
            "train": [("CAER/train/Anger/0001", "anger")],
            "validation": [("CAER/validation/Happy/0002", "happy")],
            "test": [("CAER/test/Sad/0003", "sad")],
        },
    ),
    "AFEW-VA": (
        make_afew_va,
        {"train": [("AFEW-VA/001", "excited"), ("AFEW-VA/002", "depressed"), ("AFEW-VA/003", "neutral")]},
    ),
    "MER24": (
        make_mer24,
        {"train": [("MER24/sample_00000001", "worried"), ("MER24/sample_00000002", "happy")]},
    ),
    "RAVDESS": (
        make_ravdess,
        {"train": [("RAVDESS/01-01-03-02-01-01-01", "happy"), ("RAVDESS/01-01-01-01-02-02-02", "neutral")]},
    ),
}


@pytest.mark.parametrize("source", LAYOUTS)
def test_adapter_reads_the_official_layout(source, tmp_path, clip_bytes):
    make_layout, expected = LAYOUTS[source]
    make_layout(tmp_path, clip_bytes)

    dataset = read_source(source, tmp_path)

    assert list(dataset) == list(expected)
    for split, rows in expected.items():
        assert list(zip(dataset[split]["id"], dataset[split]["label"], strict=True)) == rows
        assert set(dataset[split]["source"]) == {source}
        assert set(dataset[split]["split"]) == {split}
        for video in dataset[split]["video"]:
            assert not Path(video).is_absolute() and (tmp_path / video).exists()


def test_ravdess_keeps_intensity_from_the_file_name(tmp_path, clip_bytes):
    make_ravdess(tmp_path, clip_bytes)
    assert read_source("RAVDESS", tmp_path)["train"]["intensity"] == ["strong", "normal"]


def test_class_orders_match_the_uar_war_metric():
    import importlib.util

    from evaluate_metrics import metric_path

    spec = importlib.util.spec_from_file_location("uar_war", f"{metric_path('uar_war')}/uar_war.py")
    metric_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(metric_module)
    assert metric_module.DATASET_LABELS == {"dfew": DFEW_CLASSES, "mafw": MAFW_CLASSES}
    assert DFEW_CLASSES[:3] == ("happy", "sad", "neutral")  # DFEW's official ids 1-3, minus one


def test_other_folds_and_video_templates(tmp_path):
    _write(tmp_path, "EmoLabel_DataSplit/train(single-labeled)/set_3.csv", "video_name,label\n12,2\n")
    _write(tmp_path, "EmoLabel_DataSplit/test(single-labeled)/set_3.csv", "video_name,label\n13,3\n")
    for number in (12, 13):
        _write(tmp_path, f"Clip/clip_224x224/{number:05d}/00001.jpg")

    dataset = read_source("DFEW", tmp_path, fold=3, video_template="Clip/clip_224x224/{clip_id}")

    assert dataset["train"]["video"] == ["Clip/clip_224x224/00012"]
    assert dataset["test"]["label"] == ["neutral"]


def test_missing_clips_are_counted_and_named(tmp_path, clip_bytes):
    make_dfew(tmp_path, clip_bytes)
    (tmp_path / "Clip/original/00002.mp4").unlink()

    with pytest.raises(MissingVideosError, match=r"1 of 3 videos are missing") as error:
        read_source("DFEW", tmp_path)
    assert "DFEW/00002" in str(error.value) and "00002.mp4" in str(error.value)


def test_dropping_missing_clips_is_reported(tmp_path, clip_bytes, caplog):
    make_dfew(tmp_path, clip_bytes)
    (tmp_path / "Clip/original/00002.mp4").unlink()

    with caplog.at_level(logging.WARNING):
        dataset = read_source("DFEW", tmp_path, on_missing="drop")

    assert dataset["train"]["id"] == ["DFEW/00001"]
    assert "1 of 3 videos are missing" in caplog.text


@pytest.mark.parametrize(
    ("source", "relative", "content", "message"),
    [
        (
            "DFEW",
            "EmoLabel_DataSplit/train(single-labeled)/set_1.csv",
            "video_name,label\n1,1\n2,9\n",
            r"set_1.csv:3: label 9",
        ),
        (
            "DFEW",
            "EmoLabel_DataSplit/test(single-labeled)/set_1.csv",
            "name,emotion\n3,7\n",
            r"set_1.csv:1: expected a header with columns video_name, label",
        ),
        (
            "MAFW",
            "Train & Test Set/single/no_caption/set_1/train.txt",
            "00001.mp4 anger\n00002.mp4 joy\n",
            r"train.txt:2: label 'joy'",
        ),
        ("FERV39K", "4_setups/All_scenes/train_All.csv", "Action/Happy/0001\n", r"train_All.csv:1: expected"),
        (
            "MER24",
            "label-disdim.csv",
            "name,discrete\nsample_1,bored\n",
            r"label-disdim.csv:2: label 'bored'",
        ),
        ("AFEW-VA", "001/001.json", '{"frames": {"00000": {"valence": 1}}}', r"001.json: expected"),
    ],
)
def test_annotation_errors_name_file_and_line(source, relative, content, message, tmp_path, clip_bytes):
    make_layout, _ = LAYOUTS[source]
    make_layout(tmp_path, clip_bytes)
    _write(tmp_path, relative, content)

    with pytest.raises(AnnotationError, match=message):
        read_source(source, tmp_path)


def test_unknown_class_folder_is_named(tmp_path, clip_bytes):
    make_caer(tmp_path, clip_bytes)
    _write(tmp_path, "train/Bored/0009.avi", clip_bytes)

    with pytest.raises(AnnotationError, match=r"Bored: label 'Bored' is not a CAER class"):
        read_source("CAER", tmp_path)


def test_malformed_ravdess_name_is_named(tmp_path, clip_bytes):
    _write(tmp_path, "Actor_01/happy-take-1.mp4", clip_bytes)

    with pytest.raises(AnnotationError, match=r"happy-take-1.mp4: expected a 7-part name"):
        read_source("RAVDESS", tmp_path)


def test_missing_annotation_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"set_1.csv not found"):
        read_source("DFEW", tmp_path)
    with pytest.raises(ValueError, match=r"folds 1-5, got fold=6"):
        read_source("DFEW", tmp_path, fold=6)
    with pytest.raises(ValueError, match=r"Unknown source 'AFEW'; expected one of DFEW, MAFW"):
        read_source("AFEW", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"is not a directory"):
        read_source("MAFW", tmp_path / "absent")
