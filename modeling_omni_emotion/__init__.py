"""Omni-Emotion model. Importing this package registers it with transformers' Auto classes.

The module files here import only transformers, torch, torchvision and each other (relatively), so that
`save_pretrained` can copy them flat into a checkpoint that loads with `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_omni_emotion import PRESETS, OmniEmotionConfig, OmniEmotionFaceConfig
from .modeling_face_encoder import OmniEmotionFaceEncoder, load_facexformer_weights
from .modeling_omni_emotion import (
    LLAVA_ONEVISION_KEY_MAPPING,
    OmniEmotionForConditionalGeneration,
    OmniEmotionModel,
    OmniEmotionPreTrainedModel,
)

AutoConfig.register(OmniEmotionConfig.model_type, OmniEmotionConfig, exist_ok=True)
AutoModel.register(OmniEmotionConfig, OmniEmotionModel, exist_ok=True)
AutoModelForImageTextToText.register(OmniEmotionConfig, OmniEmotionForConditionalGeneration, exist_ok=True)

# `save_pretrained` copies the code of registered classes into the checkpoint; the full `auto_map` is set by the
# config itself, since transformers keeps a single Auto class per registered class.
OmniEmotionConfig.register_for_auto_class()
OmniEmotionModel.register_for_auto_class("AutoModel")
OmniEmotionForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "LLAVA_ONEVISION_KEY_MAPPING",
    "PRESETS",
    "OmniEmotionConfig",
    "OmniEmotionFaceConfig",
    "OmniEmotionFaceEncoder",
    "OmniEmotionForConditionalGeneration",
    "OmniEmotionModel",
    "OmniEmotionPreTrainedModel",
    "load_facexformer_weights",
]
