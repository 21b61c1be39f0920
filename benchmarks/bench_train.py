"""Training throughput: phase-3 steps with the preprocessing cache (clips decoded once) against decoding each epoch.

    python benchmarks/bench_train.py [--clips 8] [--epochs 3] [--repeats 3]   # CPU, small config
    python benchmarks/bench_train.py --device cuda [--steps 5]               # 7B preset steps on one GPU

CPU (default): `omni_emotion.training.train` runs recipes/phase3_instruct.yaml end to end on a small random model
(4 frames at 112 px, a 4-layer Qwen2, a 1-layer Whisper encoder, a small face encoder) over N DFEW-layout clips
(real 320x240 H.264 + AAC clips of 3 s with a moving face; the default Haar face detector), 3 instructions per clip,
for a few epochs. "ours" builds the ClipCache (its build time is counted, once) and then decodes nothing;
the baseline ("decoding each epoch", `preprocessing_cache_dir: none`) has the collator decode every clip at every
step. Both use `dataloader_num_workers: 0` and `preprocessing_num_proc: 1`, so that decoding is not hidden in
worker processes for one side only and the 2-core machine is not oversubscribed. The two run interleaved (the
order alternates), repeated; min and median are printed. The last line is the end-to-end samples/s ratio.

GPU (`--device cuda`; NOT RUN YET: written without access to a GPU, expect to fix details on first use): random
weights of the omni-emotion-7b preset in bf16 with SDPA and activation checkpointing, inputs built directly as
model inputs (no processor): (a) phase-1 steps (`set_trainable(model, "audio_alignment")`, rows holding an audio
block of 10 s only; no baseline: LLaVA-OneVision has no audio path), (b) phase-3 LoRA steps (peft with
`omni_emotion.training.lora_config`, 8-frame clips with faces and 10 s audio) next to a plain LLaVA-OneVision-7B
LoRA step on the same frames (LoRA on the same decoder projections, its projector fully trained). Batch sizes and
LoRA settings are the recipes'. Samples/s and torch.cuda.max_memory_allocated per part; the two models run one
after the other (not interleaved), so that each peak holds one 7B model only; a step is forward, backward and a
fused AdamW step, timed after 2 warm-up steps. "optimized" counts the parameters given to AdamW (in phase 1 the
whole embedding matrix, whose gradient is masked to the marker rows, as in training). Last line: the phase-3
samples/s ratio ours / LLaVA-OneVision (below 1: ours carries faces and audio, about 560 tokens more a row).
The same code path was checked on CPU with the tests' tiny configuration in float32 only.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
RECIPES = REPO / "recipes"

# The small CPU model: bench_model.py's small sizes, a 1-layer Whisper encoder, 4 frames, 3x3 face tokens a frame.
SMALL_CONFIG: dict[str, Any] = {
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 112, "patch_size": 14,
                      "vision_use_head": False},
    "audio_config": {"model_type": "whisper", "num_mel_bins": 128, "d_model": 64, "encoder_layers": 1,
                     "encoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_layers": 1,
                     "decoder_attention_heads": 4, "decoder_ffn_dim": 128, "max_source_positions": 1500},
    "face_config": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "hidden_size": 32},
    "num_frames": 4,
    "face_pool_size": 3,
    "fusion_num_heads": 4,
}  # fmt: skip
SMALL_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
CLIP_SECONDS, CLIP_WIDTH, CLIP_HEIGHT = 3.0, 320, 240
INSTRUCTIONS_PER_CLIP = 3  # the recipe's instruction_tasks: reasoning, open_vocabulary, coarse_class


# ----------------------------------------------------------------------------------------------------------- CPU


def write_dfew(root: Path, clips: int) -> tuple[Path, Path]:
    """DFEW's official layout (fold 1) with `clips` training clips and one test clip, and its source mp4.

    Every clip is a copy of one generated clip (distinct paths, so each is decoded and cached on its own).
    """
    from omni_emotion.synthetic import media as media_factory

    source = root / "source.mp4"
    media_factory.write_clip(source, seconds=CLIP_SECONDS, width=CLIP_WIDTH, height=CLIP_HEIGHT)
    dfew = root / "DFEW"
    splits = {"train": range(1, clips + 1), "test": [clips + 1]}
    for split, numbers in splits.items():
        labels = dfew / f"EmoLabel_DataSplit/{split}(single-labeled)/set_1.csv"
        labels.parent.mkdir(parents=True, exist_ok=True)
        labels.write_text("video_name,label\n" + "".join(f"{n},{1 + n % 7}\n" for n in numbers))
        for number in numbers:
            target = dfew / f"Clip/original/{number:05d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return dfew, source


def training_arguments(
    checkpoint: Path, output_dir: Path, dfew: Path, annotations: Path, evaluation_clips: Path, **fields: Any
) -> list[str]:
    """recipes/phase3_instruct.yaml plus the overrides that make it a CPU run on the benchmark's data."""
    roots = json.dumps({"DFEW": str(dfew)})
    values = {
        "model_name_or_path": checkpoint,
        "output_dir": output_dir,
        "dtype": "float32",
        "use_cpu": "true",
        "bf16": "false",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "dataloader_num_workers": 0,
        "preprocessing_num_proc": 1,
        "sources": roots,
        "video_roots": roots,
        "annotations": annotations,
        "evaluation_clips": evaluation_clips,
        "save_strategy": "no",
        "logging_steps": 10_000,
        "disable_tqdm": "true",
        "report_to": "none",
        **fields,
    }
    arguments = [str(RECIPES / "phase3_instruct.yaml")]
    for key, value in values.items():
        arguments += [f"--{key}", str(value)]
    return arguments


@dataclass
class RunTimes:
    """Wall-clock times of one `train` call."""

    total: float = 0.0
    cache_build: float = 0.0
    epochs: list[float] = field(default_factory=list)
    cache_bytes_per_clip: float | None = None


def _epoch_timer(times: RunTimes):
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        """Records the wall time of every epoch (the collator runs inside it: num_workers is 0)."""

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            times.epochs.append(time.perf_counter() - self.start)

    return EpochTimer()


def run_training(arguments: Sequence[str]) -> RunTimes:
    """One end-to-end `train` call (model load, rows, cache build if any, epochs, save), timed by part."""
    from omni_emotion.training import sft

    times = RunTimes()
    build_cache = sft._clip_cache

    def timed_cache(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        cache = build_cache(*args, **kwargs)
        times.cache_build = time.perf_counter() - start
        times.cache_bytes_per_clip = cache.bytes_per_clip if cache is not None else None
        return cache

    sft._clip_cache = timed_cache
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            sft.train(list(arguments), callbacks=[_epoch_timer(times)])
    except Exception:
        print(log.getvalue(), file=sys.stderr)
        raise
    finally:
        sft._clip_cache = build_cache
    times.total = time.perf_counter() - start
    return times


def _quiet() -> None:
    import datasets
    import huggingface_hub
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def cpu_benchmark(clips: int, epochs: int, repeats: int) -> float:
    """Interleaved, repeated phase-3 runs with and without the cache; returns the end-to-end samples/s ratio (min)."""
    import datasets
    import torch
    import training_fixtures

    from omni_emotion.synthetic.tiny import write_tiny_checkpoint

    if clips < 2:
        raise SystemExit("--clips must be at least 2 (SRE and HRE each take some).")
    _quiet()
    rows = clips * INSTRUCTIONS_PER_CLIP
    with tempfile.TemporaryDirectory(prefix="omni-emotion-bench-train-") as tmp:
        work = Path(tmp)
        datasets.config.HF_DATASETS_CACHE = work / "datasets-cache"  # read at each load: nothing left behind
        checkpoint = write_tiny_checkpoint(work / "checkpoint", **SMALL_CONFIG, text_config=SMALL_TEXT_CONFIG)
        dfew, source = write_dfew(work, clips)
        split = max(1, (2 * clips) // 3)
        annotations = training_fixtures.write_annotations(
            work / "annotations", sre_clips=range(1, split + 1), hre_clips=range(split + 1, clips + 1)
        )
        evaluation_clips = training_fixtures.write_evaluation_clips(work / "emer_ov_names.csv")

        def arguments(name: str, **fields: Any) -> list[str]:
            return training_arguments(checkpoint, work / name, dfew, annotations, evaluation_clips, **fields)

        print(
            f"phase 3 (instruction), small config, CPU ({torch.get_num_threads()} threads): {clips} clips "
            f"{CLIP_WIDTH}x{CLIP_HEIGHT} {CLIP_SECONDS:.0f} s ({source.stat().st_size / 1024:.0f} KiB mp4) x "
            f"{INSTRUCTIONS_PER_CLIP} instructions = {rows} rows, batch 2, {epochs} epochs; "
            "dataloader_num_workers 0 and preprocessing_num_proc 1 on both sides",
            flush=True,
        )
        # Warm-up: imports, the datasets cache of the export, the Haar cascade, first-call allocations.
        run_training(arguments("warmup", max_steps=1, preprocessing_cache_dir="none"))
        shutil.rmtree(work / "warmup")

        variants: dict[str, dict[str, Any]] = {
            "ours (cache)": {},
            "decode each epoch": {"preprocessing_cache_dir": "none"},
        }
        results: dict[str, list[RunTimes]] = {name: [] for name in variants}
        loads: list[float] = []  # load average beyond ours after each run, to flag a shared machine
        for repeat in range(repeats):
            order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
            for name in order:
                output = f"run-{repeat}-{'cache' if variants[name] == {} else 'decode'}"
                times = run_training(
                    arguments(output, max_steps=-1, num_train_epochs=epochs, **variants[name])
                )
                shutil.rmtree(work / output)  # the next run of ours builds its cache again
                results[name].append(times)
                loads.append(_other_load())
                print(
                    f"  repeat {repeat + 1} {name:<18} total {times.total:6.1f} s | cache build "
                    f"{times.cache_build:5.1f} s | epochs {' '.join(f'{t:5.1f}' for t in times.epochs)} s",
                    flush=True,
                )
    busy = max(loads)
    if busy > 0.5:
        print(
            f"WARNING: other processes kept about {busy:.1f} of {os.cpu_count()} CPUs busy during the runs: trust the "
            "min columns over the medians, or rerun on an idle machine.",
            flush=True,
        )
    return report(results, rows, epochs)


def _other_load() -> float:
    """The 1-minute load average beyond this benchmark's own threads (torch's intra-op threads)."""
    import torch

    return max(0.0, os.getloadavg()[0] - torch.get_num_threads())


def _steady(times: RunTimes) -> float:
    """Seconds of an epoch after the first (the first takes one-off costs; ours decodes nothing in any epoch)."""
    later = times.epochs[1:] or times.epochs
    return sum(later) / len(later)


def report(results: dict[str, list[RunTimes]], rows: int, epochs: int) -> float:
    """Prints the table and returns the end-to-end samples/s ratio ours / baseline (min times)."""
    samples = rows * epochs
    print(
        f"\n{'':<18} {'end to end (s)':>17} {'samples/s e2e':>16} {'epoch (s)':>15} {'samples/s epoch':>17}"
    )
    print(f"{'':<18} {'min':>8} {'median':>8} {'min':>7} {'median':>8} {'min':>7} {'median':>7} "
          f"{'min':>8} {'median':>8}")  # fmt: skip
    summary = {}
    for name, runs in results.items():
        total = [run.total for run in runs]
        epoch = [_steady(run) for run in runs]
        summary[name] = (min(total), statistics.median(total), min(epoch), statistics.median(epoch))
        t_min, t_med, e_min, e_med = summary[name]
        print(
            f"{name:<18} {t_min:8.1f} {t_med:8.1f} {samples / t_min:7.2f} {samples / t_med:8.2f} "
            f"{e_min:7.2f} {e_med:7.2f} {rows / e_min:8.2f} {rows / e_med:8.2f}"
        )
    ours = results["ours (cache)"]
    build = [run.cache_build for run in ours]
    print(
        f"cache build (counted in ours' end to end): min {min(build):.1f} s, median {statistics.median(build):.1f} s; "
        f"{ours[0].cache_bytes_per_clip / 2**20:.2f} MiB per clip ({ours[0].cache_bytes_per_clip:,.0f} bytes)"
    )
    o, b = summary["ours (cache)"], summary["decode each epoch"]
    print(
        f"steady-state epoch (epochs 2-{epochs}): cache vs decode-each-epoch {b[2] / o[2]:.2f}x samples/s (min), "
        f"{b[3] / o[3]:.2f}x (median)"
    )
    print("end to end (cache build included, model load and save on both sides):")
    ratio = b[0] / o[0]
    print(f"cache vs decode-each-epoch: {ratio:.2f}x samples/s (min), {b[1] / o[1]:.2f}x (median)")
    return ratio


# ----------------------------------------------------------------------------------------------------------- GPU

# LLaVA-OneVision-7B's <image> 151646 and <video> 151647, our <audio> 151648 (the preset's); the markers follow.
GPU_MARKERS = {
    "vi_start_token_id": 151649,
    "vi_end_token_id": 151650,
    "au_start_token_id": 151651,
    "au_end_token_id": 151652,
}
PROMPT_TOKENS, ANSWER_TOKENS = 40, 64


def _recipe(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def _rows(prefix: list[int], batch: int, vocab_size: int, device) -> dict[str, Any]:
    """`batch` rows of `prefix` + prompt + answer token ids (random ordinary tokens), labels on the answer only."""
    import torch

    generator = torch.Generator().manual_seed(0)
    high = min(100_000, vocab_size - 16)  # clear of the special and added tokens at the end of the vocabulary
    text = torch.randint(10, high, (batch, PROMPT_TOKENS + ANSWER_TOKENS), generator=generator)
    input_ids = torch.cat([torch.tensor(prefix).expand(batch, -1), text], dim=1)
    labels = torch.full_like(input_ids, -100)
    labels[:, -ANSWER_TOKENS:] = input_ids[:, -ANSWER_TOKENS:]
    return {"input_ids": input_ids.to(device), "labels": labels.to(device)}


def gpu_inputs(config, batch: int, frames: int, audio_seconds: float, *, video: bool, device, dtype) -> dict:
    """Model inputs of `batch` rows: an audio block of `audio_seconds` (and with `video`, the fused video block)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    mel_frames = round(audio_seconds * 100)
    audio = [config.au_start_token_id, *[config.audio_token_id] * config.num_audio_tokens(mel_frames)]
    audio.append(config.au_end_token_id)
    prefix = audio
    inputs: dict[str, Any] = {
        "input_features": torch.randn(batch, 1, 128, 3000, generator=generator).to(device, dtype),
        "audio_feature_lengths": torch.full((batch,), mel_frames, device=device),
    }
    if video:
        size, face = config.vision_config.image_size, config.face_config.image_size
        prefix = [config.vi_start_token_id, *[config.video_token_id] * config.num_video_tokens(frames)]
        prefix += [config.vi_end_token_id, *audio]
        inputs["pixel_values_videos"] = torch.randn(batch, frames, 3, size, size, generator=generator).to(
            device, dtype
        )
        inputs["face_pixel_values"] = torch.randn(batch, frames, 3, face, face, generator=generator).to(
            device, dtype
        )
        inputs["face_mask"] = torch.ones(batch, frames, dtype=torch.bool, device=device)
    return inputs | _rows(prefix, batch, config.text_config.vocab_size, device)


def llava_inputs(ours: dict, config, frames: int) -> dict:
    """The same frames and text for plain LLaVA-OneVision: its video block alone (no faces, no audio)."""
    video = [config.video_token_id] * (frames * config.frame_tokens_per_frame + 1)
    batch, device = ours["input_ids"].shape[0], ours["input_ids"].device
    vocab_size = config.text_config.vocab_size
    return {"pixel_values_videos": ours["pixel_values_videos"]} | _rows(video, batch, vocab_size, device)


def _build(factory: Callable[[], Any], device, dtype) -> Any:
    """A model built directly on `device` in `dtype` with random weights."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            return factory()
    finally:
        torch.set_default_dtype(default)


def train_steps(model, inputs: dict, steps: int, warmup: int = 2) -> tuple[list[float], float]:
    """Seconds of each of `steps` optimizer steps (forward, backward, AdamW) after `warmup`, and the peak GiB of
    CUDA memory allocated over them (weights, optimizer states and activations; 0 off CUDA)."""
    import torch

    cuda = inputs["input_ids"].device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5, fused=cuda)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    return times, peak


def _free_cuda_cache() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(name: str, model, inputs: dict, steps: int) -> list[float]:
    """`train_steps` of `model`, printed as one line; returns the step times."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    times, peak = train_steps(model, inputs, steps)
    batch, tokens = inputs["input_ids"].shape
    best, median = min(times), statistics.median(times)
    print(
        f"  {name:<30} batch {batch:2d} x {tokens:4d} tokens, {trainable / 1e6:7.1f} M optimized: step "
        f"min {best * 1e3:7.1f} ms, median {median * 1e3:7.1f} ms | {batch / best:6.2f} samples/s (min), "
        f"{batch / median:6.2f} (median) | peak {peak:5.1f} GiB",
        flush=True,
    )
    return times


def model_steps(
    config, device, dtype, steps: int, batch1: int, batch3: int, lora: dict[str, Any]
) -> tuple[float, float]:
    """Phase-1 and phase-3 LoRA steps of `config`, then plain LLaVA-OneVision LoRA steps on the same frames;
    returns the phase-3 samples/s ratios ours / LLaVA-OneVision (min and median step times)."""
    from bench_model import llava_config_of
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaOnevisionForConditionalGeneration

    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from omni_emotion.training import LLM_LORA_TARGETS, lora_config, set_trainable

    frames, audio_seconds = config.num_frames, 10.0
    model = _build(lambda: OmniEmotionForConditionalGeneration(config), device, dtype)
    model.activation_checkpointing_enable({"use_reentrant": False})
    inputs = gpu_inputs(config, batch1, frames, audio_seconds, video=False, device=device, dtype=dtype)
    set_trainable(model, "audio_alignment")
    measure("phase 1, ours", model, inputs, steps)
    print("    (no baseline: LLaVA-OneVision has no audio path)")

    inputs = gpu_inputs(config, batch3, frames, audio_seconds, video=True, device=device, dtype=dtype)
    set_trainable(model, "instruction", lora=True)
    model = get_peft_model(model, lora_config(model, "instruction", **lora))
    ours = measure("phase 3 LoRA, ours", model, inputs, steps)
    baseline_inputs = llava_inputs(inputs, config, frames)
    del model, inputs
    _free_cuda_cache()

    llava_config = llava_config_of(config)
    llava_config._attn_implementation = config._attn_implementation
    llava = _build(lambda: LlavaOnevisionForConditionalGeneration(llava_config), device, dtype)
    llava.activation_checkpointing_enable({"use_reentrant": False})
    llava.requires_grad_(False)
    llava_lora = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=LLM_LORA_TARGETS,
        modules_to_save=["multi_modal_projector"],
        bias="none",
    )
    llava = get_peft_model(llava, llava_lora)
    base = measure("phase 3 LoRA, LLaVA-OneVision", llava, baseline_inputs, steps)
    del llava, baseline_inputs
    _free_cuda_cache()
    return min(base) / min(ours), statistics.median(base) / statistics.median(ours)


def gpu_benchmark(steps: int) -> tuple[float, float]:
    """The 7B preset on the GPU, batch sizes and LoRA settings of the recipes; fails clearly without CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda needs a CUDA GPU, but torch.cuda.is_available() is False on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): run it on a GPU machine."
        )
    from modeling_omni_emotion import OmniEmotionConfig

    phase1, phase3 = _recipe("phase1_audio"), _recipe("phase3_instruct_lora")
    lora = {"r": phase3["lora_r"], "alpha": phase3["lora_alpha"], "dropout": phase3["lora_dropout"]}
    config = OmniEmotionConfig.from_preset("omni-emotion-7b", attn_implementation="sdpa", **GPU_MARKERS)
    print(
        f"GPU bf16 training steps of the omni-emotion-7b preset, random weights, SDPA, activation checkpointing, "
        f"on {torch.cuda.get_device_name()}; 8 frames, 10 s audio",
        flush=True,
    )
    return model_steps(
        config,
        torch.device("cuda"),
        torch.bfloat16,
        steps,
        phase1["per_device_train_batch_size"],
        phase3["per_device_train_batch_size"],
        lora,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--clips", type=int, default=8, help="CPU: training clips (3 rows each)")
    parser.add_argument("--epochs", type=int, default=3, help="CPU: epochs of each run")
    parser.add_argument("--repeats", type=int, default=3, help="CPU: runs of each side, interleaved")
    parser.add_argument("--steps", type=int, default=5, help="GPU: timed steps per part (after 2 warm-up)")
    args = parser.parse_args()
    if args.device == "cuda":
        best, median = gpu_benchmark(args.steps)
        print(f"phase-3 LoRA ours vs LLaVA-OneVision-7B: {best:.2f}x samples/s (min), {median:.2f}x (median)")
        return
    cpu_benchmark(args.clips, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
