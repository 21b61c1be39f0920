"""Frames converted to what the processor needs as they are decoded: 384 px frames, a detection copy, face crops.

The reader hands each sampled frame to a converter as a `Picture` and keeps only what that returns, so that a 4K
clip never sits in memory as eight full-size RGB frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from omni_emotion.synthetic import media as mf
from processing import OmniEmotionProcessor
from processing.face_tracking import primary_face_indices
from processing.media_reading import Picture, read_clip


@pytest.fixture
def processor(tiny_tokenizer) -> OmniEmotionProcessor:
    return OmniEmotionProcessor(tokenizer=tiny_tokenizer)


def test_the_converter_sees_each_distinct_frame_once_and_its_results_are_the_frames(tmp_path):
    path = mf.write_clip(tmp_path / "three.mp4", seconds=0.1, fps=30, audio=False)  # 3 frames for 8 samples
    seen = []

    def convert(picture: Picture) -> np.ndarray:
        seen.append(picture)
        return picture.rgb()

    converted = read_clip(path, num_frames=8, convert_frame=convert).frames
    assert len(seen) == 3 and len(converted) == 8
    assert len({id(frame) for frame in converted}) == 3  # a frame sampled twice is the same object
    np.testing.assert_array_equal(np.stack(converted), read_clip(path, num_frames=8).frames)


def test_a_picture_gives_any_size_upright_with_rotation_applied(tmp_path):
    def marked(index: int, width: int, height: int) -> np.ndarray:
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:60, :60] = 255  # the stored picture's top-left corner
        return frame

    path = mf.write_clip(tmp_path / "turned.mp4", seconds=0.2, frame_fn=marked, rotation=90, audio=False)
    pictures = read_clip(
        path,
        num_frames=1,
        convert_frame=lambda p: (p.width, p.height, p.rgb(), p.rgb(96, 96, "BICUBIC"), p.rgb_within(160)),
    ).frames
    width, height, full, square, within = pictures[0]
    assert (width, height) == (240, 320) and full.shape == (320, 240, 3)
    assert square.shape == (96, 96, 3) and within.shape == (160, 120, 3)
    for image in (full, square, within):  # turned a quarter counter-clockwise: the corner is now bottom-left
        corner = image.shape[0] // 8
        assert image[-corner:, :corner].mean() > 200 and image[:corner, :corner].mean() < 50
    array = Picture(full, max_side=None)
    assert array.rgb() is full and array.rgb_within(160).shape == (160, 120, 3)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        Picture(full[..., 0])


def test_a_file_gives_what_its_decoded_frames_give(processor, tmp_path):
    """A path is converted by FFmpeg's scaler from the decoder's YUV, decoded frames by Pillow: the same within a
    grey level or two on average, with the same faces found."""
    path = mf.write_clip(tmp_path / "face.mp4", seconds=1, width=640, height=360)
    from_file = processor.decode_clip(path)
    from_frames = processor.decode_clip(read_clip(path, num_frames=processor.num_frames).frames)
    assert from_file["frames"].shape == from_frames["frames"].shape == (8, 384, 384, 3)
    frame_gap = np.abs(from_file["frames"].astype(int) - from_frames["frames"].astype(int)).mean()
    assert frame_gap < 2.0
    assert from_file["face_mask"].all() and from_frames["face_mask"].all()
    face_gap = np.abs(from_file["faces"].astype(int) - from_frames["faces"].astype(int)).mean()
    assert face_gap < 4.0


def test_a_video_processor_resize_and_a_pictures_resize_agree(processor, tmp_path):
    """Decoded frames are resized by Pillow's bicubic filter, which is the video processor's own within one level."""
    frame = mf.moving_face_frame(0, 1280, 720)
    ours = processor.decode_clip(frame)["frames"][0].astype(int)
    theirs = processor.video_processor(
        [frame[None]], do_rescale=False, do_normalize=False, return_tensors="np"
    )
    gap = np.abs(ours - np.asarray(theirs["pixel_values_videos"][0][0]).transpose(1, 2, 0).astype(int))
    assert gap.max() <= 1


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc high-water mark"
)
def test_a_4k_clip_is_never_held_at_full_size(tiny_tokenizer, tmp_path):
    """Eight 4K RGB frames are 190 MiB (and were held twice before): the processor now keeps 384 px frames and
    face crops, converting one full-size frame at a time."""
    path = mf.write_clip(tmp_path / "4k.mp4", seconds=1, fps=8, width=3840, height=2160, audio=False)
    # A detector that finds a face in every frame, whichever detector is installed: every frame gives a crop.
    processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer, face_detector=_RecordingDetector(max_side=640))
    processor.decode_clip(path)  # the thread pools exist from here on

    def status(key: str) -> float:
        return int(Path("/proc/self/status").read_text().split(f"{key}:")[1].split()[0]) / 1024

    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark to the present size
    decoded = processor.decode_clip(path)
    assert decoded["face_mask"].all()  # a face was cut from every full-size frame
    assert status("VmHWM") - before < 120


def test_primary_face_indices_name_the_tracked_box_in_each_frame():
    big, small = np.array([100, 100, 200, 200]), np.array([10, 10, 30, 30])
    detections = [np.stack([small, big]), np.stack([big + 5]), np.zeros((0, 4)), np.stack([big, small])]
    assert primary_face_indices(detections) == [1, 0, None, 0]


class _RecordingDetector:
    """Finds one face, the middle of whatever it is shown, and records the size of what it was shown."""

    def __init__(self, max_side: int | None = None):
        if max_side is not None:
            self.max_side = max_side
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.shapes.append(image.shape)
        height, width = image.shape[:2]
        return np.array([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]], np.float32)


def test_a_detector_sees_a_copy_at_its_max_side_and_its_boxes_are_scaled_back(tiny_tokenizer, tmp_path):
    from omni_emotion.analyze import _TimedFaceDetector

    path = mf.write_clip(tmp_path / "wide.mp4", seconds=0.5, width=640, height=360, audio=False)
    faces = {}
    for max_side in (160, None):
        detector = _RecordingDetector(max_side)
        processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer, face_detector=_TimedFaceDetector(detector))
        faces[max_side] = processor.decode_clip(path)["faces"].astype(int)
        assert set(detector.shapes) == {(90, 160, 3) if max_side else (360, 640, 3)}
    # The same box in the frame's pixels either way: the crops agree but for the copy's rounding.
    assert np.abs(faces[160] - faces[None]).mean() < 2.0
