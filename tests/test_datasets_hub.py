"""Export to the script-free Hub layout, `load_dataset(<local dir>)` round trips, attaching videos, and
`push_to_hub` (its upload call replaced, so nothing leaves the machine)."""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, load_dataset
from huggingface_hub import HfApi

from dataset_scripts import (
    RECORD_FEATURES,
    MissingVideosError,
    attach_videos,
    build_sre_hre,
    export_to_hub_layout,
    load_exported,
    push_to_hub,
    read_source,
    records_to_dataset_dict,
    validate_records,
)
from dataset_scripts.build import main as build_main


def record(
    index: int, source: str = "DFEW", label: str = "happy", score: float | None = 8.0, split: str = "train"
):
    return {
        "id": f"{source}/{index:05d}",
        "video": f"clips/{index:05d}.mp4",
        "source": source,
        "label": label,
        "open_vocabulary": ["happy", "relaxed"],
        "reasoning": f"Clip {index}: a broad smile and a light voice.",
        "intensity": None,
        "review_score": score,
        "split": split,
    }


@pytest.fixture
def sre_hre(tmp_path):
    """An SRE candidates file (one record under the threshold) and a disjoint HRE file."""
    candidates = [record(1), record(2, split="test"), record(3, "MAFW", "anxiety"), record(4, score=3.0)]
    hre = [record(10, "CAER", "sad"), record(11, "MER24", "worried")]
    for name, rows in (("sre.jsonl", candidates), ("hre.jsonl", hre)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path / "sre.jsonl", tmp_path / "hre.jsonl"


def card_yaml(export_dir: Path) -> dict:
    return yaml.safe_load((export_dir / "README.md").read_text(encoding="utf-8").split("---")[1])


def test_export_round_trips_through_load_dataset(sre_hre, tmp_path):
    configs = build_sre_hre(*sre_hre)
    export_dir = export_to_hub_layout(configs, tmp_path / "export")

    for name, expected in configs.items():
        loaded = load_dataset(str(export_dir), name=name, cache_dir=str(tmp_path / "cache"))
        assert list(loaded) == list(expected)
        for split in expected:
            assert loaded[split].to_list() == expected[split].to_list()
            assert loaded[split].features == expected[split].features
    default = load_dataset(str(export_dir), cache_dir=str(tmp_path / "cache"))
    assert default["train"]["id"] == ["DFEW/00001", "MAFW/00003"]


def test_card_names_configs_sources_licences_and_how_to_attach(sre_hre, tmp_path):
    export_dir = export_to_hub_layout(build_sre_hre(*sre_hre), tmp_path / "export")

    metadata = card_yaml(export_dir)
    body = (export_dir / "README.md").read_text(encoding="utf-8")

    assert {c["config_name"]: c["data_files"] for c in metadata["configs"]} == {
        "hre": [{"split": "train", "path": "data/hre/train-*.parquet"}],
        "sre": [
            {"split": "train", "path": "data/sre/train-*.parquet"},
            {"split": "test", "path": "data/sre/test-*.parquet"},
        ],
    }
    assert [info["config_name"] for info in metadata["dataset_info"]] == ["hre", "sre"]
    for source in ("DFEW", "MAFW", "CAER", "MER24"):
        assert f"| {source} |" in body
    assert "non-commercial research only" in body and "video_roots" in body
    assert "SRE: 3 clips" in body and "HRE: 2 clips" in body


def test_large_splits_are_sharded_and_load_whole(tmp_path):
    records = validate_records([record(i) for i in range(5)])
    export_dir = export_to_hub_layout(
        {"sre": records_to_dataset_dict(records)}, tmp_path / "export", max_rows_per_shard=2
    )

    assert sorted(p.name for p in (export_dir / "data/sre").iterdir()) == [
        f"train-0000{i}-of-00003.parquet" for i in range(3)
    ]
    loaded = load_dataset(str(export_dir), "sre", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded["id"] == [r["id"] for r in records]


def test_source_folds_export_as_configs(tmp_path):
    root = tmp_path / "DFEW"
    for fold in (1, 2):
        for split, number in (("train", fold), ("test", fold + 10)):
            path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"video_name,label\n{number},2\n", encoding="utf-8")
            (root / "Clip/original").mkdir(parents=True, exist_ok=True)
            (root / f"Clip/original/{number:05d}.mp4").touch()
    configs = {f"fold_{fold}": read_source("DFEW", root, fold=fold) for fold in (1, 2)}

    export_dir = export_to_hub_layout(configs, tmp_path / "export", pretty_name="DFEW folds")
    loaded = load_exported(
        export_dir, "fold_2", video_roots={"DFEW": root}, cache_dir=str(tmp_path / "cache")
    )

    assert loaded["test"]["id"] == ["DFEW/00012"]
    assert loaded["test"]["video_path"] == [str(root / "Clip/original/00012.mp4")]


def test_export_refuses_to_overwrite_unless_asked(sre_hre, tmp_path):
    configs = build_sre_hre(*sre_hre)
    export_to_hub_layout(configs, tmp_path / "export")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_to_hub_layout(configs, tmp_path / "export")
    export_to_hub_layout({"sre": configs["sre"]}, tmp_path / "export", overwrite=True)
    assert [c["config_name"] for c in card_yaml(tmp_path / "export")["configs"]] == ["sre"]
    assert not (tmp_path / "export/data/hre").exists()


@pytest.fixture
def exported(sre_hre, tmp_path):
    """An export, and video roots that hold every clip of its `sre` config."""
    export_dir = export_to_hub_layout(build_sre_hre(*sre_hre), tmp_path / "export")
    roots = {"DFEW": tmp_path / "videos/DFEW", "MAFW": tmp_path / "videos/MAFW"}
    for source, index in (("DFEW", 1), ("DFEW", 2), ("MAFW", 3)):
        (roots[source] / "clips").mkdir(parents=True, exist_ok=True)
        (roots[source] / f"clips/{index:05d}.mp4").touch()
    return export_dir, roots


def test_loading_resolves_paths_against_video_roots(exported, tmp_path):
    export_dir, roots = exported

    data = load_exported(export_dir, "sre", video_roots=roots, cache_dir=str(tmp_path / "cache"))

    assert data["train"]["video_path"] == [
        str(roots["DFEW"] / "clips/00001.mp4"),
        str(roots["MAFW"] / "clips/00003.mp4"),
    ]
    assert data["test"]["video_path"] == [str(roots["DFEW"] / "clips/00002.mp4")]


def test_missing_videos_are_counted_over_all_splits(exported, tmp_path, caplog):
    export_dir, roots = exported
    (roots["DFEW"] / "clips/00001.mp4").unlink()
    (roots["DFEW"] / "clips/00002.mp4").unlink()
    data = load_exported(export_dir, "sre", cache_dir=str(tmp_path / "cache"))

    with pytest.raises(MissingVideosError, match=r"2 of 3 videos are missing") as error:
        attach_videos(data, roots)
    assert "DFEW/00001" in str(error.value) and "DFEW/00002" in str(error.value)

    with caplog.at_level(logging.WARNING):
        kept = attach_videos(data, roots, on_missing="drop")
    assert kept["train"]["id"] == ["MAFW/00003"] and len(kept["test"]) == 0
    assert "2 of 3 videos are missing" in caplog.text


def test_a_source_without_a_root_is_named(exported, tmp_path):
    export_dir, roots = exported
    data = load_exported(export_dir, "sre", split="train", cache_dir=str(tmp_path / "cache"))

    with pytest.raises(ValueError, match=r"video_roots has no folder for MAFW"):
        attach_videos(data, {"DFEW": roots["DFEW"]})


def test_attaching_refuses_paths_that_escape_their_root(tmp_path):
    data = Dataset.from_list([{**record(1), "video": "../../secret.mp4"}], features=RECORD_FEATURES)

    with pytest.raises(
        ValueError, match=r"Row 'DFEW/00001': path '../../secret.mp4' escapes its source root"
    ):
        attach_videos(data, {"DFEW": tmp_path})


def test_push_to_hub_uploads_the_export(exported, monkeypatch):
    export_dir, _ = exported
    calls = {}
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kwargs: calls.setdefault("create", (repo_id, kwargs))
    )

    def fake_upload(self, **kwargs):
        calls["upload"] = kwargs
        return "commit"

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload)

    assert push_to_hub(export_dir, "someone/omni-emotion-sre", private=True) == "commit"

    assert calls["create"] == (
        "someone/omni-emotion-sre",
        {"repo_type": "dataset", "private": True, "exist_ok": True},
    )
    upload = calls["upload"]
    assert upload["repo_id"] == "someone/omni-emotion-sre" and upload["repo_type"] == "dataset"
    files = sorted(
        p.relative_to(export_dir).as_posix() for p in Path(upload["folder_path"]).rglob("*") if p.is_file()
    )
    uploaded = [f for f in files if any(fnmatch.fnmatch(f, pattern) for pattern in upload["allow_patterns"])]
    assert uploaded == [
        "README.md",
        "data/hre/train-00000-of-00001.parquet",
        "data/sre/test-00000-of-00001.parquet",
        "data/sre/train-00000-of-00001.parquet",
    ]
    assert upload["delete_patterns"] == ["data/**"]


def test_push_to_hub_refuses_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(ValueError, match="is not an export"):
        push_to_hub(tmp_path, "someone/repo")


def test_command_line_prints_counts_and_exports(sre_hre, tmp_path, capsys):
    sre_path, hre_path = sre_hre

    build_main([str(sre_path), "--hre", str(hre_path), "--out", str(tmp_path / "export")])

    printed = capsys.readouterr().out
    assert "SRE: 3 clips" in printed and "paper  10,302" in printed
    assert "HRE: 2 clips" in printed and "3,500 in all" in printed
    assert (tmp_path / "export/README.md").is_file()


def test_command_line_names_itself_and_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "export")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m dataset_scripts ")
    assert (
        err.splitlines()[-1]
        == f"python -m dataset_scripts: error: {tmp_path / 'missing.jsonl'}: no such file"
    )


def test_command_line_reports_an_invalid_record_in_one_line(tmp_path, capsys):
    bad = tmp_path / "sre.jsonl"
    bad.write_text(json.dumps(record(1) | {"source": "NOPE"}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        build_main([str(bad), "--out", str(tmp_path / "export")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"python -m dataset_scripts: error: {bad}:1: unknown source 'NOPE'")
