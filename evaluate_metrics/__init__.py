"""`evaluate` metrics of omni-emotion, one folder each, loaded by path.

    >>> import evaluate
    >>> from evaluate_metrics import metric_path
    >>> emer_ov = evaluate.load(metric_path("emer_ov"))

The folders hold plain metric scripts (they import nothing of the model), so the same path works from a
checkout and from the installed wheel.
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("emer_ov", "emer_reasoning", "uar_war")


def metric_path(name: str) -> str:
    """The directory of metric `name`, to pass to `evaluate.load`."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}: the metrics of omni-emotion are {', '.join(METRICS)}.")
    return str(Path(__file__).parent / name)
