"""Curation throughput: clips/s through all six stages of `run_curation` at concurrency 1 against 16, on a fake
model of fixed latency, and what the stage cache and the traces cost per clip.

    python benchmarks/bench_curation.py [--clips 16] [--repeats 3] [--latency 0.05] [--concurrency 16]

Clips: N generated H.264 + AAC clips of 2 s at 30 fps with the moving astronaut face
(omni_emotion/synthetic/media.py), half 320x240 and half 480x360, all with sound; two distinct clips are written
and copied to N paths, listed in a CSV (source DFEW, labels cycling through its classes), so that every path is
decoded on its own.

Models: every backend is a Python callable of this module (`bench_curation:chat`, `:asr`, `:age`, `:gender`, the
way tests/curation_fixtures.py builds its configs), each sleeping a fixed `--latency` (50 ms) per request and then
returning a well-formed scripted reply (every clip consistent, self-review score 8), so that every clip goes
through all six stages: about 10 requests a clip (description; age and gender per face tracklet, and the face VLM;
ASR and the audio model; consistency; synthesis; self-review), counted from the run's summary and printed. The
callables run in the pipeline's threads, in this process; the worker processes only decode (they are forked on
Linux, and nothing of this module runs in them). When this file runs as a script it registers itself as the module
`bench_curation`, so that the pipeline's import of `bench_curation:chat` finds this module (and its `--latency`)
rather than a second copy.

Compared, in one process, interleaved (the order of the two cold sides alternates), after a warm-up run on 2 clips:
- "concurrency 1" and "concurrency 16": a cold run (empty output folder) of the same config, `cpu_workers: 2`
  (the default; a 2-core machine), differing only in `concurrency`. Min and median of the wall time per run
  (`run_curation` from the call to its return: reading the CSV, forking the decoding workers, all stages, the
  outputs) are printed as clips/s; the last line is the clips/s ratio concurrency 16 / concurrency 1 (min times).
  Concurrency overlaps the model waits; the decoding and face tracking still share `cpu_workers` processes on the
  machine's cores, so where they take longer than the model waits (a loaded 2-core machine) they bound the ratio.
- "all cached": `run_curation` again, concurrency 1, on the folder the concurrency-1 run just finished: every stage
  of every clip is read back from the cache, nothing is decoded or asked (checked: no stage computed).

What the cache and the traces cost: during the concurrency-1 runs (cold and all cached), the time spent inside
`Curation.curate` (one clip: its stages and its trace), and within it in `StageCache.load` / `StageCache.save`,
the trace write (`write_json_atomic` under traces/), `MediaPool.prepare` (decoding and face tracking, in a worker)
and the model callables, and outside it in the output writes (the three JSONL files and summary.json), is summed by
wrapping those functions in this process (a perf_counter pair a call). The table gives each part in ms per clip;
"other work of the clip" is the rest of `curate` (prompts, reply parsing, the cache keys' hashes, threads), "run
setup" the wall time outside the clips and the outputs (reading the CSV, forking the workers, loading the face
detector and the callables), divided by the clips. At concurrency 1 nothing overlaps, so the parts add up to the
wall time. Printed: "cache + trace in a cold run", cache reads + cache writes + trace writes a clip, which is what
the two features add to computing a clip (the model wait alone, with no cache or trace, would be the same); and
what resuming a finished clip costs, inside the clip (cache reads, keys, trace rewritten) and end to end (the all
cached run's wall time a clip, its fixed costs included).

Machine: the 2-core development machine, shared with other work; the 1-minute load average is printed before and
after. The cold runs depend on the load (decoding and face tracking take CPU); the model latency does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(HERE)]
MODULE = "bench_curation"
sys.modules.setdefault(MODULE, sys.modules[__name__])  # run as a script: `bench_curation:chat` is this module

CLIP_SECONDS = 2.0
SIZES = ((320, 240), (480, 360))
LATENCY = 0.05
"""Seconds every fake model request takes (set from --latency)."""


# ------------------------------------------------------------------------------------------------ the fake models


class Timings:
    """Seconds and calls summed per part, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.seconds[part] += seconds
            self.calls[part] += 1

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        with self._lock:
            return dict(self.seconds), dict(self.calls)


TIMINGS = Timings()
CLIP = "clip"
"""The part that times `Curation.curate` (one clip, all its stages, its trace), which holds the IN_CLIP parts."""
IN_CLIP = ("model", "media (decode + faces)", "cache reads", "cache writes", "trace writes")
OUTPUTS = "outputs + summary"

REPLIES = {
    "description": "A person sits before a grey wall and looks down.",
    "faces": "Inner brows raised, lip corners pulled down.",
    "audio": json.dumps({"caption": "A low, steady voice.", "vocal_emotion": "subdued"}),
    "consistency": json.dumps({"verdict": "consistent", "reason": "the cues agree"}),
    "synthesis": json.dumps(
        {
            "reasoning": "The lowered lip corners and the subdued voice suggest sadness.",
            "open_vocabulary": ["sad", "tired"],
            "intensity": "medium",
        }
    ),
    "self_review": json.dumps({"score": 8, "reason": "the reasoning fits the label"}),
}


def _wait() -> None:
    start = time.perf_counter()
    time.sleep(LATENCY)
    TIMINGS.add("model", time.perf_counter() - start)


def chat(request) -> str:
    """The chat model: `LATENCY` seconds, then the stage's scripted reply."""
    _wait()
    return REPLIES[request.stage]


def asr(waveform, sampling_rate: int) -> dict[str, Any]:
    """The speech recogniser, answering like the transformers ASR pipeline with timestamps."""
    _wait()
    seconds = len(waveform) / sampling_rate
    return {
        "text": " I am fine.",
        "chunks": [{"timestamp": (0.0, seconds), "text": " I am fine.", "language": "english"}],
    }


def age(image) -> int:
    _wait()
    return 34


def gender(image) -> str:
    _wait()
    return "female"


# ----------------------------------------------------------------------------------------------- data and config


def write_clips(folder: Path, count: int) -> Path:
    """`count` clips (2 distinct ones copied round-robin) and the CSV listing them; returns the CSV's path."""
    from dataset_scripts import SOURCES
    from omni_emotion.synthetic import media as media_factory

    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    sources = []
    for width, height in SIZES:
        sources.append(folder / f"source_{width}x{height}.mp4")
        media_factory.write_clip(sources[-1], seconds=CLIP_SECONDS, width=width, height=height)
    classes = SOURCES["DFEW"].classes
    rows = ["path,label,source"]
    for index in range(count):
        name = f"clip_{index:03d}.mp4"
        shutil.copyfile(sources[index % len(sources)], clips / name)
        rows.append(f"clips/{name},{classes[index % len(classes)]},DFEW")
    (folder / "clips.csv").write_text("\n".join(rows) + "\n")
    return folder / "clips.csv"


def curation_config(csv: Path, concurrency: int, cpu_workers: int):
    """Every chat stage on `chat`, ASR and age/gender on this module's callables, no retries needed."""
    from curation.config import STAGES, parse_config

    stages: dict[str, dict[str, Any]] = {name: {"backend": "model"} for name in STAGES}
    stages["audio"]["asr"] = {"kind": "callable", "function": f"{MODULE}:asr"}
    stages["faces"]["attributes"] = {
        "age": {"kind": "callable", "function": f"{MODULE}:age"},
        "gender": {"kind": "callable", "function": f"{MODULE}:gender"},
    }
    data = {
        "inputs": [{"csv": str(csv)}],
        "backends": {"model": {"kind": "callable", "function": f"{MODULE}:chat"}},
        "stages": stages,
        "concurrency": concurrency,
        "cpu_workers": cpu_workers,
        "hre": {"per_source": 2, "seed": 0},
        "max_failures": 0,
    }
    return parse_config(data, base_dir=csv.parent)


# ------------------------------------------------------------------------------------------------- instrumentation


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Wrap the pipeline's cache, trace, output and decoding calls so that their time is summed in TIMINGS."""
    from curation import cache, pipeline

    def timed(function: Callable, part: Callable[..., str]) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                TIMINGS.add(part(*args, **kwargs), time.perf_counter() - start)

        return wrapper

    def json_part(path: Path, *args: Any, **kwargs: Any) -> str:
        return "trace writes" if path.parent.name == "traces" else OUTPUTS

    patches = [
        (cache.StageCache, "load", lambda *a, **k: "cache reads"),
        (cache.StageCache, "save", lambda *a, **k: "cache writes"),
        (pipeline.MediaPool, "prepare", lambda *a, **k: "media (decode + faces)"),
        (pipeline.Curation, "curate", lambda *a, **k: CLIP),
        (pipeline, "write_json_atomic", json_part),
        (pipeline, "write_jsonl_atomic", lambda *a, **k: OUTPUTS),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for (owner, name, part), (_, _, original) in zip(patches, originals, strict=True):
        setattr(owner, name, timed(original, part))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def run(config, output_dir: Path, limit: int | None = None) -> tuple[float, dict[str, Any], dict[str, float]]:
    """One `run_curation`: its wall time, its summary, and the seconds per instrumented part."""
    from curation.pipeline import run_curation

    TIMINGS.reset()
    start = time.perf_counter()
    result = run_curation(config, output_dir, limit=limit, show_progress=False)
    seconds = time.perf_counter() - start
    parts, _ = TIMINGS.snapshot()
    summary = result.summary
    if result.failures or summary["failed"] or summary["dropped"]:
        raise RuntimeError(f"the run should curate every clip: {result.failures[:3]} {summary}")
    return seconds, summary, parts


# ------------------------------------------------------------------------------------------------------- the run


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def benchmark(args: argparse.Namespace) -> float:
    global LATENCY
    LATENCY = args.latency
    cold = {f"concurrency {c}": c for c in (1, args.concurrency)}
    cached = "all cached (resume, conc. 1)"
    with tempfile.TemporaryDirectory(prefix="omni-emotion-bench-curation-") as tmp, instrumented():
        work = Path(tmp)
        csv = write_clips(work / "data", args.clips)
        configs = {name: curation_config(csv, c, args.cpu_workers) for name, c in cold.items()}
        print(
            f"curation throughput, all 6 stages, on {args.clips} generated {CLIP_SECONDS:.0f} s clips at 30 fps "
            f"({' and '.join(f'{w}x{h}' for w, h in SIZES)}, a face and sound each); every model a callable "
            f"sleeping {LATENCY * 1000:.0f} ms a request; cpu_workers {args.cpu_workers}; {args.repeats} repeats; "
            f"{os.cpu_count()} CPUs, load average {_load()} at the start",
            flush=True,
        )
        run(configs["concurrency 1"], work / "warm-up", limit=2)  # imports, detector, codecs
        times: dict[str, list[float]] = {name: [] for name in (*cold, cached)}
        parts: dict[str, list[dict[str, float]]] = {"concurrency 1": [], cached: []}
        requests: dict[str, int] = {}
        width = max(map(len, times))
        for repeat in range(args.repeats):
            order = list(cold) if repeat % 2 == 0 else list(reversed(cold))
            folders = {name: work / f"out-{repeat}-{cold[name]}" for name in cold}
            for name in (*order, cached):
                config = configs["concurrency 1"] if name == cached else configs[name]
                folder = folders["concurrency 1"] if name == cached else folders[name]
                seconds, summary, spent = run(config, folder)
                times[name].append(seconds)
                if name in parts:
                    parts[name].append(spent)
                stages = summary["stages"]
                if name == cached:
                    assert all(stage["computed"] == 0 for stage in stages.values()), stages
                else:
                    requests = {stage: counts["requests"] for stage, counts in stages.items()}
                print(
                    f"  repeat {repeat + 1} {name:<{width}} {seconds:7.2f} s {args.clips / seconds:7.2f} clips/s",
                    flush=True,
                )
            for folder in folders.values():
                shutil.rmtree(folder)
        print(f"load average {_load()} at the end")
        return report(times, parts, requests, args, cached)


def _breakdown(parts: list[dict[str, float]], walls: list[float], clips: int) -> dict[str, float]:
    """Milliseconds per clip of each part (median over the runs): the IN_CLIP parts, the rest of the clips' own
    time, the outputs, and the run's fixed costs (the wall time outside the clips and the outputs)."""
    rows: dict[str, list[float]] = defaultdict(list)
    for spent, wall in zip(parts, walls, strict=True):
        inside = sum(spent.get(part, 0.0) for part in IN_CLIP)
        values = {part: spent.get(part, 0.0) for part in IN_CLIP}
        values["other work of the clip"] = spent.get(CLIP, 0.0) - inside
        values[OUTPUTS] = spent.get(OUTPUTS, 0.0)
        values["run setup (per run)"] = wall - spent.get(CLIP, 0.0) - values[OUTPUTS]
        values["wall"] = wall
        for part, seconds in values.items():
            rows[part].append(1000 * seconds / clips)
    return {part: statistics.median(values) for part, values in rows.items()}


def report(
    times: dict[str, list[float]],
    parts: dict[str, list[dict[str, float]]],
    requests: dict[str, int],
    args: argparse.Namespace,
    cached: str,
) -> float:
    """Prints the tables and returns the clips/s ratio concurrency N / concurrency 1 (min times)."""
    clips = args.clips
    width = max(map(len, times))
    print(f"\n{'':<{width}} {'s/run min':>10} {'median':>8} {'clips/s min-time':>17} {'median':>8}")
    for name, runs in times.items():
        best, median = min(runs), statistics.median(runs)
        print(f"{name:<{width}} {best:10.2f} {median:8.2f} {clips / best:17.2f} {clips / median:8.2f}")
    total = sum(requests.values())
    shown = ", ".join(f"{stage} {count / clips:g}" for stage, count in requests.items())
    print(
        f"\nmodel requests a clip: {total / clips:g} ({shown}) x {LATENCY * 1000:.0f} ms = "
        f"{total / clips * LATENCY * 1000:.0f} ms of model wait a clip when nothing overlaps"
    )
    one = "concurrency 1"
    columns = {name: _breakdown(parts[name], times[name], clips) for name in (one, cached)}
    print("ms per clip by part, median over the repeats (concurrency 1: nothing overlaps, the parts add up):")
    print(f"{'':<24} {'cold, concurrency 1':>20} {'all cached':>11}")
    for part in columns[one]:
        print(f"{part:<24} {columns[one][part]:20.1f} {columns[cached][part]:11.1f}")
    cold, warm = columns[one], columns[cached]
    overhead = cold["cache reads"] + cold["cache writes"] + cold["trace writes"]
    resume = warm["cache reads"] + warm["trace writes"] + warm["other work of the clip"]
    print(
        f"cache + trace in a cold run: {overhead:.1f} ms a clip ({100 * overhead / cold['wall']:.2f} % of its "
        f"{cold['wall']:.0f} ms); resuming a finished clip: {resume:.1f} ms a clip in the clip "
        f"(cache reads, keys, trace), {warm['wall']:.1f} ms a clip with the outputs and the run's fixed costs"
    )
    many = f"concurrency {args.concurrency}"
    ratio = min(times[one]) / min(times[many])
    ratio_median = statistics.median(times[one]) / statistics.median(times[many])
    print(
        f"concurrency {args.concurrency} vs 1: {ratio:.2f}x clips/s (min times), {ratio_median:.2f}x (median) on "
        f"{clips} clips, {LATENCY * 1000:.0f} ms a model request, cpu_workers {args.cpu_workers}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="clips per run (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side, interleaved (default: %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=LATENCY, help="seconds a model request takes (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="the side compared with 1 (default: %(default)s)"
    )
    parser.add_argument(
        "--cpu-workers", type=int, default=2, help="decoding processes, both sides (default: %(default)s)"
    )
    args = parser.parse_args()
    if args.clips < 2 or args.repeats < 1 or args.latency < 0 or args.concurrency < 2 or args.cpu_workers < 0:
        parser.error(
            "need --clips >= 2, --repeats >= 1, --latency >= 0, --concurrency >= 2, --cpu-workers >= 0"
        )
    benchmark(args)


if __name__ == "__main__":
    main()
