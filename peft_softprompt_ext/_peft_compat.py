"""The seam: the ONLY module that touches PEFT internals.

PEFT 0.21's seam for third-party prompt methods is narrow (README, "The PEFT seam"). This module
holds exactly what meets PEFT, and nothing of the plugin's own policy:

* the version guard (`SUPPORTED_PEFT`), checked at import;
* PEFT's names: adapter file names, the PROMPT_TUNING tensor name, task and PEFT types;
* registration (`register_prompt_method`): an enum member and PEFT's mappings per method;
* `PeftEncoderHooks`: the two hooks PEFT calls on a prompt encoder to save and load it;
* accessors: what a plugin module may ask of a PeftModel (its encoder, config, embeddings, the
  `PromptParts` of a call, a plain PROMPT_TUNING config, trained head tensors, ...);
* the wrapped and added `PeftModel` methods (`PATCHED_METHODS`, `ADDED_METHODS`). Each runs
  PEFT's own code unless the adapter is a plugin method; then it calls the plugin's behaviour
  through `PluginHooks`, which `peft_softprompt_ext/__init__.py` installs (injection in
  `injection/`, saving / loading / pushing in `persistence.py`).

This module imports nothing of the plugin but the PEFT-free utilities `atomic_io` and `sources`.
`tests/test_peft_compat.py` fails loudly when any PEFT assumption stops holding.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import peft
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from . import sources
from .atomic_io import read_json_object
from .instance_attribute import MISSING, instance_attribute

_LOGGER = logging.getLogger(__name__)

# Keep equal to the `peft` requirement in pyproject.toml (a test checks it).
SUPPORTED_PEFT = SpecifierSet(">=0.21.2,<0.22")


def check_peft_version(version: str | None = None) -> None:
    """Raise ImportError with one clear message if the installed PEFT is outside our range."""
    version = version if version is not None else peft.__version__
    if Version(version) not in SUPPORTED_PEFT:
        raise ImportError(
            f"peft_softprompt_ext supports peft{SUPPORTED_PEFT} but peft=={version} is installed. "
            f"Install a supported release: pip install 'peft{SUPPORTED_PEFT}'."
        )


check_peft_version()

# The PEFT internals we depend on; imported after the version check so an unsupported PEFT fails
# with the message above rather than an obscure ImportError.
from peft import PeftConfig, PeftModel, PromptTuningConfig, get_peft_model, get_peft_model_state_dict  # noqa: E402
from peft.config import PromptLearningConfig  # noqa: E402
from peft.mapping import (  # noqa: E402
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
)
from peft.peft_model import (  # noqa: E402
    PeftModelForCausalLM,
    PeftModelForSeq2SeqLM,
    PeftModelForSequenceClassification,
)
from peft.tuners.tuners_utils import BasePromptEncoder, _delete_auxiliary_adapter  # noqa: E402
from peft.utils import PeftType, TaskType, register_peft_method  # noqa: E402
from peft.utils.other import AuxiliaryTrainingWrapper  # noqa: E402

# PEFT's file names and the tensor name of a PROMPT_TUNING adapter ([P, token_dim]).
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
PROMPT_TUNING_TENSOR = "prompt_embeddings"
BASE_MODULE_PREFIX = "base_model."  # PEFT saves a prompt method's modules_to_save (e.g. a SEQ_CLS head) under it

SUPPORTED_TASK_TYPES = ("CAUSAL_LM", "SEQ_2_SEQ_LM", "SEQ_CLS")
# Names of the PEFT types this plugin registered, e.g. {"VOCAB_SAMPLED_PROMPT_TUNING"}.
PLUGIN_PEFT_TYPES: set[str] = set()
_PATCH_MARKER = "__peft_softprompt_ext_original__"


# --------------------------------------------------------------------------- registration
def _add_peft_type_member(name: str) -> PeftType:
    """Add `name` to PEFT's closed `PeftType` str-enum (idempotent); name and value are equal.

    Equal name and value keep plain-string lookups working: JSON configs hold the value, and
    PEFT's mapping dicts are keyed by members whose hash is the hash of the name.
    """
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    member.__init__(name)
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    return member


def register_prompt_method(name: str, config_cls: type, encoder_cls: type) -> PeftType:
    """Register a plugin prompt method with PEFT under the PEFT type `name.upper()`.

    Re-registering the same name (a module reload) replaces the classes and adds nothing.
    """
    peft_type = _add_peft_type_member(name.upper())
    if peft_type in PEFT_TYPE_TO_CONFIG_MAPPING:
        PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_cls
        PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = encoder_cls
    else:
        register_peft_method(name=name, config_cls=config_cls, model_cls=encoder_cls)
    # PEFT warns when an adapter name is a substring of a method's key prefix ("p", "prompt", "vocab"
    # all are of "vocab_sampled_prompt_tuning_"). Prompt encoders keep their tensors outside the base
    # model, so the prefix is never matched against a key: without one, PEFT has nothing to warn about.
    PEFT_TYPE_TO_PREFIX_MAPPING.pop(peft_type, None)
    PLUGIN_PEFT_TYPES.add(peft_type.value)
    return peft_type


def registered_methods() -> dict[str, tuple[type, type]]:
    """PEFT type -> (config class, encoder class) of every registered plugin method."""
    return {name: (PEFT_TYPE_TO_CONFIG_MAPPING[name], PEFT_TYPE_TO_TUNER_MAPPING[name]) for name in sorted(PLUGIN_PEFT_TYPES)}


def peft_type_name(config) -> str:
    peft_type = getattr(config, "peft_type", None)
    return str(getattr(peft_type, "value", peft_type))


def task_type_name(config) -> str:
    task_type = getattr(config, "task_type", None)
    return str(getattr(task_type, "value", task_type))


def is_plugin_config(config) -> bool:
    """True if `config` is a config of one of this plugin's methods."""
    return getattr(config, "peft_type", None) is not None and peft_type_name(config) in PLUGIN_PEFT_TYPES


def validate_task_type(task_type) -> None:
    """Plugin methods support CAUSAL_LM, SEQ_2_SEQ_LM and SEQ_CLS; anything else is refused."""
    if task_type is None or str(getattr(task_type, "value", task_type)) not in SUPPORTED_TASK_TYPES:
        raise ValueError(f"task_type={task_type!r} is not supported by peft_softprompt_ext; expected one of {list(SUPPORTED_TASK_TYPES)}.")


class PeftEncoderHooks(BasePromptEncoder):
    """PEFT's save/load hooks of a prompt encoder, routed to `adapter_state_dict()` / `load_adapter_state()`."""

    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        return model.prompt_encoder[adapter_name].adapter_state_dict()

    def _load_adapter_state_dict(self, state_dict):
        self.load_adapter_state(state_dict)


# --------------------------------------------------------------------------- accessors
def is_peft_model(model) -> bool:
    return isinstance(model, PeftModel)


def new_peft_model(model, config, adapter_name: str = "default"):
    """`peft.get_peft_model` (for plugin code that builds a PeftModel, e.g. serving)."""
    return get_peft_model(model, config, adapter_name=adapter_name)


def prompt_encoder_of(peft_model, adapter_name: str | None = None) -> torch.nn.Module:
    """The prompt encoder of `adapter_name` (default: the active adapter) of a PeftModel."""
    adapter_name = adapter_name or peft_model.active_adapter
    if not hasattr(peft_model, "prompt_encoder") or adapter_name not in peft_model.prompt_encoder:
        known = list(getattr(peft_model, "prompt_encoder", {}).keys())
        raise ValueError(f"adapter_name={adapter_name!r} is not a prompt adapter of this model; known: {known}.")
    return peft_model.prompt_encoder[adapter_name]


def adapter_config_of(peft_model, adapter_name: str | None = None):
    if not isinstance(getattr(peft_model, "peft_config", None), dict):  # (found 2026-12-07: a bare AttributeError)
        raise ValueError(f"Expected a PeftModel (peft.get_peft_model or PeftModel.from_pretrained), got a {type(peft_model).__name__}.")
    adapter_name = adapter_name or peft_model.active_adapter
    if adapter_name not in peft_model.peft_config:
        raise ValueError(f"adapter_name={adapter_name!r} not found; known: {list(peft_model.peft_config)}.")
    return peft_model.peft_config[adapter_name]


def adapter_names(peft_model) -> list[str]:
    return list(peft_model.peft_config)


def active_adapter_of(peft_model) -> str:
    return peft_model.active_adapter


def input_embeddings_of(model) -> torch.nn.Module:
    """The input-embedding module of a PeftModel's base model (or of a plain transformers model)."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return base.get_input_embeddings()


def own_module(module: torch.nn.Module, model) -> torch.nn.Module:
    """`module` of `model` (what a prompt sits on: a transformers model, or another PeftModel such as a LoRA one; or the
    prompt's PeftModel) under the wrappers in which a prompt trains a copy of it (PEFT's `modules_to_save`, trainable
    tokens). A copy that an adapter under the prompt declares (a LoRA config's `modules_to_save` naming the module, or
    its `trainable_token_indices`) is part of the model the prompt sits on, and kept (found 2026-12-07 by a review:
    told apart by adapter names, the prompt's own copy was kept where both adapters were named "default")."""
    if isinstance(model, PeftModel) and any(config.is_prompt_learning for config in model.peft_config.values()):
        model = model.base_model  # (the prompt's own PeftModel: what it sits on)
    if isinstance(module, AuxiliaryTrainingWrapper) and isinstance(model, PeftModel):
        name = next((name for name, each in innermost_model(model).named_modules(remove_duplicate=False) if each is module), "")
        if any(_declares(config, name, module is model.get_input_embeddings()) for config in model.peft_config.values()):
            return module
    while isinstance(module, AuxiliaryTrainingWrapper):
        module = module.original_module
    return module


def _declares(config, name: str, input_embedding: bool) -> bool:
    """Whether an adapter config trains a copy of the module at `name` beside it, as PEFT matches its names."""
    targets = list(getattr(config, "modules_to_save", None) or [])
    tokens = getattr(config, "trainable_token_indices", None)
    if isinstance(tokens, dict):
        targets += list(tokens)
    elif tokens and input_embedding:  # (a list: the input embedding's tokens)
        return True
    return bool(name) and any(name.endswith(target) for target in targets)


def innermost_model(model) -> torch.nn.Module:
    """The transformers model under any number of PeftModel wrappers (e.g. a prompt over a LoRA model)."""
    while isinstance(model, PeftModel):
        model = model.get_base_model()
    return model


def own_weights(model) -> dict[str, torch.Tensor]:
    """The transformers model's weights under its own names: a module PEFT wrapped for an adapter's trained copy (a
    SEQ_CLS head, once an adapter is built) gives its original module's, the copies left out."""
    weights = {}
    for key, tensor in model.state_dict().items():
        parts = key.split(".")
        if "modules_to_save" not in parts:
            weights[".".join(part for part in parts if part != "original_module")] = tensor
    return weights


def prompt_table_of(peft_model, adapter_name: str | None = None, task=None) -> torch.Tensor:
    """The prompt [num_virtual_tokens, token_dim] an adapter feeds the model (plugin or vanilla PROMPT_TUNING)."""
    config = adapter_config_of(peft_model, adapter_name)
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if is_plugin_config(config):
        return encoder.prompt_table(task)
    if config.peft_type == PeftType.PROMPT_TUNING:
        return encoder.embedding.weight[: config.num_virtual_tokens]  # seq2seq: the encoder half
    raise ValueError(f"Adapter of PEFT type {config.peft_type} has no prompt table; expected a prompt-tuning method.")


def plain_prompt_tuning_config(config, num_virtual_tokens: int, token_dim: int) -> PromptTuningConfig:
    """A PROMPT_TUNING config for the same base model and task as plugin config `config`."""
    return PromptTuningConfig(
        task_type=config.task_type,
        num_virtual_tokens=num_virtual_tokens,
        token_dim=token_dim,
        num_transformer_submodules=1,  # plugin prompts sit in front of the (encoder) input only
        num_attention_heads=config.num_attention_heads,
        num_layers=config.num_layers,
        base_model_name_or_path=config.base_model_name_or_path,
        revision=config.revision,
        modules_to_save=sorted(set(config.modules_to_save)) if config.modules_to_save else None,
        inference_mode=True,
    )


def _key_value_fields(config, num_virtual_tokens: int, num_layers: int, kv_heads: int, head_dim: int) -> dict:
    """The fields of a plain key/value prompt config holding [P, layers x 2 x kv heads x head dim] like a deep prompt."""
    return dict(
        task_type=config.task_type,
        num_virtual_tokens=num_virtual_tokens,
        token_dim=kv_heads * head_dim,
        num_attention_heads=kv_heads,
        num_layers=num_layers,
        base_model_name_or_path=config.base_model_name_or_path,
        revision=config.revision,
        modules_to_save=sorted(set(config.modules_to_save)) if config.modules_to_save else None,
        inference_mode=True,
    )


def plain_prefix_tuning_config(config, num_virtual_tokens: int, num_layers: int, kv_heads: int, head_dim: int):
    """A PREFIX_TUNING config (no projection) holding [P, layers x 2 x kv heads x head dim] like a deep prompt."""
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(prefix_projection=False, **_key_value_fields(config, num_virtual_tokens, num_layers, kv_heads, head_dim))


def plain_cartridge_config(config, num_virtual_tokens: int, num_layers: int, kv_heads: int, head_dim: int, num_frozen_tokens: int):
    """A CARTRIDGE config holding the same rows as `plain_prefix_tuning_config` (PEFT's CartridgeEncoder stores
    PrefixEncoder's layout), its first `num_frozen_tokens` rows frozen there."""
    from peft import CartridgeConfig

    fields = _key_value_fields(config, num_virtual_tokens, num_layers, kv_heads, head_dim)
    return CartridgeConfig(num_frozen_tokens=num_frozen_tokens, **fields)


def trained_head_tensors(peft_model, adapter_name: str, save_embedding_layers: bool | str = False) -> dict[str, torch.Tensor]:
    """Tensors PEFT saves beside a prompt (e.g. a SEQ_CLS classifier head), keyed as PEFT saves them; with
    `save_embedding_layers` (PEFT's save_pretrained option: True, False or "auto") the embedding layers PEFT saves
    with it too. Copies: a model's tied input and output embeddings are one tensor, which safetensors refuses twice."""
    state = get_peft_model_state_dict(peft_model, adapter_name=adapter_name, save_embedding_layers=save_embedding_layers)
    return {name: tensor.detach().cpu().clone() for name, tensor in state.items() if name.startswith(BASE_MODULE_PREFIX)}


def make_adapter_trainable(peft_model, adapter_name: str) -> None:
    """Unfreeze a loaded plugin adapter: its prompt encoder and its trained head copies (modules_to_save)."""
    peft_model.peft_config[adapter_name].inference_mode = False
    peft_model.prompt_encoder[adapter_name].set_trainable()
    for module in peft_model.modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            module.set_requires_grad(adapter_name, True)


@dataclass
class PromptParts:
    """What putting a prompt in front of a model's input needs, taken from a PeftModel once per call."""

    base_model: torch.nn.Module  # what the prompt goes in front of (a transformers model, or a nested PeftModel)
    input_embeddings: torch.nn.Module  # the base model's input-embedding module, as its forward applies it to input_ids
    encoder: torch.nn.Module  # a `prompt_encoder.PromptEncoder`
    num_virtual_tokens: int
    shared_prefix: str = "off"  # "auto" | "on" | "off" (see shared_prefix.py)
    # The transformers model class under any adapter wrappers: its forward signature says which
    # arguments (position_ids, cache) reach the model, also through a LoRA PeftModel's **kwargs.
    model_class: type | None = None
    nested_adapters: bool = False  # base_model is itself a PeftModel (e.g. a LoRA under the prompt)
    peft_model: torch.nn.Module | None = None  # the whole PeftModel (to ask whether anything trains)
    inner_model: torch.nn.Module | None = None  # the transformers model under any adapters (deep prompts' layers)


def plugin_parts(peft_model, adapter_name: str | None = None) -> PromptParts:
    adapter_name = adapter_name or peft_model.active_adapter
    config = peft_model.peft_config[adapter_name]
    return PromptParts(
        base_model=peft_model.base_model,
        # the model's input embedding as it is now (found 2026-12-07 by a probe: after `set_input_embeddings` the one found
        # at the build embedded the input, where a cached generate's later steps used the new one)
        input_embeddings=_hooks.ids_embedding(peft_model.base_model.get_input_embeddings(), innermost_model(peft_model.base_model)),
        encoder=peft_model.prompt_encoder[adapter_name],
        num_virtual_tokens=config.num_virtual_tokens,
        shared_prefix=config.shared_prefix_mode(),
        model_class=type(innermost_model(peft_model.base_model)),
        nested_adapters=isinstance(peft_model.base_model, PeftModel),
        peft_model=peft_model,
        inner_model=innermost_model(peft_model.base_model),
    )


def peft_type_of(model_id, config=None, kwargs: dict | None = None) -> str:
    """The PEFT type an adapter declares; a missing, malformed or unknown one is an error naming it."""
    kwargs = kwargs or {}
    if config is not None:
        return peft_type_name(config)
    subfolder = kwargs.get("subfolder")
    if not sources.is_local(model_id, subfolder):
        return PeftConfig._get_peft_type(model_id, **_hub_kwargs(kwargs))
    path = os.path.join(sources.folder_of(model_id, subfolder), ADAPTER_CONFIG_NAME)
    if not os.path.isfile(path):
        return ""  # PEFT then says "Can't find 'adapter_config.json'", as it always has
    peft_type = read_json_object(path, "Adapter config").get("peft_type")
    if not isinstance(peft_type, str) or not peft_type:
        raise ValueError(f"Adapter config {path!r}: field 'peft_type' is {peft_type!r}; expected the name of a PEFT method, "
                         "e.g. 'PROMPT_TUNING'.")  # fmt: skip
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ValueError(
            f"Adapter config {path!r}: peft_type {peft_type!r} is not a method of PEFT {peft.__version__} nor of "
            f"peft_softprompt_ext (plugin methods: {sorted(PLUGIN_PEFT_TYPES)}); was it saved by a newer release?"
        )
    return peft_type


def _hub_kwargs(kwargs) -> dict:
    """The download options of a from_pretrained / load_adapter call, for the plugin's own reads of the same files."""
    names = ("subfolder", "revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
    return {k: kwargs[k] for k in names if kwargs.get(k) is not None}


# --------------------------------------------------------------------------- the plugin's behaviour
@dataclass
class PluginHooks:
    """What happens where a wrapped PEFT method meets a plugin adapter. Installed by the package's
    `__init__` (`install_patches(hooks)`), so this module never imports the plugin's behaviour."""

    causal_lm_forward: Callable  # (parts, *args, **kwargs) -> model output
    generate_keywords: Callable  # (parts, args, kwargs) -> generate's keywords as transformers takes them (one task id as an int, its inferred mask)
    generation_prompts: Callable  # (parts, args, kwargs) -> prompts [B, P, D] fixed for one generate call
    generation_prefix: Callable  # (parts, args, kwargs, prompt_cache) -> shared prefix or None
    generation_step_slice: Callable  # (parts, args, kwargs, prefix) -> kwargs for transformers' own prepare_inputs_for_generation
    prepare_generation_step: Callable  # (parts, model_inputs, task_ids, prompts, prefix) -> model_inputs
    generation_scope: Callable  # (parts, prompts, prefix) -> context manager around one whole generate call
    generation_output: Callable  # (parts, kwargs, output) -> generate's output in the caller's layout
    seq2seq_forward: Callable
    seq2seq_generate: Callable
    seq2seq_encode: Callable  # (parts, encoder, input_ids, attention_mask, inputs_embeds, task_ids, **kwargs): get_encoder()'s call
    encoder_forward: Callable
    check_task_type: Callable  # (task_type, model): refuse a task type the model is not (before the encoder is built)
    base_model_fingerprint: Callable  # (base_model) -> dict, saved in a new adapter's config
    fingerprint_once: Callable  # () -> context manager: a base model's fingerprint computed once within it (one load)
    ids_embedding: Callable  # (embedding module, transformers model) -> module embedding input_ids as the model's forward does
    save_adapter: Callable  # (peft_model, save_directory, write_peft_files, selected_adapters, safe_serialization, save_embedding_layers)
    checked_config: Callable  # (model_id, base_model, config_class, encoder_class, config, allow, subfolder, hub, kwargs)
    reading: Callable  # (model_id, subfolder) -> context manager held while PEFT reads the files
    check_weights_file: Callable  # (model_id, subfolder, hub_kwargs) -> path of a checked safetensors file
    check_plain_copy: Callable  # (model_id, base_model, allow, subfolder, hub_kwargs): a plain PEFT adapter this plugin exported
    push_adapter: Callable  # (peft_model, **push_to_hub options) -> commit info
    check_plain_save: Callable  # (peft_model, save_directory, saved names): a plain model's save, where a plugin save is
    keep_card_data: Callable  # (peft_model, output_dir): after PEFT's card update, the plugin card's tags and base_model
    unroute: Callable  # (base_model): undo the deep prompts' attention routing (unload)
    unrouted_on_failure: Callable  # (model) -> context manager: a failing block leaves the model unrouted if it was
    in_layers: Callable  # (encoder) -> bool: its prompt goes in front of the attention layers (routed), not the input
    unprompted: Callable  # (base_model) -> context manager: no plugin prompt in its layers (a call with the adapter disabled)
    check_saved_config: Callable  # (saved fingerprint, model's fingerprint): a config read from a save fits this base model
    check_prompt_fits: Callable  # (config, model, loading): the prompt fits the model's position table


_hooks: PluginHooks | None = None


# --------------------------------------------------------------------------- wrapped methods
def _setup_prompt_encoder(original, self, adapter_name):
    config = self.peft_config[adapter_name]
    if not is_plugin_config(config):
        return original(self, adapter_name)
    with _hooks.fingerprint_once():  # (the build may check a source prompt's fingerprint against the same model)
        _setup_plugin_prompt_encoder(self, adapter_name, config)


def _setup_plugin_prompt_encoder(self, adapter_name, config):
    # PEFT's own version would freeze the base, find the embeddings and then raise "Not supported"
    # for our type; we do the same steps with transformers' public get_input_embeddings().
    config.check_fields()  # (a field set after the config was made)
    _hooks.check_task_type(task_type_name(config), innermost_model(self.base_model))
    # A config read from a save (the fingerprint it was read with, and the inference_mode=True PEFT saves) is built for
    # its weights to be loaded next (PeftModel(base, PeftConfig.from_pretrained(folder)), then
    # set_peft_model_state_dict): no start. Read with inference_mode=False (to train on), it still claims its model.
    claimed = config.fingerprint_claimed()
    saved_config = config.inference_mode and claimed
    _hooks.check_prompt_fits(config, innermost_model(self.base_model), saved_config or building_for_a_load())
    for parameter in self.base_model.parameters():
        parameter.requires_grad_(False)
    fingerprint = _hooks.base_model_fingerprint(self.base_model)
    if claimed and not _CONFIG_CHECKED.get():  # (from_pretrained and load_adapter checked it; PEFT's low-level load did not)
        _hooks.check_saved_config(config.base_model_fingerprint, fingerprint)
    if config.base_model_fingerprint not in (None, fingerprint):
        # PEFT keeps the config object it is given: one used before for another base model gets its own copy
        config = self.peft_config[adapter_name] = copy.deepcopy(config)
    config.base_model_fingerprint = fingerprint
    config.num_transformer_submodules = 1  # plugin prompts go in front of the (encoder) input only
    self.word_embeddings = self.base_model.get_input_embeddings()
    if not hasattr(self, "prompt_encoder"):
        self.prompt_encoder = torch.nn.ModuleDict({})
        self.prompt_tokens = {}
    encoder_cls = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    with _building_for_a_load() if saved_config else contextlib.nullcontext():
        inner = innermost_model(self.base_model)
        encoder = encoder_cls(config, _hooks.ids_embedding(self.word_embeddings, inner), model_config=self.base_model.config, base_model=inner)
    self.prompt_encoder.update(torch.nn.ModuleDict({adapter_name: encoder.to(self.device)}))
    self.prompt_tokens[adapter_name] = torch.arange(config.num_virtual_tokens).long()


def _get_prompt(original, self, batch_size, task_ids=None, max_cache_len=None):
    if not is_plugin_config(self.active_peft_config):
        return original(self, batch_size, task_ids=task_ids, max_cache_len=max_cache_len)
    return self.prompt_encoder[self.active_adapter](batch_size, task_ids=task_ids)


_PLUGIN_ONLY_KWARGS = ("task_ids", "prompt_cache")


def _bound_kwargs(original, self, args, kwargs) -> dict:
    """A PEFT method's positional arguments as keyword arguments, by its signature."""
    bound = dict(inspect.signature(original).bind_partial(self, *args, **kwargs).arguments)
    bound.pop("self")
    bound.update(bound.pop("kwargs", {}))
    return bound


def _disabled_call(original, self, method: str, args, kwargs):
    """Inside `disable_adapter()`: the base model's own `method`, without the prompt's arguments."""
    call = {k: v for k, v in _bound_kwargs(original, self, args, kwargs).items() if k not in _PLUGIN_ONLY_KWARGS}
    positional = call.pop("args", ())  # generate(*args): transformers' own order (inputs first)
    base = self.get_base_model()
    # inside a generate of the prompt (a logits processor's call): no prompt in the layers, and a generate steps through
    # the model's own method, not the one PEFT set for the prompt's call (found by a review: it failed)
    steps = instance_attribute(base, "prepare_inputs_for_generation", MISSING) if method == "generate" else contextlib.nullcontext()
    with _hooks.unprompted(base), steps:
        return getattr(base, method)(*positional, **call)


def _forward(hook_name: str):
    """A forward wrapper: PEFT's own for other adapters, the base model's when disabled, else the hook."""

    def wrapper(original, self, *args, **kwargs):
        if not is_plugin_config(self.active_peft_config):
            return original(self, *args, **kwargs)
        if self._adapters_disabled:
            return _disabled_call(original, self, "__call__", args, kwargs)
        if args:  # by PEFT's signature (found 2026-12-07: handed on in the hook's order, a classifier's labels were task ids)
            args, kwargs = (), _bound_kwargs(original, self, args, kwargs)
        return getattr(_hooks, hook_name)(plugin_parts(self), *args, **kwargs)

    return wrapper


def _generate_keywords(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """generate's positional arguments after `inputs` as keywords, by transformers' signature
    (`generate(inputs, generation_config, logits_processor, ...)`), so that the plugin reads every
    setting where it reads a keyword one; `inputs=` given by name goes first, as when given by position."""
    if "inputs" in kwargs:
        if args:
            raise TypeError("generate() got multiple values for argument 'inputs'.")
        kwargs = dict(kwargs)
        inputs = kwargs.pop("inputs")
        args = () if inputs is None else (inputs,)
    if len(args) <= 1:
        return args, kwargs
    from transformers.generation.utils import GenerationMixin

    parameters = inspect.signature(GenerationMixin.generate).parameters.values()
    names = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "inputs")]
    if len(args) - 1 > len(names):
        raise TypeError(f"generate() takes at most {len(names) + 1} positional arguments (inputs, {', '.join(names)}); got {len(args)}.")
    kwargs = dict(kwargs)
    for name, value in zip(names, args[1:]):
        if name in kwargs:
            raise TypeError(f"generate() got multiple values for argument {name!r}.")
        kwargs[name] = value
    return args[:1], kwargs


def _causal_generate(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "generate", args, kwargs)
    args, kwargs = _generate_keywords(args, kwargs)
    _hand_on_the_generation_config(self)
    # The prompt is computed once from the original input, so it stays the same at every step with
    # or without a cache (input-dependent mixing would otherwise see the generated tokens too).
    parts = plugin_parts(self)
    kwargs = _hooks.generate_keywords(parts, args, kwargs)
    prompt_cache = kwargs.pop("prompt_cache", None)
    # A generate of this model inside this one (a logits processor's) leaves this call's state as it found it (found
    # 2026-12-06: its end removed this call's prompts and PEFT's step method from the model, and this call went on
    # without its prompt); a refusal on the way leaves nothing behind for a later step outside generate.
    with instance_attribute(self, "_plugin_generation_prompts", MISSING), \
            instance_attribute(self, "_plugin_generation_prefix", MISSING), \
            instance_attribute(self.base_model, "prepare_inputs_for_generation", self.base_model.__dict__.get("prepare_inputs_for_generation", MISSING)):  # fmt: skip
        self._plugin_generation_prompts = _hooks.generation_prompts(parts, args, kwargs)
        self._plugin_generation_prefix = _hooks.generation_prefix(parts, args, kwargs, prompt_cache)
        with _rows_adapters_of_the_model_under(self, kwargs):  # (what the scope runs through the model at its start)
            scope = _hooks.generation_scope(parts, self._plugin_generation_prompts, self._plugin_generation_prefix)
        with scope, _inputs_embeds_accepted(self, kwargs), _steps_through_the_prompt(self):
            return _hooks.generation_output(parts, kwargs, original(self, *args, **kwargs))


def _hand_on_the_generation_config(peft_model) -> None:
    """What PEFT's causal generate does first: the PeftModel's `generation_config` goes onto the model under it, which
    transformers then reads (the transformers model's, where it has no `.model`, or a LoRA PeftModel's). Done before the
    plugin reads the call's settings (found 2026-12-07 by a review: the first call after `peft_model.generation_config =
    ...` inferred its mask from the old config)."""
    if hasattr(peft_model.base_model, "model"):
        peft_model.base_model.model.generation_config = peft_model.generation_config
    else:
        peft_model.base_model.generation_config = peft_model.generation_config


def _rows_adapters_of_the_model_under(peft_model, kwargs: dict):
    """Over a LoRA PeftModel given per-row adapters (`adapter_names=`, one per input row), each row's prompt run through
    the model at the call's start (a shallow prompt's keys and values for a static cache) runs through its row's
    adapter, as PEFT's generate runs the steps (found 2026-12-06: every row's prompt ran through the active adapter,
    and the rows of the others generated other tokens)."""
    if not isinstance(peft_model.base_model, PeftModel) or kwargs.get("adapter_names") is None:
        return contextlib.nullcontext()
    return peft_model.base_model._enable_peft_forward_hooks(adapter_names=kwargs["adapter_names"])


def _transformers_step_preparation(peft_model):
    """transformers' own `prepare_inputs_for_generation` of the model under the prompt (PEFT keeps it as
    `base_model_prepare_inputs_for_generation`). Over another PeftModel (a LoRA one) PEFT keeps that model's, which drops
    `cache_position` for every adapter type but prefix tuning's: a static cache under transformers 5.0 then counted its
    own length from the keys of row 0, left padding not included, and generate gave other tokens. The transformers
    model's own method is taken there instead (the LoRA model's adds nothing to a step)."""
    if isinstance(peft_model.base_model, PeftModel):
        inner = innermost_model(peft_model.base_model)
        return type(inner).prepare_inputs_for_generation.__get__(inner)
    return peft_model.base_model_prepare_inputs_for_generation


@contextlib.contextmanager
def _steps_through_the_prompt(peft_model):
    """PEFT's generate puts the prompt's `prepare_inputs_for_generation` on its base model for the call; over another
    PeftModel (a prompt over a LoRA model) that one's generate hands every step to the transformers model under it,
    whose own method then runs: no step saw the prompt, and generate gave the LoRA model's tokens alone (plain PEFT's
    prompts too). For the call, the transformers model under the adapters steps through the prompt's method."""
    if not isinstance(peft_model.base_model, PeftModel):
        yield
        return
    inner = innermost_model(peft_model.base_model)
    step = peft_model.prepare_inputs_for_generation  # (the signature-carrying one, for inputs_embeds)
    before = inner.__dict__.get("prepare_inputs_for_generation", MISSING)
    own_generate = inner.generate
    running = []

    def generate(*args, **kwargs):
        # Only this call's own generate on that model steps through the prompt. One started inside it (a logits
        # processor's, an assistant's on the same model) steps as it would without the prompt (found 2026-12-06: it got
        # the prompt's steps and failed).
        with instance_attribute(inner, "prepare_inputs_for_generation", before if running else step):
            running.append(True)
            try:
                return own_generate(*args, **kwargs)
            finally:
                running.pop()

    with instance_attribute(inner, "generate", generate):
        yield


@contextlib.contextmanager
def _inputs_embeds_accepted(peft_model, kwargs: dict):
    """transformers' generate takes `inputs_embeds` only from a model whose `prepare_inputs_for_generation` names
    it, and PEFT's generate puts its own there, `(*args, task_ids=None, **kwargs)`: generate(inputs_embeds=...) was
    refused for every prompt-learning PeftModel. For a plugin prompt's call, the PeftModel's method carries the base model's own
    signature (with task_ids) for the call's duration; the plugin puts the prompt in front of the given embeddings."""
    if kwargs.get("inputs_embeds") is None:
        yield
        return
    method = peft_model.prepare_inputs_for_generation  # the class's (our wrapper of PEFT's), bound
    signature = inspect.signature(_transformers_step_preparation(peft_model))
    parameters = [p for p in signature.parameters.values() if p.name != "task_ids"]
    keyword = inspect.Parameter("task_ids", inspect.Parameter.KEYWORD_ONLY, default=None)
    last = len(parameters) - (parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD)
    accepting = functools.partial(method)  # a callable of its own, to carry the signature
    accepting.__signature__ = signature.replace(parameters=parameters[:last] + [keyword] + parameters[last:])
    with instance_attribute(peft_model, "prepare_inputs_for_generation", accepting):  # PEFT's generate hands it to the base model
        yield


def _causal_prepare_inputs_for_generation(original, self, *args, task_ids=None, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, task_ids=task_ids, **kwargs)
    fixed = getattr(self, "_plugin_generation_prompts", None)
    prefix = getattr(self, "_plugin_generation_prefix", None)
    kwargs = _hooks.generation_step_slice(plugin_parts(self), args, kwargs, prefix)
    model_inputs = _transformers_step_preparation(self)(*args, **kwargs)
    return _hooks.prepare_generation_step(plugin_parts(self), model_inputs, task_ids, fixed, prefix)


def _seq2seq_generate(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    args, kwargs = _generate_keywords(args, kwargs)
    if self._adapters_disabled:  # PEFT's seq2seq generate takes keywords only: the inputs go by name
        return _disabled_call(original, self, "generate", (), {**({"inputs": args[0]} if args else {}), **kwargs})
    return _hooks.seq2seq_generate(plugin_parts(self), *args, **kwargs)


def _own_head_wrappers(self) -> list[tuple[str, torch.nn.Module]]:
    """(path, wrapper) of PEFT's wrappers of the modules this model's adapters train beside their prompts (a SEQ_CLS
    head's trained copy): those holding only this model's adapters. Under a prompt over another PeftModel (e.g. a
    LoRA one), a wrapper holding that model's adapters is that model's (or shared by a name both use): left alone."""
    own = set(self.peft_config)
    inner = set(self.base_model.peft_config) if isinstance(self.base_model, PeftModel) else set()
    return [(name, module) for name, module in self.get_base_model().named_modules()
            if isinstance(module, AuxiliaryTrainingWrapper) and module._adapters and module._adapters <= own and not module._adapters & inner]  # fmt: skip


@contextlib.contextmanager
def _plugin_disabled(self):
    was_disabled = self._adapters_disabled
    wrappers = [(wrapper, wrapper.disable_adapters, [(p, p.requires_grad) for p in wrapper.parameters()])
                for _, wrapper in _own_head_wrappers(self)]  # fmt: skip
    try:
        self._adapters_disabled = True  # our forward and generate wrappers then call the base model alone
        for wrapper, _, _ in wrappers:  # ... with its original head, as PEFT's disable_adapter gives LoRA's
            wrapper.enable_adapters(False)
        yield
    finally:
        self._adapters_disabled = was_disabled
        for wrapper, disabled, trainable in wrappers:
            wrapper.enable_adapters(not disabled)
            for parameter, requires_grad in trainable:  # (enable_adapters sets requires_grad on the active copy)
                parameter.requires_grad_(requires_grad)


def _disable_adapter(original, self):
    # PEFT swaps forward / prepare_inputs_for_generation for prompt methods, which misses our generate
    # wrappers and breaks on SEQ_CLS models (no prepare_inputs_for_generation); a flag does neither.
    if not is_plugin_config(self.active_peft_config):
        return original(self)
    return _plugin_disabled(self)


def _get_prompt_embedding_to_save(original, self, adapter_name, task=None):
    """PEFT's [num_virtual_tokens, token_dim] prompt; `task` picks one task of a multi-task mixture."""
    if not is_plugin_config(self.peft_config[adapter_name]):
        return original(self, adapter_name)
    with torch.no_grad():  # PEFT's layout: [P, token_dim] for input rows, [P, layers x 2 x kv dim] for a deep prompt
        return self.prompt_encoder[adapter_name].prompt_rows(task).detach().cpu()


def _has_plugin_adapter(self) -> bool:
    return any(is_plugin_config(config) for config in self.peft_config.values())


def _save_pretrained(original, self, save_directory, *args, **kwargs):
    bound = _bound_kwargs(original, self, (save_directory, *args), kwargs)
    if bound.get("is_main_process", True) is False:
        return original(self, save_directory, *args, **kwargs)  # (PEFT writes nothing where it is not the main process)
    if not _has_plugin_adapter(self):  # a plain adapter named 'vanilla' never replaces a plugin save's plain copy
        _hooks.check_plain_save(self, save_directory, bound.get("selected_adapters") or list(self.peft_config))
        return original(self, save_directory, *args, **kwargs)
    _hooks.save_adapter(self, save_directory, lambda staging: original(self, staging, *args, **kwargs),
                        bound.get("selected_adapters"), bound.get("safe_serialization", True),
                        bound.get("save_embedding_layers", "auto"))  # fmt: skip


def _checked_plugin_config(peft_type, model_id, base_model, config, allow_base_model_mismatch, kwargs):
    return _hooks.checked_config(model_id, base_model, PEFT_TYPE_TO_CONFIG_MAPPING[peft_type], PEFT_TYPE_TO_TUNER_MAPPING[peft_type],
                                 config, allow_base_model_mismatch, kwargs.get("subfolder"), _hub_kwargs(kwargs), kwargs)  # fmt: skip


# The adapter name whose config from_pretrained has just checked: its own load_adapter call loads only weights.
_CHECKED_BY_FROM_PRETRAINED = contextvars.ContextVar("checked_by_from_pretrained", default=None)


@contextlib.contextmanager
def _set_for_the_block(variable: contextvars.ContextVar, value=True):
    """`variable` is `value` in this context for the block (a nested block sets and restores its own)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def _checked_by_from_pretrained(adapter_name: str):
    return _set_for_the_block(_CHECKED_BY_FROM_PRETRAINED, adapter_name)


# Set while PEFT builds a plugin adapter to load its weights into (from_pretrained, load_adapter, or a config read from
# a save): the encoder skips its start (sampling, a projection, reading a bank), which the checkpoint replaces. PEFT
# keys that on `inference_mode` alone, which a user may also give a fresh config: its prompt kept nn.Embedding's random
# rows.
_BUILDING_FOR_A_LOAD = contextvars.ContextVar("building_for_a_load", default=False)


def building_for_a_load() -> bool:
    """Whether an encoder built now gets its weights from a checkpoint (so it need not compute its start)."""
    return _BUILDING_FOR_A_LOAD.get()


# Set while PEFT builds an adapter whose saved config the plugin has checked (and, where a mismatch was allowed, let
# in): PEFT reads the config again, fingerprint and all, which `check_saved_config` must not refuse then.
_CONFIG_CHECKED: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_config_checked", default=False)


def _config_checked():
    return _set_for_the_block(_CONFIG_CHECKED)


def _building_for_a_load():
    return _set_for_the_block(_BUILDING_FOR_A_LOAD)


def _cached_subfolder(model_id, kwargs: dict):
    """(model_id, kwargs) for PEFT's load: offline, a Hub repo's `subfolder` is read from its cached folder. PEFT 0.21
    looks the weights up offline at <subfolder>/<subfolder>/ (it joins the subfolder into the file name and passes it
    too), so every cached subfolder load failed (found 2026-12-07 by a probe; the cards load plain copies that way)."""
    import huggingface_hub

    subfolder = kwargs.get("subfolder")
    if not subfolder or not huggingface_hub.constants.HF_HUB_OFFLINE or sources.is_local(model_id, subfolder):
        return model_id, kwargs
    folder = sources.local_folder(model_id, [ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME], subfolder, kwargs.get("revision"),
                                  {k: kwargs[k] for k in ("cache_dir", "token") if kwargs.get(k) is not None})  # fmt: skip
    return folder, {k: v for k, v in kwargs.items() if k not in ("subfolder", "revision")}


def _from_pretrained(original, cls, model, model_id, adapter_name="default", is_trainable=False, config=None,
                     allow_base_model_mismatch=False, **kwargs):  # fmt: skip
    model_id, kwargs = _cached_subfolder(model_id, kwargs)
    peft_type = peft_type_of(model_id, config, kwargs)
    if peft_type not in PLUGIN_PEFT_TYPES:  # read under the lock too: a save's vanilla/ copy is swapped with its folder
        with _hooks.reading(model_id, kwargs.get("subfolder")), _hooks.fingerprint_once():
            _hooks.check_plain_copy(model_id, model, allow_base_model_mismatch, kwargs.get("subfolder"), _hub_kwargs(kwargs))
            with _checked_by_from_pretrained(adapter_name):
                return original(model, model_id, adapter_name=adapter_name, is_trainable=is_trainable, config=config, **kwargs)
    with _hooks.reading(model_id, kwargs.get("subfolder")), _hooks.fingerprint_once():
        config = _checked_plugin_config(peft_type, model_id, model, config, allow_base_model_mismatch, kwargs)
        # PEFT refuses is_trainable=True for every prompt method; ours resume training: load frozen, then unfreeze.
        # A load refused after the prompt was built leaves the caller's model unrouted, as it came (found 2026-12-07 by
        # a review: a deep prompt's refused load left its attention routed, with the plugin's hook)
        with _checked_by_from_pretrained(adapter_name), _building_for_a_load(), _hooks.unrouted_on_failure(innermost_model(model)):
            peft_model = original(model, model_id, adapter_name=adapter_name, is_trainable=False, config=config, **kwargs)
    if is_trainable:
        make_adapter_trainable(peft_model, adapter_name)
        peft_model.train()
    else:
        peft_model.prompt_encoder[adapter_name].requires_grad_(False)
    return peft_model


def _is_a_plugin_saves_plain_copy(model_id, adapter_name, kwargs) -> bool:
    """`<plugin adapter folder>/vanilla` loaded under the name "vanilla": what Trainer's resume_from_checkpoint
    does with every subfolder that holds adapter weights."""
    if adapter_name != "vanilla" or not sources.is_local(model_id, kwargs.get("subfolder")):
        return False
    folder = os.path.normpath(sources.folder_of(model_id, kwargs.get("subfolder")))
    parent = os.path.dirname(folder)
    return os.path.basename(folder) == "vanilla" and os.path.isfile(os.path.join(parent, ADAPTER_CONFIG_NAME)) \
        and peft_type_of(parent) in PLUGIN_PEFT_TYPES


def _load_adapter(original, self, model_id, adapter_name, is_trainable=False, *args, allow_base_model_mismatch=False, **kwargs):
    """PEFT's load_adapter, with a plugin adapter's files and fingerprint checked and is_trainable=True allowed.

    Weights loaded into an adapter the model has keep its parameters training or not as they were (as PEFT does:
    Trainer reloads the best checkpoint and resumes that way); a new adapter loads frozen unless is_trainable."""
    given = model_id, kwargs  # (a Hub repo read from its cached folder is no local plugin save: found by a review)
    model_id, kwargs = _cached_subfolder(model_id, kwargs)
    peft_type = peft_type_of(model_id, None, kwargs)
    if peft_type not in PLUGIN_PEFT_TYPES:
        if _has_plugin_adapter(self) and _is_a_plugin_saves_plain_copy(given[0], adapter_name, given[1]):
            # the same prompt as its folder's plugin adapter, in plain PEFT's type, which PEFT cannot put beside it;
            # Trainer's resume does this with every checkpoint, so it is logged, not warned about
            _LOGGER.info(f"Not loading {os.fspath(model_id)!r} as adapter 'vanilla': it is the plain PEFT copy of the plugin "
                         "adapter saved in its parent folder (load that folder instead).")  # fmt: skip
            return None
        with _hooks.reading(model_id, kwargs.get("subfolder")), _hooks.fingerprint_once():
            if _CHECKED_BY_FROM_PRETRAINED.get() != adapter_name:  # (against the wrapped model: LoRA's base_model is a LoraModel)
                _hooks.check_plain_copy(model_id, self.get_base_model(), allow_base_model_mismatch, kwargs.get("subfolder"),
                                        _hub_kwargs(kwargs))  # fmt: skip
            return original(self, model_id, adapter_name, is_trainable, *args, **kwargs)
    existing = adapter_name in self.peft_config and _CHECKED_BY_FROM_PRETRAINED.get() != adapter_name and hasattr(self, "prompt_encoder") \
        and adapter_name in self.prompt_encoder
    trains = {name: p.requires_grad for name, p in self.prompt_encoder[adapter_name].named_parameters()} if existing else None
    new = adapter_name not in self.peft_config
    with _hooks.reading(model_id, kwargs.get("subfolder")), _hooks.fingerprint_once(), _building_for_a_load(), \
            _removed_on_failure(self, adapter_name, new), _head_tensors_named(model_id):
        if adapter_name in self.peft_config and _CHECKED_BY_FROM_PRETRAINED.get() == adapter_name:
            # from_pretrained made (and checked) the adapter: only its weights load here
            _hooks.check_weights_file(model_id, kwargs.get("subfolder"), _hub_kwargs(kwargs))
            result = original(self, model_id, adapter_name, False, *args, **kwargs)
        else:  # a user's load (into a new adapter or over one the model has): PEFT reads the config again; ours is
            # checked first, and its fingerprint (this base model's, or the file's, which equals it) written over PEFT's
            config = _checked_plugin_config(peft_type, model_id, self.get_base_model(), None, allow_base_model_mismatch, kwargs)
            with _config_checked():  # (found 2026-12-07: its re-read config refused an allowed mismatch)
                result = original(self, model_id, adapter_name, False, *args, **kwargs)
            self.peft_config[adapter_name].base_model_fingerprint = config.base_model_fingerprint
    if is_trainable:
        make_adapter_trainable(self, adapter_name)
    elif trains is not None:  # the adapter was there: it trains (or not) as before
        for name, parameter in self.prompt_encoder[adapter_name].named_parameters():
            parameter.requires_grad_(trains.get(name, False))
    else:  # a new adapter, as from_pretrained: PEFT leaves a loaded prompt's parameters trainable
        self.prompt_encoder[adapter_name].requires_grad_(False)
    return _without_the_encoders_keys(result, adapter_name)


@contextlib.contextmanager
def _removed_on_failure(peft_model, adapter_name: str, new: bool):
    """A new adapter whose load is refused after PEFT built it is deleted: no half-built adapter stays (found 2026-12-07
    by a review: it kept a random prompt, trainable, and a second load into its name kept it trainable)."""
    try:
        yield
    except BaseException:
        if new and adapter_name in peft_model.peft_config:
            try:
                peft_model.delete_adapter(adapter_name)
            except Exception as cleanup:  # the refusal is what the caller needs to see; the cleanup's failure noted
                _LOGGER.warning(f"Could not remove the adapter {adapter_name!r} whose load was refused: {cleanup!r}")
        raise


@contextlib.contextmanager
def _head_tensors_named(model_id):
    """A weights file without the trained head's tensors that the adapter's model has (e.g. a SEQ_CLS classifier):
    PEFT looks each up and fails with a bare KeyError (found 2026-12-07); named here, with what the file should hold."""
    try:
        yield
    except KeyError as error:
        key = error.args[0] if error.args else None
        if not (isinstance(key, str) and key.startswith(BASE_MODULE_PREFIX)):
            raise
        raise ValueError(
            f"Adapter {os.fspath(model_id)!r}: its weights file has no tensor {key!r}, which PEFT saves beside the prompt "
            "for this model (a trained head, e.g. a SEQ_CLS classifier): the file is not a whole save of the adapter. "
            "Load a folder that save_pretrained wrote."
        ) from error


def _without_the_encoders_keys(result, adapter_name: str):
    """The keys of this adapter that its file should have held: its trained head copies (PEFT's modules_to_save).
    PEFT's result lists the prompt encoder's tensors, which the plugin's encoder loaded itself, and (the plugin's
    methods have no key prefix to match) every base-model weight whose name holds the adapter name as a substring."""
    if not hasattr(result, "missing_keys"):
        return result
    own = f".modules_to_save.{adapter_name}."  # (found 2026-12-07: adapter "b" listed 23 frozen Llama weights)
    return result._replace(missing_keys=[key for key in result.missing_keys if own in key])


def _push_to_hub(original, self, repo_id, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return original(self, repo_id, *args, **kwargs)
    return _hooks.push_adapter(self, **_bound_kwargs(original, self, (repo_id, *args), kwargs))


def _create_or_update_model_card(original, self, output_dir, *args, **kwargs):
    """PEFT's card update (Trainer's `create_model_card` calls it) replaces the card's tags and writes the base model's
    `_name_or_path` as `base_model`: on a plugin card, the plugin's tags are kept and a local path is not written (the
    Hub refuses it; found 2026-12-07 by a probe)."""
    result = original(self, output_dir, *args, **kwargs)
    if _has_plugin_adapter(self):
        _hooks.keep_card_data(self, output_dir)
    return result


def _merge_and_unload(self, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return self.base_model.merge_and_unload(*args, **kwargs)  # what PeftModel.__getattr__ resolved before
    raise ValueError(
        f"A soft prompt ({peft_type_name(self.active_peft_config)}) cannot be merged into the base model's weights: it "
        "is an input the model reads, not a change to a weight. Keep the PeftModel for inference, write a plain PEFT "
        "PROMPT_TUNING adapter with peft_softprompt_ext.export_prompt_tuning(model, folder), or call model.unload() "
        "for the base model."
    )


def _delete_adapter(original, self, adapter_name, *args, **kwargs):
    had_plugin_adapter = _has_plugin_adapter(self)
    remaining = [name for name in self.peft_config if name != adapter_name]
    if is_plugin_config(self.peft_config.get(adapter_name)) and len(remaining) > 1:
        # PEFT hands every remaining prompt adapter to the trained-head copies' wrappers (SEQ_CLS), which take one
        # active adapter and raise, after the prompt is gone, leaving the head copy (found 2026-12-07). The head copies
        # go first here, the adapter PeftModel keeps active staying active in them; PEFT's own pass then finds none.
        kept = self.active_adapter if self.active_adapter in remaining else remaining[0]
        _delete_auxiliary_adapter(self.base_model, adapter_name=adapter_name, new_active_adapters=[kept])
    original(self, adapter_name, *args, **kwargs)
    encoders = getattr(self, "prompt_encoder", {})
    if had_plugin_adapter and not any(is_plugin_config(config) and name in encoders and _hooks.in_layers(encoders[name])
                                      for name, config in self.peft_config.items()):  # fmt: skip
        # no prompt left in the layers: the base model as unload() gives it back (found 2026-12-07: deleting the last
        # plugin adapter, then the last deep mixture beside a shallow one, left its attention routed with the hook)
        _hooks.unroute(self.base_model)


def _unload(self, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return self.base_model.unload(*args, **kwargs)
    base_model = self.get_base_model()  # a prompt changed no weight: the base model is the unloaded model, once its
    _hooks.unroute(base_model)  # attention no longer goes through the deep prompts' routing and ...
    for name, module in _own_head_wrappers(self):  # ... a trained head is a plain module again, as PEFT's unload()
        parent_name, _, child = name.rpartition(".")  # leaves LoRA's (its saved keys are then the model's own)
        try:
            parent = base_model.get_submodule(parent_name) if parent_name else base_model
        except AttributeError:  # inside a wrapper replaced already
            continue
        setattr(parent, child, module.unload_and_optionally_merge_module(merge=False, safe_merge=False, adapter_names=None))
    return base_model


def _auto_from_pretrained(original, cls, pretrained_model_name_or_path, *args, **kwargs):
    """AutoPeftModel*.from_pretrained with `subfolder=`: PEFT passes the subfolder on to the BASE model's
    from_pretrained too (it addresses the adapter); resolve the adapter folder first instead."""
    subfolder = kwargs.pop("subfolder", None)
    if subfolder:
        hub = {k: kwargs[k] for k in ("cache_dir", "token") if kwargs.get(k) is not None}
        pretrained_model_name_or_path = sources.local_folder(pretrained_model_name_or_path, [ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME],
                                                             subfolder, kwargs.get("revision"), hub)  # fmt: skip
    return original(pretrained_model_name_or_path, *args, **kwargs)


PATCHED_METHODS = [
    (PeftModel, "_setup_prompt_encoder", _setup_prompt_encoder),
    (PeftModel, "get_prompt", _get_prompt),
    (PeftModel, "save_pretrained", _save_pretrained),
    (PeftModel, "push_to_hub", _push_to_hub),
    (PeftModelForCausalLM, "forward", _forward("causal_lm_forward")),
    (PeftModelForCausalLM, "generate", _causal_generate),
    (PeftModelForCausalLM, "prepare_inputs_for_generation", _causal_prepare_inputs_for_generation),
    (PeftModelForSeq2SeqLM, "forward", _forward("seq2seq_forward")),
    (PeftModelForSeq2SeqLM, "generate", _seq2seq_generate),
    (PeftModelForSequenceClassification, "forward", _forward("encoder_forward")),
    (PeftModel, "disable_adapter", _disable_adapter),
    (PeftModel, "get_prompt_embedding_to_save", _get_prompt_embedding_to_save),
    (PeftModel, "load_adapter", _load_adapter),
    (PeftModel, "delete_adapter", _delete_adapter),
    (PeftModel, "create_or_update_model_card", _create_or_update_model_card),
]
class _PromptedEncoder(torch.nn.Module):
    """`get_encoder()` of a seq2seq PeftModel whose active adapter is a plugin prompt: the base model's encoder,
    run with the prompt (in front of its input, or in every self-attention layer) unless adapters are disabled at
    call time. transformers' pattern `model(encoder_outputs=model.get_encoder()(ids, mask), ...)` then gives the
    prompted model's outputs; the bare encoder gave the base model's, which the forward took without a word."""

    def __init__(self, peft_model, encoder):
        super().__init__()
        self.encoder = encoder  # a submodule: .parameters() and .eval() reach the encoder; other attributes fall back to it
        self._peft_model = [peft_model]  # a list: not a submodule

    def __getattr__(self, name):  # the encoder's own attributes (config, main_input_name, embed_tokens, device, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            encoder = self.__dict__.get("_modules", {}).get("encoder")  # (none while a copy is being built)
            if encoder is None:
                raise
            return getattr(encoder, name)

    def forward(self, *args, **kwargs):
        peft_model = self._peft_model[0]
        if peft_model._adapters_disabled or not is_plugin_config(peft_model.active_peft_config):
            kwargs.pop("task_ids", None)
            return self.encoder(*args, **kwargs)
        return _hooks.seq2seq_encode(plugin_parts(peft_model), self.encoder, *args, **kwargs)


def _get_encoder(self, *args, **kwargs):
    encoder = self.base_model.get_encoder(*args, **kwargs)  # what PeftModel.__getattr__ resolved before
    if args or kwargs or not is_plugin_config(self.active_peft_config) or task_type_name(self.active_peft_config) != "SEQ_2_SEQ_LM":
        return encoder  # (another modality's encoder reads no text prompt)
    return _PromptedEncoder(self, encoder)


# Methods PeftModel does not define (its __getattr__ forwards them to the tuner, which a prompt
# method does not have); ours keep that forwarding for every other adapter type.
ADDED_METHODS = [(PeftModel, "merge_and_unload", _merge_and_unload), (PeftModel, "unload", _unload),
                 (PeftModel, "get_encoder", _get_encoder)]  # fmt: skip


def _own_or_inherited(owner: type, name: str):
    """The attribute as defined on `owner` or inherited (push_to_hub comes from transformers)."""
    if name in owner.__dict__:
        return owner.__dict__[name]
    return getattr(owner, name)  # AttributeError here means PEFT moved the method: the tests say so


def _install_method(owner: type, name: str, implementation) -> None:
    current = _own_or_inherited(owner, name)
    original = getattr(current, _PATCH_MARKER, current)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        return implementation(original, self, *args, **kwargs)

    setattr(wrapper, _PATCH_MARKER, original)
    setattr(owner, name, wrapper)


def _install_classmethod(owner: type, implementation) -> None:
    current = owner.__dict__["from_pretrained"]
    original = getattr(current, _PATCH_MARKER, current)

    def from_pretrained(cls, *args, **kwargs):
        return implementation(original.__get__(None, cls), cls, *args, **kwargs)

    functools.update_wrapper(from_pretrained, original.__func__)
    patched = classmethod(from_pretrained)
    setattr(patched, _PATCH_MARKER, original)
    owner.from_pretrained = patched


def install_patches(hooks: PluginHooks) -> None:
    """Install the wrappers listed in PATCHED_METHODS and ADDED_METHODS, calling `hooks` for plugin
    adapters (idempotent: re-installing rewraps the originals)."""
    global _hooks
    from peft.auto import _BaseAutoPeftModel

    _hooks = hooks
    for owner, name, implementation in PATCHED_METHODS:
        _install_method(owner, name, implementation)
    for owner, name, implementation in ADDED_METHODS:
        if name in owner.__dict__ and not hasattr(owner.__dict__[name], _PATCH_MARKER):
            raise RuntimeError(f"{owner.__name__}.{name} now exists in PEFT: revisit _peft_compat.ADDED_METHODS.")
        setattr(implementation, _PATCH_MARKER, None)  # marks it as ours (PEFT has no original)
        setattr(owner, name, implementation)
    _install_classmethod(PeftModel, lambda original, cls, model, model_id, *a, **k: _from_pretrained(original, cls, model, model_id, *a, **k))
    _install_classmethod(_BaseAutoPeftModel, _auto_from_pretrained)


def original_method(owner: type, name: str):
    """PEFT's own implementation behind one of our wrappers (for tests and diagnostics)."""
    current = _own_or_inherited(owner, name)
    return getattr(current, _PATCH_MARKER, current)


def peft_internals_signature_report() -> dict[str, list[str]]:
    """Parameter names of the PEFT methods we wrap, so tests notice when PEFT changes them."""
    return {f"{owner.__name__}.{name}": list(inspect.signature(original_method(owner, name)).parameters)
            for owner, name, _ in PATCHED_METHODS}  # fmt: skip
