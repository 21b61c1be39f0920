"""Guards that keep evaluation data out of training, run by the trainer before training starts.

A model that has seen an EMER clip, a DFEW test-fold clip or an HRE clip in training scores well for the
wrong reason, and nothing downstream would notice. Each guard raises `LeakageError` naming the leaking
rows (the first few and how many) and how to fix it. Rows are mappings or a `datasets.Dataset`, of which
only the needed columns are read, so that checking 100K rows takes well under a second.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from .catalog import get_source
from .records import check_disjoint
from .sources import read_source

Rows = Dataset | Iterable[Mapping[str, Any]]

SHOWN = 10
"""How many leaking rows a message lists before giving the count of the rest."""

EVALUATION_NAME_COLUMNS: tuple[str, ...] = ("name", "names", "video", "id")
"""Columns that `read_evaluation_clips` takes clip names from, in order of preference (EMER-OV's
annotation CSVs use `name`)."""

_MEDIA_SUFFIXES = frozenset({"mp4", "avi", "mkv", "mov", "webm", "flv", "wav", "mp3", "flac", "m4a"})


class LeakageError(ValueError):
    """Training data holds clips that evaluation uses; the message lists them and says how to fix it."""


def clip_name(value: str) -> str:
    """The clip that a name, id or path stands for: its last path part, lower-cased, minus a media extension.

    `MER24/sample_00000005`, `video-labeled/sample_00000005.mp4` and `SAMPLE_00000005` all give
    `sample_00000005`, so that EMER's names match MER2024 ids and clip paths alike.
    """
    name = value.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and suffix in _MEDIA_SUFFIXES else name


def _columns(
    rows: Rows, what: str, required: Sequence[str] = (), optional: Sequence[str] = ()
) -> dict[str, list[Any]]:
    """The `required` and `optional` columns of `rows` (None where an optional one is absent), reading
    nothing else of a `Dataset`; a missing required column is an error, since the guard would pass blind."""
    names = [*required, *optional]
    if isinstance(rows, Dataset):
        missing = [name for name in required if name not in rows.column_names]
        if missing:
            raise ValueError(
                f"{what} have no column(s) {', '.join(missing)} (columns: {', '.join(rows.column_names)}); "
                f"this check needs {', '.join(required)}"
            )
        present = [name for name in names if name in rows.column_names]
        table = rows.select_columns(present).to_dict() if present else {}
        return {name: table.get(name, [None] * len(rows)) for name in names}
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, row in enumerate(rows):
        for name in required:
            if name not in row:
                raise ValueError(
                    f"{what} row {index} has no {name!r}; this check needs {', '.join(required)}"
                )
        for name in names:
            columns[name].append(row.get(name))
    return columns


def _label(columns: Mapping[str, list[Any]], index: int) -> str:
    """How a message names row `index`: its id, else its video, else its position."""
    for name in ("id", "video", "video_path"):
        if columns.get(name) and columns[name][index]:
            return str(columns[name][index])
    return f"row {index}"


def _leak(problem: str, leaking: list[str], fix: str) -> LeakageError:
    listed = ", ".join(leaking[:SHOWN])
    more = f" and {len(leaking) - SHOWN:,} more" if len(leaking) > SHOWN else ""
    return LeakageError(f"{problem}: {len(leaking):,} row(s), {listed}{more}.\n{fix}")


def read_evaluation_clips(path: str | Path) -> frozenset[str]:
    """Clip names from a text file (one a line; blank lines and `#` comments skipped) or a CSV/TSV whose
    header has one of `EVALUATION_NAME_COLUMNS`. An empty list is an error: a guard that checks against
    nothing would pass any training set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Evaluation clip list {path} not found")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = {field.strip().lower(): field for field in reader.fieldnames or []}
        column = next((header[key] for key in EVALUATION_NAME_COLUMNS if key in header), None)
        if column is None:
            raise ValueError(
                f"{path}: expected a header with one of the columns {', '.join(EVALUATION_NAME_COLUMNS)}, got "
                f"{reader.fieldnames}; or give a .txt file with one clip name a line"
            )
        names = [row[column] or "" for row in reader]
    else:
        names = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    clips = frozenset(name.strip() for name in names if name.strip())
    if not clips:
        raise ValueError(f"{path} names no clip; expected the evaluation clip names, e.g. sample_00000005")
    return clips


def check_no_evaluation_clips(rows: Rows, evaluation_clips: Iterable[str]) -> None:
    """Raise if a training row is an evaluation clip (EMER, EMER-OV, MER2023 test): its `id`, `video` or
    `video_path` names the same clip (see `clip_name`). Run it on every phase whose rows are emotion clips
    (phase 2, phase 3, fine-tuning); phase-1 audio rows name no clip and are refused."""
    names = {clip_name(name) for name in evaluation_clips if name.strip()}
    if not names:
        raise ValueError("No evaluation clips given; read them with read_evaluation_clips(<list or CSV>)")
    columns = _columns(rows, "training rows", optional=("id", "video", "video_path"))
    leaking = []
    for index, values in enumerate(zip(*columns.values(), strict=True)):
        if not any(values):
            raise ValueError(f"training row {index} has no id, video or video_path to match clips by")
        if any(isinstance(value, str) and clip_name(value) in names for value in values):
            leaking.append(_label(columns, index))
    if leaking:
        raise _leak(
            "Training data holds evaluation clips",
            leaking,
            "Evaluation clips must never be trained on: drop these rows from the training data (keep the rows "
            "whose clip_name(id) and clip_name(video) are not in the evaluation list) and rebuild the phase.",
        )


def fold_test_clips(source: str, root: str | Path, fold: int, **options: Any) -> Dataset:
    """The test split of `fold` of DFEW or MAFW under `root`, as `read_source` reads it (`options` go to
    its reader, e.g. `video_template`). Every test clip must be on disk: dropping missing ones would let
    their copies in the training data through."""
    info = get_source(source)
    if info.name not in ("DFEW", "MAFW"):
        raise ValueError(f"{info.name} has no official folds; only DFEW and MAFW are evaluated per fold")
    return read_source(info.name, root, fold=fold, **options)["test"]


def _normalised(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def check_test_fold_excluded(rows: Rows, source: str, test_clips: Rows) -> None:
    """Raise if a training row is one of a fold's test clips: the same `id`, or a row of `source` whose
    `video` is the same relative path. `test_clips` is `fold_test_clips(source, root, fold)` or its rows."""
    info = get_source(source)
    tests = _columns(test_clips, "test clips", required=("id",), optional=("video",))
    test_ids = set(tests["id"])
    test_videos = {_normalised(video) for video in tests["video"] if video}
    if not test_ids:
        raise ValueError(f"No {info.name} test clips given; read them with fold_test_clips(...)")
    columns = _columns(rows, "training rows", required=("id",), optional=("source", "video"))
    leaking = [
        _label(columns, index)
        for index, (row_id, row_source, video) in enumerate(zip(*columns.values(), strict=True))
        if row_id in test_ids or (row_source == info.name and video and _normalised(video) in test_videos)
    ]
    if leaking:
        raise _leak(
            f"Training data holds {info.name} test-fold clips",
            leaking,
            f"Fine-tune fold k on read_source({info.name!r}, root, fold=k)['train'] only, and drop these rows "
            "from any other training data: test clips seen in training inflate UAR/WAR.",
        )


def check_no_ravdess_in_sre(rows: Rows) -> None:
    """Raise if SRE holds a RAVDESS row: the paper removes RAVDESS from SRE."""
    columns = _columns(rows, "SRE rows", required=("source",), optional=("id", "video"))
    leaking = [
        _label(columns, index) for index, source in enumerate(columns["source"]) if source == "RAVDESS"
    ]
    if leaking:
        raise _leak(
            "SRE holds RAVDESS clips, which the paper removes from it",
            leaking,
            "Rebuild SRE without them, e.g. `sre.filter(lambda row: row['source'] != 'RAVDESS')`.",
        )


def check_sre_hre_disjoint(sre: Rows, hre: Rows) -> None:
    """Raise if a clip is in both SRE and HRE (same id, or same source and video): HRE is the human-reviewed
    evaluation set, so an overlap tests the model on clips it was trained on."""
    keys = ("id", "source", "video")
    located = []
    for rows, what in ((sre, "SRE rows"), (hre, "HRE rows")):
        columns = _columns(rows, what, required=keys)
        located.append(
            [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        )
    try:
        check_disjoint(*located, shown=SHOWN)
    except ValueError as error:
        raise LeakageError(str(error)) from None
