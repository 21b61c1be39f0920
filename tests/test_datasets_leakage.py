"""Leakage guards: each passes clean training data and fails on data that breaks it, naming the leaking rows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from datasets import Dataset

from dataset_scripts import (
    LeakageError,
    check_no_evaluation_clips,
    check_no_ravdess_in_sre,
    check_sre_hre_disjoint,
    check_test_fold_excluded,
    clip_name,
    fold_test_clips,
    read_evaluation_clips,
    read_source,
)

EMER = ["sample_00000005", "sample_00000007"]


def row(row_id: str, source: str = "MER24", video: str | None = None) -> dict[str, str]:
    return {"id": row_id, "source": source, "video": video or f"clips/{row_id.rsplit('/', 1)[-1]}.mp4"}


@pytest.mark.parametrize(
    "value",
    [
        "sample_00000005",
        "SAMPLE_00000005",
        "MER24/sample_00000005",
        "video-labeled/sample_00000005.mp4",
        "a\\sample_00000005.avi",
    ],
)
def test_ids_paths_and_names_of_one_clip_agree(value):
    assert clip_name(value) == "sample_00000005"


def test_evaluation_clips_are_read_from_text_csv_and_tsv(tmp_path):
    (tmp_path / "emer.txt").write_text("# EMER\nsample_00000005\n\n  sample_00000007 \n", encoding="utf-8")
    (tmp_path / "emer-ov.csv").write_text("name,openset\nsample_00000005,happy\n", encoding="utf-8")
    (tmp_path / "mer.tsv").write_text("Video\tlabel\nsample_00000007.mp4\tsad\n", encoding="utf-8")

    assert read_evaluation_clips(tmp_path / "emer.txt") == frozenset(EMER)
    assert read_evaluation_clips(tmp_path / "emer-ov.csv") == {"sample_00000005"}
    assert read_evaluation_clips(tmp_path / "mer.tsv") == {"sample_00000007.mp4"}


def test_unreadable_evaluation_lists_are_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("clip,label\nsample_00000005,happy\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("# nothing yet\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"expected a header with one of the columns name, names, video, id"):
        read_evaluation_clips(tmp_path / "labels.csv")
    with pytest.raises(ValueError, match="names no clip"):
        read_evaluation_clips(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_evaluation_clips(tmp_path / "missing.txt")


def test_training_without_evaluation_clips_passes():
    rows = [row("MER24/sample_00000001"), row("DFEW/00005", "DFEW")]

    check_no_evaluation_clips(rows, EMER)
    check_no_evaluation_clips(Dataset.from_list(rows), EMER)


def test_evaluation_clips_in_training_are_named_by_id_or_video():
    rows = [
        row("MER24/sample_00000001"),
        row("MER24/Sample_00000005"),
        {"id": "curated/42", "source": "MER24", "video": "video-labeled/sample_00000007.mp4"},
    ]

    with pytest.raises(
        LeakageError, match=r"holds evaluation clips: 2 row\(s\), MER24/Sample_00000005, curated/42\."
    ):
        check_no_evaluation_clips(Dataset.from_list(rows), EMER)


def test_a_long_leak_lists_ten_rows_and_the_count():
    rows = [row(f"MER24/sample_{i:08d}") for i in range(25)]

    with pytest.raises(
        LeakageError, match=r"25 row\(s\), MER24/sample_00000000, .*MER24/sample_00000009 and 15 more"
    ):
        check_no_evaluation_clips(rows, [f"sample_{i:08d}" for i in range(25)])


def test_rows_that_name_no_clip_are_refused():
    with pytest.raises(ValueError, match="training row 1 has no id, video or video_path"):
        check_no_evaluation_clips([row("MER24/a"), {"source": "MER24"}], EMER)
    with pytest.raises(ValueError, match="No evaluation clips given"):
        check_no_evaluation_clips([row("MER24/a")], [])


@pytest.fixture
def dfew_root(tmp_path) -> Path:
    """DFEW fold 1: clips 1 and 2 for training, clip 3 for testing."""
    root = tmp_path / "DFEW"
    for split, body in (("train", "video_name,label\n1,1\n2,4\n"), ("test", "video_name,label\n3,7\n")):
        path = root / f"EmoLabel_DataSplit/{split}(single-labeled)/set_1.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    (root / "Clip/original").mkdir(parents=True)
    for number in (1, 2, 3):
        (root / f"Clip/original/{number:05d}.mp4").touch()
    return root


def test_the_fold_train_split_passes_its_test_fold(dfew_root):
    test_clips = fold_test_clips("DFEW", dfew_root, fold=1)
    train = read_source("DFEW", dfew_root, fold=1)["train"]

    assert test_clips["id"] == ["DFEW/00003"]
    check_test_fold_excluded(train, "DFEW", test_clips)


def test_test_fold_clips_in_training_are_named(dfew_root):
    test_clips = fold_test_clips("DFEW", dfew_root, fold=1)
    rows = [
        row("DFEW/00001", "DFEW", "Clip/original/00001.mp4"),
        row("DFEW/00003", "DFEW", "Clip/original/00003.mp4"),
        row("sre/17", "DFEW", "Clip/./original/00003.mp4"),
        row("sre/18", "MAFW", "Clip/original/00003.mp4"),
    ]

    with pytest.raises(
        LeakageError, match=r"DFEW test-fold clips: 2 row\(s\), DFEW/00003, sre/17\."
    ) as error:
        check_test_fold_excluded(rows, "DFEW", test_clips)
    assert "fold=k)['train']" in str(error.value)


def test_only_folded_sources_have_test_folds(tmp_path):
    with pytest.raises(ValueError, match="CAER has no official folds"):
        fold_test_clips("CAER", tmp_path, fold=1)


def test_sre_without_ravdess_passes_and_with_it_fails():
    sre = [row("DFEW/1", "DFEW"), row("CAER/2", "CAER")]
    check_no_ravdess_in_sre(Dataset.from_list(sre))

    with pytest.raises(LeakageError, match=r"SRE holds RAVDESS clips.*: 1 row\(s\), RAVDESS/03-01-05"):
        check_no_ravdess_in_sre([*sre, row("RAVDESS/03-01-05", "RAVDESS")])


def test_a_guard_refuses_data_without_the_columns_it_needs():
    with pytest.raises(ValueError, match=r"SRE rows have no column\(s\) source .*this check needs source"):
        check_no_ravdess_in_sre(Dataset.from_list([{"id": "DFEW/1"}]))


def test_sre_and_hre_must_share_no_clip():
    sre = Dataset.from_list([row("DFEW/1", "DFEW"), row("DFEW/2", "DFEW")])
    check_sre_hre_disjoint(sre, [row("DFEW/3", "DFEW")])

    with pytest.raises(
        LeakageError, match=r"1 HRE record\(s\) are also in SRE:\n  hre/9 \(DFEW: clips/2.mp4\)"
    ):
        check_sre_hre_disjoint(sre, [row("DFEW/3", "DFEW"), row("hre/9", "DFEW", "clips/2.mp4")])


def test_a_large_dataset_is_checked_from_its_columns_alone():
    count = 100_000
    data = Dataset.from_dict(
        {
            "id": [f"MER24/clip_{i}" for i in range(count)],
            "source": ["MER24"] * count,
            "video": [f"video-labeled/clip_{i}.mp4" for i in range(count)],
            "reasoning": ["A long explanation of the cues. " * 5] * count,
        }
    )

    start = time.perf_counter()
    with pytest.raises(LeakageError, match=r"1 row\(s\), MER24/clip_99999\."):
        check_no_evaluation_clips(data, ["clip_99999"])
    print(f"100K rows checked in {time.perf_counter() - start:.2f} s")
