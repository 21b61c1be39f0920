"""omni-emotion: what ties the model, the processor, the data and the metrics together (CLI, training)."""

import modeling_omni_emotion  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
