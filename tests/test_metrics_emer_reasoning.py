"""The emer_reasoning metric with each kind of judge: a callable, a local OpenAI-compatible API, a pipeline."""

from __future__ import annotations

import evaluate
import pytest
from chat_server import ChatCompletionsServer

from evaluate_metrics import metric_path

PREDICTIONS = ["He frowns and shouts, so he is angry.", "She sounds tired."]
REFERENCES = ["His frown and raised voice show anger.", "Her flat voice and slow speech show sadness."]


def scripted_judge(prompt: str) -> str:
    """Summaries name one emotion; clue and label scores depend on the explanation graded."""
    if "List the emotions" in prompt:
        return "sad, tired" if "tired" in prompt or "slow speech" in prompt else "angry"
    if "He frowns" in prompt or "Emotions to grade: angry" in prompt:
        return "Score: 9/10 - the same clues."
    return "4"


@pytest.fixture(scope="module")
def emer_reasoning():
    return evaluate.load(metric_path("emer_reasoning"), keep_in_memory=True)


def test_scores_are_the_first_number_of_each_reply(emer_reasoning):
    result = emer_reasoning.compute(predictions=PREDICTIONS, references=REFERENCES, judge=scripted_judge)
    assert result == {
        "clue_overlap": 6.5,
        "label_overlap": 6.5,
        "clue_overlap_scores": [9.0, 4.0],
        "label_overlap_scores": [9.0, 4.0],
        "reference_emotions": ["angry", "sad, tired"],
        "prediction_emotions": ["angry", "sad, tired"],
        "unreadable": [],
    }


@pytest.mark.parametrize("reply", ["I would rather not say.", "0", "85 out of 100", ""])
def test_unreadable_replies_are_reported_not_guessed(emer_reasoning, reply):
    def judge(prompt: str) -> str:
        return "happy" if "List the emotions" in prompt else (reply if "He frowns" in prompt else "7")

    result = emer_reasoning.compute(predictions=PREDICTIONS, references=REFERENCES, judge=judge)
    assert result["clue_overlap_scores"] == [None, 7.0]
    assert result["clue_overlap"] == 7.0
    assert result["unreadable"] == [{"index": 0, "score": "clue_overlap", "reply": reply}]


def test_caller_templates_replace_the_prompts(emer_reasoning):
    prompts = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return "5"

    emer_reasoning.compute(
        predictions=["p"],
        references=["r"],
        judge=judge,
        clue_template="CLUE {reference} | {prediction} {{json}}",
        summary_template="SUM {explanation}",
        label_template="LABEL {reference} | {prediction}",
    )
    assert prompts == ["CLUE r | p {json}", "SUM r", "SUM p", "LABEL 5 | 5"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"clue_template": "Rate {prediction}"}, ValueError, r"clue_template must use exactly the fields"),
        ({"summary_template": "{explanation} {extra}"}, ValueError, r"it uses \['explanation', 'extra'\]"),
        ({"judge": None}, ValueError, "pass a callable"),
        ({"judge": "http://127.0.0.1:9/v1"}, ValueError, "judge_model="),
        ({"judge": lambda prompt: 7}, TypeError, "judge returned int 7"),
    ],
)
def test_bad_judges_and_templates_are_refused(emer_reasoning, kwargs, error, message):
    with pytest.raises(error, match=message):
        emer_reasoning.compute(
            predictions=PREDICTIONS, references=REFERENCES, **{"judge": scripted_judge, **kwargs}
        )


def test_empty_reference_is_an_error_naming_the_sample(emer_reasoning):
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        emer_reasoning.compute(predictions=PREDICTIONS, references=[REFERENCES[0], " "], judge=scripted_judge)


@pytest.fixture
def chat_server():
    """Answers as `scripted_judge`, or with the status a test sets."""
    server = ChatCompletionsServer(scripted_judge)
    yield server
    server.close()


def test_openai_compatible_endpoint_is_called_greedily(emer_reasoning, chat_server):
    result = emer_reasoning.compute(
        predictions=PREDICTIONS,
        references=REFERENCES,
        judge=chat_server.url,
        judge_model="judge-7b",
        judge_api_key="secret",
        judge_timeout=10,
    )
    assert result["clue_overlap_scores"] == [9.0, 4.0]
    assert len(chat_server.requests) == 8  # 4 prompts per sample
    request = chat_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer secret"
    assert request["body"]["model"] == "judge-7b"
    assert request["body"]["temperature"] == 0


def test_endpoint_errors_name_the_status_and_the_sample(emer_reasoning, chat_server):
    chat_server.status = 503
    with pytest.raises(RuntimeError, match="answered HTTP 503") as raised:
        emer_reasoning.compute(
            predictions=PREDICTIONS, references=REFERENCES, judge=chat_server.url, judge_model="m"
        )
    assert "(while judging sample 0)" in raised.value.__notes__


def test_unreachable_endpoint_is_a_connection_error(emer_reasoning):
    with pytest.raises(ConnectionError, match="Could not get a reply from the judge"):
        emer_reasoning.compute(
            predictions=PREDICTIONS, references=REFERENCES, judge="http://127.0.0.1:9/v1", judge_model="m"
        )


@pytest.fixture
def sevens_model_dir(tiny_tokenizer, tmp_path):
    """A tiny Qwen2 whose greedy reply is always "7": constant hidden states, and a head that only sees "7"."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Zero attention and MLP outputs leave every position's state at the shared embedding of ones.
        for parameter in model.parameters():
            parameter.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight[tiny_tokenizer.convert_tokens_to_ids("7")] = 1.0
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_local_transformers_model_by_path(emer_reasoning, sevens_model_dir):
    result = emer_reasoning.compute(
        predictions=PREDICTIONS, references=REFERENCES, judge=str(sevens_model_dir), judge_max_new_tokens=1
    )
    assert result["clue_overlap_scores"] == [7.0, 7.0]
    assert result["label_overlap"] == 7.0
    assert result["reference_emotions"] == ["7", "7"]


def test_transformers_pipeline_object(emer_reasoning, sevens_model_dir):
    from transformers import pipeline

    judge = pipeline("text-generation", model=str(sevens_model_dir))
    result = emer_reasoning.compute(
        predictions=PREDICTIONS[:1], references=REFERENCES[:1], judge=judge, judge_max_new_tokens=1
    )
    assert result["clue_overlap"] == 7.0
