"""Cross-model prompt projection: move a trained prompt to another model, even across tokenizers."""

from .._peft_compat import register_prompt_method
from .alignment import shared_tokens
from .config import PEFT_TYPE_NAME, ProjectedPromptTuningConfig
from .fit import ProjectionFit, RowNorm, fit_projection
from .model import ProjectedPromptEmbedding, projected_source_prompt
from .projection import PromptProjection
from .refine import refine_projection

__all__ = ["PromptProjection", "ProjectionFit", "RowNorm", "ProjectedPromptTuningConfig", "ProjectedPromptEmbedding", "fit_projection",
           "projected_source_prompt", "refine_projection", "shared_tokens"]  # fmt: skip

register_prompt_method(PEFT_TYPE_NAME.lower(), ProjectedPromptTuningConfig, ProjectedPromptEmbedding)
