"""omni-emotion: what ties the model, the processor, the data and the metrics together (CLI, training).

Importing this package imports nothing heavy, so that the `omni-emotion` command answers `--help` at once. The
modules that use the model import `modeling_omni_emotion` (which registers the Auto classes) and `processing`
(which registers the processor) themselves.
"""

__version__ = "0.1.0"
