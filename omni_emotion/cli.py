"""The `omni-emotion` command line.

Building the parser imports nothing heavy: torch, transformers and the model are imported by the handler of the
command that runs, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from omni_emotion import __version__

# The model's fusion modes (`modeling_omni_emotion.configuration_omni_emotion.FUSION_MODES`), spelled out so that
# building the parser does not import transformers; a test keeps the two equal.
FUSION_CHOICES = ("clip_concat", "frame_concat", "frame_cross_attention")
DTYPE_CHOICES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, what adds its arguments and what runs it (a nonzero return is the exit
    status).

    `passes_through`: the name of the argument that receives every word after the command, unparsed (`--help`
    included), for a command that parses them itself."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    passes_through: str | None = None

    @classmethod
    def from_module(cls, help: str, module: str) -> Command:
        """A command whose `add_arguments(parser)` and `main_from_args(args)` live in `module`, which is imported
        only when that command is used."""
        return cls(
            help,
            add_arguments=lambda parser: importlib.import_module(module).add_arguments(parser),
            run=lambda args: importlib.import_module(module).main_from_args(args),
        )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"num_frames\": 16}}', got {text!r}"
        )
    return value


def _add_smoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fusion", default="clip_concat", choices=FUSION_CHOICES, help="how face and frame tokens are fused"
    )
    parser.add_argument(
        "--audio-seconds", type=float, default=5.0, help="seconds of (random) audio in the clip (default: 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")


def _smoke(args: argparse.Namespace) -> None:
    """Builds a small random model, runs a short greedy generation on a random clip, counts the presets."""
    import time

    import torch

    from modeling_omni_emotion import PRESETS, OmniEmotionConfig, OmniEmotionForConditionalGeneration

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
        with torch.device("meta"):
            preset_model = OmniEmotionForConditionalGeneration(OmniEmotionConfig.from_preset(preset))
        count = sum(parameter.numel() for parameter in preset_model.parameters())
        print(f"{preset}: {count / 1e9:.3f}B parameters")


def _add_assemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llava-onevision",
        default="llava-hf/llava-onevision-qwen2-7b-ov-hf",
        metavar="ID_OR_FOLDER",
        help="LLaVA-OneVision checkpoint (llava-hf layout): vision tower, projector, LLM, tokenizer "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--whisper",
        default="openai/whisper-large-v3",
        metavar="ID_OR_FOLDER",
        help="Whisper checkpoint whose encoder becomes the audio tower; 'none': a random one "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--facexformer",
        default="kartiknarayan/facexformer",
        metavar="ID_OR_FILE",
        help="FaceXFormer .pt file, or Hub repository holding ckpts/model.pt; 'none': a random face encoder "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--fusion", default="clip_concat", choices=FUSION_CHOICES, help="how face and frame tokens are fused"
    )
    parser.add_argument("--num-frames", type=int, default=8, help="frames sampled per clip (default: 8)")
    parser.add_argument(
        "--dtype", default="bfloat16", choices=DTYPE_CHOICES, help="dtype of the saved weights"
    )
    parser.add_argument(
        "--config-overrides",
        type=_json_object,
        default={},
        metavar="JSON",
        help="more OmniEmotionConfig fields, as a JSON object, e.g. '{\"use_face_tower\": false}'",
    )
    parser.add_argument("--output", required=True, help="folder to save the model and processor in")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also push both to this Hub repository")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")


def _assemble(args: argparse.Namespace) -> None:
    """Builds a model and processor from pretrained parts and saves both (and pushes them, if asked)."""
    given_twice = sorted({"fusion", "num_frames"} & set(args.config_overrides))
    if given_twice:
        raise SystemExit(
            f"omni-emotion assemble: error: give {', '.join(given_twice)} with its own flag "
            "(--fusion, --num-frames), not in --config-overrides."
        )
    from omni_emotion.pretrained_sources import CheckpointUnavailableError, check_assembly_sources

    sources = (
        args.llava_onevision,
        None if args.whisper == "none" else args.whisper,
        None if args.facexformer == "none" else args.facexformer,
    )
    try:
        # Before torch and transformers are imported: a mistyped path or an unreachable Hub answers at once.
        check_assembly_sources(*sources)
        import torch

        from omni_emotion.assembly import assemble

        model, processor = assemble(
            *sources,
            dtype=getattr(torch, args.dtype),
            fusion=args.fusion,
            num_frames=args.num_frames,
            **args.config_overrides,
        )
    except CheckpointUnavailableError as error:
        raise SystemExit(f"omni-emotion assemble: error: {error}") from None
    from omni_emotion.pipeline import save_pipeline_code

    save_pipeline_code(args.output, model.config)  # before the model, whose config then names the pipeline
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"Saved the model, the processor and the video-emotion-analysis pipeline to {args.output}")
    if args.push_to_hub:
        from huggingface_hub import HfApi

        # The whole folder, so that the pipeline's code travels with the model and the processor.
        api = HfApi()
        api.create_repo(args.push_to_hub, private=args.private, exist_ok=True)
        api.upload_folder(repo_id=args.push_to_hub, folder_path=args.output)
        print(f"Pushed to {args.push_to_hub}")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recipe_arguments",
        nargs=argparse.REMAINDER,
        help="RECIPE.yaml, then --field value overrides (omni-emotion train --help lists the fields)",
    )


def _train(args: argparse.Namespace) -> None:
    """One training phase from a recipe; every argument after the command goes to the training parser."""
    from omni_emotion.training import train

    train(args.recipe_arguments)


COMMANDS: dict[str, Command] = {
    "demo": Command.from_module(
        "the whole job on generated clips with a tiny model trained on the spot (no download, about 2 min on CPU)",
        "omni_emotion.demo",
    ),
    "smoke": Command("run a small random model end to end (no downloads)", _add_smoke_arguments, _smoke),
    "assemble": Command(
        "build a model + processor from LLaVA-OneVision, Whisper and FaceXFormer checkpoints",
        _add_assemble_arguments,
        _assemble,
    ),
    # TRL's parser reads the recipe and answers --help itself.
    "train": Command(
        "run one training phase: omni-emotion train RECIPE.yaml [--field value ...] (see recipes/)",
        _add_train_arguments,
        _train,
        passes_through="recipe_arguments",
    ),
    "analyze": Command.from_module(
        "emotions and reasoning for videos: omni-emotion analyze PATH... --model ID|DIR [--out results.jsonl]",
        "omni_emotion.analyze",
    ),
    "evaluate": Command.from_module(
        "the paper's benchmarks: omni-emotion evaluate --benchmark dfew|mafw|emer-ov|emer --data ROOT --model ID|DIR",
        "omni_emotion.evaluate",
    ),
    "curate": Command.from_module(
        "SRE/HRE-style annotations from raw clips: omni-emotion curate CONFIG.yaml --output OUT_DIR",
        "curation.cli",
    ),
    "review": Command.from_module(
        "the HRE review app: omni-emotion review DATA_DIR (a curate output) [--reviewer NAME]; --export OUT",
        "curation.review",
    ),
}
"""The subcommands, in the order `--help` lists them. One more, whose code lives in its own module:
`COMMANDS["name"] = Command.from_module("one-line help", "omni_emotion.name")`."""


def build_parser(with_arguments: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; `with_arguments` names the only subcommands whose arguments are added (default: all)."""
    selected = set(COMMANDS if with_arguments is None else with_arguments)
    parser = argparse.ArgumentParser(
        prog="omni-emotion",
        description="Build, train and try Omni-Emotion, a multimodal emotion recognition and reasoning model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="one of these; omni-emotion COMMAND --help lists its options",
    )
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(
            name, help=command.help, description=command.help, add_help=command.passes_through is None
        )
        if name in selected:
            command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that is not an option names the command: only its arguments (and imports) are needed.
    position = next((index for index, word in enumerate(argv) if not word.startswith("-")), None)
    command = COMMANDS.get(argv[position]) if position is not None else None
    parser = build_parser(with_arguments=[argv[position]] if command is not None else [])
    if command is not None and command.passes_through is not None:
        args = parser.parse_args(argv[: position + 1])
        setattr(args, command.passes_through, argv[position + 1 :])
    else:
        args = parser.parse_args(argv)
    status = args.run(args)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
