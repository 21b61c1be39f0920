"""A judge LLM for the benchmarks that need one: EMER's reasoning scores and EMER-OV's synonym grouping.

```python
from omni_emotion.judge import load_judge

judge = load_judge("http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-72B-Instruct", cache_path="judge_cache.jsonl")
reply = judge("...")  # asked once; the same prompt again is answered from the cache
judge.cost.describe()  # '1 request(s), 1 cache hit(s), 812 prompt + 9 completion tokens'
```

The kinds of judge are those of the `emer_reasoning` metric, whose `build_judge` turns each into one calling
convention, prompt in and reply out: a Python callable, a transformers text-generation pipeline, a local model path
or Hub id, or the base URL of an OpenAI-compatible API with a model name. `load_judge` adds, around it:

- a cache, `judge_cache.jsonl`: one JSON line per answered prompt, keyed by a hash of the judge's identity and the
  prompt, each written with a single `write` to a file opened for appending, so that a rerun asks nothing it was
  already answered and a killed run loses at most the reply in flight;
- a cost count (`JudgeCost`): requests made, cache hits, and the prompt/completion tokens an API reports in the
  `usage` of its replies;
- a process of its own for a local model (a path or Hub id): the model is loaded and run in a process started with
  `spawn`, on the first request only, so it never shares memory or a CUDA context with the model being evaluated,
  whichever process holds that one. A pipeline or a callable that the caller built runs where the caller built it.

The EMER-OV grouping prompt (`grouping_prompt`) and the reader of its reply (`parse_synonym_groups`) are here too;
EMER's prompts are the metric's.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from omni_emotion.analyze import read_complete_lines

CACHE_FILE = "judge_cache.jsonl"
DEFAULT_MAX_NEW_TOKENS = 256

GROUPING_TEMPLATE = """\
These words were used to describe the emotions of one person in one video clip:

{words}

Sort them into groups so that each group holds the words that name the same emotion: synonyms, near-synonyms \
and different forms of one word. A word that means something different from all the others is a group of its own. \
Put every word in exactly one group and copy it as written. Reply with the groups only, as a JSON list of lists of \
strings, such as [["cheerful", "glad"], ["tense"]]."""
"""Our wording of the reference protocol's question (AffectGPT / Omni-Emotion): group the union of the predicted and
the reference words of one sample by meaning. The field `{words}` is the words as a JSON list."""


# -- metrics of evaluate_metrics -----------------------------------------------------------------------------------


def load_metric(name: str) -> tuple[Any, ModuleType]:
    """Metric `name` of `evaluate_metrics` and the module `evaluate` loaded its script as, for the helpers that the
    metric defines (judge adapters, word splitting, label sets), so that callers read data exactly as it does."""
    import evaluate

    from evaluate_metrics import metric_path

    metric = evaluate.load(metric_path(name), keep_in_memory=True)
    return metric, importlib.import_module(type(metric).__module__)


# -- append-only JSON lines ----------------------------------------------------------------------------------------


def read_json_lines(path: str | os.PathLike, what: str) -> list[dict[str, Any]]:
    """The records of an append-only JSON-lines file (none if it does not exist), after cutting a partial last line
    that a killed writer may have left. `what` names the file's kind in the error about a line that is not JSON."""
    path = Path(path)
    if not path.exists():
        return []
    complete = read_complete_lines(path)
    records = []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}:{number} is not a line of a {what} ({error.msg}); remove that line, or the file."
            ) from error
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is not a line of a {what} (not a JSON object).")
        records.append(record)
    return records


def append_json_line(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Appends `record` as one line with one `write` to a file opened with O_APPEND: lines of concurrent writers do
    not interleave, and a killed writer leaves at most a partial last line, which `read_json_lines` cuts."""
    data = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(descriptor, data) :]
    finally:
        os.close(descriptor)


# -- the judge -----------------------------------------------------------------------------------------------------


@dataclass
class JudgeCost:
    """What a judge cost: `requests` sent (prompts not in the cache), `cache_hits`, and the tokens of the replies
    whose `usage` the judge reported (`usage_reported` of the requests; the token counts stay None until one is)."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_reported: int = 0

    def add_request(self, usage: dict[str, Any] | None) -> None:
        self.requests += 1
        if usage is None:
            return
        self.usage_reported += 1
        self.prompt_tokens = (self.prompt_tokens or 0) + int(usage.get("prompt_tokens") or 0)
        self.completion_tokens = (self.completion_tokens or 0) + int(usage.get("completion_tokens") or 0)

    def since(self, earlier: JudgeCost) -> JudgeCost:
        """The cost incurred after `earlier` (a copy taken before), for a judge shared by several runs."""

        def tokens(now: int | None, before: int | None) -> int | None:
            return None if now is None else now - (before or 0)

        return JudgeCost(
            requests=self.requests - earlier.requests,
            cache_hits=self.cache_hits - earlier.cache_hits,
            prompt_tokens=tokens(self.prompt_tokens, earlier.prompt_tokens),
            completion_tokens=tokens(self.completion_tokens, earlier.completion_tokens),
            usage_reported=self.usage_reported - earlier.usage_reported,
        )

    def describe(self) -> str:
        """One line for a report: requests, cache hits and tokens ("not reported" when the judge gave none)."""
        if not self.usage_reported:
            tokens = "tokens not reported"
        else:
            tokens = f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"
            if self.usage_reported != self.requests:
                tokens += f" (reported for {self.usage_reported} of {self.requests} requests)"
        return f"{self.requests} request(s), {self.cache_hits} cache hit(s), {tokens}"


class JudgeError(RuntimeError):
    """A judge could not answer (unreachable, an HTTP error, a local model that failed); the replies received before
    are kept in the cache."""


class Judge:
    """A judge LLM as a callable, prompt -> reply, that answers from its cache whenever it can and counts its cost.

    `ask` is the judge itself (prompt -> reply). `identity` names it in the cache key, so that the replies of another
    judge, model or reply length are never reused for it: `load_judge` derives it from what it loads; give your own
    for a callable whose behaviour can change. `cache_path` is the JSON-lines cache (None: no cache), which may be
    shared by several judges. Use the judge as a context manager, or call `close`, to stop a judge process.
    """

    def __init__(
        self,
        ask: Callable[[str], str],
        identity: str,
        cache_path: str | os.PathLike | None = None,
        *,
        on_close: Callable[[], None] | None = None,
    ):
        self.ask = ask
        self.identity = identity
        self.cache_path = None if cache_path is None else Path(cache_path)
        self.cost = JudgeCost()
        self._replies = {}
        if self.cache_path is not None:
            self._replies = {
                record["key"]: record["reply"]
                for record in read_json_lines(self.cache_path, "judge cache")
                if isinstance(record.get("key"), str) and isinstance(record.get("reply"), str)
            }
        self._usage: dict[str, Any] | None = None
        self._on_close = on_close

    def key(self, prompt: str) -> str:
        """The cache key of `prompt` for this judge."""
        return hashlib.sha256(f"{self.identity}\0{prompt}".encode()).hexdigest()

    def __call__(self, prompt: str) -> str:
        key = self.key(prompt)
        if key in self._replies:
            self.cost.cache_hits += 1
            return self._replies[key]
        self._usage = None
        try:
            reply = self.ask(prompt)
        except Exception as error:
            raise JudgeError(f"The judge {self.identity} failed: {error}") from error
        if not isinstance(reply, str):
            raise TypeError(
                f"The judge {self.identity} returned {type(reply).__name__} {reply!r:.100}; it must return the "
                "reply text."
            )
        usage, self._usage = self._usage, None
        self.cost.add_request(usage)
        self._replies[key] = reply
        if self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            record = {"key": key, "judge": self.identity, "prompt": prompt, "reply": reply, "usage": usage}
            append_json_line(self.cache_path, record)
        return reply

    def record_usage(self, usage: dict[str, Any] | None) -> None:
        """Takes the `usage` of the reply in flight (an API adapter's `on_usage`), to count its tokens."""
        self._usage = usage

    def summary(self) -> dict[str, Any]:
        """The judge and its cost so far, for a report."""
        cache = None if self.cache_path is None else str(self.cache_path)
        return {"judge": self.identity, "cache": cache, **dataclasses.asdict(self.cost)}

    def close(self) -> None:
        """Stops the judge's process, if it has one; the judge cannot be asked again afterwards."""
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_judge(
    judge: Callable[[str], str] | str | Any,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    cache_path: str | os.PathLike | None = None,
    identity: str | None = None,
) -> Judge:
    """`judge` behind one `Judge`, with its replies cached in `cache_path` (None: no cache).

    `judge` is a callable (prompt -> reply), a transformers text-generation pipeline, a local model path or Hub id
    (served from a spawned process of its own, started on the first request), or the base URL of an OpenAI-compatible
    API (`http(s)://...`), called with `model`, `api_key` (sent as a bearer token) and `timeout`. Every kind decodes
    greedily, at most `max_new_tokens` tokens. `identity` overrides the name the cache is keyed by (by default the
    URL and model, the model path or id, or the callable's qualified name, with `max_new_tokens`).
    """
    _, reasoning = load_metric("emer_reasoning")
    if reasoning.is_endpoint_url(judge):
        if not model:
            raise ValueError(
                f"The judge {judge} is an API URL: name the model to ask (--judge-model, or model=)."
            )
        made: Judge
        ask = reasoning.build_judge(
            judge,
            model=model,
            api_key=api_key,
            timeout=timeout,
            max_new_tokens=max_new_tokens,
            on_usage=lambda usage: made.record_usage(usage),
        )
        name = identity or f"{judge.rstrip('/')} model={model} max_tokens={max_new_tokens}"
        made = Judge(ask, name, cache_path)
        return made
    if model is not None:
        raise ValueError(
            f"model={model!r} (--judge-model) names the model of an API, but the judge {judge!r} is not an "
            "http(s) URL."
        )
    if isinstance(judge, str):
        judge = local_model(judge)
        spawned = _SpawnedJudge(judge, max_new_tokens)
        name = identity or f"transformers:{judge} max_new_tokens={max_new_tokens}"
        return Judge(spawned, name, cache_path, on_close=spawned.close)
    ask = reasoning.build_judge(judge, max_new_tokens=max_new_tokens)
    if identity is None:
        pipeline_model = getattr(getattr(judge, "model", None), "name_or_path", None)
        if ask is judge:
            module = getattr(judge, "__module__", type(judge).__module__)
            qualname = getattr(judge, "__qualname__", type(judge).__qualname__)
            identity = f"callable:{module}.{qualname}"
        else:
            identity = f"transformers:{pipeline_model} max_new_tokens={max_new_tokens}"
    return Judge(ask, identity, cache_path)


def local_model(judge: str) -> str:
    """A local judge model as it will be loaded: an existing path made absolute, else a Hub id; a path that does not
    exist is an error, raised before anything is loaded."""
    where = os.path.abspath(os.path.expanduser(judge))
    if os.path.exists(where):
        return where
    if judge.startswith((".", "/", "~")) or judge.count("/") > 1:
        raise FileNotFoundError(
            f"The judge model {judge} is neither a folder nor a Hub id (owner/name): give its folder, a Hub id, or "
            "the URL of an OpenAI-compatible API."
        )
    return judge


class _SpawnedJudge:
    """A local transformers model answering as a judge from a process of its own, started on the first request."""

    def __init__(self, model: str, max_new_tokens: int):
        self.model = model
        self.max_new_tokens = max_new_tokens
        self._process = None
        self._connection = None

    def __call__(self, prompt: str) -> str:
        if self._process is None:
            self._start()
        self._connection.send(prompt)
        kind, value = self._receive()
        if kind == "error":
            raise RuntimeError(f"in its own process: {value}")
        return value

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_judge,
            args=(self.model, self.max_new_tokens, child),
            name="omni-emotion-judge",
            daemon=True,
        )
        self._process.start()
        child.close()

    def _receive(self) -> tuple[str, str]:
        while not self._connection.poll(0.5):
            if not self._process.is_alive():
                raise RuntimeError(
                    f"The process serving the judge {self.model} ended (exit code {self._process.exitcode}) "
                    "before replying; out of memory?"
                )
        return self._connection.recv()

    def close(self) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            with contextlib.suppress(OSError):  # the process is ending anyway
                self._connection.send(None)
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
        self._connection.close()
        self._process = self._connection = None


def _serve_judge(model: str, max_new_tokens: int, connection: Any) -> None:
    """The judge process: loads `model` with the metric's adapter, then answers prompts until it receives None."""
    try:
        _, reasoning = load_metric("emer_reasoning")
        ask = reasoning.build_judge(model, max_new_tokens=max_new_tokens)
    except Exception:
        connection.send(("error", f"could not load it:\n{traceback.format_exc()}"))
        return
    try:
        while (prompt := connection.recv()) is not None:
            try:
                connection.send(("reply", ask(prompt)))
            except Exception as error:
                connection.send(("error", f"{type(error).__name__}: {error}"))
    except EOFError:  # the evaluating process went away
        return


# -- EMER-OV: synonym groups ---------------------------------------------------------------------------------------


def grouping_prompt(words: Sequence[str]) -> str:
    """The question that asks a judge to group one sample's emotion words (`GROUPING_TEMPLATE`)."""
    return GROUPING_TEMPLATE.format(words=json.dumps(list(words), ensure_ascii=False))


def parse_synonym_groups(reply: str) -> list[list[str]] | None:
    """The synonym groups of a judge's reply, lower-cased, or None when the reply holds no list of groups.

    The first bracketed list of lists of strings in the reply is taken, whether JSON or a Python literal, bare, in a
    code fence or after some words. A flat list of words, or anything else, is None: which words it meant to group
    cannot be known, and guessing would bias the score.
    """
    for start in (index for index, char in enumerate(reply) if char == "["):
        chunk = _bracketed(reply, start)
        if chunk is None:
            continue
        value = _literal(chunk)
        if not isinstance(value, list) or not value:
            continue
        if all(isinstance(group, list) and all(isinstance(word, str) for word in group) for group in value):
            groups = [[word.strip().lower() for word in group if word.strip()] for group in value]
            groups = [group for group in groups if group]
            if groups:
                return groups
    return None


def _bracketed(text: str, start: int) -> str | None:
    """The balanced `[...]` that opens at `start`, skipping brackets inside quoted strings; None if it never closes."""
    depth, quote, escaped = 0, None, False
    for index in range(start, len(text)):
        char = text[index]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    return None


def _literal(chunk: str) -> Any:
    try:
        return json.loads(chunk)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(chunk)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


__all__ = [
    "CACHE_FILE",
    "GROUPING_TEMPLATE",
    "Judge",
    "JudgeCost",
    "JudgeError",
    "append_json_line",
    "grouping_prompt",
    "load_judge",
    "load_metric",
    "local_model",
    "parse_synonym_groups",
    "read_json_lines",
]
