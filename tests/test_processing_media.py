"""Media reading: every kind of source, every edge case of the issue, and one clear error type."""

from __future__ import annotations

import http.server
import io
import threading
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from omni_emotion.synthetic import media as mf
from processing import media_reading
from processing.media_reading import MediaReadError, UrlLimits, read_audio, read_clip, resample_audio


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    mf.write_clip(root / "indexed.mp4", seconds=2, frame_fn=mf.time_bar_frame)
    mf.write_clip(root / "silent.mp4", seconds=1, audio=False)
    mf.write_clip(root / "three_frames.mp4", seconds=0.1, frame_fn=mf.time_bar_frame)
    mf.write_wav(root / "stereo_44k.wav", seconds=2.5, rate=44_100, channels=2)
    mf.write_png(root / "astronaut.png")
    return root


def sampled_indices(frames: np.ndarray) -> list[int]:
    return [round(float(value)) for value in frames[:, :, :, 0].mean(axis=(1, 2))]


def test_frames_are_sampled_uniformly_over_the_duration(media):
    clip = read_clip(media / "indexed.mp4", num_frames=8)
    assert clip.frames.shape == (8, 240, 320, 3) and clip.frames.dtype == np.uint8
    expected = np.linspace(0, 59, 8)
    assert np.abs(np.array(sampled_indices(clip.frames)) - expected).max() <= 1.5


def test_audio_track_is_mono_16khz(media):
    clip = read_clip(media / "indexed.mp4")
    assert clip.audio.ndim == 1 and clip.audio.dtype == np.float32 and clip.sampling_rate == 16_000
    assert abs(clip.audio.size / 16_000 - 2.0) < 0.1
    assert 0.1 < np.abs(clip.audio).max() <= 1.0


def test_audio_stops_at_max_seconds(media):
    assert read_clip(media / "indexed.mp4", max_audio_seconds=0.5).audio.size == 8_000


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file"])
def test_every_local_source_kind_gives_the_same_clip(media, kind):
    path = media / "indexed.mp4"
    source = {
        "path": path,
        "str": str(path),
        "bytes": path.read_bytes(),
        "file": io.BytesIO(path.read_bytes()),
    }[kind]
    assert sampled_indices(read_clip(source, num_frames=4).frames) == sampled_indices(
        read_clip(path, 4).frames
    )


class _Server:
    """A local HTTP server over a folder; `/slow` never answers within a short timeout, `/trickle` sends a byte
    every 20 ms (each read is quick, the whole body would take 20 s)."""

    def __init__(self, root: Path):
        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                if self.path == "/slow":
                    time.sleep(1)  # past the client's timeout; it has gone, so answer nothing
                    return
                if self.path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    for _ in range(1000):
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return  # the client gave up
                        time.sleep(0.02)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server(media):
    server = _Server(media)
    yield server
    server.httpd.shutdown()


def test_url_source(server, media):
    clip = read_clip(f"{server.url}/indexed.mp4", num_frames=4)
    assert sampled_indices(clip.frames) == sampled_indices(read_clip(media / "indexed.mp4", 4).frames)


def test_url_over_size_limit_is_refused(server):
    with pytest.raises(MediaReadError, match=r"over the limit|more than the limit"):
        read_clip(f"{server.url}/indexed.mp4", url_limits=UrlLimits(max_bytes=1_000))


def test_url_timeout_and_missing_url_are_clear_errors(server):
    with pytest.raises(MediaReadError, match="slow"):
        read_clip(f"{server.url}/slow", url_limits=UrlLimits(timeout_s=0.3))
    with pytest.raises(MediaReadError, match=r"missing.mp4.*download failed"):
        read_clip(f"{server.url}/missing.mp4")


def test_url_time_limit_is_a_deadline_that_a_trickling_server_cannot_stretch(server):
    start = time.monotonic()
    with pytest.raises(MediaReadError, match=r"trickle.*longer than 0.5 s"):
        read_clip(f"{server.url}/trickle", url_limits=UrlLimits(timeout_s=0.5))
    assert time.monotonic() - start < 2.0


def test_a_download_holds_the_body_once(server, media):
    data = np.random.default_rng(0).bytes(8 << 20)
    (media / "blob.bin").write_bytes(data)
    tracemalloc.start()
    try:
        body = media_reading.fetch_url(f"{server.url}/blob.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body.getvalue() == data
    assert peak < 1.25 * len(data), peak / len(data)  # a list of chunks joined at the end peaks at 2x


def test_url_limits_reach_the_processor(server):
    from omni_emotion.synthetic.tiny import build_tiny_tokenizer
    from processing import OmniEmotionProcessor
    from processing.processing_omni_emotion import CLIP_MARKUP

    processor = OmniEmotionProcessor(tokenizer=build_tiny_tokenizer(), url_limits=UrlLimits(max_bytes=1_000))
    with pytest.raises(MediaReadError, match=r"indexed.mp4.*over the limit of 1000"):
        processor(text=CLIP_MARKUP, videos=[f"{server.url}/indexed.mp4"])
    with pytest.raises(MediaReadError, match=r"indexed.mp4.*over the limit of 1000"):
        processor(text="<au_start><audio><au_end>", audio=[f"{server.url}/indexed.mp4"])
    assert "url_limits" not in processor.to_dict()


def test_clip_without_audio_track(media):
    clip = read_clip(media / "silent.mp4")
    assert clip.audio is None and clip.frames.shape[0] == 8


def test_audio_file_alone_has_no_frames_and_is_downmixed_and_resampled(media):
    clip = read_clip(media / "stereo_44k.wav")
    assert clip.frames is None
    assert abs(clip.audio.size - 2.5 * 16_000) <= 160


def test_still_image_is_a_one_frame_clip(media):
    clip = read_clip(media / "astronaut.png", num_frames=8)
    assert clip.frames.shape == (1, 512, 512, 3) and clip.audio is None
    np.testing.assert_array_equal(clip.frames[0], mf.astronaut())


def test_a_folder_of_frames_is_a_clip_in_natural_name_order(tmp_path):
    for index in range(12):  # frame_2.png must come before frame_10.png
        mf.write_png(tmp_path / f"frame_{index}.png", mf.time_bar_frame(index * 10, 32, 24))
    (tmp_path / "labels.txt").write_text("not a frame")
    clip = read_clip(tmp_path, num_frames=4)
    assert clip.audio is None and clip.frames.shape == (4, 24, 32, 3)
    assert [int(frame[0, 0, 0]) // 10 for frame in clip.frames] == [0, 4, 7, 11]


def test_a_folder_without_frames_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(MediaReadError, match="holds no image frames"):
        read_clip(tmp_path)


def test_clip_shorter_than_num_frames_repeats_frames_uniformly(media):
    clip = read_clip(media / "three_frames.mp4", num_frames=8)
    assert sampled_indices(clip.frames) == [0, 0, 1, 1, 1, 1, 2, 2]


def test_variable_frame_rate_is_sampled_by_time(tmp_path):
    # 30 fps for 1 s, a 2 s gap with 2 frames, then 30 fps again: each frame's grey level is 40 x its time.
    times = [i / 30 for i in range(30)] + [1.5, 2.5] + [3 + i / 30 for i in range(30)]
    path = mf.write_clip(
        tmp_path / "vfr.mp4",
        timestamps=times,
        frame_fn=lambda i, w, h: np.full((h, w, 3), round(40 * times[i]), np.uint8),
    )
    clip = read_clip(path, num_frames=6)
    got = np.array([frame[:, :, 0].mean() / 40 for frame in clip.frames])
    targets = np.linspace(0, times[-1], 6)
    chosen = [min(t for t in times if t >= target - 1 / 60) for target in targets]
    # Within a frame or two of the time targets; sampling by frame index would give 0.4 s, 0.8 s, 3.17 s, ...
    np.testing.assert_allclose(got, chosen, atol=0.1)


def test_rotation_metadata_is_applied(tmp_path):
    def marked(index, width, height):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:40, :40] = 255  # top-left corner
        return frame

    path = mf.write_clip(
        tmp_path / "rotated.mp4", seconds=0.2, width=320, height=240, frame_fn=marked, rotation=90
    )
    frame = read_clip(path, num_frames=1).frames[0]
    assert frame.shape == (320, 240, 3)
    # 90 degrees counter-clockwise brings the top-left corner to the bottom-left.
    assert frame[-20:, :20].mean() > 200 and frame[:20, :20].mean() < 50


def test_long_1080p_clip_decodes_only_around_the_sampled_frames(tmp_path, monkeypatch):
    path = mf.write_clip(
        tmp_path / "hd.mp4",
        seconds=6,
        width=1920,
        height=1080,
        keyframe_seconds=1,
        frame_fn=mf.time_bar_frame,
    )
    decoded = 0
    original = media_reading._decode

    def counting(*args, **kwargs):
        nonlocal decoded
        for frame in original(*args, **kwargs):
            decoded += 1
            yield frame

    monkeypatch.setattr(media_reading, "_decode", counting)
    clip = read_clip(path, num_frames=3)
    assert clip.frames.shape == (3, 1080, 1920, 3)
    # The floor: per target, the frames from the keyframe before it (1 s = 30 frames apart) up to it.
    assert decoded <= 3 * 30 < 180, decoded


def _write_clip_with_b_frames(path: Path, seconds: int = 4, fps: int = 30) -> Path:
    """H.264 High profile with x264's B-frame pyramid: some B-frames are references, the others are not."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"g": str(fps), "bf": "3", "b-pyramid": "normal", "preset": "fast"}
        for index in range(seconds * fps):
            picture = mf.moving_face_frame(4 * index, stream.width, stream.height)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_skipping_non_reference_frames_returns_the_frames_of_a_full_decode(tmp_path, monkeypatch):
    path = _write_clip_with_b_frames(tmp_path / "b_frames.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.has_b_frames
        everything = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]
        start, rate = float(stream.start_time * stream.time_base), float(stream.average_rate)
        last = start + float(stream.duration * stream.time_base) - 1 / rate
    # The sampling rule: the first frame shown at or after each of 40 evenly spaced times (B-frames among them).
    expected = [
        next(rgb for time, rgb in everything if time >= target - 0.5 / rate)
        for target in np.linspace(start, last, 40)
    ]

    original, decoded = media_reading._decode, {"skipping": 0, "plain": 0}

    def read(mode: str) -> np.ndarray:
        def counting(container, stream, skip_before=None):
            # Later targets of one run are sent to the generator: passed on when skipping, dropped when not.
            skipping = mode == "skipping"
            inner, moved = original(container, stream, skip_before if skipping else None), None
            while True:
                try:
                    frame = inner.send(moved if skipping else None)
                except StopIteration:
                    return
                decoded[mode] += 1
                moved = yield frame

        monkeypatch.setattr(media_reading, "_decode", counting)
        return read_clip(path, num_frames=40, with_audio=False).frames

    for mode in decoded:
        np.testing.assert_array_equal(read(mode), np.stack(expected))
    assert decoded["skipping"] < decoded["plain"], decoded


def _bad_file(media: Path, folder: Path, kind: str) -> Path:
    path = folder / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        mf.truncated_copy(media / "indexed.mp4", path, keep=0.4)
    elif kind == "not-media":
        path.write_text("just some text, not media\n" * 50)
    elif kind == "no-decodable-stream":
        path = folder / "subtitles.srt"
        path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    return path


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("empty", "the file is empty"),
        ("truncated", "not readable as media"),
        ("not-media", "not readable as media"),
        ("no-decodable-stream", "no video or audio stream"),
        ("missing", "no such file"),
    ],
)
def test_bad_files_raise_one_error_type_naming_the_source(media, tmp_path, kind, problem):
    source = _bad_file(media, tmp_path, kind)
    with pytest.raises(MediaReadError, match=problem) as caught:
        read_clip(source)
    assert isinstance(caught.value, ValueError) and str(source) in str(caught.value)


def test_empty_bytes_and_wrong_objects_are_clear_errors():
    with pytest.raises(MediaReadError, match=r"<0 bytes>.*empty"):
        read_clip(b"")
    with pytest.raises(MediaReadError, match="expected a path"):
        read_clip(12345)


def test_read_audio_requires_an_audio_track(media):
    assert read_audio(media / "stereo_44k.wav").size > 0
    with pytest.raises(MediaReadError, match="no audio track"):
        read_audio(media / "silent.mp4")


def test_resample_audio_downmixes_and_changes_rate():
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, 44_100)).astype(np.float32)
    mono = resample_audio(stereo, 44_100, 16_000)
    assert mono.ndim == 1 and abs(mono.size - 16_000) <= 32


def test_decoder_errors_are_wrapped(monkeypatch, media):
    def broken(*args, **kwargs):
        raise av.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(media_reading, "_sample_frames", broken)
    with pytest.raises(MediaReadError, match=r"indexed.mp4.*not readable"):
        read_clip(media / "indexed.mp4")
