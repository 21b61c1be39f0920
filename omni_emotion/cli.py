"""The `omni-emotion` command line."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

from modeling_omni_emotion import PRESETS, OmniEmotionConfig, OmniEmotionForConditionalGeneration
from modeling_omni_emotion.configuration_omni_emotion import FUSION_MODES


def _count_preset_parameters(preset: str) -> int:
    with torch.device("meta"):
        model = OmniEmotionForConditionalGeneration(OmniEmotionConfig.from_preset(preset))
    return sum(parameter.numel() for parameter in model.parameters())


def _smoke(args: argparse.Namespace) -> None:
    """Builds a small random model, runs one forward pass and a short greedy generation on a random clip."""
    torch.manual_seed(args.seed)
    config = OmniEmotionConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 112, "patch_size": 14,
                       "vision_use_head": False},
        text_config={"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256},
        audio_config={"model_type": "whisper", "num_mel_bins": 128, "d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
                      "encoder_ffn_dim": 64, "decoder_layers": 1},
        face_config={"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "hidden_size": 32},
        image_token_index=250, video_token_index=251, audio_token_id=252, fusion=args.fusion,
    )  # fmt: skip
    model = OmniEmotionForConditionalGeneration(config).eval()
    frames = config.num_frames
    model_inputs = {
        "pixel_values_videos": torch.randn(1, frames, 3, 112, 112),
        "face_pixel_values": torch.randn(1, frames, 3, 224, 224),
        "face_mask": torch.ones(1, frames, dtype=torch.bool),
        "input_features": torch.randn(1, 1, 128, 3000),
        "audio_feature_lengths": torch.tensor([round(args.audio_seconds * 100)]),
    }
    audio_tokens = config.num_audio_tokens(round(args.audio_seconds * 100))
    text = (
        [config.video_token_id] * config.num_video_tokens()
        + [config.audio_token_id] * audio_tokens
        + [1, 2, 3]
    )
    input_ids = torch.tensor([text])
    start = time.perf_counter()
    with torch.no_grad():
        generated = model.generate(input_ids=input_ids, **model_inputs, max_new_tokens=8, do_sample=False)
    elapsed = time.perf_counter() - start
    print(f"fusion={config.fusion} prompt_tokens={input_ids.shape[1]} (video {config.num_video_tokens()}, "
          f"audio {audio_tokens}) generated={generated.shape[1] - input_ids.shape[1]} in {elapsed:.2f}s")  # fmt: skip
    for preset in PRESETS:
        print(f"{preset}: {_count_preset_parameters(preset) / 1e9:.3f}B parameters")


def _assemble(args: argparse.Namespace) -> None:
    """Builds a model and processor from pretrained parts and saves both (and pushes them, if asked)."""
    from omni_emotion.assembly import assemble

    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if not isinstance(overrides, dict):
        raise SystemExit(f"--config-overrides must be a JSON object, got {args.config_overrides!r}.")
    model, processor = assemble(
        args.llava_onevision,
        None if args.whisper == "none" else args.whisper,
        None if args.facexformer == "none" else args.facexformer,
        dtype=getattr(torch, args.dtype),
        fusion=args.fusion,
        num_frames=args.num_frames,
        **overrides,
    )
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"Saved the model and processor to {args.output}")
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub, private=args.private)
        processor.push_to_hub(args.push_to_hub, private=args.private)
        print(f"Pushed to {args.push_to_hub}")


def _train(args: argparse.Namespace) -> None:
    """One training phase from a recipe; every argument after the command goes to the training parser."""
    from omni_emotion.training import train

    train(args.recipe_arguments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omni-emotion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    smoke = commands.add_parser("smoke", help="run a small random model end to end (no downloads)")
    smoke.add_argument(
        "--fusion", default="clip_concat", choices=["clip_concat", "frame_concat", "frame_cross_attention"]
    )
    smoke.add_argument("--audio-seconds", type=float, default=5.0)
    smoke.add_argument("--seed", type=int, default=0)
    smoke.set_defaults(handler=_smoke)

    assemble = commands.add_parser(
        "assemble", help="build a model + processor from LLaVA-OneVision, Whisper and FaceXFormer checkpoints"
    )
    assemble.add_argument("--llava-onevision", default="llava-hf/llava-onevision-qwen2-7b-ov-hf")
    assemble.add_argument("--whisper", default="openai/whisper-large-v3", help="'none': random audio tower")
    assemble.add_argument(
        "--facexformer", default="kartiknarayan/facexformer", help="'none': random face encoder"
    )
    assemble.add_argument("--fusion", default="clip_concat", choices=list(FUSION_MODES))
    assemble.add_argument("--num-frames", type=int, default=8)
    assemble.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    assemble.add_argument("--config-overrides", help="more OmniEmotionConfig fields, as a JSON object")
    assemble.add_argument("--output", required=True, help="folder to save the model and processor in")
    assemble.add_argument("--push-to-hub", metavar="REPO_ID", help="also push both to this Hub repository")
    assemble.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    assemble.set_defaults(handler=_assemble)

    train = commands.add_parser(
        "train",
        help="run one training phase: omni-emotion train RECIPE.yaml [--field value ...] (see recipes/)",
        add_help=False,
    )
    train.add_argument("recipe_arguments", nargs=argparse.REMAINDER)
    train.set_defaults(handler=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
