"""`omni-emotion curate CONFIG.yaml --output OUT_DIR`: the curation pipeline from the command line.

Building the parser imports nothing of the pipeline (nor torch or transformers), so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="the curation config (YAML; see docs/curation.md)")
    parser.add_argument(
        "--output", type=Path, required=True, help="output folder; run again with the same folder to resume"
    )
    parser.add_argument(
        "--limit", type=_at_least(1), metavar="N", help="curate only the first N clips (to try a config)"
    )
    parser.add_argument(
        "--concurrency", type=_at_least(1), metavar="N", help="clips in flight (overrides the config's)"
    )
    parser.add_argument(
        "--cpu-workers",
        type=_at_least(0),
        metavar="N",
        help="decoding processes, 0: none (overrides the config's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bars")


def main_from_args(args: argparse.Namespace) -> int:
    """Run the pipeline; a bad config or input ends it with one line on stderr, failed clips with exit status 1."""
    from .backends import BackendError
    from .config import load_config
    from .pipeline import CurationError, run_curation

    prog = "omni-emotion curate"
    overrides = {
        name: value
        for name, value in (("concurrency", args.concurrency), ("cpu_workers", args.cpu_workers))
        if value is not None
    }
    try:
        config = dataclasses.replace(load_config(args.config), **overrides)
        result = run_curation(config, args.output, limit=args.limit, show_progress=not args.no_progress)
    # ConfigError and RecordError are ValueErrors; ImportError: a missing OpenCV or callable's module.
    except (ValueError, OSError, ImportError, BackendError, CurationError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    summary = result.summary
    print(
        f"{summary['clips']} clips: {summary['sre']} SRE, {summary['hre_candidates']} HRE candidates, "
        f"{summary['dropped']} dropped ({summary['failed']} failed). Written to {result.output_dir}"
    )
    if result.failures:
        shown = "\n  ".join(result.failures[:10])
        more = f"\n  ... and {len(result.failures) - 10} more" if len(result.failures) > 10 else ""
        print(
            f"{prog}: {len(result.failures)} clip(s) failed:\n  {shown}{more}\nRun again to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0
