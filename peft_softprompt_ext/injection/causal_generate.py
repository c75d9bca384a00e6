"""A causal LM's generate with the prompt: the call's keywords and prompts, how the prompt runs for the whole call
(`generation_prefix`, `generation_scope`), each decoding step's inputs (`prepare_causal_generation_step`) and the
outputs put back in the caller's layout (`generation_output`)."""

from __future__ import annotations

import contextlib

import torch

from .. import layer_prefix, shared_prefix
from .._peft_compat import PromptParts
from ..position_table import check_positions_fit, first_position
from ..prompt_encoder import check_task_ids
from .generation_cache import (deep_prompt_fits_cache, DEEP_PROMPT_IN_CACHE, fill_cache_with_deep_prompt,
                               fill_generation_cache, generate_setting, mark_cache_without_prompt_rows,
                               refuse_a_cache_holding_prompt_rows, refuse_static_cache, shallow_prompt_in_layers,
                               ShallowPromptInLayers, shift_cache_position, static_cache_of)
from .inputs import cross_attention_with_prompt, embed_prompts, is_deep, model_accepts, token_types_with_prompt, transformers_model
from .modality_inputs import refuse_inputs_dropped_beside_embeddings, why_joined
from .model_checks import refuse_generate_numbering_from_one, refuse_generate_of_an_inner_model
from .padding_order import (for_rows_of, in_order, keys_in_order, leading_padding_first_order, PADDING_FIRST_REASON,
                            padding_goes_first, per_token_inputs_in_order, positions_in_order)
from .positions import (cache_length, fed_tokens, first_call_positions, generate_counts_from, multi_axis_positions, positions_after_prompt,
                        positions_from_mask, shifted_positions, with_prompt_mask)


def generation_scope(parts: PromptParts, prompts: torch.Tensor, prefix=None):
    """Around one whole causal generate call: a deep prompt's keys and values in every layer for each of the call's own
    steps (`layer_prefix.prefixed_in_steps`), unless they go into generate's own cache (`prefix` is
    `DEEP_PROMPT_IN_CACHE`); a shallow prompt's, which it leaves in every layer, where a static cache has no room for
    its rows (`ShallowPromptInLayers`); else nothing."""
    model = transformers_model(parts)
    if isinstance(prefix, ShallowPromptInLayers):
        with torch.no_grad():
            rows = layer_prefix.key_values_of(model, prefix.slots, "CAUSAL_LM", prompts)
        return layer_prefix.prefixed_in_steps(model, prefix.slots, rows)
    if not is_deep(parts) or prefix is DEEP_PROMPT_IN_CACHE:
        return contextlib.nullcontext()
    return layer_prefix.prefixed_in_steps(model, parts.encoder.slots, prompts, parts.encoder.frozen_slots)


def generation_output(parts: PromptParts, kwargs: dict, output):
    """generate's `output` with its hidden states and attentions in the caller's layout (prompt first), as forward gives
    them, where the call ran each row's padding first (`padding_goes_first`; found 2026-12-07 by a probe: they came back
    as [padding; prompt; tokens]). The first step's positions move back; a later step's attention over them too, where
    it covers every position (a sliding window's layer past its window keeps fewer, left as they are). The cache generate
    returns keeps the order it ran in."""
    hidden, attentions = getattr(output, "hidden_states", None), getattr(output, "attentions", None)
    mask = kwargs.get("attention_mask")
    if not (hidden or attentions) or is_deep(parts) or not padding_goes_first(parts, mask):
        return output
    back = torch.argsort(leading_padding_first_order(with_prompt_mask(mask, parts.num_virtual_tokens), parts.num_virtual_tokens), dim=1)
    length = back.shape[1]
    if hidden:
        output.hidden_states = tuple(tuple(in_order(h, for_rows_of(back, h)) if h.shape[1] == length else h for h in step) for step in hidden)
    if attentions:
        output.attentions = tuple(tuple(keys_in_order(a, for_rows_of(back, a), length, index) for a in step)
                                  for index, step in enumerate(attentions))  # fmt: skip
    return output


def generate_keywords(parts: PromptParts, args: tuple, kwargs: dict) -> dict:
    """A causal generate call's keywords as transformers takes them: one task id for every row given as a 0-d tensor
    becomes an int (transformers repeats tensor keywords along dim 0 for beams and returned sequences, which a 0-d
    tensor has not; an int stands for every row at any batch size, `check_task_ids`, which checks it here first); input
    ids given without a mask get the mask transformers infers for them (`_inferred_attention_mask`). On a model that
    numbers positions on several axes, the call keeps the text offset (`positions.first_call_positions`)."""
    refuse_generate_numbering_from_one(transformers_model(parts))
    refuse_generate_of_an_inner_model(transformers_model(parts))
    task_ids = kwargs.get("task_ids")
    if isinstance(task_ids, torch.Tensor) and task_ids.dim() == 0:
        kwargs = {**kwargs, "task_ids": int(check_task_ids(task_ids, 1, parts.encoder.num_tasks)[0])}
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    inferred = _inferred_attention_mask(parts, input_ids, kwargs)
    kwargs = kwargs if inferred is None else {**kwargs, "attention_mask": inferred}
    owner = layer_prefix.rope_index_owner(transformers_model(parts))
    if owner is not None and cache_length(kwargs) == 0:  # (the text offset a forward continuing its cache reads)
        first_call_positions(owner, transformers_model(parts), input_ids, kwargs.get("attention_mask"), kwargs)
    return kwargs


def _inferred_attention_mask(parts: PromptParts, input_ids, kwargs: dict):
    """The mask transformers' generate infers for a decoder's `input_ids` given without one (0 at the pad id, where the
    pad id is set, in the input, and not an eos id), or None where it infers none. The call's prompts and its choice of
    layout then read the mask its steps see (found 2026-12-07 by a probe: without a mask, a left-padded row on a
    sliding-window model got the shared prefix in front of its padding while its later steps, seeing transformers'
    mask, put the padding first: other tokens than with the mask). An encoder-decoder's generate infers no mask from
    transformers 5.23 on (5.0 does); the plugin's seq2seq generate reads a missing mask as all ones, as 5.23 does."""
    if kwargs.get("attention_mask") is not None or not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 \
            or input_ids.dtype not in (torch.int, torch.long) or input_ids.shape[1] == 0:  # fmt: skip
        return None
    pad, eos = (_special_token_ids(parts, kwargs, name) for name in ("pad_token_id", "eos_token_id"))
    pads = torch.as_tensor(pad if pad is not None else [], device=input_ids.device).flatten()
    if pads.numel() != 1 or not torch.isin(input_ids, pads).any():
        return None
    if eos is not None and torch.isin(torch.as_tensor(eos, device=input_ids.device).flatten(), pads).any():
        return None
    return input_ids.ne(pads).long()


def _special_token_ids(parts: PromptParts, kwargs: dict, name: str):
    """A generate call's pad or eos id(s) as transformers resolves them: its keyword, else its generation_config's,
    else (where that config leaves it unset) the model's generation_config's (found 2026-12-07 by a review: a passed
    config's unset pad id hid the model's, and a config padding with the model's eos id masked the eos ids)."""
    if name in kwargs:
        return kwargs[name]
    given = getattr(kwargs.get("generation_config"), name, None)
    return given if given is not None else getattr(getattr(parts.base_model, "generation_config", None), name, None)


def generation_prompts(parts: PromptParts, args: tuple, kwargs: dict) -> torch.Tensor:
    """The prompts [B, P, D] for a whole `generate` call, from its original input."""
    if kwargs.get("assistant_model") is not None and kwargs.get("task_ids") is not None:
        raise ValueError("generate with assistant_model cannot take task_ids: transformers hands every generate keyword "
                         "to the assistant model too, which takes no task_ids. Generate each task's rows without an "
                         "assistant, or export one task's prompt (export_prompt_tuning(model, folder, task=...)) and "
                         "assist that plain prompt.")  # fmt: skip
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    embeds = kwargs.get("inputs_embeds") if input_ids is None else parts.input_embeddings(input_ids)
    if embeds is None:
        raise ValueError("generate needs input_ids or inputs_embeds with a soft prompt; got neither.")
    return embed_prompts(parts, embeds, kwargs.get("attention_mask"), kwargs.get("task_ids"))


def generation_prefix(parts: PromptParts, args: tuple, kwargs: dict, prompt_cache=None):
    """(PromptKVCache, row -> prompt index) for a `generate` call, or None for the standard path."""
    mode = "on" if prompt_cache is not None else parts.shared_prefix
    if is_deep(parts):  # keys/values already: nothing to run once, at most a place in the cache
        if prompt_cache is not None:
            shared_prefix.refuse_prompt_cache_of_a_deep_prompt(parts.encoder)
        return DEEP_PROMPT_IN_CACHE if deep_prompt_fits_cache(parts, kwargs) else None
    if kwargs.get("use_cache") is False:
        return None
    static = static_cache_of(parts, kwargs)
    if static is not None:
        refuse_a_cache_holding_prompt_rows(parts, kwargs, static)
        shared_prefix.refuse_on(mode, f"a static cache ({static}) has no room for the prompt's rows, so the prompt runs as "
                                      "the keys and values it leaves in every layer")  # fmt: skip
        return shallow_prompt_in_layers(parts, kwargs, static)
    if generate_setting(parts, kwargs, "output_hidden_states", False):
        # the first step would feed the input alone: its hidden states would lack the prompt positions
        shared_prefix.refuse_on(mode, "output_hidden_states=True in generate asks for the prompt positions' hidden states")
        return None
    attentions = generate_setting(parts, kwargs, "output_attentions", False)
    if padding_goes_first(parts, kwargs.get("attention_mask")):
        shared_prefix.refuse_on(mode, PADDING_FIRST_REASON)
        return None
    if not shared_prefix.use_shared_prefix(mode, parts, attentions, kwargs):
        return None
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    reference = input_ids if input_ids is not None else kwargs.get("inputs_embeds")
    dtype = parts.input_embeddings.weight.dtype if hasattr(parts.input_embeddings, "weight") else torch.float32
    with torch.no_grad():
        return shared_prefix.prefix_for(parts.base_model, parts.encoder, reference.shape[0], kwargs.get("task_ids"), dtype, prompt_cache)


def slice_past_the_cached_tokens(parts: PromptParts, args: tuple, kwargs: dict, prefix=None) -> dict:
    """Tell transformers' prepare_inputs_for_generation how many of a step's input tokens the cache holds.

    transformers slices the whole sequence it is given past the cache's length; a cache that holds a prompt fed
    as input rows has P more entries than tokens. Mid-generate the slice is one token either way, but a
    generate that starts from a returned cache with the whole sequence so far (transformers' "re-use the
    cache" pattern) would drop P tokens the cache lacks (from 5.4 on, `next_sequence_length`) or slice nothing
    (before, `cache_position`). A deep prompt's layer path keeps its prompt out of any cache a user sees."""
    cached = cache_length(kwargs) - parts.num_virtual_tokens
    input_ids = args[0] if args else kwargs.get("input_ids")
    in_layers = is_deep(parts) or isinstance(prefix, ShallowPromptInLayers)
    if in_layers or cached < 0 or input_ids is None or kwargs.get("inputs_embeds") is not None:
        return kwargs
    if kwargs.get("next_sequence_length") is not None:
        kwargs["next_sequence_length"] = input_ids.shape[1] - cached
    cache_position = kwargs.get("cache_position")
    if cache_position is not None:
        kwargs["cache_position"] = torch.arange(cached, input_ids.shape[1], dtype=cache_position.dtype, device=cache_position.device)
    return kwargs


def prepare_causal_generation_step(parts: PromptParts, model_inputs: dict, task_ids=None, fixed_prompts=None, prefix=None) -> dict:
    """Adjust one decoding step's model inputs (from transformers' prepare_inputs_for_generation); see `_prepare_step`."""
    model_inputs = _prepare_step(parts, model_inputs, task_ids, fixed_prompts, prefix)
    check_positions_fit(transformers_model(parts), parts.num_virtual_tokens, fed_tokens(model_inputs).shape[1], cache_length(model_inputs),
                        model_inputs.get("position_ids"))  # fmt: skip
    return model_inputs


def _prepare_step(parts: PromptParts, model_inputs: dict, task_ids, fixed_prompts, prefix) -> dict:
    """Adjust one decoding step's model inputs.

    The first step (empty cache, or every step without a cache) gets the prompt in front; later
    steps only see the prompt through the cache. Masks and positions always count the prompt.
    With a shared `prefix` (see `generation_prefix`) and a cache, the first step puts the prompt's
    precomputed keys/values into the cache instead of feeding the prompt.
    """
    num_virtual = parts.num_virtual_tokens
    first = first_position(transformers_model(parts))  # (RoBERTa-style tables number from padding_idx + 1)
    if first and model_inputs.get("position_ids") is not None:  # generate counts the mask from 0, the model's forward from first
        model_inputs["position_ids"] = model_inputs["position_ids"] + first - generate_counts_from(transformers_model(parts), first)
    if model_inputs.get("position_ids") is None:  # positions on several axes, as a forward numbers them (transformers 5.0's
        # Qwen3-Omni leaves them to its forward, which numbered the caller's ids by a mask holding the prompt too: found
        # 2026-12-08, an IndexError from inside); None where the model has no such positions or the mask numbers them
        positions = multi_axis_positions(transformers_model(parts), model_inputs.get("input_ids"), model_inputs.get("attention_mask"),
                                         model_inputs, 0 if is_deep(parts) else num_virtual)  # fmt: skip
        if positions is not None:
            model_inputs["position_ids"] = positions
    if is_deep(parts) or isinstance(prefix, ShallowPromptInLayers):  # the prompt is in every layer (generation_scope) or in the cache; positions count it
        in_cache = prefix is DEEP_PROMPT_IN_CACHE
        if in_cache:  # masks count it too
            if cache_length(model_inputs) == 0:
                fill_cache_with_deep_prompt(parts, model_inputs, fixed_prompts)
            shift_cache_position(model_inputs, num_virtual, prompt_fed_now=False)
            cross_attention_with_prompt(parts, model_inputs, rows_fed_now=False, fed=fed_tokens(model_inputs).shape[1])
            full_mask = with_prompt_mask(model_inputs.get("attention_mask"), num_virtual)
            if full_mask is not None:
                model_inputs["attention_mask"] = full_mask
        if model_inputs.get("position_ids") is not None:
            model_inputs["position_ids"] = model_inputs["position_ids"] + num_virtual
        elif (not in_cache or first) and model_accepts(parts, "position_ids"):  # else the model would count from a cache without the prompt
            fed = fed_tokens(model_inputs)
            model_inputs["position_ids"] = positions_after_prompt(model_inputs, 0 if in_cache else num_virtual, fed.shape[0], fed.shape[1],
                                                                  fed.device, first)  # fmt: skip
        if not in_cache:
            layer_prefix.mark_step(transformers_model(parts))
        if isinstance(prefix, ShallowPromptInLayers):
            mark_cache_without_prompt_rows(model_inputs)
        return model_inputs
    injecting = cache_length(model_inputs) == 0
    if injecting:
        refuse_static_cache(parts, model_inputs)
    filled = injecting and fill_generation_cache(parts, model_inputs, prefix)
    shift_cache_position(model_inputs, num_virtual, prompt_fed_now=injecting and not filled)
    if filled:
        cross_attention_with_prompt(parts, model_inputs, rows_fed_now=False, fed=fed_tokens(model_inputs).shape[1])
        full_mask = with_prompt_mask(model_inputs.get("attention_mask"), num_virtual)
        if full_mask is not None:
            model_inputs["attention_mask"] = full_mask
        position_ids = model_inputs.get("position_ids")
        if position_ids is not None:
            model_inputs["position_ids"] = shifted_positions(position_ids, full_mask, num_virtual, position_ids.shape[-1], False)
        elif first and model_accepts(parts, "position_ids"):  # (counted past the cache, which holds the prompt)
            fed = fed_tokens(model_inputs)
            model_inputs["position_ids"] = positions_after_prompt(model_inputs, 0, fed.shape[0], fed.shape[1], fed.device, first)
        return model_inputs
    user_mask = model_inputs.get("attention_mask")
    full_mask = with_prompt_mask(user_mask, num_virtual)
    if full_mask is not None:
        model_inputs["attention_mask"] = full_mask
    position_ids = model_inputs.get("position_ids")
    if injecting:
        input_ids = model_inputs.get("input_ids")
        if input_ids is not None:
            def why():  # (asked only for a refusal: padding_goes_first walks the model's modules)
                return why_joined(parts, parts.shared_prefix, padding_goes_first(parts, user_mask), None, model_inputs, generating=True)

            refuse_inputs_dropped_beside_embeddings(parts, input_ids, user_mask, position_ids, model_inputs, why)
        embeds = model_inputs.get("inputs_embeds") if input_ids is None else parts.input_embeddings(input_ids)
        if fixed_prompts is not None:  # computed once per generate call; beams/samples repeat rows
            prompts = fixed_prompts.to(embeds.dtype).repeat_interleave(embeds.shape[0] // fixed_prompts.shape[0], dim=0)
        else:
            prompts = embed_prompts(parts, embeds, user_mask, task_ids)
        model_inputs["inputs_embeds"] = torch.cat((prompts, embeds), dim=1)
        model_inputs["input_ids"] = None
        token_types_with_prompt(model_inputs, num_virtual)
    cross_attention_with_prompt(parts, model_inputs, rows_fed_now=injecting, fed=fed_tokens(model_inputs).shape[1])
    if position_ids is not None:
        new_length = position_ids.shape[-1] + (num_virtual if injecting else 0)
        model_inputs["position_ids"] = shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting, first=first)
    if model_inputs.get("position_ids") is None and first and model_accepts(parts, "position_ids"):  # (past the cache)
        fed = fed_tokens(model_inputs)
        model_inputs["position_ids"] = positions_after_prompt(model_inputs, 0, fed.shape[0], fed.shape[1], fed.device, first)
    if padding_goes_first(parts, user_mask):  # as in forward: the cache keeps this order for the whole call
        order = leading_padding_first_order(full_mask, num_virtual)
        model_inputs["attention_mask"] = in_order(full_mask, order)
        if injecting:
            if model_inputs.get("position_ids") is None and model_accepts(parts, "position_ids"):
                model_inputs["position_ids"] = positions_from_mask(full_mask) + first
            if model_inputs.get("inputs_embeds") is not None:
                model_inputs["inputs_embeds"] = in_order(model_inputs["inputs_embeds"], order)
            if model_inputs.get("position_ids") is not None:
                model_inputs["position_ids"] = positions_in_order(model_inputs["position_ids"], order)
            per_token_inputs_in_order(model_inputs, order)
    return model_inputs
