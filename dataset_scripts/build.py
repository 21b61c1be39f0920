"""Build SRE and HRE from record files, print their per-source counts, export them and push them.

    python -m dataset_scripts records.jsonl --hre hre.jsonl --out ./omni-emotion-sre-hre \\
        [--min-score 5] [--push-to-hub user/omni-emotion-sre-hre --private]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict
from huggingface_hub.utils import httpx

from .hub import export_to_hub_layout, push_to_hub, records_to_dataset_dict, source_counts_report
from .records import DEFAULT_SRE_MIN_SCORE, check_disjoint, read_records, select_sre


def build_sre_hre(
    records: str | Path, hre: str | Path | None = None, *, min_score: float = DEFAULT_SRE_MIN_SCORE
) -> dict[str, DatasetDict]:
    """`sre`: the scored records of `records` with `review_score >= min_score`; `hre`: the human-reviewed
    records of `hre`, which must share no clip with `sre`. Both are validated line by line."""
    sre = select_sre(read_records(records), min_score)
    configs = {"sre": sre}
    if hre is not None:
        configs["hre"] = read_records(hre)
        check_disjoint(sre, configs["hre"])
    return {name: records_to_dataset_dict(rows) for name, rows in configs.items()}


PROG = "python -m dataset_scripts"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", type=Path, help="JSONL of scored records (SRE candidates)")
    parser.add_argument("--hre", type=Path, help="JSONL of human-reviewed records")
    parser.add_argument(
        "--min-score",
        type=float,
        default=DEFAULT_SRE_MIN_SCORE,
        help="SRE keeps the records whose review_score is at least this, 0-10 (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the Parquet shards and dataset card"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="dataset repo to upload the export to")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; bad input ends it with one line on stderr (exit 2 for arguments, 1 for the data)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in (args.records, args.hre):
        if path is not None and not path.is_file():
            parser.error(f"{path}: no such file")
    try:
        configs = build_sre_hre(args.records, args.hre, min_score=args.min_score)
        print(source_counts_report(configs))
        export_to_hub_layout(configs, args.out, overwrite=args.overwrite)
        print(f"\nExported to {args.out}")
        if args.push_to_hub:
            commit = push_to_hub(args.out, args.push_to_hub, private=args.private or None)
            print(f"Pushed: {commit.commit_url}")
    except (OSError, ValueError, httpx.TransportError) as error:
        # RecordError and the overlap check are ValueErrors that name the file, line or records.
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
