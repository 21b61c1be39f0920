"""A video file in, generated text out: processor and model together, as a user of the Hub would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.assembly import config_token_ids
from omni_emotion.synthetic import media as media_factory
from omni_emotion.synthetic.tiny import tiny_config, tiny_processor


def matched_pair(tokenizer, fusion: str = "clip_concat"):
    """A tiny model and a processor whose frame size, frame count, pooling and token ids agree."""
    config = tiny_config(fusion=fusion)
    processor = tiny_processor(tokenizer, config)
    text_config = config.text_config.to_dict() | {"vocab_size": len(processor.tokenizer)}
    config = tiny_config(
        fusion=fusion,
        text_config=text_config,
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
        **config_token_ids(processor),
    )
    torch.manual_seed(0)
    return OmniEmotionForConditionalGeneration(config).eval(), processor


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media_factory.write_clip(tmp_path_factory.mktemp("media") / "face.mp4", seconds=2)


def conversation(clip, answer: str | None = None) -> list[dict]:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video", "path": str(clip)},
                {"type": "text", "text": "How does the person feel?"},
            ],
        }
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_cross_attention"])
def test_generate_from_a_video_file(tiny_tokenizer, clip, fusion):
    model, processor = matched_pair(tiny_tokenizer, fusion)
    inputs = processor.apply_chat_template(
        conversation(clip), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["face_mask"].all(), "the astronaut's face is found in every frame"
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new_tokens = generated[:, inputs["input_ids"].shape[1] :]
    assert new_tokens.shape == (1, 6)
    assert isinstance(processor.batch_decode(new_tokens, skip_special_tokens=True)[0], str)


def test_a_training_step_on_a_processed_conversation(tiny_tokenizer, clip):
    model, processor = matched_pair(tiny_tokenizer)
    model.train()
    batch = processor.apply_chat_template(
        [conversation(clip, "Happy and relaxed."), conversation(clip, "Calm.")],
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        return_labels=True,
    )
    # 1e-2 overshoots on this tiny random model (the loss oscillates); 3e-3 falls step after step.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_a_saved_checkpoint_runs_end_to_end_with_remote_code_only(tiny_tokenizer, clip, tmp_path):
    model, processor = matched_pair(tiny_tokenizer, "frame_concat")
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    inputs = processor.apply_chat_template(
        conversation(clip), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        checkpoint = {str(checkpoint)!r}
        processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True).eval()
        assert not any(name.split(".")[0] in ("processing", "modeling_omni_emotion") for name in sys.modules)
        messages = [{{"role": "user", "content": [{{"type": "video", "path": {str(clip)!r}}},
                                                  {{"type": "text", "text": "How does the person feel?"}}]}}]
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert torch.equal(generated, torch.load({str(tmp_path / "expected.pt")!r}))
        print("end-to-end-ok", type(processor).__module__, type(model).__module__)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "end-to-end-ok transformers_modules." in result.stdout


def test_every_training_phase_prompt_feeds_the_processor_and_the_model(tiny_tokenizer, clip):
    """The datasets' phase prompts (TRL conversations) -> processor with labels -> a finite loss."""
    import numpy as np
    from datasets import Dataset

    from dataset_scripts import (
        audio_alignment_example,
        build_prompts,
        face_alignment_example,
        instruction_example,
        parse_emotion_answer,
    )

    tone = np.sin(np.linspace(0, 440 * 2 * np.pi, 16_000)).astype(np.float32)
    phase_1 = build_prompts(
        Dataset.from_list([{"audio": {"array": tone, "sampling_rate": 16_000}, "sentence": "Hello there."}]),
        audio_alignment_example,
        task="asr",
    )
    clip_row = {"id": "c1", "source": "DFEW", "video": str(clip), "label": "happy"}
    phase_2 = build_prompts(Dataset.from_list([clip_row]), face_alignment_example)
    phase_3 = build_prompts(
        Dataset.from_list([clip_row | {"open_vocabulary": ["happy", "relaxed"], "reasoning": "She smiles."}]),
        instruction_example,
    )
    conversations = [phase_1[0]["messages"], phase_2[0]["messages"], phase_3[0]["messages"]]

    model, processor = matched_pair(tiny_tokenizer)
    batch = processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_tensors="pt", return_labels=True
    )
    assert batch["audio_feature_lengths"].tolist()[0] == 100  # phase 1's one second of audio
    assert not batch["face_mask"][0].any() and batch["face_mask"][1:].any()
    assert torch.isfinite(model(**batch).loss)
    answer = processor.decode(batch["labels"][2][batch["labels"][2] != -100], skip_special_tokens=True)
    assert parse_emotion_answer(answer) == ["happy", "relaxed"]
