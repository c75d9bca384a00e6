"""A causal LM's forward with the prompt: shallow rows in front of the input (once per batch through
`shared_prefix.py` where that is exact), or a deep prompt's keys and values in every layer; continuing a non-empty
cache skips the prompt."""

from __future__ import annotations

import functools

import torch

from .. import shared_prefix
from .._peft_compat import PromptParts
from ..position_table import check_positions_fit, first_position
from .generation_cache import refuse_a_cache_without_prompt_rows
from .inputs import (cross_attention_with_prompt, embed_prompts, is_deep, layer_prompts, model_accepts, output_switches,
                     refuse_training_nothing, token_types_with_prompt, transformers_model)
from .modality_inputs import model_input, refuse_inputs_dropped_beside_embeddings, why_joined
from .padding_order import (caller_selection, in_order, keeps_some, kept_positions, leading_padding_first_order,
                            PADDING_FIRST_REASON, padding_goes_first, per_token_inputs_in_order, positions_in_order, restore_order,
                            selected_per_row)
from .positions import (cache_length, checked_position_ids, multi_axis_positions, positions_after_prompt,
                        refuse_packed_rows, shifted_positions, with_prompt_mask)


def _labels_as_in_the_rows_alone(labels: torch.Tensor, attention_mask) -> torch.Tensor:
    """A shallow prompt's labels whose left-padded rows have their first real token's label in column 0, which the
    prompt's last position predicts, as in the row alone; in place, transformers' shift pairs it with the padding
    position in front of it (found 2026-12-06: a padded row's loss was 7.96 where alone it was 7.68; plain PEFT alike).
    The labels scored stay as many (Trainer's `num_items_in_batch` counts them before the call). Rows whose padding has
    labels (not -100) are left as given; where the padding goes first (`padding_goes_first`) the labels move with the
    tokens. (A deep prompt has no position of its own: there, as for the base model, the padding position predicts it.)"""
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or attention_mask.shape != labels.shape:
        return labels
    real = attention_mask.bool()
    first = real.long().argmax(dim=1)  # each row's first real position
    rows = ((first > 0) & ((labels == -100) | real).all(dim=1)).nonzero().squeeze(1)
    if rows.numel() == 0:
        return labels
    labels = labels.clone()
    labels[rows, 0] = labels[rows, first[rows]]
    labels[rows, first[rows]] = -100
    return labels


def causal_lm_forward(
    parts: PromptParts,
    input_ids=None,
    attention_mask=None,
    inputs_embeds=None,
    labels=None,
    output_attentions=None,
    output_hidden_states=None,
    return_dict=None,
    task_ids=None,
    position_ids=None,
    prompt_cache=None,
    **kwargs,
):
    """Causal LM forward with the prompt in front; continuing a non-empty cache skips the prompt.

    `prompt_cache`: a `PromptKVCache` from `prompt_kv_cache(peft_model)` to reuse (shared prefix).
    """
    refuse_training_nothing(parts, {"labels": labels})
    given_embeds = inputs_embeds is not None
    if inputs_embeds is None:
        inputs_embeds = parts.input_embeddings(input_ids)
    position_ids = checked_position_ids(position_ids, inputs_embeds)
    if position_ids is None:
        cached_prompt_rows = 0 if is_deep(parts) else parts.num_virtual_tokens  # (a deep prompt's stay out of the cache)
        position_ids = multi_axis_positions(transformers_model(parts), input_ids, attention_mask, kwargs, cached_prompt_rows)
    given = position_ids is not None  # the caller's positions (or the model's own): any number, read by the table check
    num_virtual, new_length = parts.num_virtual_tokens, inputs_embeds.shape[1]
    first = first_position(transformers_model(parts))  # (RoBERTa-style tables number from padding_idx + 1)
    if not is_deep(parts):
        refuse_a_cache_without_prompt_rows(parts, kwargs)
    injecting = cache_length(kwargs) == 0
    if injecting and not is_deep(parts):
        refuse_packed_rows(position_ids, attention_mask)
    four_d = isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4  # a deep prompt's layers extend it
    full_mask = None if four_d and is_deep(parts) else with_prompt_mask(attention_mask, num_virtual)
    if is_deep(parts):  # keys/values in every layer: the input goes in unchanged, its positions after the prompt
        if prompt_cache is not None:
            shared_prefix.refuse_prompt_cache_of_a_deep_prompt(parts.encoder)
        if model_accepts(parts, "position_ids"):
            positions = shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting=False, first=first)
            if positions is None:  # no mask, no positions
                positions = positions_after_prompt(kwargs, num_virtual, inputs_embeds.shape[0], new_length, inputs_embeds.device, first)
            kwargs["position_ids"] = positions
        check_positions_fit(transformers_model(parts), num_virtual, new_length, cache_length(kwargs), kwargs.get("position_ids"), given)
        rows = embed_prompts(parts, inputs_embeds, attention_mask, task_ids)
        with layer_prompts(parts, rows):
            fed = model_input(input_ids, inputs_embeds, given_embeds)
            return parts.base_model(**fed, attention_mask=attention_mask, labels=labels,
                                    **output_switches(output_attentions, output_hidden_states, return_dict), **kwargs)  # fmt: skip
    mode = "on" if prompt_cache is not None else parts.shared_prefix
    padding_first = padding_goes_first(parts, attention_mask) and not four_d
    if padding_first:
        shared_prefix.refuse_on(mode, PADDING_FIRST_REASON)
    context_labels = labels  # (an input-dependent prompt reads each row up to its first labelled token, as given)
    if injecting and labels is not None and not padding_first:
        labels = _labels_as_in_the_rows_alone(labels, attention_mask)
    if injecting and new_length > 0 and not padding_first and shared_prefix.use_shared_prefix(mode, parts, output_attentions, kwargs):
        hidden = shared_prefix.hidden_states_asked(parts.base_model, output_hidden_states)
        prefix, rows = shared_prefix.prefix_for(parts.base_model, parts.encoder, inputs_embeds.shape[0], task_ids,
                                                inputs_embeds.dtype, prompt_cache, shared_prefix.asks_hidden_states(hidden))  # fmt: skip
        positions = shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting=False, first=first)
        if positions is None and first:  # (RoBERTa numbers a cached continuation from its first row again)
            positions = positions_after_prompt(kwargs, num_virtual, inputs_embeds.shape[0], new_length, inputs_embeds.device, first)
        check_positions_fit(transformers_model(parts), num_virtual, new_length, num_virtual, positions, given)  # the prefix: P cached
        shared_kwargs = dict(kwargs)
        cross_attention_with_prompt(parts, shared_kwargs, rows_fed_now=False, fed=new_length)
        try:
            fed = model_input(input_ids, inputs_embeds, given_embeds)
            return shared_prefix.causal_lm_forward(parts.base_model, prefix, rows, fed, full_mask, positions, labels, hidden,
                                                   output_attentions, return_dict, shared_kwargs)  # fmt: skip
        except shared_prefix.RowsOfItsOwn as error:  # (found 2026-12-07 by a probe: GIT, 2.6 off the prompt fed by hand)
            shared_prefix.refuse_on(mode, str(error))
    if injecting:
        if not given_embeds:
            why = functools.partial(why_joined, parts, mode, padding_first, output_attentions, kwargs, generating=False)
            refuse_inputs_dropped_beside_embeddings(parts, input_ids, attention_mask, position_ids, kwargs, why)
        prompts = embed_prompts(parts, inputs_embeds, attention_mask, task_ids, context_labels)
        inputs_embeds = torch.cat((prompts, inputs_embeds), dim=1)
        new_length += num_virtual
        if labels is not None:
            labels = torch.cat((labels.new_full((labels.shape[0], num_virtual), -100), labels), dim=1)
        token_types_with_prompt(kwargs, num_virtual)
        cross_attention_with_prompt(parts, kwargs, rows_fed_now=True, fed=new_length)
    else:  # a continuation: the cache holds the prompt
        cross_attention_with_prompt(parts, kwargs, rows_fed_now=False, fed=new_length)
    if model_accepts(parts, "position_ids"):
        kwargs["position_ids"] = shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting, first=first)
        if kwargs["position_ids"] is None and first:  # (counted past the cache, which holds the prompt)
            kwargs["position_ids"] = positions_after_prompt(kwargs, 0, inputs_embeds.shape[0], new_length, inputs_embeds.device, first)
    elif position_ids is not None:
        raise ValueError(f"{parts.model_class.__name__}.forward takes no position_ids, but position_ids were given.")
    check_positions_fit(transformers_model(parts), num_virtual, new_length, cache_length(kwargs), kwargs.get("position_ids"), given)
    if not padding_first:
        return parts.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=full_mask,
            labels=labels,
            **output_switches(output_attentions, output_hidden_states, return_dict),
            **kwargs,
        )
    order = leading_padding_first_order(full_mask, num_virtual)
    if injecting:  # the tokens fed now are prompt + input: all of them move (a continuation's tokens are the last ones)
        inputs_embeds = in_order(inputs_embeds, order)
        labels = None if labels is None else in_order(labels, order)
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = positions_in_order(kwargs["position_ids"], order)
        per_token_inputs_in_order(kwargs, order)
    kept = per_row = None  # the caller's logits_to_keep names its positions: the call keeps where it holds them
    if injecting and keeps_some(kwargs.get("logits_to_keep", 0)):
        if isinstance(kwargs["logits_to_keep"], torch.Tensor) and selected_per_row(kwargs["logits_to_keep"]):
            per_row, kwargs["logits_to_keep"] = kwargs["logits_to_keep"], 0  # (found 2026-12-07 by a review: read as 1-D)
        else:
            kept = kept_positions(kwargs["logits_to_keep"], order)
            kwargs["logits_to_keep"] = kept[1]
    switches = output_switches(output_attentions, output_hidden_states, return_dict)
    output = parts.base_model(inputs_embeds=inputs_embeds, attention_mask=in_order(full_mask, order), labels=labels,
                              **{**switches, "return_dict": True}, **kwargs)  # fmt: skip
    if injecting:
        output = restore_order(output, order, kept)
        if per_row is not None:
            output.logits = caller_selection(output.logits, per_row)
    asked = switches.get("return_dict", getattr(transformers_model(parts).config, "return_dict", True))
    return output if asked is not False else output.to_tuple()
