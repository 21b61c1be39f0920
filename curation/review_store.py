"""The HRE review's data: the candidates `omni-emotion curate` wrote, their traces, and the reviewers' decisions.

Decisions go to `reviews.jsonl` in the data folder, one line each, appended and fsynced before the reviewer sees
the next clip, so a crash or a closed tab loses nothing; the latest line for a clip wins. Nothing here imports
Gradio: the app in `curation.review` only shows what this module reads and records what it is told.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from dataset_scripts import (
    export_to_hub_layout,
    read_records,
    records_to_dataset_dict,
    validate_record,
    validate_records,
    write_records,
)

logger = logging.getLogger(__name__)

CANDIDATES_FILE = "hre_candidates.jsonl"
REVIEWS_FILE = "reviews.jsonl"
TRACES_DIR = "traces"

EDITABLE_FIELDS: tuple[str, ...] = ("label", "open_vocabulary", "reasoning", "intensity")
"""What a reviewer may change; the rest of a record (id, clip, source, score, split) is the pipeline's."""

DecisionKind = Literal["accept", "edit", "reject"]
DECISION_KINDS: tuple[str, ...] = get_args(DecisionKind)

FRAME_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""Frame files of a clip stored as a folder, in the formats a browser shows."""


class ReviewDataError(ValueError):
    """The data folder, a trace or `reviews.jsonl` is not what the review expects; the message names the file."""


@dataclass(frozen=True)
class Decision:
    """One line of `reviews.jsonl`: what a reviewer decided about one clip, and when.

    `edits` holds only the fields that differ from the candidate (an "edit" has at least one; "accept" and
    "reject" have none); `note` is the reviewer's free text, e.g. why a clip was rejected."""

    id: str
    decision: DecisionKind
    edits: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    reviewer: str | None = None
    time: str = ""


@dataclass(frozen=True)
class Progress:
    """How far the review is: latest decision per clip, counted by kind."""

    total: int
    accepted: int
    edited: int
    rejected: int

    @property
    def reviewed(self) -> int:
        return self.accepted + self.edited + self.rejected

    def __str__(self) -> str:
        return (
            f"{self.reviewed} of {self.total} reviewed ({self.accepted} accepted, {self.edited} edited, "
            f"{self.rejected} rejected)"
        )


def trace_file_name(clip_id: str) -> str:
    """The trace of a clip is named after its id, `/` replaced by `__` (ids are `<source>/<clip>`)."""
    return clip_id.replace("/", "__") + ".json"


def trace_video(trace: Mapping[str, Any] | None) -> Path | None:
    """The absolute path of the clip as its trace gives it (`None` without a trace or a `video` in it)."""
    video = trace.get("video") if trace else None
    return Path(video) if isinstance(video, str) and video else None


def clip_media(video: Path | None, max_frames: int = 16) -> tuple[Path | None, list[Path]]:
    """What the page plays: `(video file, [])`, or `(None, frames)` for a clip stored as a folder of frames (at
    most `max_frames`, evenly spaced), or `(None, [])` when there is no clip on disk."""
    if video is None or not video.exists():
        return None, []
    if video.is_file():
        return video, []
    frames = sorted(path for path in video.iterdir() if path.suffix.lower() in FRAME_SUFFIXES)
    step = max(1, -(-len(frames) // max_frames))
    return None, frames[::step]


class ReviewStore:
    """The candidates of a data folder in their file order, their traces, and the decisions made so far.

    One store may serve several browser tabs at once: appends are serialised by a lock and each is a single
    `O_APPEND` write, so lines never interleave.
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        candidates_path = self.data_dir / CANDIDATES_FILE
        if not candidates_path.is_file():
            raise FileNotFoundError(
                f"{self.data_dir} has no {CANDIDATES_FILE}. Pass the folder that `omni-emotion curate ... "
                f"--output DATA_DIR` wrote (it holds {CANDIDATES_FILE} and {TRACES_DIR}/)."
            )
        self.candidates = {record["id"]: record for record in read_records(candidates_path)}
        if not self.candidates:
            raise ReviewDataError(f"{candidates_path} holds no records: there is nothing to review.")
        self.ids: tuple[str, ...] = tuple(self.candidates)
        self._position = {clip_id: index for index, clip_id in enumerate(self.ids)}
        self.reviews_path = self.data_dir / REVIEWS_FILE
        self._lock = threading.Lock()
        self._decisions = self._read_decisions()

    def _read_decisions(self) -> dict[str, Decision]:
        if not self.reviews_path.exists():
            return {}
        self._drop_torn_last_line()
        decisions, unknown = {}, Counter()
        with self.reviews_path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                decision = _parse_decision(line, f"{self.reviews_path}:{number}")
                if decision.id in self.candidates:
                    decisions[decision.id] = decision
                else:
                    unknown[decision.id] += 1
        if unknown:
            logger.warning(
                "%s: %d decision(s) name clips that are not in %s (e.g. %s); they are kept in the file and ignored.",
                self.reviews_path,
                sum(unknown.values()),
                CANDIDATES_FILE,
                next(iter(unknown)),
            )
        return decisions

    def _drop_torn_last_line(self) -> None:
        """A crash in the middle of an append leaves a last line without its newline; that decision was never
        confirmed to the reviewer, so it is cut off and the clip shows as not yet decided."""
        data = self.reviews_path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        logger.warning(
            "%s: dropping an unfinished last line (%d bytes) left by an interrupted write.",
            self.reviews_path,
            len(data) - keep,
        )
        with self.reviews_path.open("r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    def trace(self, clip_id: str) -> dict[str, Any] | None:
        """The pipeline's trace of a clip (`None` when the pipeline wrote none)."""
        self._check_known(clip_id)
        path = self.data_dir / TRACES_DIR / trace_file_name(clip_id)
        if not path.is_file():
            return None
        try:
            trace = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ReviewDataError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        if not isinstance(trace, dict):
            raise ReviewDataError(f"{path}: expected a JSON object, got {type(trace).__name__}")
        return trace

    def decision(self, clip_id: str) -> Decision | None:
        """The latest decision about a clip, or `None` while it is unreviewed."""
        self._check_known(clip_id)
        return self._decisions.get(clip_id)

    def progress(self) -> Progress:
        with self._lock:
            counts = Counter(decision.decision for decision in self._decisions.values())
        return Progress(len(self.ids), counts["accept"], counts["edit"], counts["reject"])

    def next_unreviewed(self, after: str | None = None) -> str | None:
        """The first unreviewed clip after `after` in file order, wrapping around; `None` when all are reviewed.

        From the start (`after=None`) this is where a reviewer who works through the file stopped."""
        start = 0 if after is None else self._position[after] + 1
        for offset in range(len(self.ids)):
            clip_id = self.ids[(start + offset) % len(self.ids)]
            if clip_id not in self._decisions:
                return clip_id
        return None

    def neighbour(self, clip_id: str, step: int) -> str:
        """The clip `step` places away in file order, stopping at the first and the last."""
        index = min(max(self._position[clip_id] + step, 0), len(self.ids) - 1)
        return self.ids[index]

    def reviewed_record(self, clip_id: str, edits: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The candidate with `edits` applied (by default the latest decision's), validated as a record."""
        self._check_known(clip_id)
        if edits is None:
            decision = self._decisions.get(clip_id)
            edits = decision.edits if decision else {}
        unknown = sorted(set(edits) - set(EDITABLE_FIELDS))
        if unknown:
            raise ValueError(
                f"Cannot edit {', '.join(unknown)}; a reviewer edits {', '.join(EDITABLE_FIELDS)}"
            )
        return validate_record({**self.candidates[clip_id], **edits}, where=f"review of {clip_id}")

    def accept(self, clip_id: str, fields: Mapping[str, Any], reviewer: str | None = None) -> Decision:
        """Accept a clip with the labels and text the reviewer saw and maybe changed in `fields` (any of
        `EDITABLE_FIELDS`): recorded as "edit" when they differ from the candidate, else as "accept".

        Raises `RecordError` (nothing is written) when the edited record breaks the schema, e.g. a label that is
        not a class of the clip's source, or `ValueError` for an empty reasoning."""
        record = self.reviewed_record(clip_id, fields)
        if not record["reasoning"].strip():
            raise ValueError(f"The reasoning of {clip_id} is empty: write one, or reject the clip.")
        candidate = self.candidates[clip_id]
        edits = {name: record[name] for name in EDITABLE_FIELDS if record[name] != candidate[name]}
        return self._record(clip_id, "edit" if edits else "accept", edits=edits, reviewer=reviewer)

    def reject(self, clip_id: str, note: str | None = None, reviewer: str | None = None) -> Decision:
        """Reject a clip; `note` says why (kept in `reviews.jsonl`, never exported)."""
        self._check_known(clip_id)
        return self._record(clip_id, "reject", note=note or None, reviewer=reviewer)

    def _record(self, clip_id: str, kind: DecisionKind, **details: Any) -> Decision:
        decision = Decision(clip_id, kind, **details, time=datetime.now(UTC).isoformat(timespec="seconds"))
        line = (json.dumps(asdict(decision), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            _append_durably(self.reviews_path, line)
            self._decisions[decision.id] = decision
        return decision

    def export_records(self) -> list[dict[str, Any]]:
        """The accepted clips as HRE records, in file order, with the reviewers' edits applied; the pipeline's
        self-review score is kept in `review_score`. Rejected and unreviewed clips are left out."""
        with self._lock:
            decisions = dict(self._decisions)
        kept = [
            self.reviewed_record(clip_id, decisions[clip_id].edits)
            for clip_id in self.ids
            if clip_id in decisions and decisions[clip_id].decision != "reject"
        ]
        return validate_records(kept, origin=str(self.reviews_path))

    def _check_known(self, clip_id: str) -> None:
        if clip_id not in self._position:
            raise KeyError(f"{clip_id!r} is not a candidate of {self.data_dir / CANDIDATES_FILE}")


def _parse_decision(line: str, where: str) -> Decision:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise ReviewDataError(
            f"{where}: not valid JSON ({error.msg}). Fix or delete that line; every other decision is kept."
        ) from None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise ReviewDataError(
            f"{where}: expected a JSON object with a string 'id', got {line.strip()[:80]!r}"
        )
    if value.get("decision") not in DECISION_KINDS:
        raise ReviewDataError(
            f"{where}: decision {value.get('decision')!r} should be one of {', '.join(DECISION_KINDS)}"
        )
    known = {name: value[name] for name in Decision.__dataclass_fields__ if name in value}
    return Decision(**known)


def _append_durably(path: Path, data: bytes) -> None:
    """Append `data` with one `O_APPEND` write and fsync it (and the folder, when the file is new), so that the
    line is on disk before the caller moves on."""
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def export_hre(store: ReviewStore, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the accepted records to `out`: a `.jsonl` file (`write_records`), or else a folder in the Hub
    layout (Parquet shards and a dataset card, config `hre`) that `datasets.load_dataset` reads."""
    records = store.export_records()
    if not records:
        raise ReviewDataError(
            f"No clip of {store.data_dir} is accepted yet ({store.progress()}): review some before exporting."
        )
    out = Path(out)
    if out.suffix == ".jsonl":
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        return write_records(records, out)
    return export_to_hub_layout(
        {"hre": records_to_dataset_dict(records)},
        out,
        pretty_name="Human-reviewed emotion reasoning annotations (HRE)",
        description="Emotion reasoning annotations made by the curation pipeline and accepted, edited or "
        "rejected by human reviewers with `omni-emotion review`.",
        overwrite=overwrite,
    )
