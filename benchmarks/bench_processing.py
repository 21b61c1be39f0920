"""Reading clips and detecting faces, side by side: ours against what a user would pick instead.

Clips are generated once and cached in $OMNI_EMOTION_BENCH_DIR (default: <tmp>/omni-emotion-bench): a cheap
ultrafast clip with a keyframe every 2 s (720p, and 3 minutes of 1080p), a 1080p High-profile clip with B-frames at
about 8 Mb/s (what cameras and streaming sites write), a clip with one keyframe (most dataset clips) and a 4K clip.
Every frame carries its index in a strip along its bottom, so each reader's frames are checked to be exactly the
frames of our sampling rule; a reader that returns other frames is marked inexact and is no rival.

The readers run interleaved in one process (one call of each in turn, `--repeats` times), so that a busy machine
slows all of them alike, and their min and median are printed. The rivals are transformers' `load_video` backends
(pyav and opencv decode every frame up to the last sampled one; decord and torchcodec seek), decord and torchcodec
called directly, and OpenCV seeking by frame index; decord and torchcodec are measured when they import
(`pip install decord torchcodec`; torchcodec needs FFmpeg's shared libraries, e.g. `apt-get install libavcodec59
libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8` on Debian 12).

Then the peak memory of our reader in a fresh process and what one processor call adds to a process, the face
detectors (time per frame at 720p, and faces found / false boxes on generated faces), and the processor end to end
on the 720p and 4K clips. The last line is the smallest ratio, over the
clips, of the fastest exact rival's time to ours (above 1: ours is the fastest everywhere).

    python benchmarks/bench_processing.py [--num-frames 8] [--repeats 5] [--clips 10s_720p_gop2s ...]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from omni_emotion.synthetic import media as media_factory  # noqa: E402

HIGH_PROFILE = {"preset": "fast", "profile": "high", "bf": "3", "b": "8M", "maxrate": "10M", "bufsize": "16M"}
CLIPS = {
    "10s_720p_gop2s": {"seconds": 10, "width": 1280, "height": 720},
    "10s_720p_one_keyframe": {"seconds": 10, "width": 1280, "height": 720, "keyframe_seconds": 1000},
    "10s_1080p_high_8mbps": {
        "seconds": 10,
        "width": 1920,
        "height": 1080,
        "codec_options": HIGH_PROFILE,
        "frame_fn": media_factory.grainy_coded_face_frame,
    },
    "10s_4k_gop2s": {"seconds": 10, "width": 3840, "height": 2160},
    "3min_1080p_gop2s": {"seconds": 180, "width": 1920, "height": 1080},
}
# Readers that decode every frame up to the last sampled one: too slow to repeat on the 3-minute clip.
FULL_PASS = {"transformers load_video pyav", "transformers load_video opencv"}


def clip_path(name: str) -> Path:
    folder = Path(
        os.environ.get("OMNI_EMOTION_BENCH_DIR", Path(tempfile.gettempdir()) / "omni-emotion-bench")
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_coded.mp4"
    if not path.exists():
        print(f"generating {path} (once) ...", flush=True)
        partial = path.with_suffix(".partial.mp4")
        settings = {
            "fps": 30,
            "keyframe_seconds": 2.0,
            "frame_fn": media_factory.coded_face_frame,
            **CLIPS[name],
        }
        media_factory.write_clip(partial, **settings)
        partial.rename(path)
    return path


def expected_indices(frame_count: int, num_frames: int) -> list[int]:
    """Our rule at a constant frame rate: the first frame at or after each target, within half a frame."""
    return [math.ceil(target - 0.5) for target in np.linspace(0, frame_count - 1, num_frames)]


# -- the readers: (path, indices, num_frames) -> (T, H, W, 3) uint8 RGB ---------------------------------------------


def ours(path: Path, indices: list[int], num_frames: int) -> np.ndarray:
    from processing.media_reading import read_clip

    return read_clip(path, num_frames, with_audio=False).frames


def transformers_backend(backend: str) -> Callable[[Path, list[int], int], np.ndarray]:
    def read(path: Path, indices: list[int], num_frames: int) -> np.ndarray:
        from transformers.video_utils import load_video

        frames, _ = load_video(str(path), backend=backend, sample_indices_fn=lambda metadata, **_: indices)
        frames = np.asarray(frames)
        return frames if frames.shape[-1] == 3 else frames.transpose(0, 2, 3, 1)  # torchcodec: channels first

    return read


def decord_direct(path: Path, indices: list[int], num_frames: int) -> np.ndarray:
    import decord

    return decord.VideoReader(str(path)).get_batch(indices).asnumpy()


def torchcodec_direct(seek_mode: str) -> Callable[[Path, list[int], int], np.ndarray]:
    def read(path: Path, indices: list[int], num_frames: int) -> np.ndarray:
        from torchcodec.decoders import VideoDecoder

        batch = VideoDecoder(str(path), seek_mode=seek_mode).get_frames_at(indices)
        return batch.data.permute(0, 2, 3, 1).numpy()

    return read


def opencv_seeking(path: Path, indices: list[int], num_frames: int) -> np.ndarray:
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def available_readers() -> dict[str, Callable[[Path, list[int], int], np.ndarray]]:
    readers = {
        "ours": ours,
        "transformers load_video pyav": transformers_backend("pyav"),
        "transformers load_video opencv": transformers_backend("opencv"),
        "opencv seeking": opencv_seeking,
    }
    for name, module, extra in (
        ("decord", "decord", {"transformers load_video decord": transformers_backend("decord")}),
        ("torchcodec", "torchcodec.decoders", {}),
    ):
        try:
            __import__(module)
        except (ImportError, OSError, RuntimeError) as error:
            print(f"({name} not measured: {type(error).__name__}: {str(error).splitlines()[0][:120]})")
            continue
        readers.update(extra)
        if name == "decord":
            readers["decord get_batch"] = decord_direct
        else:
            readers["transformers load_video torchcodec"] = transformers_backend("torchcodec")
            readers["torchcodec exact"] = torchcodec_direct("exact")
            readers["torchcodec approximate"] = torchcodec_direct("approximate")
    return readers


def compare_readers(name: str, path: Path, num_frames: int, repeats: int) -> float | None:
    """Interleaved timings of every reader on one clip; the fastest exact rival's min over ours."""
    import av

    with av.open(str(path)) as container:
        frame_count = container.streams.video[0].frames
    indices = expected_indices(frame_count, num_frames)
    readers = available_readers()
    if name.startswith("3min"):
        readers = {key: reader for key, reader in readers.items() if key not in FULL_PASS}
    exact, times = {}, {key: [] for key in readers}
    for key, reader in readers.items():  # warm-up, and the frame check
        try:
            got = [media_factory.read_face_frame_code(frame) for frame in reader(path, indices, num_frames)]
        except Exception as error:  # a rival that cannot read the clip at all
            got = [f"{type(error).__name__}: {error}"]
        exact[key] = got == indices
        if not exact[key]:
            print(f"  {key}: INEXACT, frames {got} instead of {indices}")
    for _ in range(repeats):
        for key, reader in readers.items():
            if exact[key]:
                start = time.perf_counter()
                reader(path, indices, num_frames)
                times[key].append(time.perf_counter() - start)
    print(
        f"{name} ({frame_count} frames, {num_frames} sampled, {repeats} interleaved repeats): min / median ms"
    )
    for key in readers:
        if times[key]:
            print(f"  {key:<36} {min(times[key]) * 1000:8.0f} {statistics.median(times[key]) * 1000:8.0f}")
    rivals = [min(times[key]) for key in readers if key != "ours" and times[key]]
    if not rivals or not times["ours"]:
        return None
    ratio = min(rivals) / min(times["ours"])
    print(f"  fastest exact rival / ours: {ratio:.2f}x")
    return ratio


# -- peak memory (a fresh process each, so that the peak is the reader's own) ---------------------------------------


def _peak(path: Path, num_frames: int, queue) -> None:
    """Our reader alone (media_reading.py needs only PyAV, NumPy and Pillow: loaded by path, so that the peak is
    not the package's imports), then the process's high-water mark of resident memory. VmHWM, not ru_maxrss: the
    latter keeps the parent's resident size across fork and exec."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("media_reading", REPO / "processing" / "media_reading.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["media_reading"] = module
    spec.loader.exec_module(module)
    module.read_clip(path, num_frames, max_audio_seconds=30.0)
    status = Path("/proc/self/status").read_text()
    queue.put(int(status.split("VmHWM:")[1].split()[0]) / 1024)


def peak_memory_mib(path: Path, num_frames: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak, args=(path, num_frames, queue))
    process.start()
    peak = queue.get()
    process.join()
    return peak


# -- face detectors ---------------------------------------------------------------------------------------------------


def compare_detectors(repeats: int) -> None:
    from processing.face_tracking import HaarCascadeFaceDetector, RetinaFaceDetector

    detectors = {"haar (640 px)": HaarCascadeFaceDetector()}
    try:
        detectors["retinaface (640 px)"] = RetinaFaceDetector()
        detectors["retinaface (480 px)"] = RetinaFaceDetector(max_side=480)
    except ImportError as error:
        print(f"(RetinaFace not measured: {error})")
    frame = media_factory.moving_face_frame(0, 1280, 720)
    times = {key: [] for key in detectors}
    for detector in detectors.values():
        detector(frame)
    for _ in range(repeats * 4):
        for key, detector in detectors.items():
            start = time.perf_counter()
            detector(frame)
            times[key].append(time.perf_counter() - start)
    kinds = media_factory.FACE_TEST_KINDS
    print(
        "face detectors: ms per 1280x720 frame (min / median), then faces found / false boxes of 8 per kind"
    )
    print(f"  {'':<22} {'min':>6} {'median':>6}  " + "  ".join(f"{kind:>8}" for kind in kinds))
    for key, detector in detectors.items():
        scores = [_detection_score(detector, kind) for kind in kinds]
        cells = "  ".join(f"{found:>4} / {false:<1}" for found, false in scores)
        print(
            f"  {key:<22} {min(times[key]) * 1000:6.1f} {statistics.median(times[key]) * 1000:6.1f}  {cells}"
        )


def _detection_score(detector, kind: str) -> tuple[int, int]:
    found = false = 0
    for variant in range(8):
        frame, truth = media_factory.face_test_frame(kind, variant)
        hits = []
        for box in detector(frame):
            centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            inside = (
                truth is not None and truth[0] <= centre_x <= truth[2] and truth[1] <= centre_y <= truth[3]
            )
            ratio = (
                0.0 if truth is None else np.sqrt(np.prod(box[2:] - box[:2]) / np.prod(truth[2:] - truth[:2]))
            )
            hits.append(inside and 0.4 <= ratio <= 2.5)
        found += any(hits)
        false += hits.count(False)
    return found, false


# -- the processor end to end ----------------------------------------------------------------------------------------


def end_to_end(path: Path, repeats: int) -> None:
    """Clips per second through the whole processor, and where the time goes: reading with the 384 px frames made
    as each frame decodes, the faces (detection on a small copy, crops from the full frame, resized to 224 px), and
    the rest of the call (normalising, log-mel, tokens)."""
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer
    from processing import OmniEmotionProcessor
    from processing.media_reading import read_clip
    from processing.processing_omni_emotion import CLIP_MARKUP

    processor = OmniEmotionProcessor(tokenizer=build_tiny_tokenizer())
    processor(text=CLIP_MARKUP, videos=[path], return_tensors="pt")  # warm-up
    size = processor.video_processor.size
    calls = {"read + 384 px frames": [], "decode_clip (+ faces)": [], "processor call (+ tensors)": []}
    for _ in range(repeats):
        start = time.perf_counter()
        read_clip(
            path,
            processor.num_frames,
            max_audio_seconds=processor.max_audio_seconds,
            convert_frame=lambda picture: picture.rgb(size["width"], size["height"], "BICUBIC"),
        )
        calls["read + 384 px frames"].append(time.perf_counter() - start)
        start = time.perf_counter()
        processor.decode_clip(path)
        calls["decode_clip (+ faces)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        processor(text=CLIP_MARKUP + "How does she feel?", videos=[path], return_tensors="pt")
        calls["processor call (+ tensors)"].append(time.perf_counter() - start)
    detector = type(processor.face_detector).__name__
    per_clip = min(calls["processor call (+ tensors)"])
    print(f"end to end on {path.name} ({detector}): {1 / per_clip:.2f} clips/s (min of {repeats})")
    for stage, seconds in calls.items():
        print(f"  {stage:<28} min {min(seconds) * 1000:6.0f} ms  median {np.median(seconds) * 1000:6.0f} ms")


def _processor_peak(path: Path, queue) -> None:
    """How far one `decode_clip` raises the resident high-water mark over what the process held before it (the
    imports, the detector's session and the thread pools, made by a first call)."""
    sys.path[:0] = [str(REPO)]
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer
    from processing import OmniEmotionProcessor

    processor = OmniEmotionProcessor(tokenizer=build_tiny_tokenizer())
    processor.decode_clip(path)
    status = Path("/proc/self/status")
    before = int(status.read_text().split("VmRSS:")[1].split()[0])
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the present size
    processor.decode_clip(path)
    queue.put((int(status.read_text().split("VmHWM:")[1].split()[0]) - before) / 1024)


def processor_peak_mib(path: Path) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_processor_peak, args=(path, queue))
    process.start()
    peak = queue.get()
    process.join()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    args = parser.parse_args()
    paths = {name: clip_path(name) for name in args.clips}

    ratios = {}
    for name, path in paths.items():
        repeats = 2 if name.startswith("3min") else args.repeats
        ratios[name] = compare_readers(name, path, args.num_frames, repeats)
    print("peak memory of our reader (frames and 30 s of audio, fresh process):")
    for name, path in paths.items():
        peak = peak_memory_mib(path, args.num_frames)
        print(f"  {name:<24} {peak:6.0f} MiB" + ("  OVER the 1 GiB target" if peak >= 1024 else ""))
    if os.access("/proc/self/clear_refs", os.W_OK):
        print("memory one processor call adds (decode_clip, fresh process, after a first call):")
        for name, path in paths.items():
            print(f"  {name:<24} {processor_peak_mib(path):6.0f} MiB")
    compare_detectors(args.repeats)
    for name in ("10s_720p_gop2s", "10s_4k_gop2s"):
        if name in paths:
            end_to_end(paths[name], args.repeats)
    measured = {name: ratio for name, ratio in ratios.items() if ratio is not None}
    if measured:
        slowest = min(measured, key=measured.get)
        print(f"fastest exact rival / ours, worst clip ({slowest}): {measured[slowest]:.2f}x")


if __name__ == "__main__":
    main()
