"""What generate's cache holds of the prompt: a shared prefix's or a deep prompt's keys and values put into its empty
cache at the first step (`DEEP_PROMPT_IN_CACHE`), or, where a static cache has no room for a shallow prompt's rows,
the prompt run as the keys and values it leaves in every layer (`ShallowPromptInLayers`) and caches marked so that
no later call counts rows they do not hold."""

from __future__ import annotations

import dataclasses

import torch

from .. import layer_prefix
from .._peft_compat import PromptParts
from .inputs import transformers_model
from .positions import cache_length, fed_tokens, given_cache


@dataclasses.dataclass
class ShallowPromptInLayers:
    """A generate call with a static cache, which generate sizes for the input and the new tokens only, so it has no
    room for a shallow prompt's P rows: the prompt runs instead as the keys and values it leaves in every
    self-attention layer (`layer_prefix.key_values_of`, at positions 0..P-1, as in front of the input), which is the
    same prompt for every later token of a causal decoder whose layers see every slot (no sliding window, chunks or
    recurrent state), as a deep prompt runs, and the cache holds the input and the new tokens only."""

    slots: list


_HOLDS_NO_PROMPT_ROWS = "_peft_softprompt_ext_holds_no_prompt_rows"  # set on a cache a `ShallowPromptInLayers` call wrote


def mark_cache_without_prompt_rows(model_inputs: dict) -> None:
    cache = given_cache(model_inputs)
    if cache is not None and not isinstance(cache, (tuple, list)):
        setattr(cache, _HOLDS_NO_PROMPT_ROWS, True)


def refuse_a_cache_holding_prompt_rows(parts: PromptParts, kwargs: dict, static: str) -> None:
    """A static cache given to generate holds the input only if generate wrote it (`ShallowPromptInLayers`): one a
    forward call filled holds the prompt's rows too, which the layer path would add again (found 2026-12-06: other
    tokens, without a word)."""
    cache = given_cache(kwargs)
    if cache is not None and cache_length(kwargs) > 0 and not getattr(cache, _HOLDS_NO_PROMPT_ROWS, False):
        raise ValueError(f"past_key_values: this {static} holds {cache_length(kwargs)} positions written by a forward call, "
                         f"the prompt's {parts.num_virtual_tokens} rows among them; generate continues a static cache only "
                         "from its own earlier call (where the prompt ran as keys and values in every layer, not in the "
                         "cache). Continue this one with forward calls, or fill a DynamicCache by forward and generate from "
                         "that.")  # fmt: skip


def refuse_a_cache_without_prompt_rows(parts: PromptParts, kwargs: dict) -> None:
    """A cache a static-cache generate wrote holds no prompt rows, which a forward call counts in front of the input
    (found 2026-12-06: a forward continuing such a cache was 2.2 off); an emptied one (`reset()`) takes them again."""
    cache = given_cache(kwargs)
    if cache is None or not getattr(cache, _HOLDS_NO_PROMPT_ROWS, False):
        return
    if cache_length(kwargs) == 0:
        delattr(cache, _HOLDS_NO_PROMPT_ROWS)
        return
    raise ValueError(f"past_key_values: this {type(cache).__name__} was written by generate with a static cache, where "
                     f"the prompt's {parts.num_virtual_tokens} rows ran as keys and values in every layer and are not in "
                     "the cache, which a forward call expects in front of the input. Continue it with generate "
                     "(past_key_values=...), or generate with the default dynamic cache to continue with forward calls.")  # fmt: skip


def static_cache_of(parts: PromptParts, kwargs: dict) -> str | None:
    """What makes a generate call's cache static, as a name for messages (None: it is not): a static cache given
    (empty, or one a call like this returned, which holds the input and new tokens only), or `cache_implementation`."""
    cache = given_cache(kwargs)
    if cache is not None:
        return type(cache).__name__ if getattr(cache, "is_compileable", False) else None
    try:
        from transformers.generation.configuration_utils import ALL_STATIC_CACHE_IMPLEMENTATIONS as static
    except ImportError:  # (named so in every release of the declared range; a safe default if renamed)
        static = ("static", "offloaded_static")
    implementation = generate_setting(parts, kwargs, "cache_implementation")
    return f"cache_implementation={implementation!r}" if implementation in static else None


def shallow_prompt_in_layers(parts: PromptParts, kwargs: dict, static: str) -> ShallowPromptInLayers:
    """`ShallowPromptInLayers` for this call, or a refusal saying why the prompt cannot run that way here."""
    model = transformers_model(parts)
    why = None
    if generate_setting(parts, kwargs, "output_hidden_states", False) or generate_setting(parts, kwargs, "output_attentions", False):
        why = "output_hidden_states / output_attentions ask for the prompt positions' outputs, which that way are never computed"
    elif kwargs.get("token_type_ids") is not None:
        why = "token_type_ids give the prompt's positions a type in front of the input, which the prompt run alone has not"
    elif layer_prefix.counts_slots(model):
        why = (f"{type(model).__name__} has a sliding attention window, chunked attention or recurrent layers (or ALiBi "
               "distances counted in slots, MPT), whose "
               "outputs depend on where the prompt's rows sit, not only on their keys and values")  # fmt: skip
    else:
        try:
            return ShallowPromptInLayers(layer_prefix.discover_slots(model, "CAUSAL_LM"))
        except ValueError as error:
            why = f"{type(model).__name__}'s attention takes no keys and values in front of its own ({error})"
    raise ValueError(f"A soft prompt of {parts.num_virtual_tokens} virtual tokens in front of the input does not fit a static "
                     f"cache ({static}: generate sizes it for the input and the new tokens only), and running it as the keys "
                     f"and values it leaves in every layer does not work here: {why}. Leave cache_implementation unset (the "
                     "default dynamic cache), or use DeepPromptTuningConfig, whose prompt is keys and values in every layer.")  # fmt: skip


# A deep prompt's keys and values put into generate's empty cache at the first step: later steps attend to
# them as to any cached token, with no per-layer concatenation (the layer prefix copies them in front of the
# cache at every step and layer). Used only where the cache keeps every token (no sliding window) and nobody
# outside this generate call sees the cache (not user-given, not returned).
DEEP_PROMPT_IN_CACHE = "deep prompt in the cache"


def generate_setting(parts: PromptParts, kwargs: dict, name: str, default=None):
    """A generate call's setting: its argument, else its generation_config's, else the model's generation_config's."""
    config = kwargs.get("generation_config") or getattr(parts.base_model, "generation_config", None)
    return kwargs.get(name, getattr(config, name, default))


def deep_prompt_fits_cache(parts: PromptParts, kwargs: dict) -> bool:
    returned = generate_setting(parts, kwargs, "return_dict_in_generate", False)
    implementation = generate_setting(parts, kwargs, "cache_implementation")
    assisted = kwargs.get("assistant_model") is not None or any(
        generate_setting(parts, kwargs, name) for name in ("prompt_lookup_num_tokens", "assistant_early_exit"))
    return (
        generate_setting(parts, kwargs, "use_cache", True) is not False
        and given_cache(kwargs) is None
        and not returned
        and not assisted  # candidate verification crops the cache by token counts (transformers 5.0: wrong tokens)
        and implementation in (None, "dynamic")
        and layer_prefix.sliding_window_of(parts.base_model) is None
        and parts.encoder.exact_in_prefix_tuning  # (held by a cache prefix: `layer_prefix.held_by_a_cache_prefix`)
    )


def fill_cache_with_deep_prompt(parts: PromptParts, model_inputs: dict, rows: torch.Tensor) -> None:
    cache = first_step_cache(parts, model_inputs)
    if cache is None:
        raise RuntimeError(f"generate's first step has a {type(given_cache(model_inputs)).__name__} as its cache, which "
                           "cannot take the deep prompt's keys and values; this should not happen with use_cache=True.")  # fmt: skip
    fed = fed_tokens(model_inputs)
    rows = rows.repeat_interleave(fed.shape[0] // rows.shape[0], dim=0)  # beams / returned sequences
    layer_prefix.put_in_cache(cache, parts.inner_model, parts.encoder.slots, rows)


def refuse_static_cache(parts: PromptParts, model_inputs: dict) -> None:
    """A prompt fed as input rows needs P more cache slots than generate gives a static cache (sized for
    the input and the new tokens); say so before the cache overflows or its 4D mask misses the prompt."""
    cache = given_cache(model_inputs)
    if cache is not None and getattr(cache, "is_compileable", False):
        raise ValueError(
            f"A soft prompt of {parts.num_virtual_tokens} virtual tokens in front of the input does not fit a static "
            f"cache ({type(cache).__name__}, e.g. generate(cache_implementation='static')): generate sizes it for the "
            "input and the new tokens only. Leave cache_implementation unset (the default dynamic cache), ask generate "
            "for it by cache_implementation='static' (the prompt then runs as the keys and values it leaves in every "
            "layer), or use DeepPromptTuningConfig, whose prompt is keys and values in every layer."
        )


def first_step_cache(parts: PromptParts, model_inputs: dict):
    """Generate's cache at its first step, or a new `DynamicCache` put in the step's inputs where generate made none
    (transformers 5.0, unless a `cache_implementation` is set, leaves that to the model's first forward: a shallow
    prompt's rows then joined the input's, which audio models drop their audio beside, `modality_inputs.py`). None
    where the step takes no cache that keys and values can be put into (`use_cache=False`, a model that takes none,
    a legacy tuple)."""
    cache = given_cache(model_inputs)
    if cache is not None:
        return cache if hasattr(cache, "update") else None
    model = transformers_model(parts)
    name = layer_prefix.cache_argument(type(model))
    if model_inputs.get("use_cache") is False or name is None:
        return None
    from transformers import DynamicCache

    cache = model_inputs[name] = DynamicCache(config=model.config)
    return cache


def fill_generation_cache(parts: PromptParts, model_inputs: dict, prefix) -> bool:
    """Put the shared prompt's keys/values into generate's first-step cache (`first_step_cache`); False where the
    step takes none."""
    cache = None if prefix is None else first_step_cache(parts, model_inputs)
    if cache is None:
        return False
    prompt_cache, rows = prefix
    reference = model_inputs.get("input_ids")
    if reference is None:
        reference = model_inputs["inputs_embeds"]
    rows = rows.to(reference.device).repeat_interleave(reference.shape[0] // rows.shape[0])  # beams / samples
    prompt_cache.fill(cache, rows, _layers_running(transformers_model(parts)))
    return True


def _layers_running(model) -> int | None:
    """The decoder layers `model` runs now (None: as many as it has). The draft of transformers' early-exit decoding
    (`generate(assistant_early_exit=k)`) sets the config's `num_hidden_layers` to k and has a cache of k layers."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", None)
    return layers if isinstance(layers, int) else None


def shift_cache_position(model_inputs: dict, num_virtual_tokens: int, prompt_fed_now: bool) -> None:
    """transformers < 5.4 passes `cache_position` (the cache slots this step writes): count the prompt.

    When this step feeds the prompt rows themselves they take slots 0..P-1 and the input follows;
    otherwise (later steps, or the prompt's keys/values put into the cache) everything moves by P.
    """
    cache_position = model_inputs.get("cache_position")
    if cache_position is None:
        return
    if prompt_fed_now:
        start = torch.arange(num_virtual_tokens, dtype=cache_position.dtype, device=cache_position.device)
        model_inputs["cache_position"] = torch.cat((start, cache_position + num_virtual_tokens))
    else:
        model_inputs["cache_position"] = cache_position + num_virtual_tokens
