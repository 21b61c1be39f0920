"""OmniEmotionProcessor: tensors, placeholder counts (formula and tiny model), chat template, save/load."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, LlavaOnevisionImageProcessor, LlavaOnevisionProcessor

from omni_emotion.synthetic import media as mf
from processing import OmniEmotionProcessor, audio_token_count
from processing.processing_omni_emotion import CLIP_MARKUP

PROMPT = CLIP_MARKUP + "How does the person feel?"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    mf.write_clip(root / "face.mp4", seconds=2)
    mf.write_clip(root / "silent.mp4", seconds=1, audio=False)
    for seconds in (1, 3, 10, 45):
        mf.write_wav(root / f"tone_{seconds}s.wav", seconds=seconds)
    mf.write_png(root / "astronaut.png")
    return root


@pytest.fixture
def processor(tiny_tokenizer) -> OmniEmotionProcessor:
    return OmniEmotionProcessor(tokenizer=tiny_tokenizer)


def count(ids: torch.Tensor, token_id: int) -> list[int]:
    return (ids == token_id).sum(-1).tolist()


def test_tensors_have_the_designed_shapes(processor, media):
    out = processor(
        text=[PROMPT, PROMPT, PROMPT],
        videos=[media / "face.mp4", media / "tone_1s.wav", media / "astronaut.png"],
        return_tensors="pt",
    )
    batch, frames = 3, 8
    assert out["pixel_values_videos"].shape == (batch, frames, 3, 384, 384)
    assert out["pixel_values_videos"].dtype == torch.float32
    assert out["face_pixel_values"].shape == (batch, frames, 3, 224, 224)
    assert out["face_mask"].dtype == torch.bool and out["face_mask"].shape == (batch, frames)
    assert out["input_features"].shape == (batch, 1, 128, 3000)
    assert out["audio_feature_lengths"].dtype == torch.long and out["audio_feature_lengths"].shape == (batch,)
    assert out["input_ids"].shape == out["attention_mask"].shape and out["input_ids"].shape[0] == batch
    # The video has the astronaut in every frame; the audio file has no frames; the image is repeated to T.
    assert out["face_mask"][0].all() and not out["face_mask"][1].any() and out["face_mask"][2].all()
    assert out["pixel_values_videos"][1].abs().sum() == 0 and out["face_pixel_values"][1].abs().sum() == 0
    assert torch.equal(out["pixel_values_videos"][2, 0], out["pixel_values_videos"][2, -1])
    # ImageNet normalisation of the face crops.
    assert out["face_pixel_values"][0].min() < -1.5 and out["face_pixel_values"][0].max() > 1.5


def test_still_image_alone_is_a_one_frame_clip(processor, media):
    out = processor(text=PROMPT, videos=[media / "astronaut.png"], return_tensors="pt")
    assert out["pixel_values_videos"].shape[1] == 1 and out["face_mask"].tolist() == [[True]]
    assert count(out["input_ids"], processor.video_token_id) == [196 + 49 + 1]


def test_audio_only_batch_uses_num_frames_zero_frames(processor, media):
    out = processor(text=PROMPT, audio=[media / "tone_3s.wav"], return_tensors="pt")
    assert out["pixel_values_videos"].shape[1] == processor.num_frames
    assert out["audio_feature_lengths"].tolist() == [300]


def test_tokens_per_frame_matches_llava_onevision(processor, tiny_tokenizer):
    llava = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(),
        tokenizer=tiny_tokenizer,
        video_processor=processor.video_processor,
        num_image_tokens=(384 // 14) ** 2,
    )
    theirs = llava._get_num_multimodal_tokens(video_sizes=[(8, 384, 384)])["num_video_tokens"][0]
    assert processor.tokens_per_frame == 196
    assert processor.num_video_tokens(8) - 8 * processor.face_pool_size**2 == theirs


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_concat", "frame_cross_attention"])
def test_video_placeholders_follow_the_formula_for_every_fusion(tiny_tokenizer, media, fusion):
    processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer, fusion=fusion, num_frames=4, face_pool_size=3)
    out = processor(text=PROMPT, videos=[media / "face.mp4"], return_tensors="pt")
    assert count(out["input_ids"], processor.video_token_id) == [4 * (196 + 9) + 1]


@pytest.mark.parametrize(
    ("seconds", "max_audio_seconds", "tokens"),
    [(1, 30, 17), (3, 30, 50), (10, 30, 167), (45, 30, 500), (45, 60, 500 + 250)],
)
def test_audio_placeholders_follow_the_formula(tiny_tokenizer, media, seconds, max_audio_seconds, tokens):
    processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer, max_audio_seconds=max_audio_seconds)
    out = processor(text=PROMPT, audio=[media / f"tone_{seconds}s.wav"], return_tensors="pt")
    assert count(out["input_ids"], processor.audio_token_id) == [tokens]
    assert out["audio_feature_lengths"].tolist() == [min(seconds, max_audio_seconds) * 100]
    assert out["input_features"].shape[1] == math.ceil(min(seconds, max_audio_seconds) / 30)


def test_audio_windows_are_zero_padded_to_the_batch(processor, media):
    processor.max_audio_seconds = 60
    out = processor(
        text=[PROMPT, PROMPT], audio=[media / "tone_45s.wav", media / "tone_1s.wav"], return_tensors="pt"
    )
    assert out["input_features"].shape == (2, 2, 128, 3000)
    assert out["input_features"][1, 1].abs().sum() == 0 and out["input_features"][0, 1].abs().sum() > 0


def test_missing_audio_is_a_zero_window_with_a_fixed_token_count(processor, media):
    out = processor(text=PROMPT, videos=[media / "silent.mp4"], return_tensors="pt")
    assert out["input_features"].abs().sum() == 0
    assert out["audio_feature_lengths"].tolist() == [100]
    assert count(out["input_ids"], processor.audio_token_id) == [audio_token_count(100)] == [17]


def test_audio_override_replaces_the_video_track(processor, media):
    tone = np.zeros(2 * 44_100, np.float32)
    out = processor(
        text=PROMPT,
        videos=[media / "silent.mp4"],
        audio=[{"array": tone, "sampling_rate": 44_100}],
        return_tensors="pt",
    )
    assert out["audio_feature_lengths"].tolist() == [200]


def test_decoded_frames_are_accepted(processor):
    frames = np.stack([mf.moving_face_frame(i, 320, 240) for i in range(12)])
    out = processor(text=PROMPT, videos=[frames], return_tensors="pt")
    assert out["pixel_values_videos"].shape[1] == 8 and out["face_mask"].all()


def test_unknown_fusion_is_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="fusion"):
        OmniEmotionProcessor(tokenizer=tiny_tokenizer, fusion="late_fusion")


def test_placeholders_must_match_the_clips(processor, media):
    with pytest.raises(ValueError, match="at most one clip"):
        processor(text=["<video><video> twice", PROMPT], videos=[media / "face.mp4"] * 2)
    with pytest.raises(ValueError, match="one clip per text sample"):
        processor(text=PROMPT)
    with pytest.raises(ValueError, match="1 of the 2 samples hold one, but 2 clips"):
        processor(text=["no clip here", PROMPT], videos=[media / "face.mp4"] * 2)


def test_special_tokens_are_added_once_and_video_keeps_its_id(tiny_tokenizer):
    video_id = tiny_tokenizer.convert_tokens_to_ids("<video>")
    first = OmniEmotionProcessor(tokenizer=tiny_tokenizer)
    size = len(tiny_tokenizer)
    second = OmniEmotionProcessor(tokenizer=tiny_tokenizer)
    assert len(tiny_tokenizer) == size and first.video_token_id == second.video_token_id == video_id
    ids = [
        first.video_start_token_id,
        first.video_end_token_id,
        first.audio_start_token_id,
        first.audio_end_token_id,
    ]
    assert len({*ids, first.audio_token_id, video_id}) == 6


def test_chat_template_accepts_video_and_audio_entries(processor, media):
    tone = np.zeros(16_000 * 2, np.float32)
    conversations = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "video", "path": str(media / "face.mp4")},
                    {"type": "text", "text": "Why?"},
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "audio", "path": str(media / "tone_3s.wav")},
                    {"type": "text", "text": "Hm"},
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "video", "path": str(media / "silent.mp4")},
                    {"type": "audio", "array": tone, "sampling_rate": 16_000},
                ],
            }
        ],
    ]
    prompt = processor.apply_chat_template(conversations[0], add_generation_prompt=True)
    assert CLIP_MARKUP + "Why?<|im_end|>\n<|im_start|>assistant\n" in prompt
    out = processor.apply_chat_template(conversations, tokenize=True, return_dict=True, return_tensors="pt")
    assert out["pixel_values_videos"].shape[:2] == (3, 8)
    assert out["audio_feature_lengths"].tolist()[1:] == [300, 200]
    assert out["face_mask"][0].all() and not out["face_mask"][1].any()
    # The audio entry alone is an audio block alone: no video placeholders in that row.
    video_tokens = processor.num_video_tokens(8)
    assert count(out["input_ids"], processor.video_token_id) == [video_tokens, 0, video_tokens]


def test_labels_cover_only_the_answer(processor, media):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "audio", "path": str(media / "tone_1s.wav")},
                {"type": "text", "text": "Mood?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "She is happy."}]},
    ]
    out = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_labels=True)
    labels = out["labels"][0]
    answer = labels[labels != -100]
    assert processor.decode(answer) == "She is happy.<|im_end|>"
    assert processor.batch_decode(answer[None]) == ["She is happy.<|im_end|>"]


def test_save_and_load_round_trip(processor, tmp_path, media):
    processor.save_pretrained(tmp_path)
    loaded = OmniEmotionProcessor.from_pretrained(tmp_path)
    assert (loaded.num_frames, loaded.fusion, loaded.face_pool_size) == (8, "clip_concat", 7)
    assert (
        loaded.video_token_id == processor.video_token_id and loaded.chat_template == processor.chat_template
    )
    assert loaded.feature_extractor.feature_size == 128 and loaded.image_processor.size["height"] == 224
    a = processor(text=PROMPT, videos=[media / "silent.mp4"], return_tensors="pt")
    b = loaded(text=PROMPT, videos=[media / "silent.mp4"], return_tensors="pt")
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_auto_processor_loads_a_saved_folder_as_remote_code(processor, tmp_path):
    processor.save_pretrained(tmp_path / "saved")
    copy = shutil.copytree(tmp_path / "saved", tmp_path / "elsewhere" / "checkpoint")
    script = textwrap.dedent(
        f"""
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(copy)!r}, trust_remote_code=True)
        print(type(processor).__module__, processor.video_token_id, processor.num_video_tokens(8))
        """
    )
    repo = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": "",
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path / "elsewhere",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module, video_id, tokens = result.stdout.split()[-3:]
    assert module.startswith("transformers_modules.") and repo not in module
    assert int(video_id) == processor.video_token_id and int(tokens) == processor.num_video_tokens(8)


def test_auto_processor_is_registered_for_the_model_config(processor, tmp_path):
    from modeling_omni_emotion import OmniEmotionConfig

    processor.save_pretrained(tmp_path)
    OmniEmotionConfig().save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is OmniEmotionProcessor


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_concat", "frame_cross_attention"])
def test_placeholder_counts_equal_what_a_tiny_model_consumes(tiny_tokenizer, media, fusion):
    from modeling_omni_emotion import OmniEmotionForConditionalGeneration
    from omni_emotion.synthetic.tiny import tiny_config, tiny_processor

    config = tiny_config(fusion=fusion, max_audio_seconds=60.0)
    model = OmniEmotionForConditionalGeneration(config).eval()
    processor = tiny_processor(tiny_tokenizer, config)
    clips = [media / "face.mp4", media / "silent.mp4"] + [media / f"tone_{s}s.wav" for s in (1, 3, 10, 45)]
    out = processor(text=[PROMPT] * len(clips), videos=clips, return_tensors="pt")
    with torch.no_grad():
        video = model.model.get_video_features(
            out["pixel_values_videos"], out["face_pixel_values"], out["face_mask"]
        ).pooler_output
        audio = model.model.get_audio_features(
            out["input_features"], out["audio_feature_lengths"]
        ).pooler_output
    assert count(out["input_ids"], processor.video_token_id) == [video.shape[1]] * len(clips)
    assert sum(count(out["input_ids"], processor.audio_token_id)) == audio.shape[0]
    assert count(out["input_ids"], processor.audio_token_id)[2:] == [17, 50, 167, 750]


def test_log_mel_of_the_sound_only_equals_whisper_on_the_padded_window(tiny_tokenizer):
    """The short-cut of `_window_log_mel` (compute the sound, fill the padding's clamped value) is Whisper's own
    30 s log-mel: short, silent, near-silent, exactly-30 s, just-under-30 s and mixed-length batches."""
    processor = OmniEmotionProcessor(tokenizer=tiny_tokenizer)
    rng = np.random.default_rng(0)

    def noise(samples: int, scale: float = 0.1) -> np.ndarray:
        return (scale * rng.standard_normal(samples)).astype(np.float32)

    batches = [
        [noise(16_000)],
        [np.zeros(8_000, np.float32)],
        [(1e-6 * np.sin(np.arange(24_000) / 10)).astype(np.float32)],
        [noise(480_000)],
        [noise(479_800)],
        [noise(300), noise(16_000), noise(40_000, 0.5)],
    ]
    for windows in batches:
        expected = processor.feature_extractor(windows, sampling_rate=16_000, return_tensors="pt")
        torch.testing.assert_close(
            processor._window_log_mel(windows), expected["input_features"], rtol=0, atol=1e-6
        )
