"""The run: every clip through the six stages, resumable, then the HRE draw, SRE and the output folder.

Clips go through a thread pool of `concurrency` threads, each taking one clip through its stages in order, so that
at most `concurrency` model requests are in flight (a vLLM server batches them). Decoding and face tracking, the CPU
work, go to a pool of `cpu_workers` processes, only for the stages that are not cached. Each stage result is cached
as soon as it is computed (`curation.cache`), and each clip's trace written when it ends, so a killed run loses at
most the requests in flight; a failed stage is not cached, so a rerun retries it.

The output folder (`OUT_DIR`), which the review app reads:

- `sre.jsonl`: the records of the clips whose self-review score is at least `sre_min_score` (RAVDESS never);
- `hre_candidates.jsonl`: `hre.per_source` records per source, drawn before SRE (disjoint from it), for review;
- `dropped.jsonl`: `{"id", "stage", "reason", "score"}` for every other clip;
- `traces/<id, / as __>.json`: `{"id", "video", "source", "label", "stages": {stage: {"output", "raw", "backend",
  "seconds"}}}` (a failed stage adds `"error"`);
- `cache/`: the stage results; `summary.json`: the counts, and per stage the config hash, requests and tokens.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import StageCache, clip_key, stage_key, write_json_atomic, write_jsonl_atomic
from .config import STAGES, CurationConfig, load_config, stage_hashes
from .inputs import EXCLUDED_SOURCES, Clip, read_clips
from .media import ClipMedia, MediaError, MediaRequest, load_detector, prepare_media
from .selection import ClipOutcome, Selection, select
from .stages import STAGE_SPECS, BackendPool, StageContext, StageFailure, StageStats, media_request

logger = logging.getLogger(__name__)

MEDIA_STAGES = ("description", "faces", "audio")
TRACE_FIELDS = ("output", "raw", "backend", "seconds")


class CurationError(RuntimeError):
    """A run that stopped before its end (too many failed clips); what was finished is cached."""


@dataclass
class CurationResult:
    """A finished run: its output folder, `summary.json`'s content, and one message per failed clip."""

    output_dir: Path
    summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)


class MediaPool:
    """Decodes clips in `workers` processes (0: in the calling thread).

    Where the platform forks (Linux), every worker is forked when the pool is made, before the run starts its
    threads, so that no worker inherits a thread mid-flight or a loaded model; elsewhere they are spawned (a script
    calling `run_curation` then needs the `if __name__ == "__main__":` guard).
    """

    def __init__(self, workers: int):
        self._lock = threading.Lock()
        self._executor = None
        if workers:
            forks = "fork" in multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if forks else None)
            self._executor = ProcessPoolExecutor(workers, mp_context=context)
            self._executor.submit(int).result()  # with fork, the first task starts all the workers at once

    def prepare(self, clip: Clip, request: MediaRequest) -> ClipMedia:
        executor = self._executor
        if executor is None:
            return prepare_media(str(clip.path), request)
        try:
            return executor.submit(prepare_media, str(clip.path), request).result()
        except BrokenProcessPool:
            # A worker died (a crash in the decoder): forking a new pool now would copy the run's threads, so the
            # rest of the run decodes in its own threads. The clips that were in the pool fail and are retried.
            with self._lock:
                self._executor = None
            executor.shutdown(wait=False)
            raise MediaError(
                f"the worker process decoding {clip.path} died (a crash in the decoder?)"
            ) from None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()


class Progress:
    """One progress bar per stage, counting the clips past it (computed, cached or skipped)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bars = {
            stage: tqdm(total=total, desc=f"{stage:<11}", unit="clip", position=index, disable=not enabled)
            for index, stage in enumerate(STAGES)
        }

    def advance(self, stages: tuple[str, ...] | list[str]) -> None:
        for stage in stages:
            self.bars[stage].update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class Curation:
    """The state shared by the threads of one run: config, cache, backends, media pool, counts and progress."""

    def __init__(self, config: CurationConfig, output_dir: Path, media: MediaPool, progress: Progress):
        self.config = config
        self.output_dir = output_dir
        self.hashes = stage_hashes(config)
        self.cache = StageCache(output_dir / "cache")
        self.backends = BackendPool(config.backends())
        self.stats = {stage: StageStats() for stage in STAGES}
        load_detector(
            config.stages["faces"].detector
        )  # a missing OpenCV or detector fails before the first clip
        self.media = media
        self.progress = progress

    def curate(self, clip: Clip) -> ClipOutcome:
        """Take `clip` through the stages (cached ones are read back), write its trace, and say how it ended."""
        trace: dict[str, Any] = {}
        try:
            return self._stages(clip, trace)
        finally:
            value = {
                "id": clip.id,
                "video": str(clip.path.resolve()),
                "source": clip.source,
                "label": clip.label,
            }
            write_json_atomic(
                self.output_dir / "traces" / f"{clip_key(clip.id)}.json", value | {"stages": trace}
            )

    def _stages(self, clip: Clip, trace: dict[str, Any]) -> ClipOutcome:
        if clip.source in EXCLUDED_SOURCES:
            return ClipOutcome(
                clip, "input", f"{clip.source} clips enter neither SRE nor HRE (as in the paper)"
            )
        keys = {
            stage: stage_key(
                self.hashes[stage], {name: getattr(clip, name) for name in STAGE_SPECS[stage].clip_fields}
            )
            for stage in STAGES
        }
        entries = {stage: self.cache.load(clip.id, stage, keys[stage]) for stage in STAGES}
        decoded: list[ClipMedia] = []

        def media() -> ClipMedia:
            if not decoded:
                missing = {stage for stage in MEDIA_STAGES if entries[stage] is None}
                decoded.append(self.media.prepare(clip, media_request(self.config.stages, missing)))
            return decoded[0]

        outputs: dict[str, dict[str, Any]] = {}
        for index, stage in enumerate(STAGES):
            entry, failure = entries[stage], None
            if entry is None:
                entry, failure = self._compute(clip, stage, outputs, media, keys[stage])
            else:
                self.stats[stage].add(cached=1)
            trace[stage] = {name: entry[name] for name in (*TRACE_FIELDS, "error") if name in entry}
            self.progress.advance([stage])
            if failure is not None:
                self._skip(STAGES[index + 1 :])
                return ClipOutcome(clip, stage, f"failed: {failure.reason}", failed=True)
            outputs[stage] = entry["output"]
            reason = STAGE_SPECS[stage].drop_reason(entry["output"])
            if reason is not None:
                self._skip(STAGES[index + 1 :])
                return ClipOutcome(clip, stage, reason)
        return ClipOutcome(clip, synthesis=outputs["synthesis"], review=outputs["self_review"])

    def _compute(
        self, clip: Clip, stage: str, outputs: dict[str, Any], media: Callable[[], ClipMedia], key: str
    ) -> tuple[dict[str, Any], StageFailure | None]:
        """Run one stage and cache its result; a failure is returned with what the trace keeps of the attempt."""
        context = StageContext(
            clip, stage, self.config.stages[stage], outputs, self.backends, self.stats[stage], media
        )
        start = time.perf_counter()
        output, failure = None, None
        try:
            output = STAGE_SPECS[stage].run(context)
        except StageFailure as error:
            failure = error
        except MediaError as error:
            failure = StageFailure(clip.id, stage, str(error))
        seconds = time.perf_counter() - start
        entry = {
            "output": output,
            "raw": context.raw,
            "backend": "; ".join(context.used),
            "seconds": round(seconds, 3),
        }
        if failure is not None:
            self.stats[stage].add(failed=1, seconds=seconds)
            logger.warning("%s", failure)
            return entry | {"error": failure.reason}, failure
        self.cache.save(clip.id, stage, key, entry)
        self.stats[stage].add(computed=1, seconds=seconds)
        return entry, None

    def _skip(self, stages: tuple[str, ...]) -> None:
        for stage in stages:
            self.stats[stage].add(skipped=1)
        self.progress.advance(stages)


def _curate_all(
    curation: Curation, clips: list[Clip], config: CurationConfig
) -> tuple[list[ClipOutcome], bool]:
    """Every clip's outcome, with at most twice `concurrency` clips submitted at once (a million clips make no
    million futures); True as second value if the run stopped after more than `max_failures` failed clips."""
    outcomes: list[ClipOutcome] = []
    failed = 0
    pending: set[Future] = set()

    def collect(done: set[Future]) -> None:
        nonlocal failed
        for future in done:
            outcomes.append(future.result())
            failed += outcomes[-1].failed

    with ThreadPoolExecutor(config.concurrency, thread_name_prefix="curate") as threads:
        for clip in clips:
            if failed > config.max_failures:
                break
            pending.add(threads.submit(curation.curate, clip))
            if len(pending) >= 2 * config.concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        collect(wait(pending).done)
    return outcomes, failed > config.max_failures


def run_curation(
    config: CurationConfig | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    show_progress: bool = True,
) -> CurationResult:
    """Curate the clips of `config` (a `CurationConfig` or the path of its YAML file) into `output_dir`.

    `limit` takes only the first clips (to try a config). Rerunning with the same folder resumes: cached stages are
    read back, changed stages and the ones after them recomputed, failed clips retried. Raises `CurationError`
    when more than `max_failures` clips failed (the outputs are then not written; the cache and traces are).
    """
    if not isinstance(config, CurationConfig):
        config = load_config(config)
    output_dir = Path(output_dir)
    started = time.perf_counter()
    clips = read_clips(config.inputs, config.base_dir)[:limit]
    total = sum(clip.source not in EXCLUDED_SOURCES for clip in clips)
    media = MediaPool(config.cpu_workers)  # first: its workers fork before any thread starts
    progress = Progress(total, show_progress)
    try:
        curation = Curation(config, output_dir, media, progress)
        outcomes, stopped = _curate_all(curation, clips, config)
    finally:
        media.close()
        progress.close()
    failures = [
        f"clip {o.clip.id!r}, stage {o.stage}: {o.reason.removeprefix('failed: ')}"
        for o in outcomes
        if o.failed
    ]
    stages = {
        stage: {"config_hash": curation.hashes[stage], **curation.stats[stage].as_dict()} for stage in STAGES
    }
    if stopped:
        summary = {"clips": len(clips), "finished": len(outcomes), "failed": len(failures), "stages": stages}
        write_json_atomic(output_dir / "summary.json", summary | {"stopped": True})
        shown = "\n  ".join(failures[:10])
        raise CurationError(
            f"Stopped after {len(failures)} failed clips (max_failures: {config.max_failures}); the first:\n  {shown}\n"
            "Fix the backend and run again: every finished stage is cached."
        )
    selection = select(outcomes, config.sre_min_score, config.hre.per_source, config.hre.seed)
    summary = _write_outputs(output_dir, config, clips, selection, stages, len(failures))
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(output_dir / "summary.json", summary, indent=2)
    return CurationResult(output_dir, summary, failures)


def _write_outputs(
    output_dir: Path,
    config: CurationConfig,
    clips: list[Clip],
    selection: Selection,
    stages: dict[str, Any],
    failed: int,
) -> dict[str, Any]:
    """Write the three JSONL files and return the summary's counts."""
    files = {"sre": selection.sre, "hre_candidates": selection.hre, "dropped": selection.dropped}
    source_of = {clip.id: clip.source for clip in clips}
    by_source: dict[str, Counter] = {}
    for name, rows in files.items():
        write_jsonl_atomic(output_dir / f"{name}.jsonl", rows)
        for row in rows:
            by_source.setdefault(source_of[row["id"]], Counter())[name] += 1
    return {
        "clips": len(clips),
        **{name: len(rows) for name, rows in files.items()},
        "failed": failed,
        "dropped_by_stage": dict(Counter(row["stage"] for row in selection.dropped)),
        "by_source": {source: dict(counts) for source, counts in sorted(by_source.items())},
        "sre_min_score": config.sre_min_score,
        "hre": {"per_source": config.hre.per_source, "seed": config.hre.seed},
        "stages": stages,
    }
