"""peft_softprompt_ext: soft prompts as a first-class PEFT tool.

`import peft_softprompt_ext` registers the plugin's prompt methods with PEFT, so
`peft.get_peft_model(model, VocabSampledPromptTuningConfig(...))` works like any PEFT method.
"""

from ._peft_compat import SUPPORTED_PEFT, install_patches, prompt_kv_cache
from .describe import describe_prompt
from .export import export_prompt_tuning
from .fingerprint import base_model_fingerprint
from .hub import attach_results, build_model_card
from .mixture import MixturePromptTuningConfig, Mixing, mixing_weights, serve_prompts
from .shared_prefix import PromptKVCache
from .projection import ProjectedPromptTuningConfig, PromptProjection, fit_projection, refine_projection
from .vocab_sampled import VocabSampledPromptEmbedding, VocabSampledPromptTuningConfig, VocabSampling

install_patches()

__version__ = "0.1.0"
__all__ = [
    "SUPPORTED_PEFT",
    "VocabSampledPromptTuningConfig",
    "MixturePromptTuningConfig",
    "Mixing",
    "mixing_weights",
    "serve_prompts",
    "ProjectedPromptTuningConfig",
    "PromptProjection",
    "fit_projection",
    "refine_projection",
    "VocabSampledPromptEmbedding",
    "VocabSampling",
    "attach_results",
    "base_model_fingerprint",
    "build_model_card",
    "describe_prompt",
    "export_prompt_tuning",
    "prompt_kv_cache",
    "PromptKVCache",
]
