"""`omni-emotion evaluate --benchmark dfew|mafw|emer-ov|emer --data ROOT --model ID|DIR`: the paper's benchmarks.

```bash
omni-emotion evaluate --benchmark dfew --data DFEW/ --model omni-emotion-7b            # 5 folds, their mean
omni-emotion evaluate --benchmark mafw --data MAFW/ --model omni-emotion-7b --fold 1   # one fold
omni-emotion evaluate --benchmark emer-ov --data EMER-OV/ --model omni-emotion-7b       # emotion-wheel grouping
omni-emotion evaluate --benchmark emer-ov --data EMER-OV/ --model omni-emotion-7b --grouping judge \\
    --judge http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-72B-Instruct           # the paper's protocol
omni-emotion evaluate --benchmark emer --data EMER/ --model omni-emotion-7b --judge http://127.0.0.1:8000/v1 \\
    --judge-model Qwen/Qwen2.5-72B-Instruct --judge-api-key-env JUDGE_API_KEY
omni-emotion evaluate --benchmark emer --data EMER/ --judge-only --judge ...           # score saved predictions
```

- **DFEW / MAFW** (`evaluate_classification`): the test split of each official fold (`dataset_scripts.read_source`),
  asked with the fine-tune's question (`classification_example`: all of the source's classes as options, shuffled
  per clip with a seeded RNG), scored with the `uar_war` metric per fold; the headline is the mean of the folds.
- **EMER-OV** (`evaluate_open_vocabulary`): the clips of a CSV file, asked an open-vocabulary question, the emotion
  words read back with `parse_emotion_answer` and scored with `emer_ov`. `grouping="judge"` is the reference
  protocol: per sample, a judge LLM groups the union of the predicted and reference words into synonym groups
  (`omni_emotion.judge.grouping_prompt`), scored with `emer_ov`'s `synonyms` grouping. `"wheel"` (the default, no
  judge) is MER2025's deterministic emotion-wheel grouping, `"exact"` a strict lower bound.
- **EMER** (`evaluate_reasoning`): the clips of `final-EMER-reason.csv` (AffectGPT's EMER release), asked the first
  reasoning question, the answers scored by the `emer_reasoning` metric (clue and label overlap, 1-10) through the
  judge.

Two stages. Generation (`generate_predictions`, `omni_emotion.analyze.analyze` underneath: batched, greedy,
decoding in a background thread) appends one line per clip to `<output_dir>/<benchmark>_predictions.jsonl`, flushed
as it is written; a rerun skips the clips already there and tries the failed ones again, so a killed run loses at
most the batch in flight. Scoring then reads those lines: the command line releases the evaluated model first, and
`--judge-only` (`model=None` in Python) scores a predictions file without loading the model at all. A judge
(`omni_emotion.judge`) caches its replies in `<output_dir>/judge_cache.jsonl`, counts its requests and tokens, and
a local judge model runs in a process of its own, so the judge and the evaluated model never share a process. A
clip that fails to decode or to generate is kept as a wrong answer (an empty prediction) and counted.

Beside the predictions, each benchmark writes `<benchmark>_summary.json` (the scores beside the paper's, the
modalities given, the judge and its cost) and, where a judge scored each sample, `<benchmark>_scores.jsonl`.

Heavy imports (torch, transformers, the model, evaluate) happen inside the functions, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_emotion.analyze import (
    ALL_MODALITIES,
    VIDEO_SUFFIXES,
    _modalities_argument,
    _positive,
    add_runtime_arguments,
)
from omni_emotion.judge import CACHE_FILE, append_json_line, read_json_lines

if TYPE_CHECKING:
    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from omni_emotion.judge import Judge
    from processing import OmniEmotionProcessor

BENCHMARKS = ("dfew", "mafw", "emer-ov", "emer")
SOURCE_NAMES = {"dfew": "DFEW", "mafw": "MAFW"}
FOLDS = (1, 2, 3, 4, 5)
GROUPINGS = ("wheel", "judge", "exact")

PAPER_FIGURES: dict[str, dict[str, float]] = {
    "dfew": {"uar": 68.80, "war": 78.35},
    "mafw": {"uar": 53.81, "war": 64.23},
    "emer-ov": {"avg": 65.9, "precision": 61.3, "recall": 70.6},
    "emer": {"clue_overlap": 8.22, "label_overlap": 6.78},
}
"""Omni-Emotion's reported figures: DFEW and MAFW in percent as the mean of the 5 official folds, EMER-OV in percent
with the LLM-judge grouping of AffectGPT's protocol, EMER on the judge's 1-10 scale."""

EMER_OV_CSV = "emer_ov.csv"
EMER_OV_REFERENCE_COLUMNS = ("openset", "open_vocabulary", "reference")
EMER_CSV = "final-EMER-reason.csv"
EMER_NAME_COLUMNS = ("name", "names")
EMER_REASONING_COLUMNS = ("english", "reason", "reasons", "description")
"""EMER's CSV: AffectGPT's release (`EMER/dataset-v2/final-EMER-reason.csv`) has `name`, `chinese` and `english`;
its first release (`dataset-v1/gt-eng.csv`) `names` and `reasons`."""
CLIP_FOLDERS = ("video", "videos", "video-labeled", ".")
"""Where the clips of a CSV benchmark are looked for, relative to the CSV's folder, in this order (`video-labeled`:
MER2024's folder of labelled clips, which holds EMER's and EMER-OV's)."""
DEFAULT_MAX_NEW_TOKENS = {"dfew": 16, "mafw": 16, "emer-ov": 64, "emer": 256}
"""A classification answer is one word and a full stop; an open-vocabulary answer a short list of words; an EMER
answer an explanation."""


class BenchmarkDataError(ValueError):
    """The benchmark's files are not laid out as expected; the message names the file and what is wrong."""


class PredictionsFileError(ValueError):
    """A predictions file cannot be resumed or scored as it is; the message names the file and what to do."""


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """One benchmark's outcome.

    `scores` holds the headline figures: in percent (for DFEW/MAFW the mean of `folds`, each fold's figures also in
    percent), EMER's on the judge's 1-10 scale; None where no sample could be scored. `paper` holds the paper's;
    `failed` counts the clips that failed to decode or generate (scored as wrong). `modalities` is what the model was
    given, `grouping` EMER-OV's word grouping, `judge` the judge and what it cost this run, `unreadable` the judge
    replies that could not be read (those samples are left out of the means), `files` what was written.
    """

    benchmark: str
    scores: dict[str, float | None]
    paper: dict[str, float]
    samples: int
    failed: int
    folds: dict[int, dict[str, float]] = field(default_factory=dict)
    levels: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    modalities: list[str] | None = None
    grouping: str | None = None
    judge: dict[str, Any] | None = None
    unreadable: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A printable comparison with the paper's figures, then the judge's cost and the notes."""
        lines = [
            f"{self.benchmark.upper()}: {self.samples} sample(s), {self.failed} failed (scored as wrong)"
        ]
        given = "unknown" if self.modalities is None else ", ".join(self.modalities) or "none"
        lines.append(f"  modalities given: {given}")
        if self.benchmark in SOURCE_NAMES:
            lines.append(_row("", ["UAR", "WAR"], 7))
            for fold, scores in self.folds.items():
                lines.append(_row(f"fold {fold}", [scores["uar"], scores["war"]], 7))
            label = f"mean of {len(self.folds)}" if len(self.folds) > 1 else "ours"
            lines.append(_row(label, [self.scores["uar"], self.scores["war"]], 7))
            lines.append(_row("paper", [self.paper["uar"], self.paper["war"]], 7))
        elif self.benchmark == "emer":
            lines.append(_row("", ["clue", "label"], 7))
            lines.append(_row("ours", [self.scores["clue_overlap"], self.scores["label_overlap"]], 7))
            lines.append(_row("paper", [self.paper["clue_overlap"], self.paper["label_overlap"]], 7))
        elif self.levels:
            lines.append(_row("", ["avg", "precision", "recall", "fscore"], 9))
            for level, scores in self.levels.items():
                figures = [scores["avg"], scores["precision"], scores["recall"], scores["fscore"]]
                lines.append(_row(level, figures, 9))
            lines.append(
                _row("paper", [self.paper[key] for key in ("avg", "precision", "recall")] + ["-"], 9)
            )
        else:
            lines.append(_row("", ["avg", "precision", "recall"], 9))
            lines.append(_row("ours", [self.scores[key] for key in ("avg", "precision", "recall")], 9))
            lines.append(_row("paper", [self.paper[key] for key in ("avg", "precision", "recall")], 9))
        if self.judge is not None:
            from omni_emotion.judge import JudgeCost

            cost = JudgeCost(**{name.name: self.judge[name.name] for name in dataclasses.fields(JudgeCost)})
            lines.append(f"Judge {self.judge['judge']}: {cost.describe()}")
        if self.unreadable:
            lines.append(
                f"Unreadable judge replies: {len(self.unreadable)}, left out of the means: "
                + ", ".join(f"{item['name']} ({item['score']})" for item in self.unreadable[:10])
                + (" ..." if len(self.unreadable) > 10 else "")
            )
        lines += [f"Note: {note}" for note in self.notes]
        lines += [f"Wrote {path}" for path in self.files]
        return "\n".join(lines)


def _row(label: str, values: Sequence[float | str | None], width: int) -> str:
    def cell(value: float | str | None) -> str:
        if value is None:
            return f"{'-':>{width}}"
        return f"{value:>{width}}" if isinstance(value, str) else f"{value:>{width}.2f}"

    return f"  {label:<12} " + " ".join(cell(value) for value in values)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * float(value), 4)


def _write_atomically(path: Path, text: str) -> None:
    """Replaces `path` with `text` in one rename, so that a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _write_report(
    output_dir: str | os.PathLike | None,
    report: EvaluationReport,
    predictions: Predictions,
    scores: Sequence[dict[str, Any]] | None = None,
) -> None:
    """`<benchmark>_summary.json` (and `<benchmark>_scores.jsonl` when there are per-sample scores) in `output_dir`,
    beside the predictions; nothing when `output_dir` is None."""
    if output_dir is None:
        return
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = report.benchmark.replace("-", "_")
    files = [predictions.path]
    if scores is not None:
        scores_path = folder / f"{stem}_scores.jsonl"
        _write_atomically(scores_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in scores))
        files.append(str(scores_path))
    summary = folder / f"{stem}_summary.json"
    report.files = [*files, str(summary)]
    _write_atomically(summary, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")


# -- the benchmarks' clips -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkClip:
    """One clip of a CSV benchmark: its name, its file and its reference (emotion words for EMER-OV, the reference
    explanation for EMER)."""

    name: str
    path: str
    reference: str


def read_emer_ov(data: str | os.PathLike, reference_column: str | None = None) -> list[BenchmarkClip]:
    """The clips of an EMER-OV CSV file and their reference words.

    `data` is the CSV file or a folder holding `emer_ov.csv`. The CSV has a header with a `name` column (the clip's
    file name without extension) and a column of reference words: `reference_column`, else the first of `openset`
    (MER's open-set label files), `open_vocabulary`, `reference`; its cells are comma-separated words or a
    Python-style list (`['happy', 'relaxed']`), as `emer_ov` reads them. Each clip is `<name>.<video extension>` in
    the CSV's folder's `video/`, `videos/` or `video-labeled/` subfolder, or beside the CSV. Every clip is checked before any model
    is loaded; the error lists all that are missing, or all that have an empty reference.
    """
    return _read_clip_csv(
        data,
        title="EMER-OV",
        default_csv=EMER_OV_CSV,
        name_columns=("name",),
        reference_columns=(reference_column,) if reference_column else EMER_OV_REFERENCE_COLUMNS,
    )


def read_emer(data: str | os.PathLike, reference_column: str | None = None) -> list[BenchmarkClip]:
    """The clips of EMER and their reference explanations.

    `data` is the CSV file or a folder holding `final-EMER-reason.csv`, the file of AffectGPT's EMER release (332
    MER2023 clips; columns `name`, `chinese`, `english`). The clip names are in `name` (or `names`), the English
    explanations in `reference_column`, else the first of `english`, `reason`, `reasons`, `description`. The clips
    (MER2023's `sample_XXXXXXXX` videos, which the release does not include) are looked for as in `read_emer_ov`:
    in the CSV's folder's `video/`, `videos/` or `video-labeled/` subfolder, or beside the CSV.
    """
    return _read_clip_csv(
        data,
        title="EMER",
        default_csv=EMER_CSV,
        name_columns=EMER_NAME_COLUMNS,
        reference_columns=(reference_column,) if reference_column else EMER_REASONING_COLUMNS,
    )


def _read_clip_csv(
    data: str | os.PathLike,
    *,
    title: str,
    default_csv: str,
    name_columns: Sequence[str],
    reference_columns: Sequence[str],
) -> list[BenchmarkClip]:
    csv_path = Path(data).expanduser()
    if csv_path.is_dir():
        csv_path = csv_path / default_csv
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{title} labels {csv_path} not found: give the CSV file or a folder holding {default_csv}."
        )
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        name_column = next((name for name in name_columns if name in header), None)
        column = next((name for name in reference_columns if name in header), None)
        if name_column is None or column is None:
            names = " or ".join(f"`{name}`" for name in name_columns)
            raise BenchmarkDataError(
                f"{csv_path}: expected a header with {names} and {' or '.join(reference_columns)}, got {header}."
            )
        rows = [
            (row[name_column].strip(), (row[column] or "").strip())
            for row in reader
            if (row[name_column] or "").strip()
        ]
    if not rows:
        raise BenchmarkDataError(f"{csv_path} lists no clip.")
    empty = [name for name, reference in rows if not reference]
    if empty:
        raise BenchmarkDataError(
            f"{csv_path}: {len(empty)} clip(s) have an empty `{column}`, so there is nothing to compare with: "
            f"{_some(empty)}"
        )
    folders = [csv_path.parent / folder for folder in CLIP_FOLDERS]
    clips, missing = [], []
    for name, reference in rows:
        path = _find_clip(name, folders)
        if path is None:
            missing.append(name)
        else:
            clips.append(BenchmarkClip(name, str(path.resolve()), reference))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {title} clip(s) of {csv_path} not found in {', '.join(map(str, folders))}: "
            f"{_some(missing)}"
        )
    return clips


def _some(names: Sequence[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _find_clip(name: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        for suffix in sorted(VIDEO_SUFFIXES):
            if (path := folder / f"{name}{suffix}").is_file():
                return path
    return None


def _check_folds(folds: int | Sequence[int]) -> tuple[int, ...]:
    chosen = (folds,) if isinstance(folds, int) else tuple(folds)
    if not chosen or any(fold not in FOLDS for fold in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"folds must be distinct official folds among {FOLDS}, got {folds!r}.")
    return chosen


# -- generation: the predictions file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Question:
    """One clip to answer; `record` is what its prediction line carries besides the answer (ids, reference)."""

    key: tuple[int | None, str]
    path: str
    prompt: str
    record: dict[str, Any]


Describe = Callable[[_Question, str], dict[str, Any]]
"""What a benchmark reads from an answer into its prediction line (DFEW's class, EMER-OV's words)."""


def _key(record: dict[str, Any]) -> tuple[int | None, str]:
    return record.get("fold"), record["id"] if "id" in record else record["name"]


def _questions(
    benchmark: str,
    data: str | os.PathLike,
    *,
    folds: int | Sequence[int] = FOLDS,
    seed: int = 0,
    reference_column: str | None = None,
) -> tuple[list[_Question], Describe | None]:
    """The clips of `benchmark` under `data` with the prompt each is asked (every clip checked on disk)."""
    if benchmark in SOURCE_NAMES:
        return _classification_questions(benchmark, data, _check_folds(folds), seed)
    if benchmark == "emer-ov":
        from dataset_scripts import parse_emotion_answer
        from dataset_scripts.prompts import OPEN_VOCABULARY_QUESTIONS

        def describe(question: _Question, answer: str) -> dict[str, Any]:
            return {"predicted": parse_emotion_answer(answer)}

        clips = read_emer_ov(data, reference_column)
        return _clip_questions(benchmark, clips, OPEN_VOCABULARY_QUESTIONS[0]), describe
    if benchmark == "emer":
        from dataset_scripts.emotion_answer import REASONING_QUESTIONS

        return _clip_questions(benchmark, read_emer(data, reference_column), REASONING_QUESTIONS[0]), None
    raise ValueError(f"Unknown benchmark {benchmark!r}: choose among {', '.join(BENCHMARKS)}.")


def _classification_questions(
    benchmark: str, root: str | os.PathLike, folds: tuple[int, ...], seed: int
) -> tuple[list[_Question], Describe]:
    """Each clip is asked the fine-tune's question (`classification_example(..., with_answer=False)`), its options
    shuffled by an RNG seeded with `seed` and the clip's id, so a run is reproducible."""
    from dataset_scripts import classification_example, read_source
    from omni_emotion.judge import load_metric

    root = Path(root).expanduser()
    rows_of = {fold: list(read_source(SOURCE_NAMES[benchmark], root, fold=fold)["test"]) for fold in folds}
    questions = []
    for fold, rows in rows_of.items():
        if not rows:
            raise BenchmarkDataError(f"{SOURCE_NAMES[benchmark]} fold {fold} under {root} has no test clip.")
        for row in rows:
            row = {**row, "video_path": str(root / row["video"])}
            example = classification_example(row, random.Random(f"{seed}:{row['id']}"), with_answer=False)
            record = {"benchmark": benchmark, "fold": fold, "id": row["id"], "reference": row["label"]}
            questions.append(
                _Question(
                    (fold, row["id"]),
                    row["video_path"],
                    example["messages"][0]["content"][-1]["text"],
                    record,
                )
            )
    # The metric's own reading of an answer, so that each sample's `correct` agrees with the scores.
    _, uar_war = load_metric("uar_war")
    label_set = uar_war.LabelSet(uar_war.DATASET_LABELS[benchmark])

    def describe(question: _Question, answer: str) -> dict[str, Any]:
        sample = question.record["id"]
        predicted = label_set.class_id(answer, sample) if answer.strip() else None
        reference = label_set.class_id(question.record["reference"], sample)
        name = None if predicted is None else label_set.names[predicted]
        return {"predicted": name, "correct": predicted == reference}

    return questions, describe


def _clip_questions(benchmark: str, clips: Sequence[BenchmarkClip], prompt: str) -> list[_Question]:
    return [
        _Question(
            (None, clip.name),
            clip.path,
            prompt,
            {"benchmark": benchmark, "name": clip.name, "reference": clip.reference},
        )
        for clip in clips
    ]


@dataclass
class Predictions:
    """The generation stage's outcome: one record per clip, in the benchmark's order, as written in `path` (None
    when nothing is written); `generated` of them answered by this call, `resumed` read back from an earlier run."""

    records: list[dict[str, Any]]
    path: str | None
    generated: int
    resumed: int

    @property
    def failed(self) -> int:
        return sum(bool(record.get("error")) for record in self.records)

    @property
    def modalities(self) -> list[str] | None:
        """What the model was given (as asked; a clip without sound gives no audio whatever was asked)."""
        return self.records[0].get("modalities") if self.records else None

    def describe(self) -> str:
        where = f" in {self.path}" if self.path else ""
        return f"Predictions{where}: {self.generated} generated now, {self.resumed} from an earlier run."


def _answer(record: dict[str, Any]) -> str:
    """The answer scored: a clip that failed counts as an empty answer."""
    return "" if record.get("error") else record.get("answer", "")


def _model_name(model: OmniEmotionForConditionalGeneration) -> str:
    name = str(getattr(model.config, "_name_or_path", "") or "")
    return os.path.abspath(name) if name and os.path.isdir(name) else name


def _read_predictions(path: Path) -> dict[tuple[int | None, str], dict[str, Any]]:
    """The lines of a predictions file by sample (the last line of a sample wins)."""
    try:
        return {_key(record): record for record in read_json_lines(path, "predictions file")}
    except (ValueError, KeyError) as error:
        raise PredictionsFileError(
            f"{path} cannot be read back ({error}); write to another --output-dir, or remove the file."
        ) from error


def _check_same_settings(
    path: Path | None,
    questions: Sequence[_Question],
    done: dict[tuple[int | None, str], dict[str, Any]],
    settings: dict[str, Any],
) -> None:
    """Refuses to resume from lines made with another model, modalities or prompt: mixed in, they would be scored
    as this run's."""
    for question in questions:
        record = done.get(question.key)
        if record is None or record.get("error"):
            continue
        expected = {**settings, "prompt": question.prompt}
        differ = [name for name, value in expected.items() if record.get(name) != value]
        if differ:
            raise PredictionsFileError(
                f"{path} already holds a prediction for {question.key[1]} made with another "
                f"{' and '.join(differ)} than this run's: write to another --output-dir, or remove the file to "
                "start over."
            )


def _predict(
    benchmark: str,
    questions: Sequence[_Question],
    describe: Describe | None,
    model: OmniEmotionForConditionalGeneration | None,
    processor: OmniEmotionProcessor | None,
    *,
    output_dir: str | os.PathLike | None,
    modalities: Sequence[str] | str,
    batch_size: int,
    max_new_tokens: int,
    prefetch: int,
    progress: bool,
) -> Predictions:
    """Answers the questions not yet in `<output_dir>/<benchmark>_predictions.jsonl` (or whose clip failed), one
    appended line each as it comes; with `model=None`, only reads the file, which must then answer every clip."""
    path = (
        None if output_dir is None else Path(output_dir) / f"{benchmark.replace('-', '_')}_predictions.jsonl"
    )
    done = {} if path is None else _read_predictions(path)
    if model is None:
        if path is None:
            raise ValueError("model=None scores the predictions already in output_dir: give output_dir.")
        missing = [question.key[1] for question in questions if question.key not in done]
        if missing:
            raise PredictionsFileError(
                f"{len(missing)} of {len(questions)} clip(s) have no prediction in {path}: {_some(missing)}. "
                "Generate them first (with the model, without --judge-only)."
            )
        todo: list[_Question] = []
    else:
        if processor is None:
            raise ValueError("Pass the processor with the model.")
        from omni_emotion.pipeline import check_modalities

        settings = {"model": _model_name(model), "modalities": list(check_modalities(modalities))}
        _check_same_settings(path, questions, done, settings)
        todo = [
            question for question in questions if question.key not in done or done[question.key].get("error")
        ]
    if todo:
        from tqdm.auto import tqdm

        from omni_emotion.analyze import analyze

        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        results = analyze(
            [question.path for question in todo],
            model,
            processor,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prompt=[question.prompt for question in todo],
            modalities=settings["modalities"],
            prefetch=prefetch,
        )
        bar = tqdm(
            results, total=len(todo), unit="clip", desc=benchmark, disable=not progress, file=sys.stderr
        )
        with bar:
            for question, result in zip(todo, bar, strict=True):
                record = {**question.record, "path": result.path, "prompt": question.prompt, **settings}
                record |= {"answer": result.raw_text, "error": result.error}
                if describe is not None:
                    record |= describe(question, _answer(record))
                if path is not None:
                    append_json_line(path, record)
                done[question.key] = record
    return Predictions(
        # The ids and references as the data has them now, whatever an earlier run wrote.
        records=[{**done[question.key], **question.record} for question in questions],
        path=None if path is None else str(path),
        generated=len(todo),
        resumed=len(questions) - len(todo),
    )


def generate_predictions(
    benchmark: str,
    model: OmniEmotionForConditionalGeneration | None,
    processor: OmniEmotionProcessor | None,
    data: str | os.PathLike,
    *,
    folds: int | Sequence[int] = FOLDS,
    seed: int = 0,
    reference_column: str | None = None,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    batch_size: int = 4,
    max_new_tokens: int | None = None,
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> Predictions:
    """The generation stage of `benchmark` alone: each clip of `data` answered, resumably, into
    `<output_dir>/<benchmark>_predictions.jsonl`.

    Clips already answered there are skipped (failed ones are tried again); a line made with another model, prompt
    (e.g. another `seed`) or `modalities` is refused rather than mixed in. `modalities` leaves frames, faces or audio
    out (the paper's v / v+a / v+a+f comparison). Score the file afterwards with the benchmark's `evaluate_*`
    function and `model=None`, once the model is released. With `model=None` the file is only read back, and must
    answer every clip.
    """
    questions, describe = _questions(
        benchmark, data, folds=folds, seed=seed, reference_column=reference_column
    )
    return _predict(
        benchmark,
        questions,
        describe,
        model,
        processor,
        output_dir=output_dir,
        modalities=modalities,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS[benchmark],
        prefetch=prefetch,
        progress=progress,
    )


# -- DFEW / MAFW ---------------------------------------------------------------------------------------------------


def evaluate_classification(
    model: OmniEmotionForConditionalGeneration | None,
    processor: OmniEmotionProcessor | None,
    source: str,
    root: str | os.PathLike,
    *,
    folds: int | Sequence[int] = FOLDS,
    batch_size: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["dfew"],
    seed: int = 0,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> EvaluationReport:
    """UAR and WAR on the test split of each of `folds` of DFEW or MAFW (`source`, any case) under `root` (the
    official layout, see `dataset_scripts.read_source`), and their mean over the folds, in percent.

    Each clip is asked the fine-tune's question, its options shuffled reproducibly with `seed`; the whole answer is
    scored by `uar_war`, which reads the class it names. Every clip of every fold is checked on disk before
    generating. With `output_dir`, generation resumes from its predictions file (see `generate_predictions`);
    `model=None` scores that file without generating.
    """
    from omni_emotion.judge import load_metric

    benchmark = source.lower()
    if benchmark not in SOURCE_NAMES:
        raise ValueError(
            f"source={source!r}: classification benchmarks are {', '.join(SOURCE_NAMES.values())}."
        )
    chosen = _check_folds(folds)
    predictions = generate_predictions(
        benchmark, model, processor, root, folds=chosen, seed=seed, modalities=modalities,
        batch_size=batch_size, max_new_tokens=max_new_tokens, output_dir=output_dir, prefetch=prefetch,
        progress=progress,
    )  # fmt: skip
    uar_war, _ = load_metric("uar_war")
    fold_scores: dict[int, dict[str, float]] = {}
    for fold in chosen:
        records = [record for record in predictions.records if record["fold"] == fold]
        scores = uar_war.compute(
            predictions=[_answer(record) for record in records],
            references=[record["reference"] for record in records],
            dataset=benchmark,
        )
        fold_scores[fold] = {
            "uar": _percent(scores["uar"]),
            "war": _percent(scores["war"]),
            "num_unmapped": scores["num_unmapped"],
        }
    mean = uar_war.average_folds(list(fold_scores.values()))
    notes = []
    if len(chosen) != len(FOLDS):
        used = ", ".join(map(str, chosen))
        notes.append(
            f"the paper's figures are the mean of the 5 official folds; this run used fold(s) {used}."
        )
    report = EvaluationReport(
        benchmark=benchmark,
        scores={key: round(value, 4) for key, value in mean.items()},
        paper=PAPER_FIGURES[benchmark],
        samples=len(predictions.records),
        failed=predictions.failed,
        folds=fold_scores,
        notes=notes,
        modalities=predictions.modalities,
    )
    _write_report(output_dir, report, predictions)
    return report


# -- the judge -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _judging(
    judge: Judge | Callable[[str], str] | str | Any, output_dir: str | os.PathLike | None
) -> Iterator[tuple[Judge, Callable[[], dict[str, Any]]]]:
    """`judge` as a `Judge` (a `Judge` as given; anything else loaded with its cache in `output_dir`, and closed at
    the end), and a function that reports it with the cost incurred since entering."""
    from omni_emotion.judge import Judge, load_judge

    with contextlib.ExitStack() as stack:
        if not isinstance(judge, Judge):
            cache = None if output_dir is None else Path(output_dir) / CACHE_FILE
            judge = stack.enter_context(load_judge(judge, cache_path=cache))
        before = dataclasses.replace(judge.cost)

        def summary() -> dict[str, Any]:
            return judge.summary() | asdict(judge.cost.since(before))

        yield judge, summary


def _needs_judge(judge: object, what: str) -> None:
    if judge is None:
        raise ValueError(
            f"{what} needs a judge: a callable (prompt -> reply), a transformers model folder, Hub id or pipeline, or "
            "omni_emotion.judge.load_judge(URL, model=...) for an OpenAI-compatible API."
        )


def _unreadable_note(count: int, scores_file: str) -> list[str]:
    if not count:
        return []
    return [
        f"the unreadable judge replies are in {scores_file}; delete their lines from {CACHE_FILE} to ask again."
    ]


# -- EMER-OV -------------------------------------------------------------------------------------------------------


def evaluate_open_vocabulary(
    model: OmniEmotionForConditionalGeneration | None,
    processor: OmniEmotionProcessor | None,
    data: str | os.PathLike,
    *,
    grouping: str = "wheel",
    wheel_dir: str | os.PathLike | None = None,
    judge: Judge | Callable[[str], str] | str | Any | None = None,
    reference_column: str | None = None,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    batch_size: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["emer-ov"],
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> EvaluationReport:
    """EMER-OV precision, recall and their mean (`avg`), in percent, for the clips of `data` (see `read_emer_ov`).

    Each clip is asked `OPEN_VOCABULARY_QUESTIONS[0]`; its words are read with `parse_emotion_answer`. `grouping`:

    - `"judge"`, the reference protocol: per sample, `judge` groups the union of the predicted and reference words
      into synonym groups (`omni_emotion.judge.grouping_prompt`); `emer_ov` scores them with its `synonyms`
      grouping. A sample with no predicted word scores 0 without asking. A reply that holds no list of groups is
      reported in `unreadable` and the sample left out of the means. `judge` is a `Judge`, or anything `load_judge`
      takes (cached in `output_dir`); per-sample groups and scores go to `emer_ov_scores.jsonl`.
    - `"wheel"`: MER2025's deterministic emotion-wheel grouping; F-score too, for level 1 (the headline) and level
      2. `wheel_dir` holds its resources (default `$OMNI_EMOTION_WHEEL_DIR`, else `emer_ov` downloads them).
    - `"exact"`: words match only when equal, a strict lower bound.

    With `output_dir`, generation resumes from its predictions file (see `generate_predictions`); `model=None` scores
    that file without generating.
    """
    from omni_emotion.judge import load_metric

    if grouping not in GROUPINGS:
        raise ValueError(f"grouping={grouping!r}: choose among {', '.join(GROUPINGS)}.")
    if grouping == "judge":
        _needs_judge(judge, "grouping='judge'")
    elif judge is not None:
        raise ValueError(f"A judge is used only with grouping='judge', not {grouping!r}.")
    predictions = generate_predictions(
        "emer-ov", model, processor, data, reference_column=reference_column, modalities=modalities,
        batch_size=batch_size, max_new_tokens=max_new_tokens, output_dir=output_dir, prefetch=prefetch,
        progress=progress,
    )  # fmt: skip
    emer_ov, emer_ov_module = load_metric("emer_ov")
    records = predictions.records
    report = EvaluationReport(
        benchmark="emer-ov",
        scores={},
        paper=PAPER_FIGURES["emer-ov"],
        samples=len(records),
        failed=predictions.failed,
        modalities=predictions.modalities,
        grouping=grouping,
    )
    words = [record["predicted"] for record in records]  # none for a clip that failed
    references = [record["reference"] for record in records]
    if grouping == "wheel":
        scores = emer_ov.compute(
            predictions=words,
            references=references,
            grouping="wheel",
            wheel_dir=None if wheel_dir is None else str(wheel_dir),
        )
        for level in ("level1", "level2"):
            precision, recall = scores[f"{level}_precision"], scores[f"{level}_recall"]
            report.levels[level] = {
                "avg": _percent((precision + recall) / 2),
                "precision": _percent(precision),
                "recall": _percent(recall),
                "fscore": _percent(scores[f"{level}_fscore"]),
            }
        report.scores = dict(report.levels["level1"])
        report.notes.append(
            "the paper's EMER-OV figures group words with an LLM judge (AffectGPT's protocol, --grouping judge); "
            "these use the deterministic emotion-wheel grouping, averaged over the wheels (avg = (precision + "
            "recall) / 2), so they compare only roughly."
        )
        _write_report(output_dir, report, predictions)
        return report
    if grouping == "exact":
        scores = emer_ov.compute(predictions=words, references=references, grouping="exact")
        report.scores = {key: _percent(scores[key]) for key in ("avg", "precision", "recall")}
        report.notes.append(
            "exact word matching counts synonyms as different emotions: a strict lower bound of the paper's "
            "LLM-judge grouping (--grouping judge)."
        )
        _write_report(output_dir, report, predictions)
        return report

    rows = _judge_groups(records, words, emer_ov_module.split_words, judge, output_dir, report)
    readable = [row for row in rows if row["groups"] is not None]
    report.scores = dict.fromkeys(("avg", "precision", "recall"))
    if readable:
        scores = emer_ov.compute(
            predictions=[row["predicted"] for row in readable],
            references=[row["reference"] for row in readable],
            grouping="synonyms",
            synonym_groups=[row["groups"] for row in readable],
        )
        report.scores = {key: _percent(scores[key]) for key in report.scores}
        for row in readable:  # each sample's own figures, from the metric itself
            own = emer_ov.compute(
                predictions=[row["predicted"]],
                references=[row["reference"]],
                grouping="synonyms",
                synonym_groups=[row["groups"]],
            )
            row |= {"precision": own["precision"], "recall": own["recall"]}
    report.notes.append(
        "words grouped per sample by the judge with this project's prompt, as in AffectGPT's protocol; a different "
        "judge or prompt than the paper's makes the figures compare only roughly."
    )
    report.notes += _unreadable_note(len(report.unreadable), "emer_ov_scores.jsonl")
    _write_report(output_dir, report, predictions, rows)
    return report


def _judge_groups(
    records: Sequence[dict[str, Any]],
    words: Sequence[Sequence[str]],
    split_words: Callable[[Any], list[str]],
    judge: Any,
    output_dir: str | os.PathLike | None,
    report: EvaluationReport,
) -> list[dict[str, Any]]:
    """One row per sample: its words (as `emer_ov` reads them), the judge's reply and groups (None if unreadable);
    sets the report's `judge` and `unreadable`."""
    from omni_emotion.judge import grouping_prompt, parse_synonym_groups

    rows = []
    with _judging(judge, output_dir) as (asker, summary):
        for record, predicted in zip(records, words, strict=True):
            predicted, reference = split_words(predicted), split_words(record["reference"])
            row = {"name": record["name"], "predicted": predicted, "reference": reference}
            if not predicted:  # precision and recall are 0 whatever the groups
                row |= {"groups": [], "reply": None, "precision": 0.0, "recall": 0.0}
            else:
                reply = asker(grouping_prompt(sorted(set(predicted) | set(reference))))
                row |= {"groups": parse_synonym_groups(reply), "reply": reply}
                if row["groups"] is None:
                    report.unreadable.append({"name": record["name"], "score": "groups", "reply": reply})
            rows.append(row)
        report.judge = summary()
    return rows


# -- EMER ----------------------------------------------------------------------------------------------------------


def evaluate_reasoning(
    model: OmniEmotionForConditionalGeneration | None,
    processor: OmniEmotionProcessor | None,
    data: str | os.PathLike,
    *,
    judge: Judge | Callable[[str], str] | str | Any,
    reference_column: str | None = None,
    modalities: Sequence[str] | str = ALL_MODALITIES,
    batch_size: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["emer"],
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> EvaluationReport:
    """EMER clue overlap and label overlap (1-10, as judged) for the clips of `data` (see `read_emer`).

    Each clip is asked `REASONING_QUESTIONS[0]`; the whole answer is the predicted explanation, compared with the
    reference one by the `emer_reasoning` metric through `judge` (four requests per sample; a `Judge`, or anything
    `load_judge` takes, cached in `output_dir`). Replies without a readable score are reported in `unreadable` and
    left out of the means. Per-sample scores and the judge's emotion summaries go to `emer_scores.jsonl`. With
    `output_dir`, generation resumes from its predictions file (see `generate_predictions`); `model=None` scores that
    file without generating.
    """
    from omni_emotion.judge import load_metric

    _needs_judge(judge, "EMER")
    predictions = generate_predictions(
        "emer", model, processor, data, reference_column=reference_column, modalities=modalities,
        batch_size=batch_size, max_new_tokens=max_new_tokens, output_dir=output_dir, prefetch=prefetch,
        progress=progress,
    )  # fmt: skip
    records = predictions.records
    emer_reasoning, _ = load_metric("emer_reasoning")
    with _judging(judge, output_dir) as (asker, summary):
        result = emer_reasoning.compute(
            predictions=[_answer(record) for record in records],
            references=[record["reference"] for record in records],
            judge=asker,
        )
        judged = summary()
    unreadable = [
        {"name": records[item["index"]]["name"], "score": item["score"], "reply": item["reply"]}
        for item in result["unreadable"]
    ]
    rows = [
        {
            "name": record["name"],
            "clue_overlap": result["clue_overlap_scores"][index],
            "label_overlap": result["label_overlap_scores"][index],
            "reference_emotions": result["reference_emotions"][index],
            "prediction_emotions": result["prediction_emotions"][index],
            "unreadable": [item["reply"] for item in result["unreadable"] if item["index"] == index],
        }
        for index, record in enumerate(records)
    ]
    report = EvaluationReport(
        benchmark="emer",
        scores={
            key: None if result[key] is None else round(result[key], 4)
            for key in ("clue_overlap", "label_overlap")
        },
        paper=PAPER_FIGURES["emer"],
        samples=len(records),
        failed=predictions.failed,
        modalities=predictions.modalities,
        judge=judged,
        unreadable=unreadable,
        notes=[
            "scored by the judge with emer_reasoning's prompts (this project's wording); the paper's scores come "
            "from another judge and prompts, so they compare only roughly."
        ],
    )
    report.notes += _unreadable_note(len(unreadable), "emer_scores.jsonl")
    _write_report(output_dir, report, predictions, rows)
    return report


# -- command line --------------------------------------------------------------------------------------------------


def _fold_argument(value: str) -> int:
    fold = int(value)
    if fold not in FOLDS:
        raise argparse.ArgumentTypeError(f"expected an official fold among 1-5, got {value}")
    return fold


EPILOG = """\
Resuming: generation appends one line per clip to <output-dir>/<benchmark>_predictions.jsonl as it goes; rerunning
the same command skips the clips already there (failed clips are tried again), so a killed run loses at most the
batch in flight. Judging: the evaluated model is released before the judge is asked anything; a local judge model
runs in a process of its own; every reply is cached in <output-dir>/judge_cache.jsonl, so a rerun asks nothing twice.
Exit status: 0; 1 when some clips failed or some judge replies could not be read; 2 when the run could not complete
(missing or malformed data, bad arguments, a failing judge: the predictions and replies so far are kept)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `omni-emotion evaluate`, on a parser (or subparser) that the caller owns."""
    parser.epilog = EPILOG
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="the benchmark to run")
    parser.add_argument(
        "--data",
        required=True,
        metavar="ROOT",
        help="dfew/mafw: the folder the official release unpacks to (with its fold files); emer-ov: the CSV file "
        f"(name + openset columns) or a folder holding {EMER_OV_CSV}; emer: the CSV (name + english columns) or a "
        f"folder holding {EMER_CSV}; the clips of emer-ov and emer in the CSV's video/ subfolder",
    )
    parser.add_argument(
        "--model",
        metavar="ID|DIR",
        help="the checkpoint: a Hub id or a folder (required unless --judge-only)",
    )
    parser.add_argument(
        "--fold",
        type=_fold_argument,
        help="dfew/mafw: only this official fold (default: all 5 and their mean, as the paper reports)",
    )
    parser.add_argument(
        "--reference-column",
        metavar="NAME",
        help="emer-ov/emer: the CSV column of the references (default: the first of "
        f"{', '.join(EMER_OV_REFERENCE_COLUMNS)} for emer-ov, of {', '.join(EMER_REASONING_COLUMNS)} for emer)",
    )
    parser.add_argument(
        "--output-dir",
        default="evaluation",
        metavar="DIR",
        help="where <benchmark>_predictions.jsonl, _scores.jsonl, _summary.json and the judge's cache are written; "
        "rerunning with the same DIR resumes (default: %(default)s)",
    )
    add_runtime_arguments(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=_positive,
        help="longest answer, in tokens (default: 16 for dfew/mafw, 64 for emer-ov, 256 for emer)",
    )
    parser.add_argument(
        "--modalities",
        type=_modalities_argument,
        default=ALL_MODALITIES,
        help="what the model is given, comma-separated among frames,faces,audio: frames for the paper's v, "
        "frames,audio for v+a (default: all three, v+a+f); recorded in the summary",
    )
    parser.add_argument(
        "--grouping",
        choices=GROUPINGS,
        help="emer-ov: how emotion words are grouped before matching: wheel, MER2025's deterministic emotion wheel "
        "(the default); judge, synonym groups from --judge per sample (the paper's protocol); exact, no grouping",
    )
    parser.add_argument(
        "--wheel-dir",
        metavar="DIR",
        help="emer-ov --grouping wheel: the emotion-wheel resources (default: $OMNI_EMOTION_WHEEL_DIR, else "
        "downloaded)",
    )
    parser.add_argument(
        "--judge",
        metavar="URL|MODEL",
        help="emer, and emer-ov --grouping judge: the base URL of an OpenAI-compatible API (with --judge-model), "
        "or a local transformers model folder or Hub id (run in a process of its own)",
    )
    parser.add_argument("--judge-model", metavar="NAME", help="the model name sent to the --judge API")
    parser.add_argument(
        "--judge-api-key-env",
        metavar="VAR",
        help="the environment variable that holds the --judge API's key (sent as a bearer token); never pass a "
        "key itself on the command line",
    )
    parser.add_argument(
        "--judge-only",
        action="store_true",
        help="score the predictions already in --output-dir without loading the evaluated model (--model is "
        "not needed); every clip must have one",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="dfew/mafw: seeds the order of the options in each question"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def _is_url(judge: str | None) -> bool:
    # As the emer_reasoning metric tells an API from a local model, without importing it (and evaluate) here.
    return bool(judge) and judge.startswith(("http://", "https://"))


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of arguments, found before anything is loaded; None if nothing."""
    needs_judge = args.benchmark == "emer" or (args.benchmark == "emer-ov" and args.grouping == "judge")
    is_url = _is_url(args.judge)
    if args.fold is not None and args.benchmark not in SOURCE_NAMES:
        return "--fold applies to dfew and mafw only."
    if args.grouping is not None and args.benchmark != "emer-ov":
        return "--grouping applies to emer-ov only."
    if args.reference_column is not None and args.benchmark not in ("emer-ov", "emer"):
        return "--reference-column applies to emer-ov and emer only."
    if args.model is None and not args.judge_only:
        return "--model is required (or --judge-only, to score the predictions already in --output-dir)."
    if needs_judge and not args.judge:
        return (
            f"{args.benchmark}{' --grouping judge' if args.grouping else ''} needs --judge: the base URL of an "
            "OpenAI-compatible API (with --judge-model) or a local transformers model folder or Hub id."
        )
    if args.judge and not needs_judge:
        return "--judge is used only by emer and by emer-ov with --grouping judge."
    if is_url and not args.judge_model:
        return f"--judge {args.judge} is an API URL: name the model to ask with --judge-model."
    if not is_url and (args.judge_model or args.judge_api_key_env):
        return "--judge-model and --judge-api-key-env apply to a --judge that is an http(s) URL."
    if args.judge_api_key_env and not os.environ.get(args.judge_api_key_env):
        return (
            f"--judge-api-key-env {args.judge_api_key_env}: that environment variable is not set (or empty)."
        )
    return None


def _release_evaluated_model() -> None:
    """Frees what the evaluated model held once its last reference is gone, before a judge is loaded."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_evaluation(args: argparse.Namespace) -> EvaluationReport:
    """Runs the benchmark named by parsed `omni-emotion evaluate` arguments: generation (unless --judge-only) with
    the model loaded here and released at its end, then scoring, with the judge (if any) loaded only then."""
    from omni_emotion.judge import load_judge, local_model

    benchmark = args.benchmark
    folds = FOLDS if args.fold is None else (args.fold,)
    # Whatever can be checked is checked before the model is loaded: the data, and a local judge's path.
    _questions(benchmark, args.data, folds=folds, seed=args.seed, reference_column=args.reference_column)
    if args.judge and not _is_url(args.judge):
        local_model(args.judge)
    common = {
        "modalities": args.modalities,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[benchmark],
        "output_dir": args.output_dir,
        "progress": args.progress,
    }
    if not args.judge_only:
        from omni_emotion.analyze import load_for_inference

        model, processor = load_for_inference(args.model, args.device, args.dtype)
        predictions = generate_predictions(
            benchmark, model, processor, args.data, folds=folds, seed=args.seed,
            reference_column=args.reference_column, **common,
        )  # fmt: skip
        del model, processor
        _release_evaluated_model()
        print(predictions.describe())
    with contextlib.ExitStack() as stack:
        judge = None
        if args.judge:
            api_key = os.environ[args.judge_api_key_env] if args.judge_api_key_env else None
            cache = Path(args.output_dir) / CACHE_FILE
            judge = stack.enter_context(
                load_judge(args.judge, model=args.judge_model, api_key=api_key, cache_path=cache)
            )
        if benchmark in SOURCE_NAMES:
            return evaluate_classification(
                None, None, benchmark, args.data, folds=folds, seed=args.seed, **common
            )
        if benchmark == "emer-ov":
            return evaluate_open_vocabulary(
                None, None, args.data, grouping=args.grouping or "wheel", wheel_dir=args.wheel_dir, judge=judge,
                reference_column=args.reference_column, **common,
            )  # fmt: skip
        return evaluate_reasoning(
            None, None, args.data, judge=judge, reference_column=args.reference_column, **common
        )


def main_from_args(args: argparse.Namespace) -> int:
    """Runs `omni-emotion evaluate` and prints the table; 0 when every clip was answered and every judge reply read,
    1 when some were not (they count as wrong, or are left out), 2 when the run could not complete."""
    problem = _argument_problem(args)
    if problem is None:
        from dataset_scripts import AnnotationError
        from omni_emotion.judge import JudgeError

        try:
            report = run_evaluation(args)
        except (FileNotFoundError, AnnotationError, BenchmarkDataError, PredictionsFileError) as error:
            problem = str(error)
        except JudgeError as error:
            problem = (
                f"{error}\nThe predictions and the judge's replies so far are kept in {args.output_dir}: rerun "
                "with --judge-only to go on scoring."
            )
    if problem is not None:
        print(f"omni-emotion evaluate: error: {problem}", file=sys.stderr)
        return 2
    print(report.table())
    return 1 if report.failed or report.unreadable else 0


__all__ = [
    "BENCHMARKS",
    "GROUPINGS",
    "PAPER_FIGURES",
    "BenchmarkClip",
    "BenchmarkDataError",
    "EvaluationReport",
    "Predictions",
    "PredictionsFileError",
    "add_arguments",
    "evaluate_classification",
    "evaluate_open_vocabulary",
    "evaluate_reasoning",
    "generate_predictions",
    "main_from_args",
    "read_emer",
    "read_emer_ov",
    "run_evaluation",
]
