"""Processor class for Omni-Emotion: from raw clips and text to the model's inputs.

A clip is a video (its frames, the primary face in them and its audio track), a still image (a
one-frame clip), or an audio file alone (no frames). In the text a clip is a video block
`<vi_start><video><vi_end>`, an audio block `<au_start><audio><au_end>`, or both (a full clip);
`<video>` expands to the fused frame + face tokens and `<audio>` to the audio tokens of that clip's real
duration, exactly as the model counts them. A row without a block gets no tokens for it (training phase 1
holds the audio block alone, phase 2 the video block alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LlavaOnevisionVideoProcessor, ViTImageProcessor, WhisperFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack

from .face_tracking import FaceDetector, crop_face, default_face_detector, primary_face_indices
from .media_reading import (
    MAX_PIXELS,
    Picture,
    UrlLimits,
    read_audio,
    read_clip,
    resample_audio,
    uniform_indices,
)

FUSION_MODES = ("clip_concat", "frame_concat", "frame_cross_attention")
SAMPLING_RATE = 16_000
WINDOW_SECONDS = 30
MEL_FRAMES_PER_SECOND = 100  # Whisper's hop of 160 samples at 16 kHz
WINDOW_MEL_FRAMES = WINDOW_SECONDS * MEL_FRAMES_PER_SECOND

VIDEO_MARKUP = "<vi_start><video><vi_end>"
AUDIO_MARKUP = "<au_start><audio><au_end>"
CLIP_MARKUP = VIDEO_MARKUP + AUDIO_MARKUP
DECODED_CLIP_KEYS = ("frames", "faces", "face_mask", "audio")


def build_chat_template(audio_blocks: bool = True) -> str:
    """Qwen2's chat markup with the clip blocks; `audio_blocks=False` for a model without an audio tower.

    A video or image entry is a video block followed by the clip's audio block, unless the entry says
    `"with_audio": False`; an audio entry right after a video is that video's sound (no markup of its own);
    any other audio entry is an audio block alone. `{% generation %}` marks the answer for labels; no
    whitespace control: the template is one line, so every newline in it is meant.
    """
    audio_after_video = (
        "{% if part.get('with_audio', true) is not false %}" + AUDIO_MARKUP + "{% endif %}"
        if audio_blocks
        else ""
    )
    audio_alone = AUDIO_MARKUP if audio_blocks else ""
    return (
        "{% macro render(content) %}"
        "{% if content is string %}{{ content }}{% else %}{% for part in content %}"
        "{% if part['type'] in ('video', 'image') %}" + VIDEO_MARKUP + audio_after_video + "{% endif %}"
        "{% if part['type'] == 'audio' and not (loop.previtem is defined and loop.previtem['type'] == 'video') %}"
        + audio_alone
        + "{% endif %}"
        "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{% endmacro %}" + _CHAT_TURNS
    )


_CHAT_TURNS = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}<|im_end|>{% endgeneration %}\n"
    "{% else %}{{ render(message['content']) }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_TEMPLATE = build_chat_template()


@dataclass
class _FrameViews:
    """What the processor keeps of one sampled frame: the frame at the video size, and every face found in it
    (boxes in the frame's pixels, crops at the face size), so that the tracking can pick among them later."""

    frame: np.ndarray
    boxes: np.ndarray
    crops: np.ndarray


class OmniEmotionProcessorKwargs(ProcessingKwargs, total=False):
    """The standard per-modality kwargs (the clip settings are processor attributes, saved with it), and how the
    clip files of one call are read:

    audio_track (`int`, *optional*):
        Which audio stream of each file to read, as an index among its audio streams; by default the stream
        flagged as default, else the first that holds sound.
    strict_media (`bool`, *optional*, defaults to `False`):
        A truncated file raises `MediaReadError` instead of warning (`MediaReadWarning`) and giving the frames
        that decode.
    max_media_pixels (`int`, *optional*, defaults to `MAX_PIXELS`):
        Pictures larger than this (width times height) are refused before decoding: raise it only for files you
        trust, since decoding a huge picture takes gigabytes however small the file.
    """

    audio_track: int | None
    strict_media: bool
    max_media_pixels: int


def audio_token_count(mel_frames: int, pool_stride: int = 3) -> int:
    """Audio tokens the model makes from `mel_frames` real mel frames (Whisper's stride-2 conv, then pooling)."""
    total = 0
    for start in range(0, max(mel_frames, 1), WINDOW_MEL_FRAMES):
        frames = min(WINDOW_MEL_FRAMES, mel_frames - start)
        total += math.ceil(((frames - 1) // 2 + 1) / pool_stride)
    return total


class OmniEmotionProcessor(ProcessorMixin):
    r"""
    Constructs an Omni-Emotion processor from LLaVA-OneVision's video processor (frames), a face image
    processor (224x224 crops, ImageNet mean/std), Whisper's feature extractor (128 mel bins) and a
    tokenizer, plus the media reading and face tracking that turn a raw clip into their inputs.

    Args:
        video_processor ([`LlavaOnevisionVideoProcessor`], *optional*): frames; 384x384 by default.
        image_processor ([`ViTImageProcessor`], *optional*): face crops; 224x224 bicubic ImageNet by default.
        feature_extractor ([`WhisperFeatureExtractor`], *optional*): log-mel; 128 bins by default.
        tokenizer ([`PreTrainedTokenizerBase`]): the LLM's tokenizer; the clip markers are added if missing.
        chat_template (`str`, *optional*): Qwen2 markup with the clip markers by default.
        num_frames (`int`, defaults to 8): frames sampled per video.
        fusion (`str`, defaults to `"clip_concat"`): `clip_concat`, `frame_concat` or `frame_cross_attention`.
        face_pool_size (`int`, defaults to 7): face tokens per frame are `face_pool_size**2`.
        audio_pool_stride (`int`, defaults to 3): the model's average pooling over Whisper states.
        max_audio_seconds (`float`, defaults to 30.0): audio beyond this is dropped (30 s windows up to it).
        missing_audio_seconds (`float`, defaults to 1.0): token budget of a clip without audio.
        face_image_size (`int`, defaults to 224): side of the face crops.
        face_margin (`float`, defaults to 0.5): the crop is the face box grown by this fraction.
        patch_size (`int`, defaults to 14): the vision tower's patch size (SigLIP).
        use_audio_tower (`bool`, defaults to `True`): mirrors the model's; without it no audio block is made.
        use_face_tower (`bool`, defaults to `True`): mirrors the model's; without it no face is tracked and the
            video block holds the frame tokens alone.
        face_detector (`FaceDetector`, *optional*): any callable image -> boxes; by default RetinaFace when ONNX
            Runtime and its weights are installed, else OpenCV's Haar cascade (`default_face_detector`). Not saved
            with the processor.
        url_limits (`UrlLimits`, *optional*): size and time limits on clips given as HTTP(S) URLs (1 GiB and a
            60 s deadline by default). Not saved with the processor.
    """

    valid_processor_kwargs = OmniEmotionProcessorKwargs
    text_kwargs = {"padding": True}

    def __init__(
        self,
        video_processor=None,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        chat_template: str | None = None,
        num_frames: int = 8,
        fusion: str = "clip_concat",
        face_pool_size: int = 7,
        audio_pool_stride: int = 3,
        max_audio_seconds: float = 30.0,
        missing_audio_seconds: float = 1.0,
        face_image_size: int = 224,
        face_margin: float = 0.5,
        patch_size: int = 14,
        use_audio_tower: bool = True,
        use_face_tower: bool = True,
        face_detector: FaceDetector | None = None,
        url_limits: UrlLimits | None = None,
    ):
        if fusion not in FUSION_MODES:
            raise ValueError(f"`fusion` must be one of {FUSION_MODES}, got {fusion!r}.")
        if tokenizer is None:
            raise ValueError("OmniEmotionProcessor needs the LLM's `tokenizer`.")
        if video_processor is None:
            video_processor = LlavaOnevisionVideoProcessor(size={"height": 384, "width": 384})
        if image_processor is None:
            image_processor = ViTImageProcessor(
                size={"height": face_image_size, "width": face_image_size},
                resample=PILImageResampling.BICUBIC,
                image_mean=IMAGENET_DEFAULT_MEAN,
                image_std=IMAGENET_DEFAULT_STD,
            )
        if feature_extractor is None:
            feature_extractor = WhisperFeatureExtractor(feature_size=128)
        self.num_frames = num_frames
        self.fusion = fusion
        self.face_pool_size = face_pool_size
        self.audio_pool_stride = audio_pool_stride
        self.max_audio_seconds = max_audio_seconds
        self.missing_audio_seconds = missing_audio_seconds
        self.face_image_size = face_image_size
        self.face_margin = face_margin
        self.patch_size = patch_size
        self.use_audio_tower = use_audio_tower
        self.use_face_tower = use_face_tower
        self._face_detector = face_detector
        self._url_limits = url_limits or UrlLimits()

        markers = ["<vi_start>", "<vi_end>", "<au_start>", "<au_end>", "<video>", "<audio>"]
        tokenizer.add_tokens([m for m in markers if m not in tokenizer.get_vocab()], special_tokens=True)
        self.video_token, self.audio_token = "<video>", "<audio>"
        self.video_token_id, self.audio_token_id = tokenizer.convert_tokens_to_ids(
            [self.video_token, self.audio_token]
        )
        (
            self.video_start_token_id,
            self.video_end_token_id,
            self.audio_start_token_id,
            self.audio_end_token_id,
        ) = tokenizer.convert_tokens_to_ids(markers[:4])
        super().__init__(
            video_processor,
            image_processor,
            feature_extractor,
            tokenizer,
            chat_template=chat_template or build_chat_template(audio_blocks=use_audio_tower),
        )

    # -- token counts: the single source of truth shared with the model ------------------------------------

    @property
    def tokens_per_frame(self) -> int:
        """LLaVA-OneVision's frame tokens: the SigLIP patch grid after its 2x2 pooling (27 -> 14 at 384 px)."""
        patches = self.video_processor.size["height"] // self.patch_size
        return math.ceil(patches / 2) ** 2

    def num_video_tokens(self, num_frames: int) -> int:
        """Frame (and face) tokens per frame, plus one `image_newline`; the same count for every fusion mode."""
        face_tokens = self.face_pool_size**2 if self.use_face_tower else 0
        return num_frames * (self.tokens_per_frame + face_tokens) + 1

    def num_audio_tokens(self, mel_frames: int) -> int:
        return audio_token_count(mel_frames, self.audio_pool_stride) if mel_frames > 0 else 0

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        return self.video_token * self.num_video_tokens(
            video_inputs["pixel_values_videos"][video_idx].shape[0]
        )

    def replace_audio_token(self, audio_inputs: dict, audio_idx: int, **kwargs) -> str:
        return self.audio_token * self.num_audio_tokens(int(audio_inputs["audio_feature_lengths"][audio_idx]))

    # -- the call ----------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Sequence[Any] | None = None,
        audio: Sequence[Any] | None = None,
        images: Sequence[Any] | None = None,
        **kwargs: Unpack[OmniEmotionProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Each text sample holds at most one clip: a video block (`<video>` once), an audio block (`<audio>`
        once) or both. The media tensors are batch-first, one row per sample; a row without a block gets zero
        media for it (never encoded) and text-only batches are plain tokenization.

        Args:
            text (`str` or `list[str]`): prompts with `<video>` / `<audio>` placeholders (see `CLIP_MARKUP`).
            videos (`list`, *optional*): one entry per sample that holds a clip: a path, URL, bytes or binary
                file object (video, image or audio file), a folder of frames, decoded frames `(T, H, W, 3)`, an
                image `(H, W, 3)`, a clip from [`~OmniEmotionProcessor.decode_clip`], or None (no frames).
            audio (`list`, *optional*): one entry per clip, overriding its audio track: a source as above, a
                16 kHz waveform, a `{"array", "sampling_rate"}` dict, or None (the video's own track).
            images (`list`, *optional*): still images, each a one-frame clip (an alias of `videos`).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` and, when some sample holds a video block,
            `pixel_values_videos` (B, T, 3, S, S), `face_pixel_values` (B, T, 3, 224, 224) and `face_mask` (B, T)
            (the face tensors only with a face tower); when some sample holds an audio block, `input_features`
            (B, W, 128, 3000) and `audio_feature_lengths` (B,), 0 for rows without one. All clips of a batch
            share T: a clip with fewer frames (a still image beside videos) repeats its frames, a clip without
            frames gets T zero frames; T is `num_frames` when no clip has frames.
        """
        if images is not None:
            if videos is not None:
                raise ValueError("Pass still images through `videos` when mixing them with videos.")
            videos = images
        if text is None:
            raise ValueError("OmniEmotionProcessor needs `text` holding the clip placeholders.")
        text = [text] if isinstance(text, str) else list(text)
        blocks = self._clip_blocks(text)
        clip_rows = [row for row, (video, audio_block) in enumerate(blocks) if video or audio_block]
        clips = self._pair_clips(_flatten(videos), _flatten(audio))
        if len(clips) != len(clip_rows):
            raise ValueError(
                f"Pass one clip per text sample that holds {self.video_token} or {self.audio_token}: "
                f"{len(clip_rows)} of the {len(text)} samples hold one, but {len(clips)} clips were given."
            )

        merged = self._merge_kwargs(tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        return_tensors = merged["text_kwargs"].pop("return_tensors", None)
        decoded: list[dict[str, Any] | None] = [None] * len(text)
        reading = {
            "audio_track": merged.get("audio_track"),
            "strict": merged.get("strict_media", False),
            "max_pixels": merged.get("max_media_pixels", MAX_PIXELS),
        }
        for row, (video, track) in zip(clip_rows, clips, strict=True):
            decoded[row] = self.decode_clip(
                video, track, with_video=blocks[row][0], with_audio=blocks[row][1], **reading
            )
        data: dict[str, Any] = {}
        if any(video for video, _ in blocks):
            data.update(self._visual_inputs(decoded, merged["videos_kwargs"]))
        if any(audio_block for _, audio_block in blocks):
            data.update(self._audio_inputs(decoded, [audio_block for _, audio_block in blocks]))
        video_replacements = [
            self.replace_video_token(data, row) for row, (video, _) in enumerate(blocks) if video
        ]
        audio_replacements = [self.replace_audio_token(data, row) for row, (_, au) in enumerate(blocks) if au]

        return_offsets = merged.get("return_text_replacement_offsets", False)
        merged["text_kwargs"].pop("return_text_replacement_offsets", None)
        merged["text_kwargs"].pop("return_mm_token_type_ids", None)
        text, offsets = self.get_text_with_replacements(
            text, videos_replacements=video_replacements, audio_replacements=audio_replacements
        )
        text_inputs = self.tokenizer(text, **merged["text_kwargs"])
        self._check_special_mm_tokens(text, text_inputs, modalities=["video", "audio"])
        if return_offsets:
            text_inputs["text_replacement_offsets"] = offsets
        return BatchFeature(
            {**text_inputs, **data},
            tensor_type=return_tensors,
            skip_tensor_conversion=self.skip_tensor_conversion,
        )

    def _pair_clips(self, videos: list | None, audio: list | None) -> list[tuple[Any, Any]]:
        if videos is not None and audio is not None and len(videos) != len(audio):
            raise ValueError(
                f"`videos` and `audio` hold one entry per clip (None where absent): got {len(videos)} and {len(audio)}."
            )
        count = len(videos if videos is not None else audio or [])
        return list(zip(videos or [None] * count, audio or [None] * count, strict=True))

    def _clip_blocks(self, text: list[str]) -> list[tuple[bool, bool]]:
        """(has a video block, has an audio block) of each sample; at most one of each."""
        blocks = []
        for index, sample in enumerate(text):
            videos, audios = sample.count(self.video_token), sample.count(self.audio_token)
            if videos > 1 or audios > 1:
                raise ValueError(
                    f"Text sample {index} holds {videos} {self.video_token} and {audios} {self.audio_token} "
                    f"placeholders: a sample holds at most one clip ({CLIP_MARKUP}, or one of its two blocks)."
                )
            if audios and not self.use_audio_tower:
                raise ValueError(
                    f"Text sample {index} holds {self.audio_token}, but this processor is for a model without an "
                    "audio tower (`use_audio_tower=False`): leave the audio block out."
                )
            blocks.append((videos == 1, audios == 1))
        return blocks

    # -- media -------------------------------------------------------------------------------------------------

    @property
    def face_detector(self) -> FaceDetector:
        if self._face_detector is None:
            self._face_detector = default_face_detector()
        return self._face_detector

    def decode_clip(
        self,
        video: Any = None,
        audio: Any = None,
        *,
        with_video: bool = True,
        with_audio: bool = True,
        audio_track: int | None = None,
        strict: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> dict[str, np.ndarray | None]:
        """Everything media-related the processor does to one clip, kept compact: what a training run caches.

        Returns a dict of `frames` (T, S, S, 3) uint8 at the video processor's size, `faces` (T, F, F, 3) uint8
        crops of the tracked primary face (zero where absent), `face_mask` (T,) bool, and `audio`, float32 mono
        at 16 kHz; a part the clip lacks (or that is not asked for) is None. Passing the dict back as a video
        (`{"type": "video", "video": clip}` in a chat) gives exactly the tensors that the source itself gives.
        `audio_track`, `strict` and `max_pixels` go to `read_clip` for the files read (see
        `OmniEmotionProcessorKwargs`).
        """
        if isinstance(video, Mapping):
            return self._check_decoded(video, with_video, with_audio)
        if not with_video and audio is None:
            video, audio = None, video  # an audio block alone reads the sound of whatever it was given
        views, waveform = None, None
        if video is None:
            pass
        elif isinstance(video, (np.ndarray, torch.Tensor)) or hasattr(video, "convert"):
            frames = _as_frames(video)
            # Decoded video is sampled like a file; an image stays one frame. A frame sampled twice is one view.
            indices = uniform_indices(frames.shape[0], self.num_frames) if frames.shape[0] > 1 else [0]
            views = self._views_of_arrays(frames, indices) if with_video else None
        else:
            clip = read_clip(
                video,
                self.num_frames if with_video else 0,
                SAMPLING_RATE,
                self.max_audio_seconds,
                self._url_limits,
                with_audio=with_audio and audio is None,
                audio_track=audio_track,
                strict=strict,
                max_pixels=max_pixels,
                convert_frame=self._frame_views,
            )
            views, waveform = clip.frames, clip.audio
        if with_audio and audio is not None:
            waveform = self._load_audio(audio, audio_track)
        decoded = {
            "frames": None,
            "faces": None,
            "face_mask": None,
            "audio": waveform if with_audio else None,
        }
        if with_video and views is not None:
            decoded["frames"] = np.stack([view.frame for view in views])
            if self.use_face_tower:
                decoded["faces"], decoded["face_mask"] = self._primary_faces(views)
        return decoded

    def _frame_views(self, picture: Picture) -> _FrameViews:
        """The frame at the video processor's size, converted and scaled in one pass from the decoder's picture;
        the faces found on a copy at the detector's `max_side` (the whole frame for a detector without one), each
        cropped from the full-resolution frame and resized to the face size at once."""
        size = self.video_processor.size
        frame = picture.rgb(size["width"], size["height"], "BICUBIC")
        if not self.use_face_tower:
            return _FrameViews(frame, np.zeros((0, 4), np.float32), self._resize_faces([]))
        detector_side = getattr(self.face_detector, "max_side", None)
        seen = picture.rgb() if detector_side is None else picture.rgb_within(detector_side)
        found = np.asarray(self.face_detector(np.ascontiguousarray(seen)), np.float32).reshape(-1, 4)
        scale_x, scale_y = picture.width / seen.shape[1], picture.height / seen.shape[0]
        boxes = found * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
        crops = [crop_face(picture.rgb(), box, self.face_margin) for box in boxes]
        return _FrameViews(frame, boxes, self._resize_faces(crops))

    def _views_of_arrays(self, frames: np.ndarray, indices: Sequence[int]) -> list[_FrameViews]:
        """`_frame_views` of decoded frames at `indices`, each distinct frame once."""
        views = {index: self._frame_views(Picture(frames[index], max_side=None)) for index in set(indices)}
        return [views[index] for index in indices]

    def _resize_faces(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face crops of any size as (N, F, F, 3) uint8 at the face size, by the face image processor's resize."""
        side = self.face_image_size
        if not crops:
            return np.zeros((0, side, side, 3), np.uint8)
        resized = self.image_processor(crops, do_rescale=False, do_normalize=False, return_tensors="pt")
        return resized["pixel_values"].permute(0, 2, 3, 1).numpy()

    def _primary_faces(self, views: list[_FrameViews]) -> tuple[np.ndarray, np.ndarray]:
        """The primary face's crop in each frame (tracked over the clip) and whether it was seen there."""
        indices = primary_face_indices([view.boxes for view in views])
        faces = np.zeros((len(views), self.face_image_size, self.face_image_size, 3), np.uint8)
        for position, (view, index) in enumerate(zip(views, indices, strict=True)):
            if index is not None:
                faces[position] = view.crops[index]
        return faces, np.array([index is not None for index in indices], bool)

    def _check_decoded(
        self, clip: Mapping, with_video: bool, with_audio: bool
    ) -> dict[str, np.ndarray | None]:
        """A `decode_clip` dict (maybe back from a dataset as lists), checked against this processor's sizes."""
        missing = [key for key in DECODED_CLIP_KEYS if key not in clip]
        if missing:
            raise ValueError(
                f"A decoded clip needs the keys {list(DECODED_CLIP_KEYS)} (from `decode_clip`); missing {missing}."
            )
        frames = None if clip["frames"] is None or not with_video else np.asarray(clip["frames"], np.uint8)
        size = self.video_processor.size
        if frames is not None and frames.shape[1:] != (size["height"], size["width"], 3):
            raise ValueError(
                f"Decoded frames of shape {frames.shape} do not match this processor's {size['height']}x"
                f"{size['width']} frames: decode the clip again with this processor (a cache made with other "
                "settings is stale)."
            )
        faces = face_mask = None
        if frames is not None and self.use_face_tower:
            if clip["faces"] is None:  # cached without faces: track them now
                faces, face_mask = self._primary_faces(self._views_of_arrays(frames, range(len(frames))))
            else:
                faces = np.asarray(clip["faces"], np.uint8)
                face_mask = np.asarray(clip["face_mask"], bool)
                expected = (frames.shape[0], self.face_image_size, self.face_image_size, 3)
                if faces.shape != expected or face_mask.shape != expected[:1]:
                    raise ValueError(
                        f"Decoded faces {faces.shape} and face_mask {face_mask.shape} do not match {expected}: "
                        "decode the clip again with this processor."
                    )
        waveform = clip["audio"] if with_audio else None
        if waveform is not None:
            waveform = np.asarray(waveform, np.float32).reshape(-1)
        return {"frames": frames, "faces": faces, "face_mask": face_mask, "audio": waveform}

    def _load_audio(self, track: Any, audio_track: int | None) -> np.ndarray:
        if isinstance(track, dict):
            return resample_audio(track["array"], track.get("sampling_rate", SAMPLING_RATE), SAMPLING_RATE)
        if isinstance(track, (np.ndarray, torch.Tensor)):
            return np.asarray(track, dtype=np.float32).reshape(-1)
        return read_audio(
            track, SAMPLING_RATE, self.max_audio_seconds, self._url_limits, audio_track=audio_track
        )

    def _visual_inputs(self, clips: list[dict | None], videos_kwargs: dict) -> dict[str, torch.Tensor]:
        """Frames and face crops of every row at the batch's T (see `__call__`); zeros for rows without frames."""
        rows = [row for row, clip in enumerate(clips) if clip is not None and clip["frames"] is not None]
        num_frames = max((clips[row]["frames"].shape[0] for row in rows), default=self.num_frames)
        size = self.video_processor.size
        pixel_values = torch.zeros(len(clips), num_frames, 3, size["height"], size["width"])
        indices = {row: uniform_indices(clips[row]["frames"].shape[0], num_frames) for row in rows}
        if rows:
            videos_kwargs = {**videos_kwargs, "do_resize": False, "return_tensors": "pt"}
            resampled = [clips[row]["frames"][indices[row]] for row in rows]
            pixel_values[rows] = self.video_processor(resampled, **videos_kwargs)["pixel_values_videos"]
        inputs = {"pixel_values_videos": pixel_values}
        if self.use_face_tower:
            faces = torch.zeros(len(clips), num_frames, 3, self.face_image_size, self.face_image_size)
            face_mask = torch.zeros(len(clips), num_frames, dtype=torch.bool)
            for row in rows:
                mask = clips[row]["face_mask"][indices[row]]
                if mask.any():
                    crops = list(clips[row]["faces"][indices[row]][mask])
                    processed = self.image_processor(crops, do_resize=False, return_tensors="pt")[
                        "pixel_values"
                    ]
                    faces[row, torch.from_numpy(mask)] = processed
                    face_mask[row] = torch.from_numpy(mask)
            inputs.update(face_pixel_values=faces, face_mask=face_mask)
        return inputs

    def _audio_inputs(self, clips: list[dict | None], audio_blocks: list[bool]) -> dict[str, torch.Tensor]:
        """Whisper log-mel in 30 s windows cut here (the extractor would truncate), zero-padded to the batch's W.

        A clip with an audio block but no sound stands for `missing_audio_seconds` of zeros; a row without an
        audio block has length 0 (no tokens).
        """
        max_samples = int(self.max_audio_seconds * SAMPLING_RATE)
        window = WINDOW_SECONDS * SAMPLING_RATE
        windows, counts, lengths = [], [], []
        for clip, has_block in zip(clips, audio_blocks, strict=True):
            waveform = None if clip is None else clip["audio"]
            if waveform is None or waveform.size == 0:
                counts.append(0)
                lengths.append(round(self.missing_audio_seconds * MEL_FRAMES_PER_SECOND) if has_block else 0)
                continue
            waveform = waveform[:max_samples]
            pieces = [waveform[start : start + window] for start in range(0, waveform.size, window)]
            windows.extend(pieces)
            counts.append(len(pieces))
            lengths.append(math.ceil(waveform.size / (SAMPLING_RATE // MEL_FRAMES_PER_SECOND)))
        bins = self.feature_extractor.feature_size
        features = torch.zeros(len(clips), max(max(counts), 1), bins, WINDOW_MEL_FRAMES)
        if windows:
            mel_rows = iter(self._window_log_mel(windows))
            for row, count in enumerate(counts):
                for column in range(count):
                    features[row, column] = next(mel_rows)
        return {"input_features": features, "audio_feature_lengths": torch.tensor(lengths, dtype=torch.long)}

    def _window_log_mel(self, windows: list[np.ndarray]) -> torch.Tensor:
        """Whisper's log-mel of each window as if zero-padded to 30 s, computed on the sound only.

        The extractor pads every window to 30 s and computes all 3,000 frames, though most clips last a few
        seconds. Frames whose STFT window holds only padding have zero power, which Whisper's normalisation clamps
        to the row's maximum minus 8 (in log10 units, i.e. `max - 2` after its `(x + 4) / 4`), never below
        log10(1e-10). So the extractor runs on the windows padded only to the longest sound plus one STFT window
        of zeros (which keeps every computed frame identical, and the row's maximum too), and the remaining frames
        are filled with that clamped value.
        """
        extractor = self.feature_extractor
        window_samples = WINDOW_SECONDS * SAMPLING_RATE
        longest = max(piece.size for piece in windows)
        samples = min(
            window_samples, -(-(longest + extractor.n_fft) // extractor.hop_length) * extractor.hop_length
        )
        mel = extractor(
            windows, sampling_rate=SAMPLING_RATE, max_length=samples, truncation=True, return_tensors="pt"
        )["input_features"]
        if samples == window_samples:
            return mel
        silent = (math.log10(1e-10) + 4.0) / 4.0
        fill = torch.clamp(mel.amax(dim=(1, 2)) - 2.0, min=silent)
        padded = fill[:, None, None].expand(-1, mel.shape[1], WINDOW_MEL_FRAMES).clone()
        padded[:, :, : mel.shape[2]] = mel
        return padded

    # -- chat ------------------------------------------------------------------------------------------------

    def _multimodal_inputs_from_conversations(
        self, conversations: list[list[dict]], audio_loading_params: dict, load_audio_from_video: bool = False
    ):
        """Clips in the order the chat template places their markup: (video, audio override) pairs."""
        batch_videos, batch_audio = [], []
        for conversation in conversations:
            videos = []
            for message in conversation:
                content = message.get("content")
                if isinstance(content, str) or not content:
                    continue
                previous = None
                for part in content:
                    kind = part.get("type")
                    if kind in ("video", "image"):
                        videos.append(_first(part, ("video", "image", "url", "path")))
                        batch_audio.append(None)
                    elif kind == "audio":
                        track = _audio_entry(part)
                        if previous == "video":
                            batch_audio[-1] = track
                        else:
                            videos.append(None)
                            batch_audio.append(track)
                    previous = kind
            batch_videos.append(videos)
        has_audio = any(track is not None for track in batch_audio)
        flat_videos = [video for videos in batch_videos for video in videos]
        return [[] for _ in conversations], [flat_videos], batch_audio if has_audio else [], {}

    def apply_chat_template(self, conversation, *args, return_labels: bool = False, **kwargs):
        """transformers' `apply_chat_template`; `return_labels=True` adds `labels`, -100 but on the answers."""
        if not return_labels:
            return super().apply_chat_template(conversation, *args, **kwargs)
        kwargs.update(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return_tensors = kwargs.get("return_tensors", "auto")
        kwargs["return_tensors"] = "pt"
        out = super().apply_chat_template(conversation, *args, **kwargs)
        answer = out.pop("assistant_masks").bool() & out["attention_mask"].bool()
        out["labels"] = torch.where(answer, out["input_ids"], torch.full_like(out["input_ids"], -100))
        if return_tensors not in ("pt", "auto"):
            out.convert_to_tensors(return_tensors)
        return out

    def to_dict(self) -> dict[str, Any]:
        # The detector is a runtime object (OpenCV's cannot be copied): it is chosen at load time, never saved.
        detector = self.__dict__.pop("_face_detector")
        try:
            return super().to_dict()
        finally:
            self._face_detector = detector

    @property
    def model_input_names(self) -> list[str]:
        return [
            "input_ids",
            "attention_mask",
            "pixel_values_videos",
            "face_pixel_values",
            "face_mask",
            "input_features",
            "audio_feature_lengths",
        ]


def _flatten(entries: Sequence[Any] | None) -> list | None:
    """Accept one entry per clip, either flat or nested per sample (as `apply_chat_template` builds them)."""
    if entries is None:
        return None
    if isinstance(entries, (str, bytes, dict, np.ndarray, torch.Tensor)) or hasattr(entries, "read"):
        return [entries]
    flat = []
    for entry in entries:
        is_nested = isinstance(entry, (list, tuple)) and not (entry and isinstance(entry[0], (int, float)))
        flat.extend(entry if is_nested else [entry])
    return flat


def _as_frames(video: Any) -> np.ndarray:
    """Decoded frames (T, H, W, 3), one image (H, W, 3) or a PIL image, as uint8 frames."""
    frames = np.asarray(video.convert("RGB") if hasattr(video, "convert") else video)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Expected frames of shape (T, H, W, 3) or an image (H, W, 3), got {frames.shape}.")
    return frames.astype(np.uint8, copy=False)


def _first(part: dict, keys: Sequence[str]) -> Any:
    for key in keys:
        if part.get(key) is not None:
            return part[key]
    raise ValueError(f"A {part.get('type')!r} entry needs one of the keys {list(keys)}: got {sorted(part)}.")


def _audio_entry(part: dict) -> Any:
    if part.get("array") is not None:
        return {"array": part["array"], "sampling_rate": part.get("sampling_rate", SAMPLING_RATE)}
    return _first(part, ("audio", "url", "path"))


OmniEmotionProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["CHAT_TEMPLATE", "OmniEmotionProcessor", "audio_token_count"]
