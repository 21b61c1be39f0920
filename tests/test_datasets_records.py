"""SRE/HRE records: JSONL validation with file and line in every error, the SRE threshold, HRE overlap,
and the per-source counts printed like the paper's figure."""

from __future__ import annotations

import json

import pytest

from dataset_scripts import (
    PAPER_SRE_COUNTS,
    RecordError,
    check_disjoint,
    count_by_source,
    format_source_counts,
    read_records,
    select_sre,
    write_records,
)


def record(**changes):
    base = {
        "id": "DFEW/00001",
        "video": "Clip/original/00001.mp4",
        "source": "DFEW",
        "label": "happy",
        "open_vocabulary": ["Happy", "relaxed"],
        "reasoning": "She smiles and her voice is light.",
        "intensity": "mild",
        "review_score": 7,
        "split": "train",
    }
    return {**base, **changes}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_valid_records_are_read_and_normalised(tmp_path):
    path = write_jsonl(
        tmp_path / "sre.jsonl", [record(), record(id="MAFW/1", source="MAFW", label="anxiety")]
    )

    records = read_records(path)

    assert [r["id"] for r in records] == ["DFEW/00001", "MAFW/1"]
    assert records[0]["open_vocabulary"] == ["happy", "relaxed"]
    assert records[0]["review_score"] == 7.0


def _without_label(r):
    r.pop("label")
    return r


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (record(id="x", source="AffectNet"), r"unknown source 'AffectNet'"),
        (_without_label(record(id="x")), r"missing field\(s\) label"),
        (record(id="x", review_score=10.5), r"review_score 10.5 is outside 0-10"),
        (record(id="x", review_score=-1), r"review_score -1 is outside 0-10"),
        (record(id="x", video="../../etc/passwd"), r"escapes its source root"),
        (record(id="x", video="/data/DFEW/00001.mp4"), r"is absolute"),
        (record(id="x", label="joyful"), r"label 'joyful' is not a DFEW class"),
        (record(id="x", open_vocabulary="happy"), r"open_vocabulary' should be list"),
        (record(id="x", split="train-2"), r"split 'train-2' should be a word"),
        (record(), r"duplicate id 'DFEW/00001', first seen at .*sre.jsonl:1"),
    ],
)
def test_invalid_record_names_file_and_line(bad, message, tmp_path):
    path = write_jsonl(tmp_path / "sre.jsonl", [record(), bad])

    with pytest.raises(RecordError, match=message) as error:
        read_records(path)
    assert f"{path}:2:" in str(error.value)


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "sre.jsonl"
    path.write_text(json.dumps(record()) + "\n\n{not json\n", encoding="utf-8")

    with pytest.raises(RecordError, match=rf"{path}:3: not valid JSON"):
        read_records(path)


def test_write_then_read_round_trip(tmp_path):
    records = [
        record(),
        record(id="RAVDESS/a", source="RAVDESS", label="calm", review_score=None, intensity=None),
    ]
    assert read_records(write_records(records, tmp_path / "out" / "records.jsonl")) == read_records(
        write_jsonl(tmp_path / "in.jsonl", records)
    )


def test_sre_keeps_scores_at_or_above_the_threshold():
    records = [record(id=str(score), review_score=score) for score in (None, 4.9, 5.0, 9.0)]

    assert [r["id"] for r in select_sre(records)] == ["5.0", "9.0"]
    assert [r["id"] for r in select_sre(records, min_score=8)] == ["9.0"]
    with pytest.raises(ValueError, match="0-10"):
        select_sre(records, min_score=11)


def test_hre_overlapping_sre_lists_the_overlap():
    sre = [record(id="DFEW/1", video="a.mp4"), record(id="DFEW/2", video="b.mp4")]
    hre = [
        record(id="DFEW/2", video="c.mp4"),
        record(id="other", video="a.mp4"),
        record(id="DFEW/9", video="z.mp4"),
    ]

    with pytest.raises(ValueError, match=r"2 HRE record\(s\) are also in SRE") as error:
        check_disjoint(sre, hre)
    assert "DFEW/2 (DFEW: c.mp4)" in str(error.value) and "other (DFEW: a.mp4)" in str(error.value)
    assert "DFEW/9" not in str(error.value)
    check_disjoint(sre, hre[2:])


def test_counts_print_like_the_paper_figure():
    records = [{"source": source} for source, count in PAPER_SRE_COUNTS.items() for _ in range(count)]

    counts = count_by_source(records)
    text = format_source_counts(counts, "SRE", reference=PAPER_SRE_COUNTS)
    print(text)

    assert list(counts) == ["FERV39K", "MAFW", "DFEW", "CAER", "AFEW-VA", "MER24"]
    assert text.splitlines()[0] == "SRE: 24,137 clips"
    assert "FERV39K  10,302  42.7%  paper  10,302  ###" in text
    assert text.splitlines()[-1] == "  total    24,137 100.0%  paper  24,137"
