"""Omni-Emotion's cost next to plain LLaVA-OneVision: LLM tokens per clip, CPU forward, GPU bf16 prefill/generate.

    python benchmarks/bench_model.py                 # token counts + CPU forward of a small config
    python benchmarks/bench_model.py --device cuda   # + bf16 prefill and 64-token generation of the 7B preset

Weights are random (nothing is downloaded); timings of random weights equal those of trained ones. The last line is
the ratio ours / LLaVA-OneVision of the slowest-scale measurement that ran (GPU prefill with --device cuda).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

from modeling_omni_emotion import OmniEmotionConfig, OmniEmotionForConditionalGeneration
from modeling_omni_emotion.configuration_omni_emotion import FUSION_MODES

FIXED_AUDIO_BLOCK = 500  # what a model that always feeds a full 30 s Whisper window spends on audio


def token_table(frames: int = 8) -> None:
    print(f"LLM tokens per {frames}-frame clip (7B preset sizes)")
    llava = OmniEmotionConfig.from_preset("omni-emotion-7b")
    plain = frames * llava.frame_tokens_per_frame + 1
    print(f"  plain LLaVA-OneVision video:               {plain:5d}")
    for fusion in FUSION_MODES:
        config = OmniEmotionConfig.from_preset("omni-emotion-7b", fusion=fusion)
        video = config.num_video_tokens(frames)
        for seconds in (3, 10, 30):
            ours = video + config.num_audio_tokens(seconds * 100)
            fixed = video + FIXED_AUDIO_BLOCK
            print(
                f"  {fusion:22s} audio {seconds:2d} s: {ours:5d} (video {video}, audio {ours - video:3d}) "
                f"| with a fixed 500-token audio block: {fixed:5d}"
            )


def _timed(fn, repeats: int, synchronize) -> float:
    fn()  # warm-up
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


def clip_batch(
    config: OmniEmotionConfig, frames: int, audio_seconds: float, device, dtype, prompt_tokens: int = 32
):
    """Inputs of one clip for ours and, without face and audio, for LLaVA-OneVision on the same frames."""
    generator = torch.Generator().manual_seed(0)
    size, face_size = config.vision_config.image_size, config.face_config.image_size
    pixels = torch.randn(1, frames, 3, size, size, generator=generator).to(device, dtype)
    n_audio = config.num_audio_tokens(round(audio_seconds * 100))
    text = torch.randint(10, 1000, (prompt_tokens,), generator=generator).tolist()
    video = [config.video_token_id] * config.num_video_tokens(frames)
    ours = {
        "input_ids": torch.tensor([video + [config.audio_token_id] * n_audio + text], device=device),
        "pixel_values_videos": pixels,
        "face_pixel_values": torch.randn(1, frames, 3, face_size, face_size, generator=generator).to(
            device, dtype
        ),
        "face_mask": torch.ones(1, frames, dtype=torch.bool, device=device),
        "input_features": torch.randn(1, 1, 128, 3000, generator=generator).to(device, dtype),
        "audio_feature_lengths": torch.tensor([round(audio_seconds * 100)], device=device),
    }
    llava_video = [config.video_token_id] * (frames * config.frame_tokens_per_frame + 1)
    llava = {"input_ids": torch.tensor([llava_video + text], device=device), "pixel_values_videos": pixels}
    return ours, llava


def llava_config_of(config: OmniEmotionConfig) -> LlavaOnevisionConfig:
    return LlavaOnevisionConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_id,
        video_token_index=config.video_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
    )


def cpu_forward(repeats: int) -> float:
    small = {
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
                          "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 112, "patch_size": 14,
                          "vision_use_head": False},
        "text_config": {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2048},
        "audio_config": {"model_type": "whisper", "num_mel_bins": 128, "d_model": 64, "encoder_layers": 2,
                         "encoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_layers": 1},
        "face_config": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "hidden_size": 32},
        "image_token_index": 2000, "video_token_index": 2001, "audio_token_id": 2002,
    }  # fmt: skip
    torch.manual_seed(0)
    config = OmniEmotionConfig(**small)
    ours_model = OmniEmotionForConditionalGeneration(config).eval()
    llava_model = LlavaOnevisionForConditionalGeneration(llava_config_of(config)).eval()
    ours_inputs, llava_inputs = clip_batch(config, 8, 10.0, "cpu", torch.float32)
    with torch.no_grad():
        ours = _timed(lambda: ours_model(**ours_inputs), repeats, lambda: None)
        llava = _timed(lambda: llava_model(**llava_inputs), repeats, lambda: None)
    print(
        f"CPU forward, small config, 8 frames + 10 s audio: ours {ours * 1e3:.1f} ms "
        f"({ours_inputs['input_ids'].shape[1]} tokens) vs LLaVA-OneVision {llava * 1e3:.1f} ms "
        f"({llava_inputs['input_ids'].shape[1]} tokens)"
    )
    return ours / llava


def gpu_7b(repeats: int, new_tokens: int) -> float:
    config = OmniEmotionConfig.from_preset("omni-emotion-7b", attn_implementation="sdpa")
    device, dtype = torch.device("cuda"), torch.bfloat16
    ours_inputs, llava_inputs = clip_batch(config, 8, 10.0, device, dtype)
    sync = torch.cuda.synchronize
    results = {}
    for name, build, inputs in (
        ("ours", lambda: OmniEmotionForConditionalGeneration(config), ours_inputs),
        (
            "LLaVA-OneVision-7B",
            lambda: LlavaOnevisionForConditionalGeneration(llava_config_of(config)),
            llava_inputs,
        ),
    ):
        torch.manual_seed(0)
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        with device:
            model = build().eval()
        torch.set_default_dtype(default_dtype)
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            prefill = _timed(lambda m=model, i=inputs: m(**i, logits_to_keep=1), repeats, sync)
            generate = _timed(
                lambda m=model, i=inputs: m.generate(
                    **i, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
                ),
                1,
                sync,
            )
        peak = torch.cuda.max_memory_allocated() / 2**30
        results[name] = prefill
        print(
            f"GPU bf16 {name}: {inputs['input_ids'].shape[1]} prompt tokens, prefill {prefill * 1e3:.1f} ms, "
            f"{new_tokens}-token generation {generate:.2f} s ({new_tokens / generate:.1f} tok/s), "
            f"peak {peak:.1f} GiB"
        )
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return results["ours"] / results["LLaVA-OneVision-7B"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    token_table()
    ratio = cpu_forward(args.repeats)
    label = "CPU forward ours/LLaVA-OneVision"
    if args.device == "cuda":
        ratio = gpu_7b(args.repeats, args.new_tokens)
        label = "GPU bf16 7B prefill ours/LLaVA-OneVision"
    print(f"{label}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
