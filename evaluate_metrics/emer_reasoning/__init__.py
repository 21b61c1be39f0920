"""The `emer_reasoning` evaluate metric; load it by path: `evaluate.load(evaluate_metrics.metric_path("emer_reasoning"))`."""
