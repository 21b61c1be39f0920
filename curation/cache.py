"""Results on disk: one JSON file per (clip, stage, key), written atomically, and the helpers the outputs share.

A stage's key hashes its config hash (its models, prompt and settings, chained through the stages it reads; see
`curation.config.stage_hashes`) with the clip fields it reads, so that a changed prompt misses the cache of that
stage and of every stage after it, and nothing else. Every file is written to a temporary name and renamed over
the target: a run killed at any point leaves each file whole or absent, never half-written, and a rerun finds every
stage finished before the kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any


def clip_key(clip_id: str) -> str:
    """A clip id as a file name: `/` becomes `__` (`DFEW/00001` -> `DFEW__00001`)."""
    return clip_id.replace("/", "__")


def write_json_atomic(path: Path, value: Any, indent: int | None = None) -> None:
    """Write `value` as JSON to `path` through a temporary file renamed over it (whole or absent, never partial)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(value, ensure_ascii=False, indent=indent), encoding="utf-8")
    os.replace(temporary, path)


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write one JSON object a line to `path`, atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    os.replace(temporary, path)


def stage_key(stage_hash: str, fields: dict[str, Any]) -> str:
    """The cache key of one stage for one clip: its config hash and the clip fields the stage reads."""
    return hashlib.sha256(json.dumps([stage_hash, fields], sort_keys=True).encode()).hexdigest()


class StageCache:
    """Stage results under `root/<clip key>/<stage>.<key prefix>.json`."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, clip_id: str, stage: str, key: str) -> Path:
        return self.root / clip_key(clip_id) / f"{stage}.{key[:16]}.json"

    def load(self, clip_id: str, stage: str, key: str) -> dict[str, Any] | None:
        """The cached entry, or None if there is none (or it was written for another key)."""
        path = self.path(clip_id, stage, key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return entry if entry.get("key") == key else None

    def save(self, clip_id: str, stage: str, key: str, entry: dict[str, Any]) -> None:
        write_json_atomic(
            self.path(clip_id, stage, key), {"id": clip_id, "stage": stage, "key": key, **entry}
        )
