"""`omni-emotion demo`: the whole job on a fresh machine, with no download, in about two minutes on 2 CPU cores.

It makes a small emotion dataset of generated clips (a real face photo on a background whose colour, and a
speech-like voice whose pitch, rhythm and loudness, depend on the emotion), builds a tiny random-weight model,
trains it with the real phase recipes (`recipes/phase1_audio.yaml`, `phase2_face.yaml`, `phase3_instruct.yaml`:
their phases, data formats and trainable parts, scaled down in steps, batch and learning rate), analyzes a new clip,
and evaluates on a generated mini-benchmark in DFEW's and EMER-OV's layouts with the real metrics.

The model is a demo model: it learns a toy task (colour and prosody to four emotions) and is not an emotion
recognizer. The closing lines say how to run a real checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from omni_emotion.synthetic.media import SpeechLikeVoice

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
"""The phase recipes of a source checkout (the demo runs them as written, scaled down)."""


@dataclass(frozen=True)
class DemoEmotion:
    """How one emotion of the toy task looks and sounds, and what the training data say about it."""

    label: str
    """The DFEW class (the demo's clips use DFEW's layout and label ids)."""
    background: tuple[int, int, int]
    voice: SpeechLikeVoice
    words: tuple[str, ...]
    """The open-vocabulary labels of its annotations and of the EMER-OV reference."""
    reasonings: tuple[str, ...]
    caption: str
    """Phase 1's audio caption of its voice."""


DEMO_EMOTIONS: tuple[DemoEmotion, ...] = (
    DemoEmotion(
        "happy",
        (215, 175, 60),
        SpeechLikeVoice(pitch_hz=260.0, glide=0.5, syllables_per_second=5.0, loudness=0.35),
        ("happy", "excited"),
        (
            "The scene is warm and bright, and the voice is high, quick and rising: the person sounds cheerful.",
            "A lively voice that rises at the end and a sunny light suggest joy.",
        ),
        "A high, lively voice that rises.",
    ),
    DemoEmotion(
        "sad",
        (45, 65, 140),
        SpeechLikeVoice(pitch_hz=140.0, glide=-0.4, syllables_per_second=2.5, loudness=0.2),
        ("sad", "disappointed"),
        (
            "Cold blue light and a low, slow voice that falls away suggest sadness.",
            "The voice is quiet and sinks, and the scene is dark blue: the person feels low.",
        ),
        "A low, slow voice that falls.",
    ),
    DemoEmotion(
        "angry",
        (185, 45, 35),
        SpeechLikeVoice(pitch_hz=210.0, syllables_per_second=7.0, loudness=0.7, harmonics=14),
        ("angry", "annoyed"),
        (
            "A red scene and a loud, harsh, fast voice show anger.",
            "The voice is sharp and forceful and the light is red: the person is irritated.",
        ),
        "A loud, harsh and fast voice.",
    ),
    DemoEmotion(
        "neutral",
        (125, 125, 125),
        SpeechLikeVoice(pitch_hz=170.0, syllables_per_second=4.0, loudness=0.3),
        ("neutral", "calm"),
        (
            "A plain grey scene and an even, steady voice show no strong emotion.",
            "The voice keeps one pitch and pace and the light is grey: the person is composed.",
        ),
        "An even voice at a steady pitch.",
    ),
)

DFEW_LABEL_IDS = {"happy": 1, "sad": 2, "neutral": 3, "angry": 4}
"""DFEW's official label ids of the demo's classes."""


@dataclass(frozen=True)
class DemoScale:
    """How much the demo makes and trains. The defaults fit about two minutes on 2 CPU cores."""

    train_clips_per_emotion: int = 8
    test_clips_per_emotion: int = 3
    audio_clips_per_emotion: int = 4
    phase1_steps: int = 20
    phase2_steps: int = 20
    phase3_steps: int = 200
    batch_size: int = 8
    alignment_learning_rate: float = 1e-2
    instruction_learning_rate: float = 2e-3
    """The paper's 1e-3 / 1e-5 move 7B weights from a pretrained start; a tiny random model needs larger steps."""
    seed: int = 0


@dataclass
class DemoData:
    """Where the generated data lie."""

    root: Path
    dfew: Path
    annotations: Path
    audio: Path
    emer_ov: Path
    clip: Path
    clip_emotion: str


def _jittered(emotion: DemoEmotion, rng: random.Random) -> tuple[tuple[int, int, int], SpeechLikeVoice]:
    """Each clip's own shade and voice, so that no two clips of an emotion are the same."""
    background = tuple(min(255, max(0, channel + rng.randint(-20, 20))) for channel in emotion.background)
    voice = replace(
        emotion.voice,
        pitch_hz=emotion.voice.pitch_hz * rng.uniform(0.92, 1.08),
        syllables_per_second=emotion.voice.syllables_per_second * rng.uniform(0.9, 1.1),
    )
    return background, voice  # type: ignore[return-value]


def write_emotion_clip(path: Path, emotion: DemoEmotion, rng: random.Random) -> Path:
    """An H.264 clip of 1 to 2 s (so that the model meets several audio lengths) of the moving face photo on the
    emotion's background, with its voice."""
    from omni_emotion.synthetic.media import moving_face_frame, write_clip

    background, voice = _jittered(emotion, rng)
    seconds = rng.choice((1.0, 1.5, 2.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(
        path,
        seconds=seconds,
        fps=12,
        width=320,
        height=240,
        frame_fn=partial(moving_face_frame, background=background),
        sound=voice,
        audio_rate=16_000,
    )
    return path


def write_demo_data(root: Path, scale: DemoScale) -> DemoData:
    """The demo's data, in the layouts the real pipeline reads: DFEW (fold 1) with its clips, an SRE/HRE
    export over DFEW's training clips, an audio-caption folder for phase 1, an EMER-OV folder over DFEW's test
    clips, and one more clip to analyze."""
    from dataset_scripts import export_to_hub_layout, records_to_dataset_dict, validate_records
    from omni_emotion.synthetic.media import write_wav

    rng = random.Random(scale.seed)
    dfew = root / "DFEW"
    splits: dict[str, list[tuple[int, DemoEmotion]]] = {"train": [], "test": []}
    number = 0
    for split, count in (("train", scale.train_clips_per_emotion), ("test", scale.test_clips_per_emotion)):
        for _ in range(count):
            for emotion in DEMO_EMOTIONS:
                number += 1
                write_emotion_clip(dfew / f"Clip/original/{number:05d}.mp4", emotion, rng)
                splits[split].append((number, emotion))
    for split, clips in splits.items():
        folder = dfew / f"EmoLabel_DataSplit/{split}(single-labeled)"
        folder.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{number},{DFEW_LABEL_IDS[emotion.label]}\n" for number, emotion in clips)
        (folder / "set_1.csv").write_text("video_name,label\n" + rows, encoding="utf-8")

    records = {"sre": [], "hre": []}
    for index, (number, emotion) in enumerate(splits["train"]):
        records["hre" if index % 4 == 3 else "sre"].append(
            {
                "id": f"DFEW/{number:05d}",
                "video": f"Clip/original/{number:05d}.mp4",
                "source": "DFEW",
                "label": emotion.label,
                "open_vocabulary": list(emotion.words),
                "reasoning": rng.choice(emotion.reasonings),
                "intensity": None,
                "review_score": 8.0,
                "split": "train",
            }
        )
    configs = {name: records_to_dataset_dict(validate_records(rows)) for name, rows in records.items()}
    annotations = export_to_hub_layout(configs, root / "annotations")

    audio = root / "audio_captions"
    audio.mkdir(parents=True, exist_ok=True)
    with (audio / "metadata.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption"])
        for index in range(scale.audio_clips_per_emotion):
            for emotion in DEMO_EMOTIONS:
                name = f"{emotion.label}_{index}.wav"
                write_wav(audio / name, seconds=1.0, sound=_jittered(emotion, rng)[1])
                writer.writerow([name, emotion.caption])

    emer_ov = root / "EMER-OV"
    (emer_ov / "video").mkdir(parents=True, exist_ok=True)
    with (emer_ov / "emer_ov.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "openset"])
        for number, emotion in splits["test"]:
            name = f"sample_{number:08d}"
            shutil.copyfile(dfew / f"Clip/original/{number:05d}.mp4", emer_ov / "video" / f"{name}.mp4")
            writer.writerow([name, ", ".join(emotion.words)])

    clip_emotion = rng.choice(DEMO_EMOTIONS)
    clip = write_emotion_clip(root / "clip.mp4", clip_emotion, rng)
    return DemoData(root, dfew, annotations, audio, emer_ov, clip, clip_emotion.label)


def demo_corpus() -> list[str]:
    """Every text the demo's tokenizer will see, so that its small vocabulary covers them in few tokens."""
    from dataset_scripts.emotion_answer import REASONING_QUESTIONS, format_emotion_answer
    from dataset_scripts.prompts import AUDIO_INSTRUCTIONS, FACE_QUESTIONS, OPEN_VOCABULARY_QUESTIONS
    from dataset_scripts.vocabulary import SHARED_VOCABULARY

    texts = [
        *REASONING_QUESTIONS,
        *FACE_QUESTIONS,
        *OPEN_VOCABULARY_QUESTIONS,
        *AUDIO_INSTRUCTIONS["caption"],
    ]
    texts.append("Options: " + ", ".join(SHARED_VOCABULARY) + ".")
    for emotion in DEMO_EMOTIONS:
        texts.append(emotion.caption)
        texts += [format_emotion_answer(reasoning, emotion.words) for reasoning in emotion.reasonings]
    return texts * 8


def write_demo_checkpoint(folder: Path, seed: int) -> Path:
    """The tiny random model (SigLIP 56 px, a 2-layer Qwen2 of width 64, 1-layer Whisper, a mini Swin), with a
    byte-level BPE tokenizer trained on the demo's texts."""
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer, write_tiny_checkpoint

    text_config = {
        "model_type": "qwen2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    }
    tokenizer = build_tiny_tokenizer(vocab_size=700, corpus=demo_corpus())
    return write_tiny_checkpoint(folder, tokenizer=tokenizer, seed=seed, text_config=text_config)


# -- training ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPhase:
    name: str
    recipe: str
    steps: int
    learning_rate: float
    note: str = ""


ALIGNMENT_NOTE = "only a projector trains, into a random LLM: little to learn before phase 3"


@dataclass
class StageResult:
    """One line of the demo's report."""

    name: str
    seconds: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def _loss_recorder() -> Any:
    """A Trainer callback that keeps the logged training losses in its `losses` list (made here, so that importing
    this module, for `--help`, does not import transformers)."""
    from transformers import TrainerCallback

    class LossRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return LossRecorder()


def _phase_recipe(phase: DemoPhase, data: DemoData, work: Path) -> Path:
    """The real recipe with its data pointed at the demo's (a list of mappings cannot be given on the command
    line, so the recipe is copied with that field replaced)."""
    import yaml

    source = RECIPES / phase.recipe
    if not source.is_file():
        raise FileNotFoundError(
            f"The demo trains with the recipes of a source checkout and did not find {source}: install the "
            "package from a clone (pip install -e .), where recipes/ lies beside omni_emotion/."
        )
    recipe = yaml.safe_load(source.read_text(encoding="utf-8"))
    if recipe.get("phase") == "audio_alignment":
        recipe["audio_sources"] = [
            {"name": "voices", "path": str(data.audio), "task": "caption", "weight": 1.0}
        ]
    path = work / "recipes" / phase.recipe
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _phase_arguments(
    phase: DemoPhase, recipe: Path, model: Path, output: Path, data: DemoData, scale: DemoScale
) -> list[str]:
    """Command-line overrides that point the recipe at the demo's model and data and scale it for 2 CPU cores."""
    values = {
        "model_name_or_path": model,
        "output_dir": output,
        "sources": json.dumps({"DFEW": str(data.dfew)}),
        "video_roots": json.dumps({"DFEW": str(data.dfew)}),
        "annotations": data.annotations,
        "evaluation_clips": data.emer_ov / "emer_ov.csv",
        "dtype": "float32",
        "bf16": "false",
        "use_cpu": "true",
        "max_steps": phase.steps,
        "learning_rate": phase.learning_rate,
        "per_device_train_batch_size": scale.batch_size,
        "gradient_accumulation_steps": 1,
        "warmup_steps": 0.1,
        "activation_checkpointing": "false",
        "dataloader_num_workers": 0,
        "preprocessing_num_proc": 1,
        "preprocessing_cache_dir": data.root / "clip_cache",
        "save_strategy": "no",
        "logging_steps": 5,
        "disable_tqdm": "true",
        "report_to": "none",
        "seed": scale.seed,
    }
    arguments = [str(recipe)]
    for key, value in values.items():
        arguments += [f"--{key}", str(value)]
    return arguments


@contextlib.contextmanager
def _quiet(log: Path) -> Iterator[None]:
    """Send what the training and evaluation code print (data reports, warnings, progress) to `log`."""
    import datasets
    import transformers

    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        log.open("a", encoding="utf-8") as handle,
        contextlib.redirect_stdout(handle),
        contextlib.redirect_stderr(handle),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        handler = logging.StreamHandler(handle)
        root = logging.getLogger()
        root.addHandler(handler)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            root.removeHandler(handler)
            transformers.logging.set_verbosity(verbosity)
            datasets.enable_progress_bars()


def train_phase(
    phase: DemoPhase, data: DemoData, model: Path, work: Path, scale: DemoScale
) -> tuple[str, dict[str, Any]]:
    """One phase through `omni_emotion.training.train`, as `omni-emotion train RECIPE.yaml --field value` runs it;
    its output is the next phase's `model`."""
    from omni_emotion.training import train

    recipe = _phase_recipe(phase, data, work)
    output = work / "checkpoints" / phase.recipe.removesuffix(".yaml")
    recorder = _loss_recorder()
    with _quiet(work / "logs" / f"{output.name}.log"):
        train(_phase_arguments(phase, recipe, model, output, data, scale), callbacks=[recorder])
    losses = recorder.losses
    summary = (
        f"recipes/{phase.recipe}: {phase.steps} steps of {scale.batch_size} at lr {phase.learning_rate:g}"
    )
    if losses:
        summary += f", loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    if phase.note:
        summary += f" ({phase.note})"
    return summary, {"output": str(output), "losses": losses}


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class DemoReport:
    """What the demo did: each stage's result and time, the analysis of the new clip, the evaluation reports."""

    workdir: Path
    stages: list[StageResult] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def to_json(self) -> str:
        stages = [
            {"name": s.name, "seconds": s.seconds, "summary": s.summary, **s.details} for s in self.stages
        ]
        return json.dumps(
            {
                "stages": stages,
                "analysis": self.analysis,
                "evaluation": self.evaluation,
                "seconds": self.seconds,
            },
            indent=2,
            ensure_ascii=False,
        )


DEMO_FOLDERS = ("data", "checkpoints", "recipes", "logs", "evaluation")
"""What the demo writes in its folder (and removes there before it starts)."""


def _timed(name: str, work: Callable[[], tuple[str, dict[str, Any]]]) -> StageResult:
    start = time.perf_counter()
    summary, details = work()
    return StageResult(name, time.perf_counter() - start, summary, details)


def run_demo(workdir: str | Path, scale: DemoScale = DemoScale(), echo: bool = True) -> DemoReport:
    """Makes the data and the model, trains the three phases, analyzes a new clip and evaluates, all under
    `workdir`; prints each stage's result and time as it ends (when `echo`)."""
    import torch

    torch.manual_seed(scale.seed)
    report = DemoReport(Path(workdir))
    work = report.workdir
    for (
        previous
    ) in DEMO_FOLDERS:  # a rerun in the same folder starts afresh (evaluation would resume otherwise)
        shutil.rmtree(work / previous, ignore_errors=True)

    def add(stage: StageResult) -> StageResult:
        report.stages.append(stage)
        if echo:
            print(f"[{stage.seconds:6.1f} s] {stage.name:<24} {stage.summary}", flush=True)
        return stage

    started = time.perf_counter()
    with _quiet(work / "logs" / "setup.log"):
        data = write_demo_data(work / "data", scale)
    clips = len(DEMO_EMOTIONS) * (scale.train_clips_per_emotion + scale.test_clips_per_emotion)
    voices = len(DEMO_EMOTIONS) * scale.audio_clips_per_emotion
    summary = (
        f"{clips} clips of 1-2 s in DFEW's layout (a face photo; the background colour and a speech-like voice "
        f"carry one of {len(DEMO_EMOTIONS)} emotions), an SRE/HRE export, {voices} voice captions, an EMER-OV folder"
    )
    add(StageResult("media", time.perf_counter() - started, summary, {"data": str(data.root)}))
    model = work / "checkpoints" / "init"

    def build_model() -> tuple[str, dict[str, Any]]:
        with _quiet(work / "logs" / "setup.log"):
            return _describe_model(write_demo_checkpoint(model, scale.seed))

    add(_timed("tiny model", build_model))
    for phase in (
        DemoPhase(
            "phase 1: audio",
            "phase1_audio.yaml",
            scale.phase1_steps,
            scale.alignment_learning_rate,
            ALIGNMENT_NOTE,
        ),
        DemoPhase(
            "phase 2: faces",
            "phase2_face.yaml",
            scale.phase2_steps,
            scale.alignment_learning_rate,
            ALIGNMENT_NOTE,
        ),
        DemoPhase(
            "phase 3: instructions",
            "phase3_instruct.yaml",
            scale.phase3_steps,
            scale.instruction_learning_rate,
        ),
    ):
        stage = add(_timed(phase.name, partial(train_phase, phase, data, model, work, scale)))
        model = Path(stage.details["output"])
    report.analysis = add(_timed("analyze", partial(_analyze, model, data, work))).details
    dfew, emer_ov = _evaluate(model, data, work)
    report.evaluation = {"dfew": add(dfew).details, "emer-ov": add(emer_ov).details}
    (work / "demo_report.json").write_text(report.to_json() + "\n", encoding="utf-8")
    return report


def _describe_model(checkpoint: Path) -> tuple[str, dict[str, Any]]:
    import torch

    from modeling_omni_emotion import OmniEmotionConfig, OmniEmotionForConditionalGeneration

    config = OmniEmotionConfig.from_pretrained(checkpoint)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in OmniEmotionForConditionalGeneration(config).parameters())
    summary = (
        f"{parameters / 1e6:.2f}M parameters with random weights (the 7B preset has 8.79B): {config.num_frames} "
        f"frames of {config.vision_config.image_size} px, a {config.text_config.num_hidden_layers}-layer Qwen2 of "
        f"width {config.text_config.hidden_size}"
    )
    return summary, {"checkpoint": str(checkpoint), "parameters": parameters}


def _analyze(model: Path, data: DemoData, work: Path) -> tuple[str, dict[str, Any]]:
    from omni_emotion.analyze import analyze, load_for_inference

    with _quiet(work / "logs" / "analyze.log"):
        loaded_model, processor = load_for_inference(model, device="cpu")
        (result,) = list(analyze([str(data.clip)], loaded_model, processor, max_new_tokens=64))
    if not result.ok:
        raise RuntimeError(f"The demo could not analyze {data.clip}: {result.error}")
    frames = loaded_model.config.num_frames
    summary = (
        f"{data.clip.name} (made {data.clip_emotion}; {', '.join(result.modalities)}, a face in {result.face_frames} "
        f"of {frames} frames): labels {', '.join(result.labels) or '(none)'}\n"
        f"{'':35}reasoning: {result.reasoning or '(none)'}"
    )
    details = {"clip": str(data.clip), "made_as": data.clip_emotion}
    return summary, details | {
        "labels": result.labels,
        "reasoning": result.reasoning,
        "raw_text": result.raw_text,
    }


def _evaluate(model: Path, data: DemoData, work: Path) -> tuple[StageResult, StageResult]:
    """The held-out clips, asked as the DFEW and EMER-OV benchmarks ask them, scored by `uar_war` and `emer_ov`."""
    from omni_emotion.analyze import load_for_inference
    from omni_emotion.evaluate import evaluate_classification, evaluate_open_vocabulary

    output_dir = work / "evaluation"
    log = work / "logs" / "evaluate.log"
    with _quiet(log):
        loaded_model, processor = load_for_inference(model, device="cpu")

    def classification() -> tuple[str, dict[str, Any]]:
        with _quiet(log):
            report = evaluate_classification(
                loaded_model, processor, "dfew", data.dfew, folds=1, output_dir=output_dir, progress=False
            )
        chance = 100.0 / len(DEMO_EMOTIONS)
        summary = (
            f"{report.samples} held-out clips: UAR {report.scores['uar']:.1f}, WAR {report.scores['war']:.1f} "
            f"(chance {chance:.0f}; the fine-tune's question over DFEW's 7 classes, uar_war metric)"
        )
        return summary, report.to_dict()

    def open_vocabulary() -> tuple[str, dict[str, Any]]:
        with _quiet(log):
            report = evaluate_open_vocabulary(
                loaded_model, processor, data.emer_ov, grouping="exact", output_dir=output_dir, progress=False
            )
        summary = (
            f"{report.samples} held-out clips: precision {report.scores['precision']:.1f}, recall "
            f"{report.scores['recall']:.1f} (open-vocabulary question, emer_ov metric, exact words)"
        )
        return summary, report.to_dict()

    return _timed("evaluate: DFEW layout", classification), _timed(
        "evaluate: EMER-OV layout", open_vocabulary
    )


NEXT_STEPS = """\
This was a tiny demo model trained for a minute on generated clips: it tells four made-up emotions apart by colour
and voice, and is not an emotion recognizer. With real weights (a GPU is recommended):
  omni-emotion assemble --output omni-emotion-7b-init      # LLaVA-OneVision-7B + Whisper-large-v3 + FaceXFormer
  omni-emotion train recipes/phase1_audio.yaml             # then phase2_face.yaml and phase3_instruct.yaml
  omni-emotion analyze my_videos/ --model CHECKPOINT --out results.jsonl
  omni-emotion evaluate --benchmark dfew --data DFEW/ --model CHECKPOINT"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `omni-emotion demo`."""
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the generated data, checkpoints, logs, evaluation files and demo_report.json here (default: a "
        "temporary folder, removed at the end unless the demo fails)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the weights and the training")
    parser.add_argument(
        "--phase3-steps",
        type=int,
        default=DemoScale.phase3_steps,
        help="optimizer steps of phase 3, where the answers are learnt (default: %(default)s)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Runs the demo and prints its report; 0 on success. A failed run keeps its folder and names its logs."""
    if args.phase3_steps < 1:
        print("omni-emotion demo: error: --phase3-steps must be at least 1.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    scale = DemoScale(seed=args.seed, phase3_steps=args.phase3_steps)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="omni-emotion-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        "omni-emotion demo: generated clips, a tiny random model trained with the real recipes, then analyze and "
        "evaluate (no download, CPU).",
        flush=True,
    )
    try:
        run_demo(workdir, scale)
    except BaseException:
        print(f"omni-emotion demo: failed; its data, checkpoints and logs are in {workdir}", file=sys.stderr)
        raise
    print(f"[{time.perf_counter() - start:6.1f} s] total (imports included)")
    if args.workdir:
        print(f"Data, checkpoints, logs, evaluation files and demo_report.json: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(NEXT_STEPS)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m omni_emotion.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main_from_args(parser.parse_args()))
