"""Sequence classifiers with the prompt: encoders (BERT, RoBERTa, ...) and classifiers on causal decoders (GPT-2,
Llama, ...), which read each row's last real token."""

from __future__ import annotations

import torch

from .. import layer_prefix
from .._peft_compat import PromptParts
from ..position_table import check_positions_fit, position_limit
from .inputs import (deep_rows, encoder_inputs, is_deep, layer_prompts, model_accepts, refuse_training_nothing,
                     transformers_model, zero_rows_in_front)
from .padding_order import in_order, padding_first_order, starts_with_padding
from .positions import (checked_position_ids, positions_after_prompt, positions_from_mask, shifted_positions,
                        with_prompt_mask)


def encoder_forward(
    parts: PromptParts,
    input_ids=None,
    attention_mask=None,
    inputs_embeds=None,
    task_ids=None,
    token_type_ids=None,
    position_ids=None,
    **kwargs,
):
    """Sequence classification (BERT, or a causal decoder such as GPT-2 / Llama) with the prompt in front."""
    refuse_training_nothing(parts, kwargs)
    reference = input_ids if input_ids is not None else inputs_embeds
    batch_size = reference.shape[0]
    position_ids = checked_position_ids(position_ids, reference)
    given = position_ids is not None  # the caller's own, which may hold any number (found 2026-12-07: never read here)
    last_token = _classifies_from_the_last_token(parts)
    decoder = last_token and attention_mask is not None
    if is_deep(parts):  # every layer reads the prompt; the input keeps its tokens and types
        if last_token and model_accepts(parts, "position_ids"):  # a decoder: positions after the prompt
            num_virtual, length = parts.num_virtual_tokens, reference.shape[1]
            full_mask = None if position_ids is not None else with_prompt_mask(attention_mask, num_virtual)
            position_ids = shifted_positions(position_ids, full_mask, num_virtual, length, False)
            if position_ids is None:  # no mask, no positions
                position_ids = positions_after_prompt({}, num_virtual, batch_size, length, reference.device)
            check_positions_fit(transformers_model(parts), num_virtual, length, 0, position_ids, given, decoding=False)
        elif position_ids is None and _counts_past_leading_padding(parts, attention_mask, last_token):
            position_ids = positions_from_mask(attention_mask)  # (the input's own numbering, from 0)
        rows = deep_rows(parts, input_ids, inputs_embeds, task_ids)
        if decoder and input_ids is None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
            # given embeddings, the classifier reads each row's last position (it finds the last real token from
            # input_ids only): right-padded rows go padding first, their positions with them (found 2026-12-06: they
            # were 0.13-0.25 off the rows alone; the shallow path's `_last_token_classifier_call` does the same)
            order = padding_first_order(attention_mask)
            inputs_embeds, attention_mask = in_order(inputs_embeds, order), in_order(attention_mask, order)
            position_ids = None if position_ids is None else in_order(position_ids, order)
            token_type_ids = None if token_type_ids is None else in_order(token_type_ids, order)
        with layer_prompts(parts, rows):
            return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                    token_type_ids=token_type_ids, position_ids=position_ids, **kwargs)  # fmt: skip
    num_virtual = parts.num_virtual_tokens
    if last_token and attention_mask is None and input_ids is not None:
        attention_mask = _up_to_the_last_real_token(transformers_model(parts), input_ids)
        decoder = attention_mask is not None
    counted = position_ids is None and _counts_past_leading_padding(parts, attention_mask, last_token)
    inputs_embeds, attention_mask = encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    if token_type_ids is not None:
        kwargs["token_type_ids"] = zero_rows_in_front(token_type_ids, num_virtual)
    if counted:  # [prompt; input] counted by the mask (the extended one)
        kwargs["position_ids"] = positions_from_mask(attention_mask)
    elif position_ids is not None:
        first = (position_limit(transformers_model(parts)) or (0, "", 0))[2]  # (found 2026-12-07 by a review: RoBERTa's
        # prompt sat at rows 0..P-1, row 1 its padding row, 0.009 off the prompt without given ids)
        kwargs["position_ids"] = shifted_positions(position_ids, None, num_virtual, None, injecting=True, first=first)
    positions = kwargs.get("position_ids")
    if positions is None and decoder:  # the last-token call counts positions from the mask
        positions = positions_from_mask(attention_mask)
    check_positions_fit(transformers_model(parts), num_virtual, inputs_embeds.shape[1], 0, positions, given, decoding=False)
    if decoder:
        return _last_token_classifier_call(parts, inputs_embeds, attention_mask, kwargs)
    return parts.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)


def _counts_past_leading_padding(parts: PromptParts, attention_mask, last_token: bool) -> bool:
    """Whether a call's positions are counted by the caller's mask: an encoder whose positions act relatively (rotary,
    no position table: EuroBERT) on a call where some row starts with padding. The model numbers every slot, so
    padding between the prompt and the tokens moved them apart (found 2026-12-07 by a probe: a left-padded EuroBERT
    row 0.069 off the row alone, shallow, 0.060 deep; the base model alone 1.2e-7, as its rotation sees only
    distances). Elsewhere the call's positions stay the model's own."""
    if last_token or not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or not starts_with_padding(attention_mask):
        return False
    return position_limit(transformers_model(parts)) is None and model_accepts(parts, "position_ids")


def _up_to_the_last_real_token(model, input_ids: torch.Tensor) -> torch.Tensor | None:
    """Without a mask a last-token classifier reads each row's last token that is not the pad id (transformers' rule):
    a mask ending each row there, so that the prompted call reads the same token (found 2026-12-07 by a probe: it read
    a right-padded row's last position, a pad). None where the model names no pad id (transformers' own error then)."""
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        return None
    slots = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = (slots * (input_ids != pad)).argmax(-1)
    return (slots[None, :] <= last[:, None]).long()


def _classifies_from_the_last_token(parts: PromptParts) -> bool:
    """A classifier on a causal decoder (GPT-2, Llama, ...): it reads each row's last non-pad token,
    which it finds from input_ids, so with a prompt (inputs_embeds) it would read the last position. XLNet's reads the
    token its sequence summary names ("last" by default; found 2026-12-07 by a review: "first" was reordered too)."""
    model = transformers_model(parts)
    summary = getattr(model, "sequence_summary", None)  # (GPT-2's config has a summary_type too, for another head)
    return layer_prefix.is_causal_decoder(model) and getattr(summary, "summary_type", "last") == "last"


def _last_token_classifier_call(parts: PromptParts, inputs_embeds, full_mask, kwargs):
    """Call a last-token classifier so that each row's last position is its last real token: rows
    with padding at the end are reordered (padding first, then the prompt and the tokens in order;
    the mask and the positions, counted from the mask as in an unpadded row, go with them). A model that takes
    no position_ids (Falcon's classifier) counts positions over the padding, and a sliding window, chunked attention
    or a recurrent layer counts slots (`layer_prefix.counts_slots`): left-padded rows are reordered there too, so that
    prompt and tokens stay next to each other."""
    takes_positions = model_accepts(parts, "position_ids")
    if takes_positions:
        kwargs.setdefault("position_ids", positions_from_mask(full_mask))
    if bool(full_mask.all()) or (takes_positions and bool(full_mask[:, -1].all()) and not layer_prefix.counts_slots(parts.base_model)):
        return parts.base_model(inputs_embeds=inputs_embeds, attention_mask=full_mask, **kwargs)
    order = padding_first_order(full_mask)
    for name in ("position_ids", "token_type_ids"):
        if kwargs.get(name) is not None:
            kwargs[name] = in_order(kwargs[name], order)
    return parts.base_model(inputs_embeds=in_order(inputs_embeds, order), attention_mask=in_order(full_mask, order), **kwargs)
