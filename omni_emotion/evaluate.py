"""`omni-emotion evaluate --benchmark dfew|mafw|emer-ov --data ROOT --model ID|DIR`: the paper's benchmarks.

```bash
omni-emotion evaluate --benchmark dfew --data DFEW/ --model omni-emotion-7b            # 5 folds, their mean
omni-emotion evaluate --benchmark mafw --data MAFW/ --model omni-emotion-7b --fold 1   # one fold
omni-emotion evaluate --benchmark emer-ov --data EMER-OV/ --model omni-emotion-7b       # emotion-wheel grouping
```

- **DFEW / MAFW** (`evaluate_classification`): the test split of each official fold (`dataset_scripts.read_source`),
  asked with the fine-tune's question (`classification_example`: all of the source's classes as options, shuffled
  per clip with a seeded RNG), scored with the `uar_war` metric per fold; the headline is the mean of the folds.
- **EMER-OV** (`evaluate_open_vocabulary`): the clips of a CSV file, asked an open-vocabulary question, the emotion
  words read back with `parse_emotion_answer` and scored with `emer_ov`'s deterministic emotion-wheel grouping.
  The paper's figures use AffectGPT's LLM-judge synonym grouping, so they are printed as a point of reference,
  not as the same measurement.

Generation is `omni_emotion.analyze.analyze` (batched, greedy, decoding in a background thread); a clip that fails
to decode or to generate is kept as a wrong answer (an empty prediction) and counted. With `--output-dir`, each
benchmark writes `<benchmark>_predictions.jsonl` (one line per sample: its prompt, answer, reference and, for
DFEW/MAFW, the class read from the answer and whether it is correct) and `<benchmark>_summary.json` (the scores, in
percent, beside the paper's).

Heavy imports (torch, transformers, the model, evaluate) happen inside the functions, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_emotion.analyze import VIDEO_SUFFIXES, _positive, add_runtime_arguments

if TYPE_CHECKING:
    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from processing import OmniEmotionProcessor

BENCHMARKS = ("dfew", "mafw", "emer-ov")
SOURCE_NAMES = {"dfew": "DFEW", "mafw": "MAFW"}
FOLDS = (1, 2, 3, 4, 5)
GROUPINGS = ("wheel",)

PAPER_FIGURES: dict[str, dict[str, float]] = {
    "dfew": {"uar": 68.80, "war": 78.35},
    "mafw": {"uar": 53.81, "war": 64.23},
    "emer-ov": {"avg": 65.9, "precision": 61.3, "recall": 70.6},
}
"""Omni-Emotion's reported figures, in percent: DFEW and MAFW as the mean of the 5 official folds, EMER-OV with
AffectGPT's LLM-judge grouping."""

EMER_OV_CSV = "emer_ov.csv"
EMER_OV_REFERENCE_COLUMNS = ("openset", "open_vocabulary", "reference")
EMER_OV_VIDEO_FOLDERS = ("video", "videos", ".")
DEFAULT_MAX_NEW_TOKENS = {"dfew": 16, "mafw": 16, "emer-ov": 64}
"""A classification answer is one word and a full stop; an open-vocabulary answer a short list of words."""


class BenchmarkDataError(ValueError):
    """The benchmark's files are not laid out as expected; the message names the file and what is wrong."""


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """One benchmark's outcome. `scores` holds the headline figures in percent (for DFEW/MAFW the mean of
    `folds`, each fold's figures also in percent); `paper` the paper's; `failed` counts the clips that failed to
    decode or generate (scored as wrong); `files` names what was written."""

    benchmark: str
    scores: dict[str, float]
    paper: dict[str, float]
    samples: int
    failed: int
    folds: dict[int, dict[str, float]] = field(default_factory=dict)
    levels: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A printable comparison with the paper's figures."""
        title = self.benchmark.upper()
        lines = [f"{title}: {self.samples} sample(s), {self.failed} failed (scored as wrong)"]
        if self.benchmark in SOURCE_NAMES:
            lines.append(f"  {'':<12} {'UAR':>7} {'WAR':>7}")
            for fold, scores in self.folds.items():
                lines.append(f"  {f'fold {fold}':<12} {scores['uar']:>7.2f} {scores['war']:>7.2f}")
            label = f"mean of {len(self.folds)}" if len(self.folds) > 1 else "ours"
            lines.append(f"  {label:<12} {self.scores['uar']:>7.2f} {self.scores['war']:>7.2f}")
            lines.append(f"  {'paper':<12} {self.paper['uar']:>7.2f} {self.paper['war']:>7.2f}")
        else:
            lines.append(f"  {'':<12} {'avg':>9} {'precision':>9} {'recall':>9} {'fscore':>9}")
            for level, scores in self.levels.items():
                lines.append(
                    f"  {level:<12} {scores['avg']:>9.2f} {scores['precision']:>9.2f} {scores['recall']:>9.2f} "
                    f"{scores['fscore']:>9.2f}"
                )
            lines.append(
                f"  {'paper':<12} {self.paper['avg']:>9.1f} {self.paper['precision']:>9.1f} "
                f"{self.paper['recall']:>9.1f} {'-':>9}"
            )
        lines += [f"Note: {note}" for note in self.notes]
        lines += [f"Wrote {path}" for path in self.files]
        return "\n".join(lines)


def _write_outputs(
    output_dir: str | os.PathLike | None, report: EvaluationReport, samples: Iterable[dict[str, Any]]
) -> None:
    """`<benchmark>_predictions.jsonl` and `<benchmark>_summary.json` in `output_dir` (nothing when None)."""
    if output_dir is None:
        return
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = report.benchmark.replace("-", "_")
    predictions, summary = folder / f"{stem}_predictions.jsonl", folder / f"{stem}_summary.json"
    with open(predictions, "w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample, ensure_ascii=False) + "\n")
    report.files = [str(predictions), str(summary)]
    summary.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _generate_answers(
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    paths: Sequence[str],
    prompts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    prefetch: int,
    progress: bool,
    description: str,
) -> list[Any]:
    """`analyze`'s results for `paths`, each clip asked its own prompt, in order."""
    from tqdm.auto import tqdm

    from omni_emotion.analyze import analyze

    results = analyze(
        paths,
        model,
        processor,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        prompt=list(prompts),
        prefetch=prefetch,
    )
    return list(
        tqdm(results, total=len(paths), unit="clip", desc=description, disable=not progress, file=sys.stderr)
    )


def _percent(value: float) -> float:
    return round(100.0 * float(value), 4)


# -- DFEW / MAFW ---------------------------------------------------------------------------------------------------


def _check_folds(folds: int | Sequence[int]) -> tuple[int, ...]:
    chosen = (folds,) if isinstance(folds, int) else tuple(folds)
    if not chosen or any(fold not in FOLDS for fold in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"folds must be distinct official folds among {FOLDS}, got {folds!r}.")
    return chosen


def evaluate_classification(
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    source: str,
    root: str | os.PathLike,
    *,
    folds: int | Sequence[int] = FOLDS,
    batch_size: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["dfew"],
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> EvaluationReport:
    """UAR and WAR on the test split of each of `folds` of DFEW or MAFW (`source`, any case) under `root` (the
    official layout, see `dataset_scripts.read_source`), and their mean over the folds, in percent.

    Each clip is asked the fine-tune's question (`classification_example(..., with_answer=False)`), its options
    shuffled by an RNG seeded with `seed` and the clip's id, so a run is reproducible; the whole answer is scored by
    `uar_war`, which reads the class it names. Every clip of every fold is checked on disk before generating.
    """
    import evaluate

    from dataset_scripts import classification_example, read_source
    from evaluate_metrics import metric_path

    benchmark = source.lower()
    if benchmark not in SOURCE_NAMES:
        raise ValueError(
            f"source={source!r}: classification benchmarks are {', '.join(SOURCE_NAMES.values())}."
        )
    chosen = _check_folds(folds)
    root = Path(root).expanduser()
    rows_of = {fold: list(read_source(SOURCE_NAMES[benchmark], root, fold=fold)["test"]) for fold in chosen}
    uar_war = evaluate.load(metric_path("uar_war"), keep_in_memory=True)
    # The metric's own reading of an answer, so that each sample's `correct` agrees with the scores.
    metric_module = importlib.import_module(type(uar_war).__module__)
    label_set = metric_module.LabelSet(metric_module.DATASET_LABELS[benchmark])

    fold_scores: dict[int, dict[str, float]] = {}
    samples: list[dict[str, Any]] = []
    failed = 0
    for fold, rows in rows_of.items():
        if not rows:
            raise BenchmarkDataError(f"{SOURCE_NAMES[benchmark]} fold {fold} under {root} has no test clip.")
        paths, prompts = [], []
        for row in rows:
            row = {**row, "video_path": str(root / row["video"])}
            example = classification_example(row, random.Random(f"{seed}:{row['id']}"), with_answer=False)
            paths.append(row["video_path"])
            prompts.append(example["messages"][0]["content"][-1]["text"])
        results = _generate_answers(
            model,
            processor,
            paths,
            prompts,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prefetch=prefetch,
            progress=progress,
            description=f"{benchmark} fold {fold}",
        )
        answers = [result.raw_text if result.ok else "" for result in results]
        scores = uar_war.compute(
            predictions=answers, references=[row["label"] for row in rows], dataset=benchmark
        )
        fold_scores[fold] = {
            "uar": _percent(scores["uar"]),
            "war": _percent(scores["war"]),
            "num_unmapped": scores["num_unmapped"],
        }
        for row, prompt, result, answer in zip(rows, prompts, results, answers, strict=True):
            predicted = label_set.class_id(answer, row["id"]) if answer.strip() else None
            reference = label_set.class_id(row["label"], row["id"])
            failed += not result.ok
            samples.append(
                {
                    "benchmark": benchmark,
                    "fold": fold,
                    "id": row["id"],
                    "path": result.path,
                    "prompt": prompt,
                    "answer": answer,
                    "reference": row["label"],
                    "predicted": None if predicted is None else label_set.names[predicted],
                    "correct": predicted == reference,
                    "error": result.error,
                }
            )

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
        samples=len(samples),
        failed=failed,
        folds=fold_scores,
        notes=notes,
    )
    _write_outputs(output_dir, report, samples)
    return report


# -- EMER-OV -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenVocabularyClip:
    name: str
    path: str
    reference: str


def read_emer_ov(data: str | os.PathLike, reference_column: str | None = None) -> list[OpenVocabularyClip]:
    """The clips of an EMER-OV CSV file and their reference words.

    `data` is the CSV file or a folder holding `emer_ov.csv`. The CSV has a header with a `name` column (the clip's
    file name without extension) and a column of reference words: `reference_column`, else the first of `openset`
    (MER's open-set label files), `open_vocabulary`, `reference`; its cells are comma-separated words or a
    Python-style list (`['happy', 'relaxed']`), as `emer_ov` reads them. Each clip is `<name>.<video extension>` in
    the CSV's folder's `video/` or `videos/` subfolder, or beside the CSV. Every clip is checked before any model
    is loaded; the error lists all that are missing.
    """
    csv_path = Path(data).expanduser()
    if csv_path.is_dir():
        csv_path = csv_path / EMER_OV_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"EMER-OV labels {csv_path} not found: give the CSV file or a folder holding {EMER_OV_CSV}."
        )
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        column = reference_column or next(
            (name for name in EMER_OV_REFERENCE_COLUMNS if name in header), None
        )
        if "name" not in header or column not in header:
            wanted = reference_column or " or ".join(EMER_OV_REFERENCE_COLUMNS)
            raise BenchmarkDataError(f"{csv_path}: expected a header with `name` and {wanted}, got {header}.")
        rows = [
            (row["name"].strip(), (row[column] or "").strip())
            for row in reader
            if (row["name"] or "").strip()
        ]
    if not rows:
        raise BenchmarkDataError(f"{csv_path} lists no clip.")
    folders = [csv_path.parent / folder for folder in EMER_OV_VIDEO_FOLDERS]
    clips, missing = [], []
    for name, reference in rows:
        path = _find_clip(name, folders)
        if path is None:
            missing.append(name)
        else:
            clips.append(OpenVocabularyClip(name, str(path.resolve()), reference))
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} EMER-OV clip(s) of {csv_path} not found in {', '.join(map(str, folders))}: {shown}"
        )
    return clips


def _find_clip(name: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        for suffix in sorted(VIDEO_SUFFIXES):
            if (path := folder / f"{name}{suffix}").is_file():
                return path
    return None


def evaluate_open_vocabulary(
    model: OmniEmotionForConditionalGeneration,
    processor: OmniEmotionProcessor,
    data: str | os.PathLike,
    *,
    grouping: str = "wheel",
    wheel_dir: str | os.PathLike | None = None,
    reference_column: str | None = None,
    batch_size: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["emer-ov"],
    output_dir: str | os.PathLike | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> EvaluationReport:
    """EMER-OV precision, recall, their mean (`avg`) and F-score at both wheel levels, in percent, for the clips of
    `data` (see `read_emer_ov`). Each clip is asked `OPEN_VOCABULARY_QUESTIONS[0]`; its words are read with
    `parse_emotion_answer`. `wheel_dir` holds the emotion-wheel resources (default `$OMNI_EMOTION_WHEEL_DIR`, else
    `emer_ov` downloads them). The headline `scores` are level 1's.
    """
    import evaluate

    from dataset_scripts import parse_emotion_answer
    from dataset_scripts.prompts import OPEN_VOCABULARY_QUESTIONS
    from evaluate_metrics import metric_path

    if grouping not in GROUPINGS:
        raise ValueError(f"grouping={grouping!r}: only {', '.join(GROUPINGS)} runs without an LLM judge.")
    clips = read_emer_ov(data, reference_column)
    prompt = OPEN_VOCABULARY_QUESTIONS[0]
    results = _generate_answers(
        model,
        processor,
        [clip.path for clip in clips],
        [prompt] * len(clips),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        prefetch=prefetch,
        progress=progress,
        description="emer-ov",
    )
    predictions = [parse_emotion_answer(result.raw_text) if result.ok else [] for result in results]
    emer_ov = evaluate.load(metric_path("emer_ov"), keep_in_memory=True)
    scores = emer_ov.compute(
        predictions=predictions,
        references=[clip.reference for clip in clips],
        grouping=grouping,
        wheel_dir=None if wheel_dir is None else str(wheel_dir),
    )
    levels = {}
    for level in ("level1", "level2"):
        precision, recall = scores[f"{level}_precision"], scores[f"{level}_recall"]
        levels[level] = {
            "avg": _percent((precision + recall) / 2),
            "precision": _percent(precision),
            "recall": _percent(recall),
            "fscore": _percent(scores[f"{level}_fscore"]),
        }
    report = EvaluationReport(
        benchmark="emer-ov",
        scores=dict(levels["level1"]),
        paper=PAPER_FIGURES["emer-ov"],
        samples=len(clips),
        failed=sum(not result.ok for result in results),
        levels=levels,
        notes=[
            "the paper's EMER-OV figures group words with AffectGPT's LLM judge; these use the deterministic "
            "emotion-wheel grouping, averaged over the wheels (avg = (precision + recall) / 2), so they compare "
            "only roughly."
        ],
    )
    samples = [
        {
            "benchmark": "emer-ov",
            "name": clip.name,
            "path": clip.path,
            "prompt": prompt,
            "answer": result.raw_text,
            "reference": clip.reference,
            "predicted": words,
            "error": result.error,
        }
        for clip, result, words in zip(clips, results, predictions, strict=True)
    ]
    _write_outputs(output_dir, report, samples)
    return report


# -- command line --------------------------------------------------------------------------------------------------


def _fold_argument(value: str) -> int:
    fold = int(value)
    if fold not in FOLDS:
        raise argparse.ArgumentTypeError(f"expected an official fold among 1-5, got {value}")
    return fold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `omni-emotion evaluate`, on a parser (or subparser) that the caller owns."""
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="the benchmark to run")
    parser.add_argument(
        "--data",
        required=True,
        metavar="ROOT",
        help="dfew/mafw: the folder the official release unpacks to (with its fold files); emer-ov: the CSV file "
        f"(name + openset columns) or a folder holding {EMER_OV_CSV}, the clips in its video/ subfolder",
    )
    parser.add_argument(
        "--model", required=True, metavar="ID|DIR", help="the checkpoint: a Hub id or a folder"
    )
    parser.add_argument(
        "--fold",
        type=_fold_argument,
        help="dfew/mafw: only this official fold (default: all 5 and their mean, as the paper reports)",
    )
    parser.add_argument(
        "--output-dir",
        default="evaluation",
        metavar="DIR",
        help="where <benchmark>_predictions.jsonl and <benchmark>_summary.json are written (default: %(default)s)",
    )
    add_runtime_arguments(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=_positive,
        help="longest answer, in tokens (default: 16 for dfew/mafw, 64 for emer-ov)",
    )
    parser.add_argument(
        "--grouping",
        choices=GROUPINGS,
        default="wheel",
        help="emer-ov: how emotion words are grouped before matching; wheel is MER's deterministic emotion wheel "
        "(the paper's LLM-judge grouping is not available here) (default: %(default)s)",
    )
    parser.add_argument(
        "--wheel-dir",
        metavar="DIR",
        help="emer-ov: the emotion-wheel resources (default: $OMNI_EMOTION_WHEEL_DIR, else downloaded)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="dfew/mafw: seeds the order of the options in each question"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def run_evaluation(args: argparse.Namespace) -> EvaluationReport:
    """Loads the model and runs the benchmark named by parsed `omni-emotion evaluate` arguments."""
    from omni_emotion.analyze import load_for_inference

    if args.benchmark == "emer-ov":
        read_emer_ov(args.data)  # the clips are checked before the model is loaded
    model, processor = load_for_inference(args.model, args.device, args.dtype)
    max_new_tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.benchmark]
    common = {
        "batch_size": args.batch_size,
        "max_new_tokens": max_new_tokens,
        "output_dir": args.output_dir,
        "progress": args.progress,
    }
    if args.benchmark == "emer-ov":
        return evaluate_open_vocabulary(
            model, processor, args.data, grouping=args.grouping, wheel_dir=args.wheel_dir, **common
        )
    folds = FOLDS if args.fold is None else args.fold
    return evaluate_classification(
        model, processor, args.benchmark, args.data, folds=folds, seed=args.seed, **common
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Runs `omni-emotion evaluate` and prints the table; 0 when every clip was answered, 1 when some failed
    (they count as wrong), 2 when the benchmark's files are missing or malformed."""
    from dataset_scripts import AnnotationError

    if args.fold is not None and args.benchmark not in SOURCE_NAMES:
        print("omni-emotion evaluate: error: --fold applies to dfew and mafw only.", file=sys.stderr)
        return 2
    try:
        report = run_evaluation(args)
    except (FileNotFoundError, AnnotationError, BenchmarkDataError) as error:
        print(f"omni-emotion evaluate: error: {error}", file=sys.stderr)
        return 2
    print(report.table())
    return 1 if report.failed else 0


__all__ = [
    "BENCHMARKS",
    "PAPER_FIGURES",
    "BenchmarkDataError",
    "EvaluationReport",
    "OpenVocabularyClip",
    "add_arguments",
    "evaluate_classification",
    "evaluate_open_vocabulary",
    "main_from_args",
    "read_emer_ov",
    "run_evaluation",
]
