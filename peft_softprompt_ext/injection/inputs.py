"""The prompt's rows for a call (`embed_prompts`: input rows; `deep_rows` / `layer_prompts`: a deep prompt's keys and
values in every layer), and what every path of `injection/` checks or reads first."""

from __future__ import annotations

import functools
import inspect

import torch

from .. import layer_prefix
from .._peft_compat import PromptParts
from ..prompt_encoder import KEY_VALUES
from .positions import with_prompt_mask


@functools.lru_cache(maxsize=64)
def _forward_accepts(model_class: type, name: str) -> bool:
    return name in inspect.signature(model_class.forward).parameters


def model_accepts(parts: PromptParts, name: str) -> bool:
    """Whether the transformers model (under any adapter wrappers) takes argument `name`."""
    return _forward_accepts(parts.model_class or type(parts.base_model), name)


def refuse_training_nothing(parts: PromptParts, kwargs: dict) -> None:
    """A training forward (train mode, gradients on, labels) of a model where nothing requires a gradient
    would fail later in backward with torch's 'does not require grad'; say why here instead."""
    model = parts.peft_model
    if model is not None and model.training and torch.is_grad_enabled() and kwargs.get("labels") is not None:
        if not any(parameter.requires_grad for parameter in model.parameters()):
            raise ValueError(
                "Nothing in this model trains: no parameter of the active adapter requires a gradient (an adapter loaded "
                "without is_trainable=True is frozen: load it with PeftModel.from_pretrained(..., is_trainable=True) to "
                "resume training; mixing='one_hot' serves fixed prompts: train each prompt as its own adapter). For "
                "inference, use model.eval() / torch.no_grad()."
            )


def in_layers(encoder) -> bool:
    """The encoder's prompt goes in front of every self-attention layer's keys and values (a deep prompt)."""
    return encoder.prompt_kind == KEY_VALUES


def is_deep(parts: PromptParts) -> bool:
    return in_layers(parts.encoder)


def layer_prompts(parts: PromptParts, rows: torch.Tensor):
    """A deep prompt's rows [B, P, F] in front of every self-attention layer for the block's duration."""
    return layer_prefix.prefixed(parts.inner_model, parts.encoder.slots, rows, parts.encoder.frozen_slots)


def transformers_model(parts: PromptParts) -> torch.nn.Module:
    return parts.inner_model if parts.inner_model is not None else parts.base_model


def embed_prompts(parts: PromptParts, inputs_embeds, attention_mask, task_ids, labels=None) -> torch.Tensor:
    """The encoder's prompts [B, P, D] for this batch, in the dtype of the input embeddings.

    `labels` (a causal LM's, one per input token): an input-dependent encoder reads only a row's tokens before its
    first labelled one, so a teacher-forced training row (input + answer, labelled on the answer) gets the prompt
    that `generate` gives its input alone. A row labelled from its first token (plain language modelling, also
    with some tokens such as a pad-as-eos set to -100) is read whole.
    """
    if parts.encoder.input_dependent and labels is not None:
        attention_mask = _context_mask(attention_mask, labels, inputs_embeds.shape[:2])
    prompts = parts.encoder(
        inputs_embeds.shape[0], task_ids=task_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask
    )
    return prompts.to(inputs_embeds.dtype)


def _context_mask(attention_mask, labels: torch.Tensor, shape) -> torch.Tensor:
    """The attention mask up to each row's first labelled position; a row with nothing before it keeps its mask."""
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"labels have shape {tuple(labels.shape)} but the input is {tuple(shape)} [batch, length]: "
                         "a causal LM takes one label per input token (-100 where there is nothing to predict).")  # fmt: skip
    mask = torch.ones(tuple(shape), dtype=torch.bool, device=labels.device) if attention_mask is None else attention_mask.bool()
    labelled = mask & (labels != -100)
    before_first = torch.cumsum(labelled.long(), dim=1) == 0
    context = mask & before_first
    return torch.where(context.any(dim=1, keepdim=True), context, mask).long()


def output_switches(output_attentions, output_hidden_states, return_dict) -> dict:
    """The output switches the caller set: one left None is not passed, so the model's config decides it (transformers
    reads an explicit None as off, and config.output_attentions=True was lost)."""
    switches = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states, "return_dict": return_dict}
    return {name: value for name, value in switches.items() if value is not None}


def encoder_inputs(parts: PromptParts, input_ids, attention_mask, inputs_embeds, task_ids):
    """(inputs_embeds with the prompt in front, extended attention mask) for an encoder input."""
    if inputs_embeds is None:
        inputs_embeds = parts.input_embeddings(input_ids)
    prompts = embed_prompts(parts, inputs_embeds, attention_mask, task_ids)
    return torch.cat((prompts, inputs_embeds), dim=1), with_prompt_mask(attention_mask, parts.num_virtual_tokens)


def deep_rows(parts: PromptParts, input_ids, inputs_embeds, task_ids, encoded=None) -> torch.Tensor:
    """A deep prompt's rows [B, P, F] for this batch (a deep prompt does not read the input)."""
    reference = next((x for x in (input_ids, inputs_embeds, None if encoded is None else encoded[0]) if x is not None), None)
    if reference is None:
        raise ValueError("A deep prompt needs input_ids, inputs_embeds or encoder_outputs to know the batch size; got none.")
    return parts.encoder(reference.shape[0], task_ids=task_ids)


def cross_attention_with_prompt(parts: PromptParts, kwargs: dict, rows_fed_now: bool, fed: int) -> None:
    """A cross-attention mask with a row per token (`CROSS_ATTENTION_MASKS`: Mllama's [B, L, images, tiles], Idefics'
    [B, L, images]) gets rows of 0 for the P prompt positions in front, in place: the prompt sees no image, as text in
    front of one (found 2026-12-07 by probes: the prompt's rows went in without theirs, and the cross-attention of
    Mllama and of Idefics failed). Where the call feeds the prompt's rows
    (`rows_fed_now`); and, where the cache holds them, wherever the model reads the mask's rows at the cache's
    positions: the call passes `cache_position` (generate before transformers 5.4), or the mask covers more rows than
    the `fed` tokens (every token so far, which a forward continuing a cache may pass; found by a review)."""
    for name in CROSS_ATTENTION_MASKS:
        mask = kwargs.get(name)
        read_by_cache_position = kwargs.get("cache_position") is not None or (isinstance(mask, torch.Tensor) and mask.shape[1] > fed)
        if isinstance(mask, torch.Tensor) and mask.dim() >= 2 and (rows_fed_now or read_by_cache_position):
            kwargs[name] = zero_rows_in_front(mask, parts.num_virtual_tokens)


CROSS_ATTENTION_MASKS = ("cross_attention_mask", "image_attention_mask")  # a row per token (Mllama's; Idefics')

# one per token: as transformers' generate names token types, and Kosmos-2's image positions
TOKEN_TYPES = ("token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids", "image_embeds_position_mask")


def token_types_with_prompt(kwargs: dict, num_virtual: int) -> None:
    """A call's token types (`TOKEN_TYPES`: GPT-2's and Gemma 3's token types; a VLM's image/text types, by which
    Ernie-4.5-VL routes each token to its text or vision experts; Kosmos-2's mask of the positions its image goes to)
    with type 0, text, for the prompt's rows in front, where the prompt goes in as input rows (found 2026-12-07 by
    probes: Ernie's expert types and Kosmos-2's image positions were left a row per input token, an IndexError off
    the shared prefix)."""
    for name in TOKEN_TYPES:
        if kwargs.get(name) is not None:
            kwargs[name] = zero_rows_in_front(kwargs[name], num_virtual)


def zero_rows_in_front(tensor: torch.Tensor, num_virtual: int) -> torch.Tensor:
    """[B, L, ...] -> [B, P + L, ...] with 0 for the P prompt positions in front: token type 0; no image to attend to."""
    return torch.cat((tensor.new_zeros(tensor.shape[0], num_virtual, *tensor.shape[2:]), tensor), dim=1)
