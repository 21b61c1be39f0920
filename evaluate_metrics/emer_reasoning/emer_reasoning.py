"""EMER reasoning: clue overlap and label overlap of emotion explanations, scored 1-10 by a judge LLM."""

from __future__ import annotations

import json
import re
import string
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

import datasets
import evaluate

_CITATION = """\
@article{lian2023explainable,
  title={Explainable Multimodal Emotion Recognition},
  author={Lian, Zheng and Sun, Haiyang and Sun, Licai and others},
  journal={arXiv preprint arXiv:2306.15401},
  year={2023}
}
@inproceedings{cheng2024emotionllama,
  title={Emotion-LLaMA: Multimodal Emotion Recognition and Reasoning with Instruction Tuning},
  author={Cheng, Zebang and Cheng, Zhi-Qi and He, Jun-Yan and Sun, Jingdong and Wang, Kai and Lin, Yuxiang and
          Lian, Zheng and Peng, Xiaojiang and Hauptmann, Alexander},
  booktitle={Advances in Neural Information Processing Systems},
  year={2024}
}
"""

_DESCRIPTION = """\
EMER (explainable multimodal emotion recognition) asks a model to explain a person's emotional state from
the clues of a clip. A judge LLM that the caller chooses compares each predicted explanation with the
reference one and scores, from 1 to 10:

- clue overlap: how far the emotional clues (face, voice, gestures, words, situation) of the two coincide;
- label overlap: after the judge has summarised the emotion words of each explanation, how far those
  emotions coincide.

The judge decodes greedily (temperature 0); the score is the first number of its reply, and a reply without
a number from 1 to 10 is reported as unreadable, never guessed. The figures are the means over the samples
with a readable score.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the predicted explanation of each sample.
    references (`list` of `str`): the reference explanation of each sample.
    judge: who scores. One of:
        - a callable taking a prompt (`str`) and returning the reply (`str`); it should decode greedily;
        - a `transformers` text-generation pipeline (its chat template is used when its tokenizer has one);
        - a local model path or Hub id (`str`), loaded as a text-generation pipeline;
        - the base URL of an OpenAI-compatible API (`str`, e.g. `"http://127.0.0.1:8000/v1"`), called at
          `{judge}/chat/completions`, with `judge_model`.
    judge_model (`str`, *optional*): the model name sent to an OpenAI-compatible API.
    judge_api_key (`str`, *optional*): sent as a bearer token to an OpenAI-compatible API.
    judge_timeout (`float`, defaults to 120): seconds to wait for one API reply.
    judge_max_new_tokens (`int`, defaults to 256): the most tokens of one judge reply.
    clue_template, label_template (`str`, *optional*): prompts with the fields `{reference}` and
        `{prediction}` (explanations, and summarised emotions, respectively); other braces doubled.
    summary_template (`str`, *optional*): the prompt with the field `{explanation}` that asks for its emotions.

Returns:
    clue_overlap (`float` or `None`): mean clue-overlap score (1-10) over the readable ones.
    label_overlap (`float` or `None`): mean label-overlap score (1-10) over the readable ones.
    clue_overlap_scores, label_overlap_scores (`list`): per-sample scores, `None` where unreadable.
    reference_emotions, prediction_emotions (`list` of `str`): the judge's summaries.
    unreadable (`list` of `dict`): `{"index", "score", "reply"}` for each reply without a readable score.

Examples:
    >>> emer_reasoning = evaluate.load("evaluate_metrics/emer_reasoning")
    >>> results = emer_reasoning.compute(
    ...     predictions=["She smiles and her voice is bright, so she is happy."],
    ...     references=["Her smile and cheerful tone show happiness."],
    ...     judge=lambda prompt: "happy" if "List the emotions" in prompt else "8",
    ... )
    >>> results["clue_overlap"], results["label_overlap"]
    (8.0, 8.0)
"""

CLUE_TEMPLATE = """\
Two explanations describe the emotional state of the same person in the same video clip.

Reference explanation:
{reference}

Explanation to grade:
{prediction}

Compare the emotional clues the two explanations rely on: facial expressions, voice and tone, body \
language, the words spoken and the situation. On a scale from 1 (no clue in common) to 10 (the same clues), \
how much do the clues of the explanation to grade overlap with those of the reference? Reply with the \
number first."""

SUMMARY_TEMPLATE = """\
Read this explanation of a person's emotional state:

{explanation}

List the emotions it attributes to the person, as emotion words separated by commas. Reply with the list only."""

LABEL_TEMPLATE = """\
Reference emotions: {reference}
Emotions to grade: {prediction}

Counting synonyms as one emotion, on a scale from 1 (no emotion in common) to 10 (the same emotions), how \
much do the emotions to grade overlap with the reference emotions? Reply with the number first."""

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def read_score(reply: str) -> float | None:
    """The first number of the reply if it is a score from 1 to 10, else None (unreadable)."""
    match = _NUMBER.search(reply)
    score = float(match.group()) if match else None
    return score if score is not None and 1 <= score <= 10 else None


def _mean_of_readable(scores: list[float | None]) -> float | None:
    readable = [score for score in scores if score is not None]
    return sum(readable) / len(readable) if readable else None


def _reply(ask: Callable[[str], str], prompt: str) -> str:
    reply = ask(prompt)
    if not isinstance(reply, str):
        raise TypeError(
            f"The judge returned {type(reply).__name__} {reply!r:.100}; it must return the reply text."
        )
    return reply


def _check_template(template: str, fields: set[str], name: str) -> None:
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    if used != fields:
        raise ValueError(
            f"{name} must use exactly the fields {sorted(fields)} (write other braces as {{{{ and }}}}); "
            f"it uses {sorted(used)}."
        )


def is_endpoint_url(judge: object) -> bool:
    """Whether `judge` names an OpenAI-compatible API (an HTTP(S) URL) rather than a local model."""
    return isinstance(judge, str) and re.match(r"https?://", judge) is not None


def endpoint_judge(
    base_url: str,
    model: str,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_tokens: int = 256,
    on_usage: Callable[[dict | None], None] | None = None,
) -> Callable[[str], str]:
    """A judge that POSTs one user message to an OpenAI-compatible chat-completions API, temperature 0.

    `on_usage`, if given, is called after each reply with the reply's `usage` object (`prompt_tokens`,
    `completion_tokens`, ...), or None when the server does not report it, so that a caller can count the cost.
    """
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def ask(prompt: str) -> str:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"The judge at {url} answered HTTP {err.code}: {err.read()[:300]!r}") from err
        except (urllib.error.URLError, TimeoutError) as err:
            raise ConnectionError(
                f"Could not get a reply from the judge at {url} within {timeout} s: {err}"
            ) from err
        try:
            reply = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise RuntimeError(
                f"The judge at {url} did not answer a chat completion: {str(payload)[:300]}"
            ) from err
        if on_usage is not None:
            usage = payload.get("usage")
            on_usage(usage if isinstance(usage, dict) else None)
        return reply

    return ask


def pipeline_judge(pipeline, max_new_tokens: int = 256) -> Callable[[str], str]:
    """A judge that decodes greedily with a transformers text-generation pipeline, through its chat template if it
    has one."""

    def ask(prompt: str) -> str:
        chat = getattr(pipeline.tokenizer, "chat_template", None)
        inputs = [{"role": "user", "content": prompt}] if chat else prompt
        outputs = pipeline(inputs, do_sample=False, max_new_tokens=max_new_tokens, return_full_text=False)
        return outputs[0]["generated_text"]

    return ask


def _is_pipeline(judge: object) -> bool:
    # A pipeline exists only if transformers was imported, so the metric itself never needs transformers.
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(judge, transformers.Pipeline)


def build_judge(
    judge: Callable[[str], str] | str | None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_new_tokens: int = 256,
    on_usage: Callable[[dict | None], None] | None = None,
) -> Callable[[str], str]:
    """One calling convention, prompt in and reply out, for every kind of judge that `compute` accepts.

    Public so that other code (a benchmark runner that caches the judge's replies, say) calls a judge exactly as
    this metric does. `on_usage` applies to an API only (see `endpoint_judge`); a local model loads here, in the
    calling process.
    """
    if is_endpoint_url(judge):
        if not model:
            raise ValueError(f"judge={judge!r} is an API URL: name the model to call with judge_model=.")
        return endpoint_judge(judge, model, api_key, timeout, max_new_tokens, on_usage)
    if isinstance(judge, str):
        from transformers import pipeline

        return pipeline_judge(pipeline("text-generation", model=judge), max_new_tokens)
    if _is_pipeline(judge):
        return pipeline_judge(judge, max_new_tokens)
    if callable(judge):
        return judge
    raise ValueError(
        f"judge={judge!r}: pass a callable (prompt -> reply), a transformers text-generation pipeline, "
        "a local model path or Hub id, or the base URL of an OpenAI-compatible API with judge_model=."
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmerReasoning(evaluate.Metric):
    """Clue overlap and label overlap of emotion explanations, judged by an LLM."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/ZebangCheng/Emotion-LLaMA"],
            reference_urls=["https://arxiv.org/abs/2306.15401", "https://arxiv.org/abs/2406.11161"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        judge: Callable[[str], str] | str | None = None,
        judge_model: str | None = None,
        judge_api_key: str | None = None,
        judge_timeout: float = 120.0,
        judge_max_new_tokens: int = 256,
        clue_template: str = CLUE_TEMPLATE,
        summary_template: str = SUMMARY_TEMPLATE,
        label_template: str = LABEL_TEMPLATE,
    ) -> dict:
        _check_template(clue_template, {"reference", "prediction"}, "clue_template")
        _check_template(label_template, {"reference", "prediction"}, "label_template")
        _check_template(summary_template, {"explanation"}, "summary_template")
        for index, reference in enumerate(references):
            if not reference.strip():
                raise ValueError(f"references[{index}] is empty: there is no explanation to compare with.")
        ask = build_judge(judge, judge_model, judge_api_key, judge_timeout, judge_max_new_tokens)

        clue_scores, label_scores, reference_emotions, prediction_emotions, unreadable = [], [], [], [], []
        for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
            try:
                clue_reply = _reply(ask, clue_template.format(reference=reference, prediction=prediction))
                reference_emotions.append(_reply(ask, summary_template.format(explanation=reference)).strip())
                prediction_emotions.append(
                    _reply(ask, summary_template.format(explanation=prediction)).strip()
                )
                label_reply = _reply(
                    ask,
                    label_template.format(
                        reference=reference_emotions[-1], prediction=prediction_emotions[-1]
                    ),
                )
            except Exception as err:
                err.add_note(f"(while judging sample {index})")
                raise
            for name, reply, scores in (
                ("clue_overlap", clue_reply, clue_scores),
                ("label_overlap", label_reply, label_scores),
            ):
                scores.append(read_score(reply))
                if scores[-1] is None:
                    unreadable.append({"index": index, "score": name, "reply": reply})
        return {
            "clue_overlap": _mean_of_readable(clue_scores),
            "label_overlap": _mean_of_readable(label_scores),
            "clue_overlap_scores": clue_scores,
            "label_overlap_scores": label_scores,
            "reference_emotions": reference_emotions,
            "prediction_emotions": prediction_emotions,
            "unreadable": unreadable,
        }
