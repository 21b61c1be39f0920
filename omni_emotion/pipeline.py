"""The `video-emotion-analysis` pipeline: a clip in; its emotion words, the reasoning and the raw answer out.

```python
from transformers import pipeline

analyzer = pipeline("video-emotion-analysis", model="omni-emotion-7b", trust_remote_code=True)
analyzer("clip.mp4")  # {"labels": [...], "reasoning": "...", "raw_text": "...", "modalities": [...], ...}
```

`save_pipeline_code` writes this file into a checkpoint beside the model's and the processor's code, with
`custom_pipelines` in its config (`VideoEmotionAnalysisPipeline.save_pretrained` and `omni-emotion train` call it),
so the line above works for someone who never installed this package. That is why this module imports only the
standard library, torch and transformers, plus the answer format (`parse_emotion_answer` and the default question):
in a checkpoint from `emotion_answer.py` beside it, a copy of the package's standard-library-only
`dataset_scripts/emotion_answer.py`; in the package from that module itself. The helpers below (modality removal,
the chat of one clip, splitting an answer) are shared with `omni_emotion.analyze`, the batched runner.
"""

from __future__ import annotations

import inspect
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, GenerationConfig, PreTrainedConfig
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import Pipeline

try:  # in a checkpoint: the answer format that `save_pretrained` copied beside this file
    from .emotion_answer import REASONING_QUESTIONS, parse_emotion_answer
except ImportError:  # in the package
    from dataset_scripts.emotion_answer import REASONING_QUESTIONS, parse_emotion_answer

TASK = "video-emotion-analysis"
MODALITIES = ("frames", "faces", "audio")
"""What a clip can give the model; the paper's v / v+a / v+a+f models are `frames`, `frames,audio` and all three."""
DEFAULT_PROMPT = REASONING_QUESTIONS[0]


# -- helpers shared with omni_emotion.analyze ----------------------------------------------------------------------


def check_modalities(modalities: str | Sequence[str]) -> tuple[str, ...]:
    """`modalities` as a tuple in `MODALITIES` order (a comma-separated string is accepted); unknown names fail."""
    names = modalities.split(",") if isinstance(modalities, str) else list(modalities)
    names = [name.strip() for name in names if name.strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        raise ValueError(f"Unknown modalities {unknown}: choose among {', '.join(MODALITIES)}.")
    return tuple(name for name in MODALITIES if name in names)


def remove_modalities(clip: Mapping[str, Any], keep: Sequence[str]) -> dict[str, Any]:
    """A `decode_clip` dict with the modalities not in `keep` made absent, the way the processor represents a clip
    that lacks them, so that the model still sees every marker and gets the zero input it was trained to expect:
    no frames -> zero frames (and no face, since faces are cut from the frames); no faces -> zero crops with
    `face_mask` all False; no audio -> the zero-filled audio block of a silent clip."""
    given = dict(clip)
    if "frames" not in keep:
        given.update(frames=None, faces=None, face_mask=None)
    elif "faces" not in keep and given.get("faces") is not None:
        given.update(faces=np.zeros_like(given["faces"]), face_mask=np.zeros_like(given["face_mask"]))
    if "audio" not in keep:
        given["audio"] = None
    return given


def given_modalities(clip: Mapping[str, Any]) -> list[str]:
    """Which modalities a (possibly reduced) decoded clip actually gives the model."""
    given = []
    if clip.get("frames") is not None:
        given.append("frames")
    if clip.get("face_mask") is not None and bool(np.any(clip["face_mask"])):
        given.append("faces")
    if clip.get("audio") is not None and np.size(clip["audio"]) > 0:
        given.append("audio")
    return given


def face_summary(clip: Mapping[str, Any]) -> tuple[bool, int]:
    """Whether the tracker found the primary face, and in how many of the sampled frames."""
    mask = clip.get("face_mask")
    frames = 0 if mask is None else int(np.count_nonzero(mask))
    return frames > 0, frames


def clip_messages(clip: Mapping[str, Any], prompt: str) -> list[dict[str, Any]]:
    """The user turn of one decoded clip: the processor turns a `decode_clip` dict back into exactly the tensors
    the source itself gives (the video block and, with an audio tower, the clip's audio block)."""
    return [{"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": prompt}]}]


def split_emotion_answer(text: str) -> tuple[str, list[str]]:
    """(reasoning, emotion words) of a generated answer.

    The words are `parse_emotion_answer`'s; the reasoning is the text before the shortest tail from which the parser
    reads the same words, i.e. before the final `Emotions:` line (or its bullet list) of an answer in the trained
    format, empty for an answer that is only a list, and the whole text when no words can be read. Defined through
    the parser alone, so that the two never disagree on where the answer's label part starts.
    """
    labels = parse_emotion_answer(text)
    if not labels:
        return text.strip(), labels
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if parse_emotion_answer("\n".join(lines[start:])) == labels:
            return "\n".join(lines[:start]).strip(), labels
    return "", labels


def generation_defaults(model: torch.nn.Module, tokenizer: Any) -> dict[str, Any]:
    """Padding with the tokenizer's pad token, and stopping at its end-of-turn token (Qwen2's `<|im_end|>`) when the
    model's generation config names no end: a freshly assembled checkpoint has none and would run to the limit."""
    defaults: dict[str, Any] = {}
    if tokenizer.pad_token_id is not None:
        defaults["pad_token_id"] = tokenizer.pad_token_id
    if getattr(model.generation_config, "eos_token_id", None) is None and tokenizer.eos_token_id is not None:
        defaults["eos_token_id"] = tokenizer.eos_token_id
    return defaults


# -- the pipeline --------------------------------------------------------------------------------------------------


class VideoEmotionAnalysisPipeline(Pipeline):
    """Decodes a clip (sampled frames, the tracked primary face, the sound), asks the model about the person's
    emotions and reads the answer back.

    Input: anything `OmniEmotionProcessor.decode_clip` reads (a path, an HTTP(S) URL, bytes, a file object). Output
    per clip: `labels` (the emotion words), `reasoning`, `raw_text`, `modalities` (what the model was given),
    `face_found` and `face_frames`.

    Parameters (at construction or per call): `prompt` (the question; by default the first phase-3 reasoning
    question), `modalities` (a subset of `MODALITIES`, or a comma-separated string, to leave frames, faces or audio
    out as the paper's ablations do), and generation parameters such as `max_new_tokens` (256 by default).

    One clip at a time: clips differ in audio windows and prompt length, which transformers' generic batching
    cannot pad; `omni_emotion.analyze` runs batches, with decoding overlapped with generation.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.processor is None or not hasattr(self.processor, "decode_clip"):
            raise ValueError(
                f"The {TASK!r} pipeline needs Omni-Emotion's processor (with `decode_clip`), got "
                f"{type(self.processor).__name__}: save the checkpoint with its processor."
            )
        self._generation_defaults.update(generation_defaults(self.model, self.processor.tokenizer))

    def _sanitize_parameters(
        self,
        prompt: str | None = None,
        modalities: str | Sequence[str] | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        **generation_parameters: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess: dict[str, Any] = {}
        if prompt is not None:
            preprocess["prompt"] = prompt
        if modalities is not None:
            preprocess["modalities"] = check_modalities(modalities)
        forward: dict[str, Any] = {}
        if generate_kwargs or generation_parameters:
            forward["generate_kwargs"] = {**(generate_kwargs or {}), **generation_parameters}
        return preprocess, forward, {}

    def get_iterator(self, inputs, num_workers: int, batch_size: int, *args: Any, **kwargs: Any):
        if batch_size > 1:
            raise ValueError(
                f"The {TASK!r} pipeline runs one clip at a time (got batch_size={batch_size}); for batched runs "
                "use omni_emotion.analyze (`omni-emotion analyze`)."
            )
        return super().get_iterator(inputs, num_workers, batch_size, *args, **kwargs)

    def preprocess(
        self, clip: Any, prompt: str = DEFAULT_PROMPT, modalities: Sequence[str] = MODALITIES
    ) -> dict[str, Any]:
        decoded = self.processor.decode_clip(
            clip, with_video="frames" in modalities, with_audio="audio" in modalities
        )
        given = remove_modalities(decoded, modalities)
        inputs = self.processor.apply_chat_template(
            [clip_messages(given, prompt)],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        face_found, face_frames = face_summary(decoded)
        return {
            "inputs": inputs.to(self.model.dtype),
            "clip": {
                "modalities": given_modalities(given),
                "face_found": face_found,
                "face_frames": face_frames,
            },
        }

    def _forward(
        self, model_inputs: dict[str, Any], generate_kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        inputs = model_inputs["inputs"]
        generated = self.model.generate(**inputs, **self._prepare_generate_kwargs(generate_kwargs or {}))
        return {"new_tokens": generated[:, inputs["input_ids"].shape[1] :], "clip": model_inputs["clip"]}

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, Any]:
        text = self.processor.batch_decode(model_outputs["new_tokens"], skip_special_tokens=True)[0]
        reasoning, labels = split_emotion_answer(text)
        return {"labels": labels, "reasoning": reasoning, "raw_text": text, **model_outputs["clip"]}

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """The model, the processor and the pipeline's code (`save_pipeline_code`), so that
        `pipeline(TASK, model=save_directory, trust_remote_code=True)` rebuilds this pipeline from the folder.

        (transformers' own `Pipeline.save_pretrained` saves neither a processor nor a module's companion file.)
        """
        save_pipeline_code(save_directory, self.model.config)
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory, **kwargs)


def save_pipeline_code(save_directory: str | Path, config: PreTrainedConfig) -> None:
    """Copies this module and the answer format into `save_directory` and names the pipeline in
    `config.custom_pipelines`; the model then saved there with this config is one that
    `pipeline(TASK, model=save_directory, trust_remote_code=True)` runs, without this package.

    Every writer of a checkpoint calls it before saving the model: `VideoEmotionAnalysisPipeline.save_pretrained`,
    `omni-emotion assemble`, the end of `omni-emotion train` and the tiny checkpoints of `omni_emotion.synthetic`.
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    module_file = Path(__file__)  # the package's module, or a checkpoint's copy of it
    config.custom_pipelines = {
        TASK: {
            "impl": f"{module_file.stem}.{VideoEmotionAnalysisPipeline.__name__}",
            "pt": ["AutoModelForImageTextToText"],
            "type": "multimodal",
        }
    }
    shutil.copyfile(module_file, folder / module_file.name)
    # The answer format is a standard-library-only module of the package: copied as it is.
    answer_module = sys.modules[parse_emotion_answer.__module__]  # the package's, or a checkpoint's copy
    shutil.copyfile(inspect.getfile(answer_module), folder / "emotion_answer.py")


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=VideoEmotionAnalysisPipeline, pt_model=AutoModelForImageTextToText, type="multimodal"
)

__all__ = [
    "DEFAULT_PROMPT",
    "MODALITIES",
    "TASK",
    "VideoEmotionAnalysisPipeline",
    "check_modalities",
    "clip_messages",
    "face_summary",
    "generation_defaults",
    "given_modalities",
    "remove_modalities",
    "save_pipeline_code",
    "split_emotion_answer",
]
