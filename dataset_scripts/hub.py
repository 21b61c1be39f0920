"""Records <-> `datasets` objects, and the script-free Hub layout: Parquet shards plus a dataset card.

`datasets` 5 no longer runs loading scripts, so an export is what the Hub serves as is:
`data/<config>/<split>-NNNNN-of-NNNNN.parquet` and a README.md whose YAML `configs:` and
`dataset_info:` name the configs, splits and features, so that `load_dataset(<dir or repo id>,
name=<config>)` works with no code of ours. Exports hold annotations and relative paths, never videos.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, DatasetInfo, Features, List, SplitDict, SplitInfo, Value
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import CommitInfo, DatasetCard, DatasetCardData, HfApi

from .catalog import SOURCES
from .records import (
    PAPER_HRE_PER_SOURCE,
    PAPER_SRE_COUNTS,
    RECORD_FIELDS,
    count_by_source,
    format_source_counts,
)
from .videos import OnMissing, as_roots, missing_ids, resolve_video

RECORD_FEATURES = Features(
    {
        "id": Value("string"),
        "video": Value("string"),
        "source": Value("string"),
        "label": Value("string"),
        "open_vocabulary": List(Value("string")),
        "reasoning": Value("string"),
        "intensity": Value("string"),
        "review_score": Value("float32"),
        "split": Value("string"),
    }
)

FIELD_DESCRIPTIONS: dict[str, str] = {
    "id": "unique id, `<source>/<clip id in the source>`",
    "video": "path of the clip relative to its source dataset's root (a file, or a folder of frames)",
    "source": "source dataset: " + ", ".join(SOURCES),
    "label": "the source's coarse class (null where the record has none)",
    "open_vocabulary": "open-vocabulary emotion words, lower-case",
    "reasoning": "the explanation of the emotional state from facial, vocal and contextual cues",
    "intensity": "emotion intensity, where known",
    "review_score": "self-review score 0-10 (SRE keeps >= 5); null where not scored",
    "split": "the split the record belongs to",
}


def records_to_dataset_dict(records: Iterable[Mapping[str, Any]]) -> DatasetDict:
    """One `Dataset` per value of the records' `split` field, with the record features, in first-seen order."""
    by_split: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_split.setdefault(record["split"], []).append(record)
    return DatasetDict(
        {split: Dataset.from_list(rows, features=RECORD_FEATURES) for split, rows in by_split.items()}
    )


def source_counts_report(configs: Mapping[str, DatasetDict]) -> str:
    """Per-source counts of each config over all its splits, beside the paper's numbers."""
    blocks = []
    for name, dataset_dict in configs.items():
        counts = count_by_source(row for ds in dataset_dict.values() for row in ds.select_columns(["source"]))
        reference = PAPER_SRE_COUNTS if name == "sre" else None
        block = format_source_counts(counts, name.upper(), reference)
        if name == "hre":
            block += f"\n  (paper: {PAPER_HRE_PER_SOURCE} from each of five sources, {5 * PAPER_HRE_PER_SOURCE:,} in all)"
        blocks.append(block)
    return "\n\n".join(blocks)


def _write_shards(dataset: Dataset, directory: Path, split: str, max_rows_per_shard: int) -> None:
    num_shards = max(1, math.ceil(len(dataset) / max_rows_per_shard))
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True)
        shard.to_parquet(str(directory / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))


def _type_name(feature: Value | List) -> str:
    return f"list of {feature.feature.dtype}" if isinstance(feature, List) else feature.dtype


def _card_body(
    configs: Mapping[str, DatasetDict], pretty_name: str, description: str, default_config: str
) -> str:
    present = {source for dd in configs.values() for ds in dd.values() for source in ds.unique("source")}
    source_rows = "\n".join(
        f"| {info.name} | [{info.homepage}]({info.homepage}) | {info.license} |"
        for info in SOURCES.values()
        if info.name in present
    )
    splits = "\n".join(
        f"| {name} | {split} | {len(ds):,} |" for name, dd in configs.items() for split, ds in dd.items()
    )
    schema = "\n".join(
        f"| `{name}` | {_type_name(RECORD_FEATURES[name])} | {FIELD_DESCRIPTIONS[name]} |"
        for name in RECORD_FIELDS
    )
    roots = ", ".join(f'"{name}": "/data/{name}"' for name in sorted(present))
    return f"""
# {pretty_name}

{description}

This dataset holds annotations only. The clips stay under their owners' licences, most of which forbid
redistribution: obtain each source dataset from its homepage and attach your copy when loading.

## Sources and licences

| source | homepage | licence of the clips |
|---|---|---|
{source_rows}

## Counts

| config | split | clips |
|---|---|---|
{splits}

```text
{source_counts_report(configs)}
```

## Schema

| field | type | meaning |
|---|---|---|
{schema}

## Attaching the videos

`video` is relative to the root of each source dataset, the folder its official archive unpacks to.
Load the annotations with `datasets` alone, or resolve the paths (and check every file exists) with
`dataset_scripts` from the `omni-emotion` package:

```python
from datasets import load_dataset
annotations = load_dataset("<this repo or folder>", name="{default_config}")

from dataset_scripts import load_exported
data = load_exported("<this repo or folder>", "{default_config}", video_roots={{{roots}}})
# adds `video_path`; missing clips raise an error listing how many and which
```
"""


def export_to_hub_layout(
    configs: Mapping[str, DatasetDict],
    out_dir: str | Path,
    *,
    pretty_name: str = "Omni-Emotion SRE/HRE annotations",
    description: str = "Emotion reasoning annotations over seven video emotion datasets.",
    default_config: str | None = None,
    max_rows_per_shard: int = 100_000,
    overwrite: bool = False,
) -> Path:
    """Write `configs` (config name -> `DatasetDict` of records) as Parquet shards and a dataset card.

    The first config is the default unless `default_config` names another. `overwrite` replaces an
    earlier export's `data/` and README.md; any other file in `out_dir` is left alone.
    """
    out_dir = Path(out_dir)
    if not configs:
        raise ValueError("Nothing to export: `configs` is empty")
    default_config = default_config or next(iter(configs))
    if default_config not in configs:
        raise ValueError(f"default_config {default_config!r} is not one of the configs {list(configs)}")
    if (out_dir / "README.md").exists() or (out_dir / "data").exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds an export; pass overwrite=True to replace it")
        shutil.rmtree(out_dir / "data", ignore_errors=True)
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license="other",
        language=["en"],
        task_categories=["video-classification", "video-text-to-text"],
        tags=["emotion-recognition", "affective-computing", "multimodal"],
    )
    metadata, infos = {}, {}
    for name, dataset_dict in configs.items():
        splits = SplitDict()
        for split, dataset in dataset_dict.items():
            if dataset.features != RECORD_FEATURES:
                raise ValueError(
                    f"{name}/{split} has features {dataset.features}, not the record features; "
                    "build it with records_to_dataset_dict or read_source"
                )
            shard_dir = out_dir / "data" / name
            shard_dir.mkdir(parents=True, exist_ok=True)
            _write_shards(dataset, shard_dir, split, max_rows_per_shard)
            splits.add(SplitInfo(name=split, num_bytes=dataset.data.nbytes, num_examples=len(dataset)))
        metadata[name] = {
            "data_files": [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in dataset_dict]
        }
        if name == default_config:
            metadata[name]["default"] = True
        infos[name] = DatasetInfo(features=RECORD_FEATURES, splits=splits, config_name=name)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    MetadataConfigs(metadata).to_dataset_card_data(card_data)
    card = DatasetCard(
        f"---\n{card_data}\n---\n{_card_body(configs, pretty_name, description, default_config)}"
    )
    card.save(out_dir / "README.md")
    return out_dir


def attach_videos(
    data: Dataset | DatasetDict, video_roots: Mapping[str, str | Path], on_missing: OnMissing = "raise"
) -> Dataset | DatasetDict:
    """Add `video_path` (root of the row's source / `video`), checking every file over all splits at once."""
    splits = data if isinstance(data, DatasetDict) else {None: data}
    located = {split: ds.select_columns(["id", "source", "video"]).to_list() for split, ds in splits.items()}
    missing = missing_ids([row for rows in located.values() for row in rows], video_roots, on_missing)
    roots = as_roots(video_roots)
    resolved = {}
    for split, ds in splits.items():
        rows = located[split]
        kept = [index for index, row in enumerate(rows) if row["id"] not in missing]
        paths = [str(resolve_video(rows[index], roots)) for index in kept]
        resolved[split] = (ds.select(kept) if len(kept) < len(rows) else ds).add_column("video_path", paths)
    return DatasetDict(resolved) if isinstance(data, DatasetDict) else resolved[None]


def load_exported(
    path: str | Path,
    name: str | None = None,
    *,
    video_roots: Mapping[str, str | Path] | None = None,
    on_missing: OnMissing = "raise",
    split: str | None = None,
    **load_kwargs: Any,
) -> Dataset | DatasetDict:
    """`load_dataset` on an export (local folder or Hub repo id), then `attach_videos` if roots are given."""
    loaded = datasets.load_dataset(str(path), name=name, split=split, **load_kwargs)
    return loaded if video_roots is None else attach_videos(loaded, video_roots, on_missing)


def push_to_hub(
    export_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload emotion annotations (Parquet + dataset card)",
) -> CommitInfo:
    """Upload an export to the dataset repo `repo_id` (created if needed); shards it no longer has are removed."""
    export_dir = Path(export_dir)
    readme = export_dir / "README.md"
    if not readme.is_file() or not MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data):
        raise ValueError(
            f"{export_dir} is not an export (no README.md with `configs:`); run export_to_hub_layout first"
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=export_dir,
        repo_type="dataset",
        revision=revision,
        commit_message=commit_message,
        allow_patterns=["README.md", "data/**"],
        delete_patterns=["data/**"],
    )
