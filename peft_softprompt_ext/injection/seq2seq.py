"""Encoder-decoders (T5, BART, ...): the prompt in front of the encoder input, or a deep prompt in encoder and decoder
self-attention; decoding with a cache is the model's own."""

from __future__ import annotations

import torch

from .._peft_compat import PromptParts
from ..position_table import check_positions_fit
from .inputs import (deep_rows, encoder_inputs, is_deep, layer_prompts, refuse_training_nothing, token_types_with_prompt, TOKEN_TYPES,
                     transformers_model)
from .modality_inputs import refuse_generate_dropping_inputs_beside_embeddings
from .padding_order import for_rows_of, in_order, leading_padding_first_order, per_token_inputs_in_order, starts_with_padding
from .positions import with_prompt_mask


def _seq2seq_encoder_inputs(parts: PromptParts, input_ids, attention_mask, inputs_embeds, task_ids):
    """`encoder_inputs` of a seq2seq model, in the order its encoder runs them, and that order (None: the caller's).
    Where the encoder has no absolute position table (T5's relative buckets, T5Gemma's rotary positions and window),
    each row's leading padding goes in front of the prompt: those count distances over the padding, and a row alone has
    none between its prompt and tokens (found 2026-12-07 by a probe: T5Gemma 0.10 off the row alone, plain PEFT 0.05).
    Encoders with a table of absolute positions (BART, Pegasus, Marian, M2M100) keep the caller's order: a review found
    the reorder moving the prompt's positions there, mostly further from the row alone. Cross-attention reads the
    encoder's outputs with their mask in any order; `_encoder_outputs_in_order` puts them back for the caller."""
    inputs_embeds, full_mask = encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or not starts_with_padding(attention_mask) \
            or _has_absolute_positions(transformers_model(parts)):  # fmt: skip
        return inputs_embeds, full_mask, None
    order = leading_padding_first_order(full_mask, parts.num_virtual_tokens)
    return in_order(inputs_embeds, order), in_order(full_mask, order), order


_POSITION_TABLES = ("embed_positions", "position_embeddings")  # BART, Marian, M2M100, ...; ProphetNet, BERT as encoder


def _has_absolute_positions(model) -> bool:
    """A seq2seq model whose encoder adds a position table, learned or sinusoidal (found 2026-12-07 by a review: ProphetNet's
    and a BERT encoder's, named `position_embeddings`, were missed when only `embed_positions` was looked for)."""
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else None
    return encoder is not None and any(name.rpartition(".")[2] in _POSITION_TABLES for name, _ in encoder.named_modules())


def _encoder_call(call, order: torch.Tensor | None, kwargs: dict, config, encoder_only: bool = False, generating: bool = False):
    """`call(**kwargs)` (a seq2seq forward, its encoder's, or `generating` its generate) whose encoder runs in `order`,
    its output in the caller's layout: a forward's dict output is asked for and turned into the caller's tuple after
    (found 2026-12-07 by a review: tuples came back in the run's order)."""
    if order is None:
        return call(**kwargs)
    if generating:
        return _encoder_outputs_in_order(call(**kwargs), order)
    asked = kwargs.pop("return_dict", None)
    output = _encoder_outputs_in_order(call(**kwargs, return_dict=True), order, encoder_only)
    wanted = asked if asked is not None else getattr(config, "return_dict", True)
    return output.to_tuple() if wanted is False else output


def _encoder_outputs_in_order(output, order: torch.Tensor, encoder_only: bool = False):
    """A seq2seq output (forward's, the encoder's or generate's) whose encoder ran in `order`, with the encoder's
    positions back where the caller put them: its hidden states and attentions, the decoder's cross-attentions over
    them, and the cross-attention keys and values of a returned cache (found 2026-12-07 by a review: a cached decoding
    loop given the caller's mask read them in the run's order). Beams and returned sequences repeat each input row."""
    if output is None or isinstance(output, (tuple, torch.Tensor)):
        return output
    back, length = torch.argsort(order, dim=1), order.shape[1]

    def moved(tensor, dims):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() <= max(dims) or tensor.shape[0] % back.shape[0] \
                or any(tensor.shape[dim] != length for dim in dims):  # fmt: skip
            return tensor
        rows = for_rows_of(back, tensor)
        for dim in dims:
            tensor = in_order(tensor, rows, dim)
        return tensor

    def each(value, dims):  # a tensor, or tuples of them (per layer; generate: per step, then per layer)
        if isinstance(value, tuple):
            return tuple(each(item, dims) for item in value)
        return moved(value, dims)

    fields = ((("last_hidden_state", "hidden_states"), (1,)), (("attentions",), (2, 3))) if encoder_only else \
        ((("encoder_last_hidden_state", "encoder_hidden_states"), (1,)), (("encoder_attentions",), (2, 3)), (("cross_attentions",), (3,)))
    for names, dims in fields:
        for name in names:
            if getattr(output, name, None) is not None:
                output[name] = each(output[name], dims)
    cache = output["cache"] if "cache" in output else output.get("past_key_values")  # (transformers 5.24 names it `cache`)
    for layer in getattr(getattr(cache, "cross_attention_cache", None), "layers", ()):  # [B, heads, encoder positions, dim]
        if getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = moved(layer.keys, (2,)), moved(layer.values, (2,))
    return output


def seq2seq_forward(
    parts: PromptParts, input_ids=None, attention_mask=None, inputs_embeds=None, task_ids=None, **kwargs
):
    """Encoder-decoder forward with the prompt in front of the encoder input.

    With `encoder_outputs` given (from an earlier call, so they already hold the prompt), the input is not read
    again; the attention mask may be the input's (the prompt's columns are added) or already cover the prompt.
    """
    refuse_training_nothing(parts, kwargs)
    encoded = kwargs.get("encoder_outputs")
    if is_deep(parts):  # encoder and decoder self-attention read the prompt; the input is unchanged
        with layer_prompts(parts, deep_rows(parts, input_ids, inputs_embeds, task_ids, encoded)):
            return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    if encoded is not None:
        attention_mask = _mask_for_encoder_outputs(attention_mask, encoded, parts.num_virtual_tokens)
        return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)  # BART: a learned table
    return _encoder_call(parts.base_model, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask,
                                                   **_with_token_types(kwargs, parts.num_virtual_tokens, order)},
                         transformers_model(parts).config)  # fmt: skip


def seq2seq_encode(parts: PromptParts, encoder, input_ids=None, attention_mask=None, inputs_embeds=None, task_ids=None, **kwargs):
    """`encoder` (the base model's) run with the prompt, as `seq2seq_forward` runs it: `get_encoder()`'s call."""
    if is_deep(parts):
        with layer_prompts(parts, deep_rows(parts, input_ids, inputs_embeds, task_ids)):
            return encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)
    return _encoder_call(encoder, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask,
                                          **_with_token_types(kwargs, parts.num_virtual_tokens, order)},
                         transformers_model(parts).config, encoder_only=True)  # fmt: skip


def _with_token_types(kwargs: dict, num_virtual: int, order) -> dict:
    """The call's keywords with the encoder's token types (BERT's, as an EncoderDecoderModel's encoder) given type 0
    for the prompt's rows in front, in the order the encoder runs them (found 2026-12-07 by a probe: a size mismatch
    inside BERT's embeddings, forward and generate; plain PEFT drops them with a warning)."""
    kwargs = dict(kwargs)
    token_types_with_prompt(kwargs, num_virtual)
    if order is not None:
        per_token_inputs_in_order(kwargs, order, TOKEN_TYPES)
    return kwargs


def _mask_for_encoder_outputs(attention_mask, encoded, num_virtual_tokens: int):
    """The mask the decoder's cross-attention needs over given encoder outputs (prompt + input positions)."""
    if attention_mask is None:
        return None
    positions = encoded[0].shape[1]
    if attention_mask.shape[-1] == positions:
        return attention_mask
    if attention_mask.shape[-1] + num_virtual_tokens == positions:
        return with_prompt_mask(attention_mask, num_virtual_tokens)
    raise ValueError(
        f"attention_mask has {attention_mask.shape[-1]} columns; encoder_outputs hold {positions} positions (a prompt of "
        f"{num_virtual_tokens} in front of the input): give the input's mask ({positions - num_virtual_tokens} columns) "
        f"or one covering the prompt too ({positions})."
    )


def seq2seq_generate(parts: PromptParts, input_ids=None, attention_mask=None, inputs_embeds=None, task_ids=None, **kwargs):
    """Encoder-decoder generate: the encoder reads prompt + input; decoding is the model's own."""
    if kwargs.pop("encoder_outputs", None) is not None:
        raise ValueError("Do not pass encoder_outputs to generate with a soft prompt: the prompt goes into the encoder "
                         "(in front of its input, or into every self-attention layer for a deep prompt) and generate "
                         "runs it. Pass input_ids (or inputs_embeds) instead. (transformers passes encoder_outputs itself "
                         "to an assistant: a soft-prompted seq2seq model cannot be the assistant_model of another model's "
                         "generate, whose assisted decoding runs the assistant's encoder without its prompt; give it a "
                         "model without a prompt as the assistant.)")  # fmt: skip
    if input_ids is None and inputs_embeds is None:
        raise ValueError("generate needs input_ids or inputs_embeds; got neither.")
    if attention_mask is None:
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
    if is_deep(parts):
        with layer_prompts(parts, deep_rows(parts, input_ids, inputs_embeds, task_ids)):
            return parts.base_model.generate(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    if kwargs.get("assistant_model") is not None:
        raise ValueError("generate with assistant_model and a shallow prompt on a seq2seq model: the prompt enters as "
                         "the encoder's inputs_embeds, which transformers hands to the assistant beside its input_ids, "
                         "and the assistant refuses both. A deep prompt (DeepPromptTuningConfig) keeps the input as "
                         "input_ids and works as the main model of assisted decoding; else generate without assistant_model.")  # fmt: skip
    user_mask = attention_mask
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)
    try:
        return _encoder_call(parts.base_model.generate, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask,
                                                                **_with_token_types(kwargs, parts.num_virtual_tokens, order)},
                             transformers_model(parts).config, generating=True)  # fmt: skip
    except (ValueError, TypeError, RuntimeError) as error:
        refuse_generate_dropping_inputs_beside_embeddings(parts, input_ids, user_mask, kwargs, error)
        raise
