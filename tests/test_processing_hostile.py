"""Media that real datasets hold and that once came back wrong without a word: transport streams, truncated files,
several audio tracks, variable frame rates, JPEG photos and frame folders, cover art, huge pictures and crafted files.

Every clip here is made by the test, with frames that carry their own index (`code_frame`), so that a frame later
than its target or a repeated frame is seen exactly, not within a grey-level tolerance.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from omni_emotion.synthetic import media as mf
from processing import media_reading
from processing.media_reading import MediaReadError, MediaReadWarning, read_audio, read_clip

FPS, SECONDS = 25, 4
FRAMES = FPS * SECONDS


def codes(frames: np.ndarray) -> list[int]:
    return [mf.read_frame_code(frame) for frame in frames]


def expected_codes(count: int, num_frames: int) -> list[int]:
    """The sampling rule at a constant rate: the first frame at or after each target, within half a frame."""
    return [math.ceil(target - 0.5) for target in np.linspace(0, count - 1, num_frames)]


def coded_clip(path: Path, **kwargs) -> str:
    settings = {"seconds": SECONDS, "fps": FPS, "frame_fn": mf.code_frame, "keyframe_seconds": 1.0, **kwargs}
    return mf.write_clip(path, **settings)


CONTAINERS = {
    "ts": {"container_format": "mpegts"},
    "m2ts": {"container_format": "mpegts", "format_options": {"mpegts_m2ts_mode": "1"}},
    "mpg": {
        "container_format": "mpeg",
        "video_codec": "mpeg2video",
        "audio_codec": "mp2",
        "audio_rate": 48_000,
        "codec_options": {"b": "2M"},
    },
    "mkv": {"container_format": "matroska"},
    "mov": {"container_format": "mov"},
    "avi": {"container_format": "avi", "audio_codec": "mp3"},
    # As a browser's MediaRecorder writes it: no duration and no index (cues).
    "webm": {
        "container_format": "webm",
        "video_codec": "libvpx-vp9",
        "audio_codec": "libopus",
        "audio_rate": 48_000,
        "format_options": {"live": "1"},
        "codec_options": {"deadline": "realtime", "cpu-used": "8"},
    },
}


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_every_container_gives_the_exact_frames_without_repeats(tmp_path, suffix):
    path = coded_clip(tmp_path / f"clip.{suffix}", **CONTAINERS[suffix])
    clip = read_clip(path, num_frames=8)
    assert codes(clip.frames) == expected_codes(FRAMES, 8)
    assert clip.audio is not None and abs(clip.audio.size / 16_000 - SECONDS) < 0.2


def test_a_stream_with_one_keyframe_and_no_index_is_read_exactly(tmp_path):
    # A one-keyframe mp4 remuxed to MPEG-TS without re-encoding (`ffmpeg -c copy`): seeks find no keyframe.
    one_keyframe = coded_clip(tmp_path / "one_keyframe.mp4", keyframe_seconds=100)
    path = mf.remux(one_keyframe, tmp_path / "remuxed.ts", "mpegts")
    assert codes(read_clip(path, num_frames=8).frames) == expected_codes(FRAMES, 8)


@pytest.mark.parametrize(
    ("codec", "options", "stream_format"),
    [("libx264", {}, "h264"), ("libx265", {"x265-params": "log-level=error"}, "hevc")],
)
def test_an_elementary_stream_is_sampled_by_index_from_a_path_or_memory(
    tmp_path, codec, options, stream_format
):
    # A camera's or an encoder's raw output (`.h264`, `.hevc`): no timestamps, no container to seek in.
    clip = coded_clip(tmp_path / "clip.mp4", video_codec=codec, codec_options=options, audio=False)
    path = Path(mf.remux(clip, tmp_path / f"clip.{stream_format}", stream_format))
    with av.open(str(path)) as container:
        assert container.format.name == stream_format and container.streams.video[0].start_time is None
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        assert codes(read_clip(source, num_frames=8).frames) == expected_codes(FRAMES, 8)


def test_a_one_keyframe_clip_is_decoded_in_one_pass(tmp_path, monkeypatch):
    path = coded_clip(tmp_path / "one_keyframe.mp4", keyframe_seconds=100, audio=False)
    decoded = 0
    original = media_reading._decode

    def counting(*args, **kwargs):
        nonlocal decoded
        inner, moved = original(*args, **kwargs), None
        while True:
            try:
                frame = inner.send(moved)
            except StopIteration:
                return
            decoded += 1
            moved = yield frame

    monkeypatch.setattr(media_reading, "_decode", counting)
    assert codes(read_clip(path, num_frames=8).frames) == expected_codes(FRAMES, 8)
    # Seeking for each target would decode from the only keyframe every time: about 4x more.
    assert decoded <= FRAMES + 2, decoded


INDEX_IN_FRONT = {
    "mp4": {"format_options": {"movflags": "faststart"}},
    "mkv": {
        "container_format": "matroska",
        "format_options": {"cues_to_front": "1", "reserve_index_space": "4096"},
    },
}


@pytest.mark.parametrize("suffix", INDEX_IN_FRONT)
def test_a_truncated_file_with_its_index_in_front_gives_real_frames_and_says_so(tmp_path, suffix):
    whole = coded_clip(tmp_path / f"whole.{suffix}", **INDEX_IN_FRONT[suffix])
    path = mf.truncated_copy(whole, tmp_path / f"cut.{suffix}", keep=0.5)
    with pytest.warns(
        MediaReadWarning, match=r"cut\.\w+ is truncated: about \d+ of its 10\d video frames"
    ) as caught:
        clip = read_clip(path, num_frames=8)
    decodable = int(str(caught[0].message).split("about ")[1].split(" of")[0])
    assert 20 < decodable < 80
    got = codes(clip.frames)
    assert len(set(got)) == 8 and got == sorted(got), got  # no repeated frame
    assert got[0] == 0 and got[-1] >= decodable - 3
    with pytest.raises(MediaReadError, match=r"cut\.\w+.*truncated.*strict=True"):
        read_clip(path, num_frames=8, strict=True)


def test_a_healthy_file_reads_without_warnings(tmp_path):
    path = coded_clip(tmp_path / "whole.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert codes(read_clip(path, num_frames=8).frames) == expected_codes(FRAMES, 8)


def test_an_under_reported_duration_does_not_shrink_the_sampled_span(tmp_path):
    path = mf.with_declared_duration(coded_clip(tmp_path / "whole.mp4"), tmp_path / "half.mp4", 0.5)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(SECONDS / 2)
    assert codes(read_clip(path, num_frames=8).frames) == expected_codes(FRAMES, 8)


@pytest.mark.parametrize("container_format", ["matroska", "mp4"])
def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path, container_format):
    # 25 fps for 1 s, then one frame every 0.5 s, then 25 fps again.
    times = [i / 25 for i in range(25)] + [1.5, 2.0, 2.5] + [3 + i / 25 for i in range(25)]
    path = coded_clip(tmp_path / "vfr.clip", timestamps=times, container_format=container_format)
    got = codes(read_clip(path, num_frames=6).frames)
    with av.open(path) as container:  # its average rate sets the tolerance: half a frame
        rate = float(container.streams.video[0].average_rate)
    targets = np.linspace(0, times[-1], 6)
    assert got == [next(i for i, t in enumerate(times) if t >= target - 0.5 / rate) for target in targets]


def _dominant_hz(waveform: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.fft.rfftfreq(waveform.size, 1 / rate)[spectrum.argmax()])


def _hz(frequency: float):
    return lambda t: 0.3 * np.sin(2 * np.pi * frequency * t)


@pytest.mark.parametrize("container_format", ["matroska", "mp4"])
def test_the_default_audio_track_is_taken(tmp_path, container_format):
    path = coded_clip(
        tmp_path / "tracks.clip",
        container_format=container_format,
        audio_tracks=[_hz(440), _hz(880)],
        default_audio_track=1,
    )
    assert _dominant_hz(read_clip(path, num_frames=0).audio) == pytest.approx(880, abs=5)


def test_without_a_default_track_the_first_with_sound_is_taken_and_the_caller_may_choose(tmp_path):
    path = coded_clip(
        tmp_path / "tracks.mkv",
        container_format="matroska",
        format_options={"default_mode": "passthrough"},
        audio_tracks=[mf.silence, _hz(880), _hz(440)],
    )
    assert _dominant_hz(read_audio(path)) == pytest.approx(880, abs=5)
    assert _dominant_hz(read_audio(path, audio_track=2)) == pytest.approx(440, abs=5)
    assert not np.any(read_clip(path, num_frames=0, audio_track=0).audio)
    with pytest.raises(MediaReadError, match=r"audio_track=3.*3 audio track"):
        read_audio(path, audio_track=3)


def test_the_processor_passes_the_reading_options_to_each_file(tmp_path, tiny_tokenizer):
    from processing import OmniEmotionProcessor
    from processing.processing_omni_emotion import CLIP_MARKUP

    processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer)
    tracks = coded_clip(
        tmp_path / "tracks.mkv",
        container_format="matroska",
        format_options={"default_mode": "passthrough"},
        audio_tracks=[_hz(880), mf.silence],
    )
    sound = processor(text=CLIP_MARKUP, videos=[tracks])["input_features"]
    silent = processor(text=CLIP_MARKUP, videos=[tracks], audio_track=1)["input_features"]
    assert sound.std() > 10 * silent.std()  # a silent window's log-mel is flat
    chat = [
        {"role": "user", "content": [{"type": "video", "path": tracks}, {"type": "text", "text": "Why?"}]}
    ]
    from_chat = processor.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_tensors="pt", processor_kwargs={"audio_track": 1}
    )
    assert torch.equal(from_chat["input_features"], silent)
    with pytest.raises(MediaReadError, match=r"audio_track=2.*2 audio track"):
        processor(text=CLIP_MARKUP, videos=[tracks], audio_track=2)

    cut = mf.truncated_copy(
        coded_clip(tmp_path / "whole.mp4", format_options={"movflags": "faststart"}), tmp_path / "cut.mp4"
    )
    with pytest.warns(MediaReadWarning, match="cut.mp4 is truncated"):
        processor(text=CLIP_MARKUP, videos=[cut])
    with pytest.raises(MediaReadError, match=r"cut\.mp4.*strict=True"):
        processor(text=CLIP_MARKUP, videos=[cut], strict_media=True)
    with pytest.raises(MediaReadError, match=r"whole\.mp4.*320x240.*`max_pixels`"):
        processor(text=CLIP_MARKUP, videos=[tmp_path / "whole.mp4"], max_media_pixels=320 * 200)


def test_a_jpeg_photo_is_read_as_an_image(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(mf.astronaut()).save(path, quality=95)
    clip = read_clip(path, num_frames=8)
    assert clip.frames.shape == (1, 512, 512, 3) and clip.audio is None
    assert np.abs(clip.frames[0].astype(int) - mf.astronaut()).mean() < 3
    from_bytes = read_clip(path.read_bytes(), num_frames=8)
    np.testing.assert_array_equal(from_bytes.frames, clip.frames)


def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:10, :10] = 255  # top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(picture).save(path, quality=95, exif=exif)
    frame = read_clip(path).frames[0]
    assert frame.shape == (60, 40, 3)
    assert frame[:10, -10:].mean() > 200  # shown at the top right


def test_a_folder_of_jpeg_frames_is_a_clip(tmp_path):
    for index in range(30):
        Image.fromarray(mf.code_frame(index, 208, 48)).save(tmp_path / f"{index:05d}.jpg", quality=95)
    clip = read_clip(tmp_path, num_frames=8)
    assert codes(clip.frames) == np.linspace(0, 29, 8).round().astype(int).tolist()


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    frame = read_clip(path).frames[0]
    np.testing.assert_allclose(frame[0, :, 0], ramp[0] / 257, atol=1.5)


@pytest.mark.parametrize("container_format", ["mp3", "mp4"])  # an .m4a is AAC in an MP4 container
def test_an_audio_file_with_cover_art_is_audio_alone(tmp_path, container_format):
    suffix = {"mp3": "mp3", "mp4": "m4a"}[container_format]
    path = mf.write_audio_with_cover(
        tmp_path / f"song.{suffix}", seconds=1.0, container_format=container_format
    )
    with av.open(path) as container:
        assert container.streams.video[0].disposition & av.stream.Disposition.attached_pic
    clip = read_clip(path, num_frames=8)
    assert clip.frames is None and abs(clip.audio.size - 16_000) < 1_200


def test_a_picture_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    path = coded_clip(tmp_path / "big.mp4", seconds=0.2)
    monkeypatch.setattr(media_reading, "_sample_frames", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(MediaReadError, match=r"big\.mp4.*320x240 \(0\.1 megapixels\).*`max_pixels`"):
        read_clip(path, max_pixels=320 * 200)
    image = mf.write_png(tmp_path / "big.png")
    with pytest.raises(MediaReadError, match=r"big\.png.*512x512"):
        read_clip(image, max_pixels=100_000)


def test_frames_larger_than_max_side_are_scaled_while_decoding(tmp_path):
    path = coded_clip(tmp_path / "wide.mp4", seconds=0.4, width=1280, height=720)
    clip = read_clip(path, num_frames=4, max_side=640)
    assert clip.frames.shape == (4, 360, 640, 3)
    assert codes(clip.frames) == expected_codes(10, 4)
    photo = read_clip(mf.write_png(tmp_path / "photo.png"), max_side=128)
    assert photo.frames.shape == (1, 128, 128, 3)


def test_formats_that_open_other_files_are_refused_from_memory(tmp_path, monkeypatch):
    coded_clip(tmp_path / "secret.mp4", seconds=0.2)
    monkeypatch.chdir(tmp_path)
    playlist = b"ffconcat version 1.0\nfile 'secret.mp4'\n"
    with pytest.raises(MediaReadError, match=r"<39 bytes>.*never a playlist or concat list"):
        read_clip(playlist)
    with pytest.raises(MediaReadError, match="never a playlist"):
        read_clip(io.BytesIO(playlist))


@pytest.mark.parametrize("suffix", ["mp4", "ts"])
def test_frame_threaded_decoding_of_large_frames_gives_the_same_frames(tmp_path, monkeypatch, suffix):
    # Large frames decode with frame threads; here every size does, on B-frames, through seeks and skipped frames.
    path = coded_clip(
        tmp_path / f"b_frames.{suffix}",
        container_format={"mp4": "mp4", "ts": "mpegts"}[suffix],
        codec_options={"preset": "fast", "bf": "3", "b-pyramid": "normal"},
        audio=False,
    )
    monkeypatch.setattr(media_reading, "FRAME_THREADS_MIN_PIXELS", 0)
    assert codes(read_clip(path, num_frames=12).frames) == expected_codes(FRAMES, 12)
