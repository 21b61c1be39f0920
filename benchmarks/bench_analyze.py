"""Clip throughput of `omni_emotion.analyze.analyze` against a plain decode-then-generate loop, one clip at a time.

    python benchmarks/bench_analyze.py [--clips 16] [--repeats 3] [--batch-size 4] [--max-new-tokens 32]  # CPU
    python benchmarks/bench_analyze.py --device cuda [--batch-size 8] [--max-new-tokens 64]           # 7B on a GPU

Clips: N generated H.264 clips of 3 s at 30 fps with the moving astronaut face (omni_emotion/synthetic/media.py), half of
them 320x240 and half 640x360, every fourth one without a sound track (the rest with an AAC tone). Four distinct
clips are written and copied to N paths, so that every path is decoded on its own.

"ours": `analyze(paths, model, processor, batch_size=B, max_new_tokens=T)` (defaults otherwise: all modalities, a
background thread decoding up to 2 batches ahead, batches left-padded, greedy). Baseline ("plain loop"): for each
clip, `processor.apply_chat_template` on a user turn holding the clip's path and the same prompt (the processor
decodes the clip: frames, tracked face, sound), then `model.generate` (greedy, the same T and the same pad / end
tokens), then `batch_decode`; nothing overlaps. Both use the same loaded model and processor. Every answer is made
exactly T tokens long (`min_new_tokens = T` on the model's generation config, for both sides), so that a random
model that happens to emit its end token early on one side does not make that side look faster. The two sides run
interleaved (the order alternates), repeated after one warm-up each; min and median of the wall time per run are
printed as clips/s. The last line is the clips/s ratio ours / plain loop (min times).

CPU (default): the tests' tiny random checkpoint (`omni_emotion.synthetic.tiny.write_tiny_checkpoint`: 4 frames at 56 px, a
2-layer Qwen2, a 1-layer Whisper encoder, a mini face encoder), float32. With a model this small the run measures
decoding and the pipeline's overheads rather than the model; the default Haar face detector is used.

GPU (`--device cuda`; NOT RUN YET: written without access to a GPU, expect to fix details on first use): random
weights of the omni-emotion-7b preset in bf16 (SDPA), built directly on the GPU (no checkpoint on disk), with the
tests' tiny tokenizer and a processor that mirrors the preset (frame size, frame count, face size, pooling). The
tiny tokenizer's vocabulary is far smaller than the preset's, so the ids it cannot decode are suppressed during
generation (on both sides). Besides clips/s, a thread samples GPU utilisation every 0.1 s (torch.cuda.utilization,
else nvidia-smi) and its mean over each run is printed. Without CUDA it exits with a message saying so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

CLIP_SECONDS = 3.0
SIZES = ((320, 240), (640, 360))
SILENT_EVERY = 4  # every fourth clip has no sound track


# ----------------------------------------------------------------------------------------------------------- clips


def write_clips(folder: Path, count: int) -> list[str]:
    """`count` clip paths: 4 distinct clips (2 sizes, with and without sound) copied round-robin."""
    from omni_emotion.synthetic import media as media_factory

    folder.mkdir(parents=True, exist_ok=True)
    sources: dict[tuple[int, int, bool], Path] = {}
    paths = []
    for index in range(count):
        width, height = SIZES[index % 2]
        sound = index % SILENT_EVERY != SILENT_EVERY - 1
        key = (width, height, sound)
        if key not in sources:
            sources[key] = folder / f"source_{width}x{height}_{'sound' if sound else 'silent'}.mp4"
            media_factory.write_clip(
                sources[key], seconds=CLIP_SECONDS, width=width, height=height, audio=sound
            )
        target = folder / f"clip_{index:03d}_{width}x{height}{'' if sound else '_silent'}.mp4"
        shutil.copyfile(sources[key], target)
        paths.append(str(target))
    return paths


def describe_clips(paths: list[str]) -> str:
    silent = sum("_silent" in Path(p).name for p in paths)
    sizes = sorted({Path(p).stem.split("_")[2] for p in paths})
    return (
        f"{len(paths)} clips of {CLIP_SECONDS:.0f} s at 30 fps ({' and '.join(sizes)}, with a face; "
        f"{len(paths) - silent} with sound, {silent} without)"
    )


# -------------------------------------------------------------------------------------------------------- the sides


def run_ours(
    paths: list[str], model, processor, batch_size: int, max_new_tokens: int, prompt: str
) -> list[str]:
    """`analyze` over all clips; returns the raw answers (every clip must succeed)."""
    from omni_emotion.analyze import analyze

    results = list(
        analyze(paths, model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens, prompt=prompt)
    )
    failed = [(r.path, r.error) for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"analyze failed on {len(failed)} clip(s): {failed[:3]}")
    return [r.raw_text for r in results]


def run_plain_loop(paths: list[str], model, processor, max_new_tokens: int, prompt: str) -> list[str]:
    """The baseline: for each clip, the processor decodes it from its path, then the model generates; no overlap."""
    import torch

    from omni_emotion.pipeline import generation_defaults

    defaults = generation_defaults(model, processor.tokenizer)
    answers = []
    for path in paths:
        messages = [
            {"role": "user", "content": [{"type": "video", "path": path}, {"type": "text", "text": prompt}]}
        ]
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(model.device, dtype=model.dtype)
        with torch.inference_mode():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **defaults)
        answers += processor.batch_decode(
            generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
    return answers


class UtilizationSampler:
    """Samples the GPU's utilisation (percent) every `interval` s in a thread, between start() and stop()."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read = self._reader()

    @staticmethod
    def _reader() -> Callable[[], float | None]:
        import torch

        try:
            torch.cuda.utilization()
            return lambda: float(torch.cuda.utilization())
        except Exception:  # no pynvml / amdsmi: ask nvidia-smi
            index = torch.cuda.current_device()
            command = [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                f"-i={index}",
            ]

            def read() -> float | None:
                try:
                    return float(
                        subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.strip()
                    )
                except (OSError, ValueError, subprocess.SubprocessError):
                    return None

            return read

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    def start(self) -> None:
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-utilization", daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        """The mean utilisation over the samples taken (None if none could be read)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return statistics.mean(self.samples) if self.samples else None


# --------------------------------------------------------------------------------------------------------- the run


def _quiet() -> None:
    import huggingface_hub
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def compare(
    setting: str,
    paths: list[str],
    model,
    processor,
    args: argparse.Namespace,
    sampler: UtilizationSampler | None = None,
) -> float:
    """Interleaved, repeated runs of both sides over `paths`, after a line that says on what (`setting`, the clips
    and the run's sizes); prints the table, returns the clips/s ratio (min)."""
    import torch

    batch_size, max_new_tokens, repeats = args.batch_size, args.max_new_tokens, args.repeats
    print(
        f"{setting}: {describe_clips(paths)}; {processor.num_frames} frames a clip, batch {batch_size}, "
        f"{max_new_tokens} new tokens, {repeats} repeats",
        flush=True,
    )

    from omni_emotion.pipeline import DEFAULT_PROMPT

    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None
    model.generation_config.min_new_tokens = max_new_tokens  # every answer exactly T tokens, on both sides
    sides: dict[str, Callable[[list[str]], list[str]]] = {
        f"ours (analyze, batch {batch_size})": lambda clips: run_ours(
            clips, model, processor, batch_size, max_new_tokens, DEFAULT_PROMPT
        ),
        "plain loop (1 clip at a time)": lambda clips: run_plain_loop(
            clips, model, processor, max_new_tokens, DEFAULT_PROMPT
        ),
    }
    warm = paths[: max(2, min(batch_size, len(paths)))]
    answers = {
        name: side(warm) for name, side in sides.items()
    }  # warm-up: imports, detector, first allocations
    times: dict[str, list[float]] = {name: [] for name in sides}
    usage: dict[str, list[float]] = {name: [] for name in sides}
    width = max(map(len, sides))
    for repeat in range(repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for name in order:
            sync()
            if sampler is not None:
                sampler.start()
            start = time.perf_counter()
            answers[name] = sides[name](paths)
            sync()
            seconds = time.perf_counter() - start
            busy = sampler.stop() if sampler is not None else None
            times[name].append(seconds)
            if busy is not None:
                usage[name].append(busy)
            gpu = f" | GPU busy {busy:5.1f} %" if busy is not None else ""
            print(
                f"  repeat {repeat + 1} {name:<{width}} {seconds:7.2f} s  {len(paths) / seconds:6.2f} clips/s{gpu}",
                flush=True,
            )
    (ours, base) = sides
    same = sum(a == b for a, b in zip(answers[ours], answers[base], strict=True))
    print(
        f"\nsame answer on both sides for {same}/{len(paths)} clips (batched left-padded vs one at a time; "
        "random weights make small numeric differences visible)"
    )
    print(f"{'':<{width}} {'clips/s min-time':>17} {'clips/s median':>15} {'s/run min':>10} {'s/run median':>13}"
          + (f" {'GPU busy %':>11}" if sampler is not None else ""))  # fmt: skip
    for name in sides:
        best, median = min(times[name]), statistics.median(times[name])
        gpu = f" {statistics.mean(usage[name]):11.1f}" if usage[name] else (" " * 12 if sampler else "")
        print(
            f"{name:<{width}} {len(paths) / best:17.2f} {len(paths) / median:15.2f} {best:10.2f} {median:13.2f}{gpu}"
        )
    if cuda:
        print(
            f"peak GPU memory allocated over both sides: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        )
    ratio_min = min(times[base]) / min(times[ours])
    ratio_median = statistics.median(times[base]) / statistics.median(times[ours])
    print(
        f"ours vs plain loop: {ratio_min:.2f}x clips/s (min times), {ratio_median:.2f}x (median) "
        f"on {len(paths)} clips, batch {batch_size}, {max_new_tokens} new tokens"
    )
    return ratio_min


def cpu_benchmark(args: argparse.Namespace) -> None:
    import torch

    from omni_emotion.analyze import load_for_inference
    from omni_emotion.synthetic.tiny import write_tiny_checkpoint

    _quiet()
    with tempfile.TemporaryDirectory(prefix="omni-emotion-bench-analyze-") as tmp:
        work = Path(tmp)
        paths = write_clips(work / "clips", args.clips)
        checkpoint = write_tiny_checkpoint(work / "checkpoint")
        model, processor = load_for_inference(checkpoint, device="cpu", dtype="fp32")
        setting = (
            "analyze throughput, tiny random checkpoint (omni_emotion.synthetic.tiny.write_tiny_checkpoint), CPU "
            f"float32 ({torch.get_num_threads()} threads, {os.cpu_count()} CPUs)"
        )
        compare(setting, paths, model, processor, args)


def gpu_benchmark(args: argparse.Namespace) -> None:
    """The 7B preset, random weights in bf16, on one GPU; exits clearly without CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda needs a CUDA GPU, but torch.cuda.is_available() is False on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): run it on a GPU machine, or drop "
            "--device for the CPU benchmark."
        )
    from modeling_omni_emotion import OmniEmotionConfig, OmniEmotionForConditionalGeneration
    from omni_emotion.assembly import config_token_ids
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer, tiny_processor

    _quiet()
    preset = OmniEmotionConfig.from_preset("omni-emotion-7b")
    processor = tiny_processor(build_tiny_tokenizer(), preset)  # adds the marker tokens; mirrors the preset
    processor.tokenizer.padding_side = "left"
    config = OmniEmotionConfig.from_preset(
        "omni-emotion-7b",
        attn_implementation="sdpa",
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
        **config_token_ids(processor),
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            torch.manual_seed(0)
            model = OmniEmotionForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default)
    # Ids past the tiny tokenizer's vocabulary cannot be decoded to text: never generate them.
    model.generation_config.suppress_tokens = list(
        range(len(processor.tokenizer), config.text_config.vocab_size)
    )
    sampler = UtilizationSampler()
    with tempfile.TemporaryDirectory(prefix="omni-emotion-bench-analyze-") as tmp:
        paths = write_clips(Path(tmp) / "clips", args.clips)
        setting = (
            "analyze throughput, omni-emotion-7b preset with random weights "
            f"({torch.cuda.memory_allocated() / 2**30:.1f} GiB), bf16, SDPA, on {torch.cuda.get_device_name()} "
            f"({os.cpu_count()} CPUs for decoding)"
        )
        compare(setting, paths, model, processor, args, sampler=sampler)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--clips", type=int, default=16, help="clips per run (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side, interleaved (default: 3)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="ours: clips generated together (CPU 4, GPU 8)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="answer length in tokens, both sides (CPU 32, GPU 64)",
    )
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.batch_size = args.batch_size or (8 if cuda else 4)
    args.max_new_tokens = args.max_new_tokens or (64 if cuda else 32)
    if args.clips < 2 or args.repeats < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
        parser.error("need --clips >= 2 and positive --repeats, --batch-size and --max-new-tokens")
    (gpu_benchmark if cuda else cpu_benchmark)(args)


if __name__ == "__main__":
    main()
