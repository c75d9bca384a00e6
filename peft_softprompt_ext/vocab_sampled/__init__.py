"""Vocabulary-sampled prompt tuning (Lester et al. 2021 initialisation, done right)."""

from .._peft_compat import register_prompt_method
from .config import PEFT_TYPE_NAME, VocabSampledPromptTuningConfig, VocabSampling
from .model import VocabSampledPromptEmbedding, initial_token_rows

__all__ = ["VocabSampledPromptTuningConfig", "VocabSampledPromptEmbedding", "VocabSampling", "initial_token_rows"]

register_prompt_method(PEFT_TYPE_NAME.lower(), VocabSampledPromptTuningConfig, VocabSampledPromptEmbedding)
