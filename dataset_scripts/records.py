"""The SRE/HRE annotation record (docs/architecture.md, "Data"), read from JSONL and validated line by line.

A record names its clip by a path relative to its source dataset's root, never by the video itself:
the source licences forbid redistributing the clips, so users attach their own copies when loading.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .catalog import SOURCES

RECORD_FIELDS: tuple[str, ...] = (
    "id",
    "video",
    "source",
    "label",
    "open_vocabulary",
    "reasoning",
    "intensity",
    "review_score",
    "split",
)
"""Every record holds exactly these keys; `label`, `intensity` and `review_score` may be null."""

_NULLABLE_FIELDS = frozenset({"label", "intensity", "review_score"})

DEFAULT_SRE_MIN_SCORE = 5.0
"""SRE keeps the records whose self-review score is at least this (the paper's threshold)."""

PAPER_SRE_COUNTS: dict[str, int] = {
    "FERV39K": 10_302,
    "MAFW": 5_006,
    "DFEW": 3_700,
    "CAER": 2_903,
    "AFEW-VA": 1_176,
    "MER24": 1_050,
}
"""Per-source SRE counts of the paper's figure (24,137 in all)."""

PAPER_HRE_PER_SOURCE = 700
"""HRE in the paper: 700 human-reviewed clips from each of five sources (3,500 in all)."""


class RecordError(ValueError):
    """A record that breaks the schema; the message names the file and line."""


def validate_relative_path(path: str) -> str:
    """Return `path` as a normalised POSIX path inside its root, or raise `ValueError` saying why.

    Exports carry paths relative to each source root; a path that is absolute or climbs out with `..`
    would make loading read files outside the folder the user named.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"expected a non-empty relative path, got {path!r}")
    posix = path.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ValueError(f"path {path!r} is absolute; give it relative to the source dataset's root")
    normalised = posixpath.normpath(posix)
    if normalised == ".." or normalised.startswith("../"):
        raise ValueError(f"path {path!r} escapes its source root")
    return normalised


def _check_type(record: Mapping[str, Any], key: str, expected: type | tuple[type, ...], where: str) -> None:
    value = record[key]
    if value is None and key in _NULLABLE_FIELDS:
        return
    if not isinstance(value, expected) or isinstance(value, bool):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise RecordError(f"{where}: field {key!r} should be {names}, got {value!r}")


def validate_record(record: Mapping[str, Any], where: str = "record") -> dict[str, Any]:
    """Check one record against the schema and return it normalised; `where` prefixes every error."""
    if not isinstance(record, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in RECORD_FIELDS if key not in record]
    if missing:
        raise RecordError(
            f"{where}: missing field(s) {', '.join(missing)}; every record needs {', '.join(RECORD_FIELDS)}"
        )
    for key in ("id", "video", "source", "reasoning", "split"):
        _check_type(record, key, str, where)
    _check_type(record, "label", str, where)
    _check_type(record, "intensity", str, where)
    _check_type(record, "review_score", (int, float), where)
    _check_type(record, "open_vocabulary", list, where)
    if not re.fullmatch(r"\w+", record["split"]):
        raise RecordError(
            f"{where}: split {record['split']!r} should be a word such as train, validation or test"
        )
    source = record["source"]
    if source not in SOURCES:
        raise RecordError(f"{where}: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    label = record["label"]
    if label is not None and label not in SOURCES[source].classes:
        raise RecordError(
            f"{where}: label {label!r} is not a {source} class; expected one of {', '.join(SOURCES[source].classes)}"
        )
    score = record["review_score"]
    if score is not None and not (math.isfinite(score) and 0 <= score <= 10):
        raise RecordError(f"{where}: review_score {score!r} is outside 0-10")
    words = record["open_vocabulary"]
    if not all(isinstance(word, str) and word.strip() for word in words):
        raise RecordError(f"{where}: open_vocabulary should be a list of non-empty strings, got {words!r}")
    try:
        video = validate_relative_path(record["video"])
    except ValueError as error:
        raise RecordError(f"{where}: field 'video': {error}") from None
    normalised = {key: record[key] for key in RECORD_FIELDS}
    normalised["video"] = video
    normalised["open_vocabulary"] = [word.strip().lower() for word in words]
    normalised["review_score"] = None if score is None else float(score)
    return normalised


def validate_records(records: Iterable[Mapping[str, Any]], origin: str = "records") -> list[dict[str, Any]]:
    """Validate records that are not read from a file (e.g. the curation pipeline's output), ids included."""
    return _validated(((f"{origin}[{index}]", record) for index, record in enumerate(records)))


def _validated(located: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    records, first_seen = [], {}
    for where, record in located:
        checked = validate_record(record, where)
        if checked["id"] in first_seen:
            raise RecordError(
                f"{where}: duplicate id {checked['id']!r}, first seen at {first_seen[checked['id']]}"
            )
        first_seen[checked["id"]] = where
        records.append(checked)
    return records


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a JSONL file of records; blank lines are skipped, every error names file:line."""
    path = Path(path)

    def located():
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"{where}: not valid JSON ({error.msg})") from None

    return _validated(located())


def write_records(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write validated records as JSONL (one object a line, UTF-8 kept readable)."""
    path = Path(path)
    checked = validate_records(records, origin=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in checked:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def select_sre(
    records: Iterable[Mapping[str, Any]], min_score: float = DEFAULT_SRE_MIN_SCORE
) -> list[dict[str, Any]]:
    """The records whose self-review score is at least `min_score`; unscored records are left out."""
    if not 0 <= min_score <= 10:
        raise ValueError(f"min_score must lie in 0-10, got {min_score}")
    return [dict(r) for r in records if r["review_score"] is not None and r["review_score"] >= min_score]


def check_disjoint(
    sre: Iterable[Mapping[str, Any]], hre: Iterable[Mapping[str, Any]], *, shown: int = 10
) -> None:
    """Raise if a clip is in both SRE and HRE (same id, or same source and video), listing the overlap."""
    sre = list(sre)
    sre_ids = {r["id"] for r in sre}
    sre_clips = {(r["source"], r["video"]) for r in sre}
    overlap = [r for r in hre if r["id"] in sre_ids or (r["source"], r["video"]) in sre_clips]
    if overlap:
        listed = "\n".join(f"  {r['id']} ({r['source']}: {r['video']})" for r in overlap[:shown])
        more = f"\n  ... and {len(overlap) - shown} more" if len(overlap) > shown else ""
        raise ValueError(
            f"HRE must not overlap SRE, but {len(overlap)} HRE record(s) are also in SRE:\n{listed}{more}\n"
            "Remove them from one of the two files."
        )


def count_by_source(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Records per source, largest first (ties in the catalogue's order)."""
    counts = Counter(r["source"] for r in records)
    order = list(SOURCES)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0]))))


def format_source_counts(
    counts: Mapping[str, int], title: str, reference: Mapping[str, int] | None = None, width: int = 30
) -> str:
    """A text bar chart of per-source counts, as in the paper's figure, with the paper's numbers beside
    (a source of the reference that the data lacks is shown with 0)."""
    counts = {**counts, **{name: 0 for name in reference or () if name not in counts}}
    total = sum(counts.values())
    largest = max(counts.values(), default=0) or 1
    name_width = max((len(name) for name in counts), default=5)
    lines = [f"{title}: {total:,} clip{'' if total == 1 else 's'}"]
    for name, count in counts.items():
        bar = "#" * max(1, round(width * count / largest)) if count else ""
        share = 100 * count / total if total else 0.0
        paper = f"  paper {reference[name]:>7,}" if reference and name in reference else ""
        lines.append(f"  {name:<{name_width}} {count:>7,} {share:5.1f}%{paper}  {bar}".rstrip())
    if reference:
        lines.append(f"  {'total':<{name_width}} {total:>7,} 100.0%  paper {sum(reference.values()):>7,}")
    return "\n".join(lines)
