"""GPU checks (run on a CUDA machine; skipped elsewhere): bf16 forward/generate with SDPA and real training steps."""

from __future__ import annotations

import pytest
import torch
from tiny_models import clip_inputs

from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.synthetic.tiny import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _to(inputs: dict, device: str, dtype: torch.dtype) -> dict:
    return {
        key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
        for key, value in inputs.items()
    }


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_concat", "frame_cross_attention"])
def test_bf16_forward_and_generate_on_gpu_match_fp32(fusion):
    torch.manual_seed(0)
    model = OmniEmotionForConditionalGeneration(tiny_config(fusion=fusion, attn_implementation="sdpa")).eval()
    inputs = clip_inputs(model)
    with torch.no_grad():
        reference = model(**inputs).logits
        model = model.to("cuda", torch.bfloat16)
        gpu_inputs = _to(inputs, "cuda", torch.bfloat16)
        logits = model(**gpu_inputs).logits
        generated = model.generate(**gpu_inputs, max_new_tokens=8, do_sample=False)
    assert logits.dtype == torch.bfloat16
    attended = inputs["attention_mask"].bool()  # left padding's logits are arbitrary
    error = (logits.float().cpu() - reference).abs()[attended]
    reference = reference[attended]
    print(f"{fusion}: bf16 vs fp32 max error {error.max():.3f}, mean {error.mean():.4f}, "
          f"logit scale {reference.abs().max():.2f}")  # fmt: skip
    # bf16 keeps ~3 significant digits: the error stays a small fraction of the logits' own scale.
    assert error.mean() < 0.02 * reference.abs().mean()
    assert error.max() < 0.1 * reference.abs().max()
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 8)


def test_a_few_bf16_training_steps_lower_the_loss_on_gpu():
    torch.manual_seed(0)
    model = OmniEmotionForConditionalGeneration(tiny_config(attn_implementation="sdpa")).to(
        "cuda", torch.bfloat16
    )
    model.activation_checkpointing_enable()
    model.train()
    inputs = _to(clip_inputs(model), "cuda", torch.bfloat16)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, -3:] = inputs["input_ids"][:, -3:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
