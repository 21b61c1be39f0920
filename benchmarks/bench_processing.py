"""Reading clips by seeking against decoding every frame, and the processor's end-to-end throughput.

Clips are generated once (2 s keyframe interval, as phone and streaming encoders write them) and cached
in $OMNI_EMOTION_BENCH_DIR (default: <tmp>/omni-emotion-bench). Each measurement runs in a fresh
process so that its peak memory (max RSS) is its own. The 3-minute 1080p speed-up is printed last.

    python benchmarks/bench_processing.py [--num-frames 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

CLIPS = {
    "10s_720p": {"seconds": 10, "width": 1280, "height": 720},
    "3min_1080p": {"seconds": 180, "width": 1920, "height": 1080},
}


def clip_path(name: str) -> Path:
    from omni_emotion.synthetic import media as media_factory

    folder = Path(
        os.environ.get("OMNI_EMOTION_BENCH_DIR", Path(tempfile.gettempdir()) / "omni-emotion-bench")
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_gop2s.mp4"
    if not path.exists():
        print(f"generating {path} (once) ...", flush=True)
        partial = path.with_suffix(".partial.mp4")
        media_factory.write_clip(partial, fps=30, keyframe_seconds=2.0, **CLIPS[name])
        partial.rename(path)
    return path


def decode_all_baseline(path: Path, num_frames: int) -> None:
    """Decode every frame in order, keeping the uniformly sampled ones, and decode the audio track."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        wanted = set(np.linspace(0, stream.frames - 1, num_frames).round().astype(int).tolist())
        kept = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in wanted]
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        audio = [out.to_ndarray() for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    assert len(kept) == num_frames and audio


def seeking_reader(path: Path, num_frames: int) -> None:
    # media_reading.py needs only PyAV and NumPy: load it alone, so that its peak memory is not the
    # package's imports (transformers, torch).
    import importlib.util

    spec = importlib.util.spec_from_file_location("media_reading", REPO / "processing" / "media_reading.py")
    module = sys.modules.setdefault("media_reading", importlib.util.module_from_spec(spec))
    if not hasattr(module, "read_clip"):
        spec.loader.exec_module(module)
    clip = module.read_clip(path, num_frames=num_frames, max_audio_seconds=30.0)
    assert clip.frames.shape[0] == num_frames and clip.audio is not None


def _measure(target, args, repeats: int, queue) -> None:
    target(*args)  # warm-up: imports, file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        target(*args)
        times.append(time.perf_counter() - start)
    queue.put((min(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(target, args, repeats: int) -> tuple[float, float]:
    """Best seconds per call over `repeats` and peak RSS in MiB, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(target, args, repeats, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def end_to_end(path: Path, repeats: int) -> None:
    """Clips per second through the whole processor, and where the time goes."""
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer
    from processing import OmniEmotionProcessor
    from processing.face_tracking import primary_face_crops
    from processing.media_reading import read_clip
    from processing.processing_omni_emotion import CLIP_MARKUP

    processor = OmniEmotionProcessor(tokenizer=build_tiny_tokenizer())
    processor(text=CLIP_MARKUP, videos=[path], return_tensors="pt")  # warm-up
    stages = dict.fromkeys(
        ["read media", "detect+track+crop faces", "frames to 384px", "faces to 224px", "log-mel"], 0.0
    )
    start = time.perf_counter()
    for _ in range(repeats):
        processor(text=CLIP_MARKUP + "How does she feel?", videos=[path], return_tensors="pt")
    per_clip = (time.perf_counter() - start) / repeats
    for _ in range(repeats):
        t0 = time.perf_counter()
        clip = read_clip(path, processor.num_frames, max_audio_seconds=processor.max_audio_seconds)
        t1 = time.perf_counter()
        crops = primary_face_crops(clip.frames, processor.face_detector)
        t2 = time.perf_counter()
        processor.video_processor([clip.frames], return_tensors="pt")
        t3 = time.perf_counter()
        processor.image_processor([c for c in crops if c is not None], return_tensors="pt")
        t4 = time.perf_counter()
        processor._audio_inputs([clip.audio])
        t5 = time.perf_counter()
        for stage, seconds in zip(stages, [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4], strict=True):
            stages[stage] += seconds / repeats
    print(f"end to end on {path.name}: {1 / per_clip:.2f} clips/s ({per_clip * 1000:.0f} ms a clip)")
    for stage, seconds in stages.items():
        print(f"  {stage:<26} {seconds * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = {name: clip_path(name) for name in CLIPS}

    ratios = {}
    for name, path in paths.items():
        ours, ours_peak = measure(seeking_reader, (path, args.num_frames), args.repeats)
        base, base_peak = measure(
            decode_all_baseline, (path, args.num_frames), args.repeats if "10s" in name else 1
        )
        ratios[name] = base / ours
        print(
            f"{name}: seek {ours * 1000:.0f} ms (peak {ours_peak:.0f} MiB) | decode-all {base * 1000:.0f} ms "
            f"(peak {base_peak:.0f} MiB) | {ratios[name]:.1f}x"
        )
        if name == "3min_1080p" and ours_peak >= 1024:
            print(f"WARNING: peak memory {ours_peak:.0f} MiB is over the 1 GiB target")
    end_to_end(paths["10s_720p"], args.repeats)
    print(f"{ratios['3min_1080p']:.0f}x")


if __name__ == "__main__":
    main()
