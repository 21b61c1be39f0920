"""Attach the user's copies of the source videos to rows that name clips by relative path.

Rows whose file is missing are reported (how many, and the first few), never dropped silently: a
training set that quietly loses a tenth of one source skews every class balance downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from .records import validate_relative_path

logger = logging.getLogger(__name__)

OnMissing = Literal["raise", "drop"]


class MissingVideosError(FileNotFoundError):
    """Some rows name videos that are not under the given roots."""

    def __init__(self, missing: list[tuple[str, Path]], total: int, shown: int = 5):
        self.missing = missing
        examples = "\n".join(f"  {row_id}: {path}" for row_id, path in missing[:shown])
        super().__init__(
            f"{len(missing):,} of {total:,} videos are missing, e.g.\n{examples}\n"
            "Check the `video_roots` you passed (each should be the folder the source's own archive "
            "unpacks to), or pass on_missing='drop' to leave these rows out knowingly."
        )


def as_roots(video_roots: Mapping[str, str | Path]) -> dict[str, Path]:
    """The user's `{source: folder}` mapping as paths, `~` expanded."""
    return {source: Path(root).expanduser() for source, root in video_roots.items()}


def resolve_video(row: Mapping[str, Any], roots: Mapping[str, Path]) -> Path:
    """The clip of `row` under its source root; a path that is absolute or escapes the root is refused,
    since an export from elsewhere could otherwise make loading read any file."""
    try:
        relative = validate_relative_path(row["video"])
    except ValueError as error:
        raise ValueError(f"Row {row['id']!r}: {error}") from None
    return roots[row["source"]] / relative


def find_missing_videos(
    rows: Iterable[Mapping[str, Any]], roots: Mapping[str, Path]
) -> list[tuple[str, Path]]:
    """(id, absolute path) of every row whose video is not on disk; a clip may be a file or a frame folder."""
    located = ((row["id"], resolve_video(row, roots)) for row in rows)
    return [(row_id, path) for row_id, path in located if not path.exists()]


def check_roots_cover(sources: Iterable[str], video_roots: Mapping[str, str | Path]) -> None:
    """Raise if a source of the data has no root, naming the sources that need one."""
    needed = sorted(set(sources) - set(video_roots))
    if needed:
        raise ValueError(
            f"video_roots has no folder for {', '.join(needed)}; pass video_roots={{...}} with a key for each "
            "source in the data (or filter those rows out first)."
        )


def missing_ids(
    rows: list[Mapping[str, Any]], video_roots: Mapping[str, str | Path], on_missing: OnMissing = "raise"
) -> set[str]:
    """Ids of the rows whose video is missing: raises `MissingVideosError`, or with 'drop' logs it."""
    if on_missing not in ("raise", "drop"):
        raise ValueError(f"on_missing must be 'raise' or 'drop', got {on_missing!r}")
    check_roots_cover((row["source"] for row in rows), video_roots)
    missing = find_missing_videos(rows, as_roots(video_roots))
    if missing:
        error = MissingVideosError(missing, total=len(rows))
        if on_missing == "raise":
            raise error
        logger.warning("Dropping rows whose video is missing: %s", error)
    return {row_id for row_id, _ in missing}
