"""The preprocessing cache: each clip decoded once, stored compactly, giving exactly the tensors of its source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

import processing.processing_omni_emotion as processor_module
from omni_emotion.synthetic import media as mf
from omni_emotion.synthetic.tiny import tiny_config, tiny_processor
from omni_emotion.training.cache import (
    ClipCache,
    ClipNotCachedError,
    cache_fingerprint,
    clip_key,
    media_part,
)

TONE_RATE = 22_050


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_media")
    mf.write_clip(root / "face.mp4", seconds=2)
    mf.write_clip(root / "other.mp4", seconds=1, width=256, height=192)
    mf.write_wav(root / "tone.wav", seconds=3)
    return root


@pytest.fixture
def processor(tiny_tokenizer):
    return tiny_processor(tiny_tokenizer, tiny_config())


def tone(seconds: float = 1.5) -> list[float]:
    t = np.arange(round(seconds * TONE_RATE)) / TONE_RATE
    return (0.3 * np.sin(2 * np.pi * 330.0 * t)).tolist()


def conversation(part: dict, question: str = "How does the person feel?") -> list[dict]:
    return [
        {"role": "user", "content": [part, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Calm."}]},
    ]


def rows(*parts: dict) -> Dataset:
    """A dataset of training rows, two instructions per part (datasets fills the parts' missing keys with None)."""
    return Dataset.from_list(
        [{"messages": conversation(part, question)} for part in parts for question in ("Feeling?", "Why?")]
    )


def full(path) -> dict:
    return {"type": "video", "path": str(path)}


def video_only(path) -> dict:
    return {"type": "video", "path": str(path), "with_audio": False}


def audio(path) -> dict:
    return {"type": "audio", "path": str(path)}


def inline_audio() -> dict:
    return {"type": "audio", "array": tone(), "sampling_rate": TONE_RATE}


def batch(processor, conversations: list[list[dict]]) -> dict[str, torch.Tensor]:
    return processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_tensors="pt", return_labels=True
    )


def count_decodes(monkeypatch) -> list[str]:
    """Record each call that reads media from a source (the map runs in this process with num_proc=1)."""
    calls: list[str] = []
    for name in ("read_clip", "read_audio"):
        original = getattr(processor_module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(processor_module, name, counted)
    return calls


@pytest.mark.parametrize(
    "make_part",
    [
        pytest.param(lambda media: full(media / "face.mp4"), id="full clip"),
        pytest.param(lambda media: video_only(media / "face.mp4"), id="video only"),
        pytest.param(lambda media: audio(media / "tone.wav"), id="audio file"),
        pytest.param(lambda media: inline_audio(), id="inline audio"),
    ],
)
def test_cached_clips_give_exactly_the_tensors_of_their_sources(processor, media, tmp_path, make_part):
    dataset = rows(make_part(media), full(media / "other.mp4"))
    cache = ClipCache.build(dataset, processor, tmp_path)
    direct = batch(processor, list(dataset["messages"]))
    cached = batch(processor, [cache.substitute(messages) for messages in dataset["messages"]])
    assert sorted(direct) == sorted(cached)
    for key in direct:
        assert torch.equal(direct[key], cached[key]), key


def test_the_decoded_arrays_are_compact_and_nulls_stay_none(processor, media, tmp_path):
    dataset = rows(full(media / "face.mp4"), video_only(media / "face.mp4"), audio(media / "tone.wav"))
    cache = ClipCache.build(dataset, processor, tmp_path)
    clip = cache.get(clip_key(full(media / "face.mp4")))
    assert clip["frames"].dtype == np.uint8 and clip["frames"].shape == (4, 56, 56, 3)
    assert clip["faces"].dtype == np.uint8 and clip["faces"].shape == (4, 224, 224, 3)
    assert clip["face_mask"].dtype == np.bool_ and clip["audio"].dtype == np.float32
    assert cache.get(clip_key(video_only(media / "face.mp4")))["audio"] is None
    sound = cache.get(clip_key(audio(media / "tone.wav")))
    assert sound["frames"] is None and sound["faces"] is None and sound["face_mask"] is None
    assert sound["audio"].shape == (3 * 16_000,)


def test_each_unique_clip_is_decoded_once_and_a_rebuild_decodes_nothing(
    processor, media, tmp_path, monkeypatch
):
    calls = count_decodes(monkeypatch)
    dataset = rows(
        full(media / "face.mp4"),
        full(media / "face.mp4"),
        video_only(media / "face.mp4"),
        audio(media / "tone.wav"),
        audio(media / "tone.wav"),
    )
    cache = ClipCache.build(dataset, processor, tmp_path)
    assert len(cache) == 3 and sorted(calls) == ["read_audio", "read_clip", "read_clip"]
    calls.clear()
    again = ClipCache.build(dataset, processor, tmp_path)
    assert calls == [] and again.path == cache.path and len(again) == 3


def test_a_setting_that_changes_decoding_changes_the_fingerprint(tiny_tokenizer, media, tmp_path):
    keys = [clip_key(full(media / "face.mp4"))]
    baseline = cache_fingerprint(keys, tiny_processor(tiny_tokenizer, tiny_config()))
    assert cache_fingerprint(keys, tiny_processor(tiny_tokenizer, tiny_config())) == baseline
    changed = []
    for setting, value in [("num_frames", 2), ("face_margin", 0.3), ("use_audio_tower", False)]:
        processor = tiny_processor(tiny_tokenizer, tiny_config())
        setattr(processor, setting, value)
        changed.append(cache_fingerprint(keys, processor))
    assert baseline not in changed and len(set(changed)) == len(changed)
    assert cache_fingerprint([*keys, clip_key(audio(media / "tone.wav"))], processor) != changed[-1]

    dataset = rows(full(media / "face.mp4"))
    four = ClipCache.build(dataset, tiny_processor(tiny_tokenizer, tiny_config()), tmp_path)
    two = ClipCache.build(dataset, tiny_processor(tiny_tokenizer, tiny_config(num_frames=2)), tmp_path)
    assert four.path != two.path
    assert two.get(keys[0])["frames"].shape[0] == 2


def test_a_detector_fingerprint_separates_caches(processor, media):
    class Detector:
        cache_fingerprint = "v1"

        def __call__(self, image: np.ndarray) -> np.ndarray:
            return np.zeros((0, 4), np.float32)

    keys = [clip_key(full(media / "face.mp4"))]
    haar = cache_fingerprint(keys, processor)
    processor._face_detector = Detector()
    first = cache_fingerprint(keys, processor)
    Detector.cache_fingerprint = "v2"
    assert len({haar, first, cache_fingerprint(keys, processor)}) == 3


def test_two_processes_build_the_same_cache_as_one(processor, media, tmp_path):
    dataset = rows(full(media / "face.mp4"), video_only(media / "other.mp4"), audio(media / "tone.wav"))
    one = ClipCache.build(dataset, processor, tmp_path / "one")
    haar = processor._face_detector  # built lazily by now: an OpenCV cascade, which cannot be pickled
    two = ClipCache.build(dataset, processor, tmp_path / "two", num_proc=2)
    assert haar is not None and processor._face_detector is haar
    assert one.path.name == two.path.name and len(one) == len(two) == 3
    for messages in dataset["messages"]:
        key = clip_key(media_part(messages))
        for name, array in one.get(key).items():
            other = two.get(key)[name]
            assert (array is None and other is None) or np.array_equal(array, other), (key, name)


def test_an_unpicklable_detector_is_named_when_workers_need_it(processor, media, tmp_path):
    class Unpicklable:
        def __call__(self, image: np.ndarray) -> np.ndarray:
            return np.zeros((0, 4), np.float32)

        def __reduce__(self):
            raise TypeError("holds a native handle")

    processor._face_detector = Unpicklable()
    with pytest.raises(TypeError, match=r"Unpicklable.*picklable"):
        ClipCache.build(rows(full(media / "face.mp4")), processor, tmp_path, num_proc=2)


def test_a_clip_missing_from_the_cache_is_a_clear_error(processor, media, tmp_path):
    cache = ClipCache.build(rows(full(media / "face.mp4")), processor, tmp_path)
    with pytest.raises(ClipNotCachedError, match=r"not in the preprocessing cache.*built from other data"):
        cache.substitute(conversation(video_only(media / "face.mp4")))
    assert clip_key(video_only(media / "face.mp4")) not in cache


def test_an_interrupted_build_leaves_no_cache(processor, media, tmp_path, monkeypatch):
    read_clip, decoded = processor_module.read_clip, []

    def failing(*args, **kwargs):
        if decoded:  # the second of three clips
            raise RuntimeError("killed")
        decoded.append(args[0])
        return read_clip(*args, **kwargs)

    monkeypatch.setattr(processor_module, "read_clip", failing)
    dataset = rows(full(media / "face.mp4"), full(media / "other.mp4"), video_only(media / "other.mp4"))
    with pytest.raises(RuntimeError, match="killed") as error:
        ClipCache.build(dataset, processor, tmp_path)
    assert any("while caching clip" in note for note in error.value.__notes__)
    assert list(tmp_path.iterdir()) == []


def test_a_conversation_with_several_clips_is_refused_naming_its_row(processor, media, tmp_path):
    two_clips = conversation(full(media / "face.mp4"))
    two_clips[0]["content"].insert(1, audio(media / "tone.wav"))
    dataset = Dataset.from_list(
        [{"messages": conversation(full(media / "face.mp4"))}, {"messages": two_clips}]
    )
    with pytest.raises(ValueError, match="Row 1 of the dataset holds 2 media parts"):
        ClipCache.build(dataset, processor, tmp_path)


def test_keys_follow_what_the_processor_decodes(media):
    path = str(media / "face.mp4")
    assert clip_key(full(path)) == clip_key({**full(path), "with_audio": None, "text": None})
    assert clip_key(full(path)) == clip_key({**full(path), "with_audio": True})
    assert clip_key(video_only(path)) != clip_key(full(path))
    assert clip_key({"type": "text", "text": "hi", "path": None}) is None
    samples = tone()
    as_list = {"type": "audio", "array": samples, "sampling_rate": TONE_RATE}
    as_array = {**as_list, "array": np.asarray(samples)}
    assert clip_key(as_list) == clip_key(as_array) != clip_key({**as_list, "sampling_rate": 16_000})


def test_bytes_per_clip_is_the_uint8_payload_far_below_float_tensors(processor, media, tmp_path):
    dataset = rows(full(media / "face.mp4"))
    cache = ClipCache.build(dataset, processor, tmp_path)
    clip = cache.get(clip_key(full(media / "face.mp4")))
    payload = sum(array.nbytes for array in clip.values())
    assert payload < cache.bytes_per_clip < 1.05 * payload + 16_384
    tensors = batch(processor, list(dataset["messages"])[:1])
    float_bytes = sum(
        tensors[name].numel() * tensors[name].element_size()
        for name in ("pixel_values_videos", "face_pixel_values", "input_features")
    )
    assert cache.bytes_per_clip < float_bytes / 3
    assert "1 clips" in cache.describe() and str(cache.path) in cache.describe()
