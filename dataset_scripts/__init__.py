"""Datasets of Omni-Emotion: the seven source datasets, SRE/HRE, their Hub export and the phase prompts.

Nothing here imports the model or the processor (DESIGN.md section 1): these are plain `datasets`
objects and TRL conversational rows.
"""

from .build import build_sre_hre
from .catalog import (
    AFEW_VA_CLASSES,
    CAER_CLASSES,
    DFEW_CLASSES,
    FERV39K_CLASSES,
    MAFW_CLASSES,
    MER24_CLASSES,
    RAVDESS_CLASSES,
    SOURCES,
    SourceInfo,
    get_source,
)
from .hub import (
    RECORD_FEATURES,
    attach_videos,
    export_to_hub_layout,
    load_exported,
    push_to_hub,
    records_to_dataset_dict,
    source_counts_report,
)
from .prompts import (
    ANSWER_PREFIX,
    audio_alignment_example,
    build_prompts,
    classification_example,
    face_alignment_example,
    format_emotion_answer,
    instruction_example,
    parse_emotion_answer,
)
from .records import (
    PAPER_HRE_PER_SOURCE,
    PAPER_SRE_COUNTS,
    RECORD_FIELDS,
    RecordError,
    check_disjoint,
    count_by_source,
    format_source_counts,
    read_records,
    select_sre,
    validate_record,
    validate_records,
    write_records,
)
from .sources import AnnotationError, SourceClip, read_source
from .videos import MissingVideosError

__all__ = [
    "AFEW_VA_CLASSES",
    "ANSWER_PREFIX",
    "CAER_CLASSES",
    "DFEW_CLASSES",
    "FERV39K_CLASSES",
    "MAFW_CLASSES",
    "MER24_CLASSES",
    "PAPER_HRE_PER_SOURCE",
    "PAPER_SRE_COUNTS",
    "RAVDESS_CLASSES",
    "RECORD_FEATURES",
    "RECORD_FIELDS",
    "SOURCES",
    "AnnotationError",
    "MissingVideosError",
    "RecordError",
    "SourceClip",
    "SourceInfo",
    "attach_videos",
    "audio_alignment_example",
    "build_prompts",
    "build_sre_hre",
    "check_disjoint",
    "classification_example",
    "count_by_source",
    "export_to_hub_layout",
    "face_alignment_example",
    "format_emotion_answer",
    "format_source_counts",
    "get_source",
    "instruction_example",
    "load_exported",
    "parse_emotion_answer",
    "push_to_hub",
    "read_records",
    "read_source",
    "records_to_dataset_dict",
    "select_sre",
    "source_counts_report",
    "validate_record",
    "validate_records",
    "write_records",
]
