"""From finished clips to records: the HRE candidates (N per source, seeded), SRE (the rest that passes the
self-review) and the dropped clips with their reasons.

*(ours)* The HRE candidates are drawn from the clips that pass the self-review, before SRE takes the rest, so that
the two are disjoint and the reviewers start from annotations the pipeline trusts. The draw ranks each clip by a
hash of the seed and its id: the same seed gives the same clips whatever the order they finished in, and adding
clips to a run does not reshuffle the ones already drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from dataset_scripts import RECORD_FIELDS, validate_records

from .inputs import Clip


@dataclass
class ClipOutcome:
    """How a clip ended: finished (`synthesis` and `review` set), or dropped at `stage` for `reason` (`failed` when
    a stage could not be completed, so that a rerun retries it)."""

    clip: Clip
    stage: str | None = None
    reason: str | None = None
    failed: bool = False
    synthesis: dict[str, Any] | None = None
    review: dict[str, Any] | None = None


@dataclass
class Selection:
    sre: list[dict[str, Any]]
    hre: list[dict[str, Any]]
    dropped: list[dict[str, Any]]


def record(outcome: ClipOutcome) -> dict[str, Any]:
    """The SRE/HRE record of a finished clip (`dataset_scripts.RECORD_FIELDS`)."""
    clip, synthesis = outcome.clip, outcome.synthesis
    values = {
        "id": clip.id,
        "video": clip.video,
        "source": clip.source,
        "label": clip.label,
        "open_vocabulary": synthesis["open_vocabulary"],
        "reasoning": synthesis["reasoning"],
        "intensity": synthesis["intensity"],
        "review_score": outcome.review["score"],
        "split": clip.split,
    }
    return {name: values[name] for name in RECORD_FIELDS}


def _rank(seed: int, clip_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{clip_id}".encode()).hexdigest()


def select(outcomes: Iterable[ClipOutcome], min_score: float, per_source: int, seed: int) -> Selection:
    """Split the outcomes into SRE records, HRE candidates and dropped entries (each sorted by id)."""
    passing: dict[str, list[ClipOutcome]] = {}
    dropped = []
    for outcome in outcomes:
        if outcome.review is not None and outcome.review["score"] >= min_score:
            passing.setdefault(outcome.clip.source, []).append(outcome)
            continue
        if outcome.review is not None:
            score = outcome.review["score"]
            reason = f"self-review score {score:g} is below {min_score:g}: {outcome.review['reason']}"
            dropped.append({"id": outcome.clip.id, "stage": "self_review", "reason": reason, "score": score})
        else:
            dropped.append(
                {"id": outcome.clip.id, "stage": outcome.stage, "reason": outcome.reason, "score": None}
            )
    sre, hre = [], []
    for clips in passing.values():
        ranked = sorted(clips, key=lambda outcome: _rank(seed, outcome.clip.id))
        hre.extend(record(outcome) for outcome in ranked[:per_source])
        sre.extend(record(outcome) for outcome in ranked[per_source:])
    by_id = itemgetter("id")
    return Selection(
        sre=validate_records(sorted(sre, key=by_id), origin="SRE"),
        hre=validate_records(sorted(hre, key=by_id), origin="HRE candidates"),
        dropped=sorted(dropped, key=by_id),
    )
