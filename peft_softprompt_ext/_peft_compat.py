"""The ONLY module that touches PEFT internals.

PEFT 0.21's seam for third-party prompt methods is narrow (see README, "How the plugin hooks
into PEFT"): `PeftType` is a closed enum, `PeftModel._setup_prompt_encoder` dispatches on a
hard-coded list, `from_pretrained(is_trainable=True)` refuses prompt methods, seq2seq generate
raises for unknown prompt types and causal `generate(use_cache=True)` re-feeds the virtual tokens
at every step under transformers 5. Everything the plugin does about that lives here:

* `check_peft_version` refuses a PEFT release outside `SUPPORTED_PEFT` at import time;
* `register_prompt_method` adds an enum member and registers config + encoder with PEFT;
* `PluginPromptEncoder` is the base of every plugin encoder (PEFT's state-dict hooks);
* `install_patches` wraps a fixed list of `PeftModel` methods (`PATCHED_METHODS`). Each wrapper
  runs PEFT's own code unless the active adapter is a plugin method, so vanilla PEFT behaves
  exactly as before. The plugin's own behaviour is in `prompt_injection.py`, which knows nothing
  about PEFT.

`tests/test_peft_compat.py` fails loudly when any of these assumptions stops holding.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os

import peft
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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

# These imports are the PEFT internals we depend on; they come after the version check so an
# unsupported PEFT fails with the message above rather than an obscure ImportError.
from peft import PeftConfig, PeftModel  # noqa: E402
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
from peft.tuners.tuners_utils import BasePromptEncoder  # noqa: E402
from peft.utils import PeftType, TaskType, register_peft_method  # noqa: E402

from . import prompt_injection  # noqa: E402

__all__ = [
    "PromptLearningConfig",
    "PluginPromptEncoder",
    "PeftType",
    "TaskType",
    "SUPPORTED_PEFT",
    "PLUGIN_PEFT_TYPES",
    "register_prompt_method",
    "is_plugin_config",
    "install_patches",
    "prompt_encoder_of",
    "prompt_kv_cache",
    "input_embeddings_of",
]

SUPPORTED_TASK_TYPES = (TaskType.CAUSAL_LM, TaskType.SEQ_2_SEQ_LM, TaskType.SEQ_CLS)
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


def is_plugin_config(config) -> bool:
    """True if `config` is a config of one of this plugin's methods."""
    peft_type = getattr(config, "peft_type", None)
    return peft_type is not None and str(getattr(peft_type, "value", peft_type)) in PLUGIN_PEFT_TYPES


def validate_task_type(task_type) -> None:
    """Plugin methods support CAUSAL_LM, SEQ_2_SEQ_LM and SEQ_CLS; anything else is refused."""
    supported = [t.value for t in SUPPORTED_TASK_TYPES]
    if task_type is None or str(getattr(task_type, "value", task_type)) not in supported:
        raise ValueError(f"task_type={task_type!r} is not supported by peft_softprompt_ext; expected one of {supported}.")


# --------------------------------------------------------------------------- encoder base
class PluginPromptEncoder(BasePromptEncoder):
    """Base class of every plugin prompt encoder.

    Subclasses implement:
      * `forward(batch_size, task_ids=None, inputs_embeds=None, attention_mask=None)`
        -> prompts [batch_size, num_virtual_tokens, token_dim];
      * `adapter_state_dict()` -> the tensors to save (safetensors names -> tensors);
      * `expected_state_shapes(config)` (classmethod) -> those tensors' names and shapes, checked
        against a file's header before anything is built;
      * `load_adapter_state(state_dict)`: validate names, shapes and values, then load.
    Encoders whose prompts do not depend on the input also set `prompts_are_shared = True` and
    implement `shared_prompts(batch_size, task_ids)` -> (distinct prompts [T, P, D], row -> prompt
    index [batch_size]), which enables shared-prefix execution (`shared_prefix.py`).
    PEFT calls the two class-level hooks below when it saves and loads an adapter.
    """

    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        return model.prompt_encoder[adapter_name].adapter_state_dict()

    def _load_adapter_state_dict(self, state_dict):
        self.load_adapter_state(state_dict)

    prompts_are_shared = False

    def set_trainable(self) -> None:
        """Make the trainable part of the encoder require grad (all parameters by default)."""
        for parameter in self.parameters():
            parameter.requires_grad_(True)


# --------------------------------------------------------------------------- accessors
def prompt_encoder_of(peft_model, adapter_name: str | None = None) -> PluginPromptEncoder:
    """The prompt encoder of `adapter_name` (default: the active adapter) of a PeftModel."""
    adapter_name = adapter_name or peft_model.active_adapter
    if not hasattr(peft_model, "prompt_encoder") or adapter_name not in peft_model.prompt_encoder:
        known = list(getattr(peft_model, "prompt_encoder", {}).keys())
        raise ValueError(f"adapter_name={adapter_name!r} is not a prompt adapter of this model; known: {known}.")
    return peft_model.prompt_encoder[adapter_name]


def input_embeddings_of(model) -> torch.nn.Module:
    """The input-embedding module of a PeftModel's base model (or of a plain transformers model)."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return base.get_input_embeddings()


def prompt_table_of(peft_model, adapter_name: str | None = None, task: int | None = None) -> torch.Tensor:
    """The prompt [num_virtual_tokens, token_dim] an adapter feeds the model (plugin or vanilla PROMPT_TUNING)."""
    config = adapter_config_of(peft_model, adapter_name)
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if isinstance(encoder, PluginPromptEncoder):
        return encoder.prompt_table(task)
    if config.peft_type == PeftType.PROMPT_TUNING:
        return encoder.embedding.weight[: config.num_virtual_tokens]  # seq2seq: the encoder half
    raise ValueError(f"Adapter of PEFT type {config.peft_type} has no prompt table; expected a prompt-tuning method.")


def prompt_kv_cache(peft_model, adapter_name: str | None = None, output_hidden_states: bool = False):
    """The keys/values of a causal LM's plugin prompt (every task's), computed once and reused.

    Example:
        >>> cache = prompt_kv_cache(peft_model)
        >>> peft_model(input_ids=ids, attention_mask=mask, prompt_cache=cache)
        >>> peft_model.generate(input_ids=ids, attention_mask=mask, prompt_cache=cache)

    The model also keeps and reuses this cache by itself at inference (`shared_prefix="auto"`);
    passing it explicitly makes a stale or foreign cache an error instead of a recomputation.
    """
    config = adapter_config_of(peft_model, adapter_name)
    if not is_plugin_config(config) or str(getattr(config.task_type, "value", config.task_type)) != "CAUSAL_LM":
        raise ValueError(f"prompt_kv_cache needs a CAUSAL_LM plugin prompt adapter; got {config.peft_type} / {config.task_type}.")
    encoder = prompt_encoder_of(peft_model, adapter_name)
    from . import shared_prefix

    shared_prefix.use_shared_prefix("on", _plugin_parts(peft_model, adapter_name))
    first_task = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        cache, _ = shared_prefix.prefix_for(peft_model.base_model, encoder, 1, first_task, peft_model.word_embeddings.weight.dtype,
                                            output_hidden_states=output_hidden_states)  # fmt: skip
    return cache


def adapter_config_of(peft_model, adapter_name: str | None = None):
    adapter_name = adapter_name or peft_model.active_adapter
    if adapter_name not in peft_model.peft_config:
        raise ValueError(f"adapter_name={adapter_name!r} not found; known: {list(peft_model.peft_config)}.")
    return peft_model.peft_config[adapter_name]


# --------------------------------------------------------------------------- patched methods
def _setup_prompt_encoder(original, self, adapter_name):
    config = self.peft_config[adapter_name]
    if not is_plugin_config(config):
        return original(self, adapter_name)
    # PEFT's own version would freeze the base, find the embeddings and then raise "Not supported"
    # for our type; we do the same steps with transformers' public get_input_embeddings().
    for parameter in self.base_model.parameters():
        parameter.requires_grad_(False)
    config.num_transformer_submodules = 1  # plugin prompts go in front of the (encoder) input only
    if getattr(config, "base_model_fingerprint", "absent") is None:
        from .fingerprint import base_model_fingerprint

        config.base_model_fingerprint = base_model_fingerprint(self.base_model)
    self.word_embeddings = self.base_model.get_input_embeddings()
    if not hasattr(self, "prompt_encoder"):
        self.prompt_encoder = torch.nn.ModuleDict({})
        self.prompt_tokens = {}
    encoder_cls = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    encoder = encoder_cls(config, self.word_embeddings, model_config=self.base_model.config)
    self.prompt_encoder.update(torch.nn.ModuleDict({adapter_name: encoder.to(self.device)}))
    self.prompt_tokens[adapter_name] = torch.arange(config.num_virtual_tokens).long()


def _get_prompt(original, self, batch_size, task_ids=None, max_cache_len=None):
    if not is_plugin_config(self.active_peft_config):
        return original(self, batch_size, task_ids=task_ids, max_cache_len=max_cache_len)
    return self.prompt_encoder[self.active_adapter](batch_size, task_ids=task_ids)


def innermost_model(model) -> torch.nn.Module:
    """The transformers model under any number of PeftModel wrappers (e.g. a prompt over a LoRA model)."""
    while isinstance(model, PeftModel):
        model = model.get_base_model()
    return model


def _plugin_parts(self, adapter_name: str | None = None) -> prompt_injection.PromptParts:
    adapter_name = adapter_name or self.active_adapter
    config = self.peft_config[adapter_name]
    return prompt_injection.PromptParts(
        base_model=self.base_model,
        word_embeddings=self.word_embeddings,
        encoder=self.prompt_encoder[adapter_name],
        num_virtual_tokens=config.num_virtual_tokens,
        shared_prefix=getattr(config, "shared_prefix", "off"),
        model_class=type(innermost_model(self.base_model)),
        nested_adapters=isinstance(self.base_model, PeftModel),
    )


def _runs_plugin(self) -> bool:
    """Whether this call is the plugin's: a plugin adapter is active and not disabled."""
    return is_plugin_config(self.active_peft_config) and not self._adapters_disabled


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
    return getattr(self.get_base_model(), method)(*positional, **call)


def _refuse_training_nothing(self, kwargs) -> None:
    """A training forward (train mode, gradients on, labels) of a model where nothing requires a gradient
    would fail later in backward with torch's 'does not require grad'; say why here instead."""
    if self.training and torch.is_grad_enabled() and kwargs.get("labels") is not None:
        if not any(parameter.requires_grad for parameter in self.parameters()):
            raise ValueError(
                f"Nothing in this model trains: no parameter of adapter {self.active_adapter!r} requires a gradient "
                "(mixing='one_hot' serves fixed prompts). Train each prompt as its own adapter and serve them with "
                "mixing='one_hot', or run inference with model.eval() / torch.no_grad()."
            )


def _causal_forward(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "__call__", args, kwargs)
    _refuse_training_nothing(self, kwargs)
    return prompt_injection.causal_lm_forward(_plugin_parts(self), *args, **kwargs)


def _causal_generate(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "generate", args, kwargs)
    # The prompt is computed once from the original input, so it stays the same at every step with
    # or without a cache (input-dependent mixing would otherwise see the generated tokens too).
    parts = _plugin_parts(self)
    prompt_cache = kwargs.pop("prompt_cache", None)
    self._plugin_generation_prompts = prompt_injection.generation_prompts(parts, args, kwargs)
    self._plugin_generation_prefix = prompt_injection.generation_prefix(parts, args, kwargs, prompt_cache)
    try:
        return original(self, *args, **kwargs)
    finally:
        del self._plugin_generation_prompts, self._plugin_generation_prefix


def _causal_prepare_inputs_for_generation(original, self, *args, task_ids=None, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, task_ids=task_ids, **kwargs)
    model_inputs = self.base_model_prepare_inputs_for_generation(*args, **kwargs)
    fixed = getattr(self, "_plugin_generation_prompts", None)
    prefix = getattr(self, "_plugin_generation_prefix", None)
    return prompt_injection.prepare_causal_generation_step(_plugin_parts(self), model_inputs, task_ids, fixed, prefix)


def _seq2seq_forward(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "__call__", args, kwargs)
    _refuse_training_nothing(self, kwargs)
    return prompt_injection.seq2seq_forward(_plugin_parts(self), *args, **kwargs)


def _seq2seq_generate(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "generate", args, kwargs)
    return prompt_injection.seq2seq_generate(_plugin_parts(self), *args, **kwargs)


def _seq_cls_forward(original, self, *args, **kwargs):
    if not is_plugin_config(self.active_peft_config):
        return original(self, *args, **kwargs)
    if self._adapters_disabled:
        return _disabled_call(original, self, "__call__", args, kwargs)
    _refuse_training_nothing(self, kwargs)
    return prompt_injection.encoder_forward(_plugin_parts(self), *args, **kwargs)


@contextlib.contextmanager
def _plugin_disabled(self):
    was_disabled = self._adapters_disabled
    self._adapters_disabled = True  # our forward and generate wrappers then call the base model alone
    try:
        yield
    finally:
        self._adapters_disabled = was_disabled


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
    with torch.no_grad():
        return self.prompt_encoder[adapter_name].prompt_table(task).detach().cpu()


def make_adapter_trainable(peft_model, adapter_name: str) -> None:
    """Unfreeze a loaded plugin adapter: its prompt encoder and its trained head copies (modules_to_save)."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    peft_model.peft_config[adapter_name].inference_mode = False
    peft_model.prompt_encoder[adapter_name].set_trainable()
    for module in peft_model.modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            module.set_requires_grad(adapter_name, True)


def _save_pretrained(original, self, save_directory, *args, **kwargs):
    if not any(is_plugin_config(config) for config in self.peft_config.values()):
        return original(self, save_directory, *args, **kwargs)
    from . import persistence
    from .hub import write_sharing_files

    persistence.save_adapter(
        save_directory,
        write_peft_files=lambda staging: original(self, staging, *args, **kwargs),
        write_sharing_files=lambda staging: write_sharing_files(self, staging, kwargs.get("selected_adapters")),
        safe_serialization=kwargs.get("safe_serialization", True),
    )


def _hub_kwargs(kwargs) -> dict:
    return {k: kwargs[k] for k in ("subfolder", "revision", "cache_dir", "token") if kwargs.get(k) is not None}


def _peft_type_of(model_id, config, kwargs) -> str | None:
    """The PEFT type an adapter declares; a missing, malformed or unknown one is an error naming it."""
    from .adapter_files import peft_type_field, read_local_adapter_config

    if config is not None:
        return str(getattr(config.peft_type, "value", config.peft_type))
    local = read_local_adapter_config(model_id, subfolder=kwargs.get("subfolder"))
    if local is None:
        return PeftConfig._get_peft_type(model_id, **_hub_kwargs(kwargs))
    source = f"Adapter config of {os.fspath(model_id)!r}"
    peft_type = peft_type_field(local, source)
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ValueError(
            f"{source}: peft_type {peft_type!r} is not a method of PEFT {peft.__version__} nor of peft_softprompt_ext "
            f"(plugin methods: {sorted(PLUGIN_PEFT_TYPES)}); was it saved by a newer release?"
        )
    return peft_type


def _checked_plugin_config(peft_type, model_id, base_model, config, allow_base_model_mismatch, kwargs):
    from . import persistence

    return persistence.checked_config(
        model_id, base_model, PEFT_TYPE_TO_CONFIG_MAPPING[peft_type], PEFT_TYPE_TO_TUNER_MAPPING[peft_type], config=config,
        allow_base_model_mismatch=allow_base_model_mismatch, subfolder=kwargs.get("subfolder"),
        hub_kwargs=_hub_kwargs(kwargs), config_kwargs=kwargs,
    )  # fmt: skip


def _from_pretrained(original, cls, model, model_id, adapter_name="default", is_trainable=False, config=None,
                     allow_base_model_mismatch=False, **kwargs):  # fmt: skip
    peft_type = _peft_type_of(model_id, config, kwargs)
    if str(peft_type) not in PLUGIN_PEFT_TYPES:
        return original(model, model_id, adapter_name=adapter_name, is_trainable=is_trainable, config=config, **kwargs)
    from . import persistence

    with persistence.reading(model_id, kwargs.get("subfolder")):
        config = _checked_plugin_config(peft_type, model_id, model, config, allow_base_model_mismatch, kwargs)
        # PEFT refuses is_trainable=True for every prompt method; ours resume training: load frozen, then unfreeze.
        peft_model = original(model, model_id, adapter_name=adapter_name, is_trainable=False, config=config, **kwargs)
    if is_trainable:
        make_adapter_trainable(peft_model, adapter_name)
        peft_model.train()
    else:
        peft_model.prompt_encoder[adapter_name].requires_grad_(False)
    return peft_model


def _load_adapter(original, self, model_id, adapter_name, is_trainable=False, *args, allow_base_model_mismatch=False, **kwargs):
    """PEFT's load_adapter, with a plugin adapter's files and fingerprint checked and is_trainable=True allowed."""
    peft_type = _peft_type_of(model_id, None, kwargs)
    if str(peft_type) not in PLUGIN_PEFT_TYPES:
        return original(self, model_id, adapter_name, is_trainable, *args, **kwargs)
    from . import persistence
    from .adapter_files import check_adapter_files

    with persistence.reading(model_id, kwargs.get("subfolder")):
        if adapter_name in self.peft_config:  # from_pretrained made (and checked) the adapter: only its weights load here
            check_adapter_files(model_id, subfolder=kwargs.get("subfolder"), hub_kwargs=_hub_kwargs(kwargs))
            result = original(self, model_id, adapter_name, False, *args, **kwargs)
        else:  # PEFT's load_adapter reads the config again; ours is checked, then written over PEFT's
            config = _checked_plugin_config(peft_type, model_id, self.base_model, None, allow_base_model_mismatch, kwargs)
            result = original(self, model_id, adapter_name, False, *args, **kwargs)
            self.peft_config[adapter_name].base_model_fingerprint = config.base_model_fingerprint
    if is_trainable:
        make_adapter_trainable(self, adapter_name)
    return result


def _has_plugin_adapter(self) -> bool:
    return any(is_plugin_config(config) for config in self.peft_config.values())


def _merge_and_unload(self, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return self.base_model.merge_and_unload(*args, **kwargs)  # what PeftModel.__getattr__ resolved before
    peft_type = self.active_peft_config.peft_type
    raise ValueError(
        f"A soft prompt ({getattr(peft_type, 'value', peft_type)}) cannot be merged into the base model's weights: it "
        "is an input the model reads, not a change to a weight. Keep the PeftModel for inference, write a plain PEFT "
        "PROMPT_TUNING adapter with peft_softprompt_ext.export_prompt_tuning(model, folder), or call model.unload() "
        "for the untouched base model."
    )


def _unload(self, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return self.base_model.unload(*args, **kwargs)
    return self.get_base_model()  # a prompt changed no weight: the base model is the unloaded model


def _auto_from_pretrained(original, cls, pretrained_model_name_or_path, *args, **kwargs):
    """AutoPeftModel*.from_pretrained with `subfolder=`: PEFT passes the subfolder on to the BASE model's
    from_pretrained too (it addresses the adapter); resolve the adapter folder first instead."""
    subfolder = kwargs.pop("subfolder", None)
    if subfolder:
        pretrained_model_name_or_path = _adapter_folder(pretrained_model_name_or_path, subfolder, kwargs)
    return original(pretrained_model_name_or_path, *args, **kwargs)


def _adapter_folder(model_id, subfolder: str, kwargs: dict) -> str:
    """A local folder holding the adapter at `model_id`/`subfolder` (a Hub repo's files are downloaded)."""
    local = os.path.join(os.fspath(model_id), subfolder)
    if os.path.isdir(local):
        return local
    from huggingface_hub import hf_hub_download

    hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if kwargs.get(k) is not None}
    config_path = hf_hub_download(os.fspath(model_id), "adapter_config.json", subfolder=subfolder, **hub)
    hf_hub_download(os.fspath(model_id), "adapter_model.safetensors", subfolder=subfolder, **hub)
    return os.path.dirname(config_path)


def _push_to_hub(original, self, repo_id, *args, **kwargs):
    if not _has_plugin_adapter(self):
        return original(self, repo_id, *args, **kwargs)
    from .persistence import push_adapter_folder

    return push_adapter_folder(self, **_bound_kwargs(original, self, (repo_id, *args), kwargs))


PATCHED_METHODS = [
    (PeftModel, "_setup_prompt_encoder", _setup_prompt_encoder),
    (PeftModel, "get_prompt", _get_prompt),
    (PeftModel, "save_pretrained", _save_pretrained),
    (PeftModel, "push_to_hub", _push_to_hub),
    (PeftModelForCausalLM, "forward", _causal_forward),
    (PeftModelForCausalLM, "generate", _causal_generate),
    (PeftModelForCausalLM, "prepare_inputs_for_generation", _causal_prepare_inputs_for_generation),
    (PeftModelForSeq2SeqLM, "forward", _seq2seq_forward),
    (PeftModelForSeq2SeqLM, "generate", _seq2seq_generate),
    (PeftModelForSequenceClassification, "forward", _seq_cls_forward),
    (PeftModel, "disable_adapter", _disable_adapter),
    (PeftModel, "get_prompt_embedding_to_save", _get_prompt_embedding_to_save),
    (PeftModel, "load_adapter", _load_adapter),
]
# Methods PeftModel does not define (its __getattr__ forwards them to the tuner, which a prompt
# method does not have); ours keep that forwarding for every other adapter type.
ADDED_METHODS = [(PeftModel, "merge_and_unload", _merge_and_unload), (PeftModel, "unload", _unload)]


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


def _install_from_pretrained() -> None:
    current = PeftModel.__dict__["from_pretrained"]
    original = getattr(current, _PATCH_MARKER, current)

    def from_pretrained(cls, model, model_id, *args, **kwargs):
        bound = original.__get__(None, cls)
        return _from_pretrained(bound, cls, model, model_id, *args, **kwargs)

    functools.update_wrapper(from_pretrained, original.__func__)
    patched = classmethod(from_pretrained)
    setattr(patched, _PATCH_MARKER, original)
    PeftModel.from_pretrained = patched


def _install_auto_from_pretrained() -> None:
    from peft.auto import _BaseAutoPeftModel

    current = _BaseAutoPeftModel.__dict__["from_pretrained"]
    original = getattr(current, _PATCH_MARKER, current)

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        return _auto_from_pretrained(original.__get__(None, cls), cls, pretrained_model_name_or_path, *args, **kwargs)

    functools.update_wrapper(from_pretrained, original.__func__)
    patched = classmethod(from_pretrained)
    setattr(patched, _PATCH_MARKER, original)
    _BaseAutoPeftModel.from_pretrained = patched


def install_patches() -> None:
    """Install the wrappers listed in PATCHED_METHODS and ADDED_METHODS (idempotent: re-installing
    rewraps the originals)."""
    for owner, name, implementation in PATCHED_METHODS:
        _install_method(owner, name, implementation)
    for owner, name, implementation in ADDED_METHODS:
        if name in owner.__dict__ and not hasattr(owner.__dict__[name], _PATCH_MARKER):
            raise RuntimeError(f"{owner.__name__}.{name} now exists in PEFT: revisit _peft_compat.ADDED_METHODS.")
        setattr(implementation, _PATCH_MARKER, None)  # marks it as ours (PEFT has no original)
        setattr(owner, name, implementation)
    _install_from_pretrained()
    _install_auto_from_pretrained()


def original_method(owner: type, name: str):
    """PEFT's own implementation behind one of our wrappers (for tests and diagnostics)."""
    current = _own_or_inherited(owner, name)
    return getattr(current, _PATCH_MARKER, current)


def peft_internals_signature_report() -> dict[str, list[str]]:
    """Parameter names of the PEFT methods we wrap, so tests notice when PEFT changes them."""
    report = {}
    for owner, name, _ in PATCHED_METHODS:
        report[f"{owner.__name__}.{name}"] = list(inspect.signature(original_method(owner, name)).parameters)
    return report
