"""The `uar_war` evaluate metric; load it by path: `evaluate.load(evaluate_metrics.metric_path("uar_war"))`."""
