"""Deep prompt tuning: trainable keys and values in every self-attention layer (prefix tuning, P-Tuning v2)."""

from .._peft_compat import register_prompt_method
from .config import PEFT_TYPE_NAME, DeepInit, DeepPromptTuningConfig
from .model import DeepPromptEncoder, initial_key_values

__all__ = ["DeepPromptTuningConfig", "DeepPromptEncoder", "DeepInit", "initial_key_values"]

register_prompt_method(PEFT_TYPE_NAME.lower(), DeepPromptTuningConfig, DeepPromptEncoder)
