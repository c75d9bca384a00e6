"""Multi-task prompt mixing: many tasks on one frozen model, mixed per row in one batch."""

from .._peft_compat import register_prompt_method
from .config import PEFT_TYPE_NAME, MixturePromptTuningConfig, Mixing
from .model import MixturePromptEncoder
from .serving import mixing_weights, serve_prompts

__all__ = ["MixturePromptTuningConfig", "MixturePromptEncoder", "Mixing", "mixing_weights", "serve_prompts"]

register_prompt_method(PEFT_TYPE_NAME.lower(), MixturePromptTuningConfig, MixturePromptEncoder)
