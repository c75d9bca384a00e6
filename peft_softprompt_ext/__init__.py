"""peft_softprompt_ext: soft prompts as a first-class PEFT tool.

`import peft_softprompt_ext` registers the plugin's prompt methods with PEFT, so
`peft.get_peft_model(model, VocabSampledPromptTuningConfig(...))` works like any PEFT method.
This module is the top of the plugin: it imports the methods (each registers itself) and installs
the PEFT wrappers with the plugin's behaviour as their hooks; nothing in the package imports it.
"""

from . import fingerprint, hub, layer_prefix, persistence
from ._peft_compat import SUPPORTED_PEFT, PluginHooks, install_patches, own_module
from .adapter_files import check_finite, check_safetensors_file
from .atomic_io import atomic_directory_write, atomic_file_write, read_json_object, read_lock
from .deep_prompt import DeepInit, DeepPromptTuningConfig
from .describe import describe_prompt
from .export import export_cartridge, export_prefix_tuning, export_prompt_tuning
from .fingerprint import base_model_fingerprint, computed_once, fingerprint_differences
from .ids_embedding import ids_embedding
from .injection import causal_forward, causal_generate, classifier, inputs, model_checks, seq2seq
from .hub import attach_results, build_model_card
from .mixture import MixturePromptTuningConfig, Mixing, mixing_weights, serve_prompts
from .options import Reparameterization, SharedPrefix
from .projection import (
    ProjectedPromptTuningConfig,
    ProjectionFit,
    PromptProjection,
    RowNorm,
    fit_projection,
    refine_projection,
)
from .prompt_encoder import PromptEncoder
from .shared_prefix import PromptKVCache, prompt_kv_cache
from .vocab_sampled import VocabSampledPromptEmbedding, VocabSampledPromptTuningConfig, VocabSampling

install_patches(
    PluginHooks(
        causal_lm_forward=causal_forward.causal_lm_forward,
        generate_keywords=causal_generate.generate_keywords,
        generation_prompts=causal_generate.generation_prompts,
        generation_prefix=causal_generate.generation_prefix,
        generation_step_slice=causal_generate.slice_past_the_cached_tokens,
        prepare_generation_step=causal_generate.prepare_causal_generation_step,
        generation_scope=causal_generate.generation_scope,
        generation_output=causal_generate.generation_output,
        seq2seq_forward=seq2seq.seq2seq_forward,
        seq2seq_generate=seq2seq.seq2seq_generate,
        seq2seq_encode=seq2seq.seq2seq_encode,
        encoder_forward=classifier.encoder_forward,
        check_task_type=model_checks.check_task_type,
        base_model_fingerprint=base_model_fingerprint,
        fingerprint_once=computed_once,
        ids_embedding=ids_embedding,
        save_adapter=persistence.save_adapter,
        checked_config=persistence.checked_config,
        reading=persistence.reading,
        check_weights_file=persistence.check_weights_file,
        check_plain_copy=persistence.check_plain_copy,
        push_adapter=persistence.push_adapter_folder,
        check_plain_save=persistence.check_save_into_folder,
        keep_card_data=hub.keep_card_data,
        unroute=layer_prefix.unroute,
        unrouted_on_failure=layer_prefix.unrouted_on_failure,
        in_layers=inputs.in_layers,
        unprompted=layer_prefix.unprompted,
        check_saved_config=persistence.check_saved_config,
        check_prompt_fits=model_checks.check_prompt_fits,
    )
)
layer_prefix.register_routes()  # a deep-prompt model saved whole names the routed attention in its config
fingerprint.use_own_module(own_module)  # fingerprints read the model's own embedding under PEFT's trained copies

__version__ = "0.1.0"
__all__ = [
    # methods (each a PEFT config; importing this package registers them)
    "VocabSampledPromptTuningConfig",
    "VocabSampling",
    "VocabSampledPromptEmbedding",
    "MixturePromptTuningConfig",
    "Mixing",
    "ProjectedPromptTuningConfig",
    "DeepPromptTuningConfig",
    "DeepInit",
    "SharedPrefix",
    "Reparameterization",
    # working with prompts
    "mixing_weights",
    "serve_prompts",
    "PromptProjection",
    "ProjectionFit",
    "RowNorm",
    "fit_projection",
    "refine_projection",
    "describe_prompt",
    "export_prompt_tuning",
    "export_prefix_tuning",
    "export_cartridge",
    "prompt_kv_cache",
    "PromptKVCache",
    "PromptEncoder",
    # sharing and trust
    "attach_results",
    "base_model_fingerprint",
    "fingerprint_differences",
    "build_model_card",
    # all-or-nothing files (also used by the bench's checkpoints)
    "atomic_directory_write",
    "atomic_file_write",
    "read_lock",
    "read_json_object",
    "check_safetensors_file",
    "check_finite",
    "SUPPORTED_PEFT",
]
