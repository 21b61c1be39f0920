"""Curation: the pipeline that builds SRE/HRE-style annotations from raw clips and their coarse labels.

```python
from curation import run_curation

result = run_curation("curation.yaml", "curated/")  # or: omni-emotion curate curation.yaml --output curated/
result.summary["sre"], result.failures
```

Stages (`curation.stages`): a global description from frames at 1 fps (a VLM), faces (tracklets, age/gender, the
VLM on face crops), audio (ASR, an audio caption and the vocal emotion), a consistency check, the synthesis of the
reasoning and labels, and the self-review against the coarse label; then the HRE draw (`curation.selection`). Each
stage's model is an OpenAI-compatible endpoint, a local transformers pipeline or a Python callable
(`curation.backends`), chosen in one YAML config (`curation.config`); results are cached per clip and stage
(`curation.cache`). See docs/curation.md.

Names are imported on first use, so that the command line's parser imports nothing heavy.
"""

import importlib
from typing import Any

_EXPORTS = {
    "CurationConfig": "config",
    "ConfigError": "config",
    "STAGES": "config",
    "load_config": "config",
    "parse_config": "config",
    "ModelRequest": "backends",
    "BackendError": "backends",
    "StageFailure": "stages",
    "CurationError": "pipeline",
    "CurationResult": "pipeline",
    "run_curation": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
