"""The clips to curate, each with its coarse label: from a source dataset's official layout, or from a CSV.

A source dataset is read by `dataset_scripts.read_source` (its reader checks the layout and that every clip is on
disk). A CSV holds a user's own clips, one `path,label[,source][,split]` row each under a header, `path` relative to
the input's root (by default the CSV's folder). Records name their source from the catalogue
(`dataset_scripts.SOURCES`) and a label from its classes, so a CSV row needs both: a `source` column, or the input's
`source` for all rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dataset_scripts import SOURCES, get_source, read_source
from dataset_scripts.records import validate_relative_path

from .config import ConfigError, InputConfig

EXCLUDED_SOURCES = frozenset({"RAVDESS"})
"""Sources whose clips enter neither SRE nor HRE (the paper leaves RAVDESS out); they are listed as dropped."""


@dataclass(frozen=True)
class Clip:
    """One clip and its coarse label; `video` is relative to `root`, as the records carry it."""

    id: str
    video: str
    root: Path
    source: str
    label: str
    split: str

    @property
    def path(self) -> Path:
        return self.root / self.video


def _from_source(spec: InputConfig, root: Path, where: str) -> Iterator[Clip]:
    try:
        dataset = read_source(spec.source, root, **spec.options)
    except TypeError as error:
        raise ConfigError(f"{where}: an option is not one the {spec.source} reader takes ({error})") from None
    splits = spec.splits or tuple(dataset)
    unknown = sorted(set(splits) - set(dataset))
    if unknown:
        raise ConfigError(
            f"{where}.splits: {spec.source} has no split {', '.join(unknown)}; it has {', '.join(dataset)}"
        )
    for split in splits:
        for row in dataset[split]:
            yield Clip(row["id"], row["video"], root, row["source"], row["label"], split)


def _from_csv(spec: InputConfig, path: Path, root: Path, where: str) -> Iterator[Clip]:
    if spec.source is not None:
        get_source(spec.source)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if not {"path", "label"} <= set(columns):
            raise ConfigError(
                f"{path}:1: expected a header with columns path,label[,source][,split], got {columns}"
            )
        for row in reader:
            line = f"{path}:{reader.line_num}"
            source = (row.get("source") or "").strip() or spec.source
            if source not in SOURCES:
                raise ConfigError(
                    f"{line}: source {source!r} is not one of {', '.join(SOURCES)}; add a source column or give "
                    f"`source:` in {where} (the record schema takes the catalogue's sources)"
                )
            label = (row["label"] or "").strip().lower()
            if label not in SOURCES[source].classes:
                raise ConfigError(
                    f"{line}: label {row['label']!r} is not a {source} class ({', '.join(SOURCES[source].classes)})"
                )
            try:
                video = validate_relative_path(row["path"] or "")
            except ValueError as error:
                raise ConfigError(f"{line}: {error}") from None
            split = (row.get("split") or "").strip() or "train"
            clip_id = f"{source}/{PurePosixPath(video).with_suffix('')}"
            yield Clip(clip_id, video, root, source, label, split)


def read_clips(inputs: Iterable[InputConfig], base_dir: Path) -> list[Clip]:
    """Every clip of `inputs`, in their order; an id seen twice, a missing file or a bad row is an error naming it."""
    clips: list[Clip] = []
    for index, spec in enumerate(inputs):
        where = f"inputs[{index}]"
        if spec.csv is not None:
            path = base_dir / Path(spec.csv).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{where}: CSV {path} not found")
            root = base_dir / Path(spec.root).expanduser() if spec.root else path.parent
            found = list(_from_csv(spec, path, root, where))
            missing = [clip.video for clip in found if not clip.path.exists()]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise FileNotFoundError(
                    f"{where}: {len(missing)} clip(s) of {path} not found under {root}: {shown}"
                )
        else:
            found = list(_from_source(spec, base_dir / spec.root, where))
        clips.extend(found)
    seen: dict[str, Clip] = {}
    for clip in clips:
        if clip.id in seen:
            raise ConfigError(
                f"clip id {clip.id!r} comes twice ({seen[clip.id].path} and {clip.path}); list each clip once"
            )
        seen[clip.id] = clip
    return clips
