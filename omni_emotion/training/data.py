"""The training rows of each phase, built from the recipe's data fields, with the leakage guards run first."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset, concatenate_datasets

from dataset_scripts import (
    attach_videos,
    build_prompts,
    classification_example,
    count_by_source,
    face_alignment_example,
    format_source_counts,
    load_exported,
    read_source,
)
from dataset_scripts.audio_sources import AudioSourceSpec, audio_mix_report, mix_audio_sources
from dataset_scripts.leakage import (
    check_no_evaluation_clips,
    check_no_ravdess_in_sre,
    check_sre_hre_disjoint,
    check_test_fold_excluded,
    fold_test_clips,
    read_evaluation_clips,
)
from dataset_scripts.prompts import build_instruction_prompts, count_tasks, format_task_counts

from .arguments import OmniEmotionScriptArguments

FOLDED_SOURCES = ("DFEW", "MAFW")


@dataclass
class PhaseData:
    """The conversation rows of a phase and a printable account of where they came from."""

    dataset: Dataset
    report: str


def build_phase_dataset(args: OmniEmotionScriptArguments) -> PhaseData:
    """The rows of `args.phase`; raises `LeakageError` before anything trains if evaluation data got in."""
    if args.phase == "audio_alignment":
        data = _audio_alignment(args)
    else:
        records = _records(args)
        guard_leakage(records, args)
        data = _conversations(records, args)
    if args.max_train_samples is not None:
        data.dataset = data.dataset.select(range(min(args.max_train_samples, len(data.dataset))))
        data.report += (
            f"\n(first {len(data.dataset):,} rows kept: max_train_samples={args.max_train_samples})"
        )
    if len(data.dataset) == 0:
        raise ValueError(f"The {args.phase} phase has no training rows: check the recipe's data fields.")
    return data


def _audio_alignment(args: OmniEmotionScriptArguments) -> PhaseData:
    if not args.audio_sources:
        raise ValueError(
            "Phase 1 needs `audio_sources`: a list of audio datasets (see recipes/phase1_audio.yaml)."
        )
    specs = [AudioSourceSpec.from_dict(entry) for entry in args.audio_sources]
    mix = mix_audio_sources(specs, seed=args.prompt_seed)
    return PhaseData(mix, audio_mix_report(mix, specs))


def _records(args: OmniEmotionScriptArguments) -> dict[str, Dataset]:
    """The annotation records a phase formats, by group (a source, or an SRE/HRE config), with `video_path`."""
    if args.phase == "instruction":
        if not args.annotations:
            raise ValueError("Phase 3 needs `annotations`: the SRE/HRE export folder or its Hub id.")
        return {
            config: load_exported(
                args.annotations,
                name=config,
                split=args.annotation_split,
                video_roots=args.video_roots or None,
            )
            for config in args.annotation_configs
        }
    names = [args.finetune_source] if args.phase == "finetune" else list(args.sources)
    if not names:
        raise ValueError(
            "Phase 2 needs `sources`: the source datasets' folders by name (DFEW: /data/DFEW, ...)."
        )
    records = {}
    for name in names:
        root, options = args.source_root(name)
        if name in FOLDED_SOURCES:
            options = {**options, "fold": args.fold}
        splits = read_source(name, root, **options)
        if "train" not in splits:
            raise ValueError(f"{name} at {root} has no train split (splits: {', '.join(splits)}).")
        records[name] = attach_videos(splits["train"], {name: root})
    return records


def guard_leakage(records: dict[str, Dataset], args: OmniEmotionScriptArguments) -> None:
    """Evaluation clips, a held-out DFEW/MAFW test fold, RAVDESS in SRE, SRE/HRE overlap: each fails here."""
    rows = concatenate_datasets(list(records.values()))
    holds_mer = "MER24" in set(rows.unique("source"))
    if args.evaluation_clips:
        check_no_evaluation_clips(rows, read_evaluation_clips(args.evaluation_clips))
    elif holds_mer:
        raise ValueError(
            "The training data holds MER24 clips, which share names with the EMER / MER2023 evaluation clips: give "
            "`evaluation_clips` (a file of their names, e.g. EMER-OV's annotation CSV) so they are kept out."
        )
    sources = rows["source"]
    for name in FOLDED_SOURCES:
        if name in args.sources:
            root, options = args.source_root(name)
            of_source = rows.select([index for index, source in enumerate(sources) if source == name])
            check_test_fold_excluded(of_source, name, fold_test_clips(name, root, args.fold, **options))
    if "sre" in records:
        check_no_ravdess_in_sre(records["sre"])
        if "hre" in records:
            check_sre_hre_disjoint(records["sre"], records["hre"])


def _conversations(records: dict[str, Dataset], args: OmniEmotionScriptArguments) -> PhaseData:
    rows = concatenate_datasets(list(records.values()))
    counts = format_source_counts(count_by_source(rows.select_columns(["source"]).to_list()), "Clips")
    if args.phase == "instruction":
        dataset = build_instruction_prompts(rows, tasks=args.instruction_tasks, seed=args.prompt_seed)
        return PhaseData(dataset, f"{counts}\n{format_task_counts(count_tasks(dataset))}")
    formatter = face_alignment_example if args.phase == "face_alignment" else classification_example
    dataset = build_prompts(rows, formatter, seed=args.prompt_seed)
    return PhaseData(dataset, f"{counts}\n{len(dataset):,} {args.phase} questions")
