"""Omni-Emotion's processor: media reading, face tracking and the `OmniEmotionProcessor`.

Importing this package registers the processor with `AutoProcessor` for the model's config; the module
files themselves never import the model (they are copied flat into checkpoints).
"""

from transformers import AutoProcessor

from modeling_omni_emotion.configuration_omni_emotion import OmniEmotionConfig

from .face_tracking import (
    FaceDetector,
    HaarCascadeFaceDetector,
    RetinaFaceDetector,
    crop_face,
    default_face_detector,
    primary_face_crops,
    track_primary_face,
)
from .media_reading import (
    Clip,
    MediaReadError,
    MediaReadWarning,
    UrlLimits,
    read_audio,
    read_clip,
    resample_audio,
)
from .processing_omni_emotion import CHAT_TEMPLATE, OmniEmotionProcessor, audio_token_count

AutoProcessor.register(OmniEmotionConfig, OmniEmotionProcessor, exist_ok=True)

__all__ = [
    "CHAT_TEMPLATE",
    "Clip",
    "FaceDetector",
    "HaarCascadeFaceDetector",
    "MediaReadError",
    "MediaReadWarning",
    "OmniEmotionProcessor",
    "RetinaFaceDetector",
    "UrlLimits",
    "audio_token_count",
    "crop_face",
    "default_face_detector",
    "primary_face_crops",
    "read_audio",
    "read_clip",
    "resample_audio",
    "track_primary_face",
]
