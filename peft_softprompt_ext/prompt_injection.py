"""Putting soft prompts in front of a frozen transformers model's input.

Plain functions over `PromptParts` (a transformers model, its input-embedding module and a prompt
encoder); they read nothing of PEFT. The seam calls them from `PeftModel`'s forward and generate
through the hooks `peft_softprompt_ext/__init__.py` installs.

What differs from PEFT's own prompt-tuning path, and why:
* Position ids follow the attention mask (`cumsum - 1`), the way `generate` computes them, and
  user-given position ids are shifted by the prompt length instead of being dropped. So a
  left-padded batch gets the same positions in `forward`, in `generate` with a cache and in
  `generate` without one.
* The prompt is injected only when the key/value cache is empty (a forward that continues a cache
  never re-injects it). PEFT 0.21 looks for the cache under `past_key_values`, which transformers
  5.24 renamed `cache`; there PEFT re-feeds the virtual tokens at every decoding step.
* Seq2seq models get the prompt in front of the encoder input only, so decoding with a cache is
  the model's own.
* Causal LMs run the prompt once per batch where that is exact (`shared_prefix.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import contextlib

import torch
from transformers import GenerationMixin

from . import layer_prefix, shared_prefix
from ._peft_compat import PromptParts, validate_task_type
from .position_table import check_positions_fit, position_limit
from .position_table import check_prompt_fits as check_prompt_fits_table
from .prompt_encoder import KEY_VALUES, check_task_ids


@functools.lru_cache(maxsize=64)
def _forward_accepts(model_class: type, name: str) -> bool:
    return name in inspect.signature(model_class.forward).parameters


def _accepts(parts: PromptParts, name: str) -> bool:
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


def _is_deep(parts: PromptParts) -> bool:
    return in_layers(parts.encoder)


def layer_prompts(parts: PromptParts, rows: torch.Tensor):
    """A deep prompt's rows [B, P, F] in front of every self-attention layer for the block's duration."""
    return layer_prefix.prefixed(parts.inner_model, parts.encoder.slots, rows, parts.encoder.frozen_slots)


def generation_scope(parts: PromptParts, prompts: torch.Tensor, prefix=None):
    """Around one whole causal generate call: a deep prompt's keys and values in every layer for each of the call's own
    steps (`layer_prefix.prefixed_in_steps`), unless they go into generate's own cache (`prefix` is
    `DEEP_PROMPT_IN_CACHE`); a shallow prompt's, which it leaves in every layer, where a static cache has no room for
    its rows (`ShallowPromptInLayers`); else nothing."""
    model = _transformers_model(parts)
    if isinstance(prefix, ShallowPromptInLayers):
        with torch.no_grad():
            rows = layer_prefix.key_values_of(model, prefix.slots, "CAUSAL_LM", prompts)
        return layer_prefix.prefixed_in_steps(model, prefix.slots, rows)
    if not _is_deep(parts) or prefix is DEEP_PROMPT_IN_CACHE:
        return contextlib.nullcontext()
    return layer_prefix.prefixed_in_steps(model, parts.encoder.slots, prompts, parts.encoder.frozen_slots)


@dataclasses.dataclass
class ShallowPromptInLayers:
    """A generate call with a static cache, which generate sizes for the input and the new tokens only, so it has no
    room for a shallow prompt's P rows: the prompt runs instead as the keys and values it leaves in every
    self-attention layer (`layer_prefix.key_values_of`, at positions 0..P-1, as in front of the input), which is the
    same prompt for every later token of a causal decoder whose layers see every slot (no sliding window, chunks or
    recurrent state), as a deep prompt runs, and the cache holds the input and the new tokens only."""

    slots: list


_HOLDS_NO_PROMPT_ROWS = "_peft_softprompt_ext_holds_no_prompt_rows"  # set on a cache a `ShallowPromptInLayers` call wrote


def _mark_cache_without_prompt_rows(model_inputs: dict) -> None:
    cache = _given_cache(model_inputs)
    if cache is not None and not isinstance(cache, (tuple, list)):
        setattr(cache, _HOLDS_NO_PROMPT_ROWS, True)


def _refuse_a_cache_holding_prompt_rows(parts: PromptParts, kwargs: dict, static: str) -> None:
    """A static cache given to generate holds the input only if generate wrote it (`ShallowPromptInLayers`): one a
    forward call filled holds the prompt's rows too, which the layer path would add again (found 2026-12-06: other
    tokens, without a word)."""
    cache = _given_cache(kwargs)
    if cache is not None and _cache_length(kwargs) > 0 and not getattr(cache, _HOLDS_NO_PROMPT_ROWS, False):
        raise ValueError(f"past_key_values: this {static} holds {_cache_length(kwargs)} positions written by a forward call, "
                         f"the prompt's {parts.num_virtual_tokens} rows among them; generate continues a static cache only "
                         "from its own earlier call (where the prompt ran as keys and values in every layer, not in the "
                         "cache). Continue this one with forward calls, or fill a DynamicCache by forward and generate from "
                         "that.")  # fmt: skip


def _refuse_a_cache_without_prompt_rows(parts: PromptParts, kwargs: dict) -> None:
    """A cache a static-cache generate wrote holds no prompt rows, which a forward call counts in front of the input
    (found 2026-12-06: a forward continuing such a cache was 2.2 off); an emptied one (`reset()`) takes them again."""
    cache = _given_cache(kwargs)
    if cache is None or not getattr(cache, _HOLDS_NO_PROMPT_ROWS, False):
        return
    if _cache_length(kwargs) == 0:
        delattr(cache, _HOLDS_NO_PROMPT_ROWS)
        return
    raise ValueError(f"past_key_values: this {type(cache).__name__} was written by generate with a static cache, where "
                     f"the prompt's {parts.num_virtual_tokens} rows ran as keys and values in every layer and are not in "
                     "the cache, which a forward call expects in front of the input. Continue it with generate "
                     "(past_key_values=...), or generate with the default dynamic cache to continue with forward calls.")  # fmt: skip


def _static_cache_of(parts: PromptParts, kwargs: dict) -> str | None:
    """What makes a generate call's cache static, as a name for messages (None: it is not): a static cache given
    (empty, or one a call like this returned, which holds the input and new tokens only), or `cache_implementation`."""
    cache = _given_cache(kwargs)
    if cache is not None:
        return type(cache).__name__ if getattr(cache, "is_compileable", False) else None
    try:
        from transformers.generation.configuration_utils import ALL_STATIC_CACHE_IMPLEMENTATIONS as static
    except ImportError:  # (named so in every release of the declared range; a safe default if renamed)
        static = ("static", "offloaded_static")
    implementation = _generate_setting(parts, kwargs, "cache_implementation")
    return f"cache_implementation={implementation!r}" if implementation in static else None


def _shallow_prompt_in_layers(parts: PromptParts, kwargs: dict, static: str) -> ShallowPromptInLayers:
    """`ShallowPromptInLayers` for this call, or a refusal saying why the prompt cannot run that way here."""
    model = _transformers_model(parts)
    why = None
    if _generate_setting(parts, kwargs, "output_hidden_states", False) or _generate_setting(parts, kwargs, "output_attentions", False):
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


_PADDING_FIRST_REASON = ("left padding on a model with a sliding attention window, chunked attention, recurrent layers "
                         "(state-space, linear-attention, convolution) or ALiBi distances counted in slots (MPT) goes in front "
                         "of the prompt in each row, which a prompt "
                         "computed once for all rows cannot sit behind")

# A deep prompt's keys and values put into generate's empty cache at the first step: later steps attend to
# them as to any cached token, with no per-layer concatenation (the layer prefix copies them in front of the
# cache at every step and layer). Used only where the cache keeps every token (no sliding window) and nobody
# outside this generate call sees the cache (not user-given, not returned).
DEEP_PROMPT_IN_CACHE = "deep prompt in the cache"


def _generate_setting(parts: PromptParts, kwargs: dict, name: str, default=None):
    """A generate call's setting: its argument, else its generation_config's, else the model's generation_config's."""
    config = kwargs.get("generation_config") or getattr(parts.base_model, "generation_config", None)
    return kwargs.get(name, getattr(config, name, default))


def _deep_prompt_fits_cache(parts: PromptParts, kwargs: dict) -> bool:
    returned = _generate_setting(parts, kwargs, "return_dict_in_generate", False)
    implementation = _generate_setting(parts, kwargs, "cache_implementation")
    assisted = kwargs.get("assistant_model") is not None or any(
        _generate_setting(parts, kwargs, name) for name in ("prompt_lookup_num_tokens", "assistant_early_exit"))
    return (
        _generate_setting(parts, kwargs, "use_cache", True) is not False
        and _given_cache(kwargs) is None
        and not returned
        and not assisted  # candidate verification crops the cache by token counts (transformers 5.0: wrong tokens)
        and implementation in (None, "dynamic")
        and layer_prefix.sliding_window_of(parts.base_model) is None
    )


def _fill_cache_with_deep_prompt(parts: PromptParts, model_inputs: dict, rows: torch.Tensor) -> None:
    cache = _given_cache(model_inputs)
    if cache is None:  # some releases (5.0) create it in the first forward; generate keeps the one returned
        from transformers import DynamicCache

        argument = shared_prefix.cache_argument(parts.model_class or type(parts.base_model))
        cache = model_inputs[argument] = DynamicCache(config=parts.base_model.config)
    if not hasattr(cache, "update"):
        raise RuntimeError(f"generate's first step has a {type(cache).__name__} as its cache, which cannot take the deep "
                           "prompt's keys and values; this should not happen with use_cache=True.")  # fmt: skip
    fed = _fed(model_inputs)
    rows = rows.repeat_interleave(fed.shape[0] // rows.shape[0], dim=0)  # beams / returned sequences
    modules = [parts.inner_model.get_submodule(slot.name) for slot in parts.encoder.slots]
    for index, (module, (keys, values)) in enumerate(zip(modules, layer_prefix.split(rows, parts.encoder.slots))):
        cache.update(keys.contiguous(), values.contiguous(), getattr(module, "layer_idx", index))


def refuse_static_cache(parts: PromptParts, model_inputs: dict) -> None:
    """A prompt fed as input rows needs P more cache slots than generate gives a static cache (sized for
    the input and the new tokens); say so before the cache overflows or its 4D mask misses the prompt."""
    cache = _given_cache(model_inputs)
    if cache is not None and getattr(cache, "is_compileable", False):
        raise ValueError(
            f"A soft prompt of {parts.num_virtual_tokens} virtual tokens in front of the input does not fit a static "
            f"cache ({type(cache).__name__}, e.g. generate(cache_implementation='static')): generate sizes it for the "
            "input and the new tokens only. Leave cache_implementation unset (the default dynamic cache), ask generate "
            "for it by cache_implementation='static' (the prompt then runs as the keys and values it leaves in every "
            "layer), or use DeepPromptTuningConfig, whose prompt is keys and values in every layer."
        )


def _transformers_model(parts: PromptParts) -> torch.nn.Module:
    return parts.inner_model if parts.inner_model is not None else parts.base_model


def _fed(inputs: dict) -> torch.Tensor:
    """What a step feeds the model: its input_ids, else its inputs_embeds ([B, L, ...])."""
    ids = inputs.get("input_ids")
    return inputs["inputs_embeds"] if ids is None else ids


def _positions_after_prompt(inputs: dict, num_virtual_tokens: int, batch_size: int, length: int, device) -> torch.Tensor:
    """Positions of `length` fed tokens after the prompt and what the cache holds (the input only: a deep
    prompt's layer path keeps the prompt out of the cache)."""
    start = num_virtual_tokens + _cache_length(inputs)
    return torch.arange(start, start + length, device=device).expand(batch_size, -1)


def _given_cache(inputs: dict):
    """The cache a generate call or step carries: `cache` (its name from transformers 5.24 on), else `past_key_values`."""
    cache = inputs.get("cache")
    return cache if cache is not None else inputs.get("past_key_values")


def _cache_length(kwargs: dict) -> int:
    cache = _given_cache(kwargs)
    if cache is None:
        return 0
    if isinstance(cache, (tuple, list)):
        return cache[0][0].shape[-2] if len(cache) else 0
    return int(cache.get_seq_length())


def _with_prompt_mask(attention_mask: torch.Tensor | None, num_virtual_tokens: int) -> torch.Tensor | None:
    """[B, L] mask -> [B, P + L] mask whose first P columns (the prompt) are ones."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise NotImplementedError(
            "A soft prompt in front of the input needs a 2D attention mask [batch, sequence], to which it adds its own "
            f"columns; got {type(attention_mask).__name__} with shape {getattr(attention_mask, 'shape', None)}. Pass the "
            "2D mask (and no static/compiled cache, whose steps make 4D masks), or use DeepPromptTuningConfig, whose "
            "layers take 4D masks."
        )
    ones = attention_mask.new_ones(attention_mask.shape[0], num_virtual_tokens)
    return torch.cat((ones, attention_mask), dim=1)


def _positions_from_mask(full_mask: torch.Tensor) -> torch.Tensor:
    positions = full_mask.long().cumsum(-1) - 1
    return positions.masked_fill(full_mask == 0, 0)


def _padding_goes_first(parts: PromptParts, attention_mask) -> bool:
    """Whether a call's leading padding (each row's slots before its first real token) moves in front of the prompt: a
    sliding attention window counts slots, so padding between the prompt and the tokens would push the prompt out of
    the window earlier than in the same row alone, chunked attention (Llama 4) counts its chunks from a row's first
    real slot, which padding after the prompt would move, and a recurrent layer's state (hybrids: Jamba, Qwen3-Next,
    LFM2) decays over such padding. Only for input-row prompts on such models, and only for 2D masks where some row
    starts with padding. Padding after a real token stays where the caller put it, as the base model reads it: right
    padding changes nothing in a forward, and a cached generate's new tokens come after it at every step (found
    2026-12-07: a row padded on both sides, as trl's GRPO and RLOO batch a left-padded prompt and a right-padded
    completion, was left as given, 0.27 off the row alone; a review then found a first version that moved all padding
    reordering a right-padded generate's later steps against their cache)."""
    if _is_deep(parts) or not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or attention_mask.shape[1] < 2:
        return False
    return _starts_with_padding(attention_mask) and layer_prefix.counts_slots(parts.base_model)


def _starts_with_padding(attention_mask: torch.Tensor) -> bool:
    """Whether some row of a 2D mask has padding before a real token that no real token precedes (checked first: most
    calls have no padding, and the window's check walks every module)."""
    mask = attention_mask.long()
    return bool(((mask[:, 0] == 0) & (mask.amax(dim=1) > 0)).any())


def _kept_positions(keep, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a caller's `logits_to_keep` (its last `keep` positions, or a tensor of positions) on a call run in `order`:
    where that call holds each of them [B, K], and their union (sorted), which the call keeps (found 2026-12-07: a
    tensor of positions was read in the call's order, so positions in front of the tokens gave other slots' logits)."""
    length = order.shape[1]
    if isinstance(keep, torch.Tensor):  # (1-D positions; negative ones count from the end, as in indexing)
        wanted = keep.to(order.device).long()
        wanted = torch.where(wanted < 0, wanted + length, wanted)
    else:
        wanted = torch.arange(max(length - int(keep), 0), length, device=order.device)
    needed = torch.argsort(order, dim=1)[:, wanted]
    return needed, torch.unique(needed)


def _keeps_some(keep) -> bool:
    return keep.numel() > 0 if isinstance(keep, torch.Tensor) else bool(keep)


def _selected_per_row(keep: torch.Tensor) -> bool:
    """A `logits_to_keep` transformers applies per row: positions [B, K], or a boolean mask [B, T]."""
    return keep.dim() > 1 or keep.dtype == torch.bool


def _caller_selection(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The caller's per-row `logits_to_keep` applied to logits in the caller's layout, as transformers applies it."""
    if keep.dtype == torch.bool:
        return logits[keep.to(logits.device)]
    return _in_order(logits, keep.to(logits.device).long())


def _padding_first_order(full_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] indices that put each row's padding first, then its real slots in order (a classifier reading each row's
    last slot)."""
    return torch.sort(full_mask.long(), dim=1, stable=True).indices


def _leading_padding_first_order(full_mask: torch.Tensor, num_virtual_tokens: int) -> torch.Tensor:
    """[B, P + L] indices that put each row's leading padding (after the prompt's P slots, before the row's first real
    token) first, then the prompt and the rest in order (`_padding_goes_first`)."""
    seen = full_mask[:, num_virtual_tokens:].long().cummax(dim=1).values  # 0 until the row's first real token
    leading = torch.cat((torch.ones_like(full_mask[:, :num_virtual_tokens]).long(), seen), dim=1)
    return torch.sort(leading, dim=1, stable=True).indices


def _in_order(tensor: torch.Tensor, order: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """`tensor` with its positions along `dim` taken in `order` [B, T]."""
    shape = [1] * tensor.dim()
    shape[0], shape[dim] = order.shape
    index = order.reshape(shape).expand(*tensor.shape[:dim], order.shape[1], *tensor.shape[dim + 1 :])
    return torch.gather(tensor, dim, index)


def _restore_order(output, order: torch.Tensor, kept=None):
    """A model output computed in `order` with its positions back where the caller put them (prompt first); `kept`:
    `_kept_positions` of the caller's `logits_to_keep`, whose union the call kept. Per-token fields other models' heads
    add (trl's fused head: `log_probs`, `entropy`, ... of [B, T - 1], each scoring the next position's label) move too."""
    back = torch.argsort(order, dim=1)
    length, batch = order.shape[1], order.shape[0]
    if kept is not None and getattr(output, "logits", None) is not None:
        needed, union = kept
        output.logits = _in_order(output.logits, torch.searchsorted(union, needed))
    elif getattr(output, "logits", None) is not None and output.logits.shape[1] == length:
        output.logits = _in_order(output.logits, back)
    if getattr(output, "hidden_states", None) is not None:
        output.hidden_states = tuple(_in_order(h, back) if h.shape[1] == length else h for h in output.hidden_states)
    if getattr(output, "attentions", None):
        output.attentions = tuple(_in_order(_in_order(a, back, 2), back, 3) if a.shape[-1] == length else a for a in output.attentions)
    # the label at the caller's position i + 1 is scored where the call held it, one slot before (a padding slot run
    # first has no slot before it: it scores nothing, as its -100 label)
    scoring = (back[:, 1:] - 1).clamp(min=0)
    for name, value in list(output.items()):
        if name in ("logits", "hidden_states", "attentions", "loss") or not isinstance(value, torch.Tensor) or value.dim() < 2 \
                or value.shape[0] != batch:  # fmt: skip
            continue
        if value.shape[1] == length:
            output[name] = _in_order(value, back)
        elif value.shape[1] == length - 1:
            run_first = (back[:, 1:] == 0).reshape(batch, length - 1, *[1] * (value.dim() - 2))
            output[name] = _in_order(value, scoring).masked_fill(run_first, 0)
    return output


def generation_output(parts: PromptParts, kwargs: dict, output):
    """generate's `output` with its hidden states and attentions in the caller's layout (prompt first), as forward gives
    them, where the call ran each row's padding first (`_padding_goes_first`; found 2026-12-07 by a probe: they came back
    as [padding; prompt; tokens]). The first step's positions move back; a later step's attention over them too, where
    it covers every position (a sliding window's layer past its window keeps fewer, left as they are). The cache generate
    returns keeps the order it ran in."""
    hidden, attentions = getattr(output, "hidden_states", None), getattr(output, "attentions", None)
    mask = kwargs.get("attention_mask")
    if not (hidden or attentions) or _is_deep(parts) or not _padding_goes_first(parts, mask):
        return output
    back = torch.argsort(_leading_padding_first_order(_with_prompt_mask(mask, parts.num_virtual_tokens), parts.num_virtual_tokens), dim=1)
    length = back.shape[1]
    if hidden:
        output.hidden_states = tuple(tuple(_in_order(h, _for_rows_of(back, h)) if h.shape[1] == length else h for h in step) for step in hidden)
    if attentions:
        output.attentions = tuple(tuple(_keys_in_order(a, _for_rows_of(back, a), length, index) for a in step)
                                  for index, step in enumerate(attentions))  # fmt: skip
    return output


def _for_rows_of(order: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`order` [B, T] for each row of a generate output's `tensor`: beams and returned sequences repeat each input row."""
    return order.repeat_interleave(tensor.shape[0] // order.shape[0], dim=0).to(tensor.device)


def _keys_in_order(attention: torch.Tensor, back: torch.Tensor, length: int, step: int) -> torch.Tensor:
    """One generate step's attention [N, heads, queries, keys] with the first `length` positions put back by `back`."""
    if attention.shape[-1] != length + step:  # a sliding window's layer that no longer holds every position
        return attention
    if attention.shape[2] == length:  # the first step's queries are those positions too
        attention = _in_order(attention, back, 2)
    return torch.cat((_in_order(attention[..., :length], back, 3), attention[..., length:]), dim=-1)


def _shifted_positions(position_ids, full_mask, num_virtual_tokens, new_length, injecting, first: int = 0):
    """Position ids for the tokens fed in this call (prompt rows included when injecting, numbered from `first`: the
    first row of the position table a token uses, 2 in RoBERTa's, whose rows 0-1 serve padding)."""
    if position_ids is not None:
        shifted = position_ids + num_virtual_tokens
        if not injecting:
            return shifted
        prompt_positions = torch.arange(first, first + num_virtual_tokens, device=shifted.device).expand(shifted.shape[0], -1)
        return torch.cat((prompt_positions, shifted), dim=1)
    if full_mask is not None:
        return _positions_from_mask(full_mask)[:, -new_length:]
    return None  # the model counts positions from its cache length, which includes the prompt


def _refuse_packed_rows(position_ids, attention_mask) -> None:
    """Rows packing several sequences (positions restarting within a row, no mask: trl's packing, or its padding_free
    batches) cannot take a prompt in front: only each row's first sequence would read it. (trl's
    packing_strategy="wrapped" gives no position_ids: its rows cannot be told from one long sequence here.)"""
    if position_ids is None or attention_mask is not None or position_ids.shape[-1] < 2:
        return
    if bool((position_ids[..., 1:] < position_ids[..., :-1]).any()):
        raise ValueError("position_ids restart within a row (packed sequences, e.g. trl's SFTConfig(packing=True) or "
                         "padding_free=True), and a soft prompt goes in front of each row once: only its first sequence "
                         "would read the prompt. Train on padded rows (SFTConfig(packing=False, padding_free=False)), "
                         "or use a deep prompt (DeepPromptTuningConfig): its keys and values reach every packed sequence.")  # fmt: skip


def checked_position_ids(position_ids, reference: torch.Tensor):
    """User position ids with the input's shape [batch, length] (they are shifted past the prompt); one row [1, length]
    applies to every row, as transformers broadcasts it."""
    if position_ids is None:
        return None
    batch, length = reference.shape[:2]
    if tuple(position_ids.shape[-2:]) == (1, length) and batch != 1:
        position_ids = position_ids.expand(*position_ids.shape[:-2], batch, length)
    if tuple(position_ids.shape[-2:]) != (batch, length):
        raise ValueError(
            f"position_ids has shape {tuple(position_ids.shape)} but the input is {tuple(reference.shape[:2])} "
            "[batch, length] (or [1, length] for every row): give one position per input token (the prompt's positions are "
            "added in front)."
        )
    return position_ids


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


def _labels_as_in_the_rows_alone(labels: torch.Tensor, attention_mask) -> torch.Tensor:
    """A shallow prompt's labels whose left-padded rows have their first real token's label in column 0, which the
    prompt's last position predicts, as in the row alone; in place, transformers' shift pairs it with the padding
    position in front of it (found 2026-12-06: a padded row's loss was 7.96 where alone it was 7.68; plain PEFT alike).
    The labels scored stay as many (Trainer's `num_items_in_batch` counts them before the call). Rows whose padding has
    labels (not -100) are left as given; where the padding goes first (`_padding_goes_first`) the labels move with the
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
    if inputs_embeds is None:
        inputs_embeds = parts.input_embeddings(input_ids)
    position_ids = checked_position_ids(position_ids, inputs_embeds)
    given = position_ids is not None  # the caller's positions: any number, read by the table check
    num_virtual, new_length = parts.num_virtual_tokens, inputs_embeds.shape[1]
    if not _is_deep(parts):
        _refuse_a_cache_without_prompt_rows(parts, kwargs)
    injecting = _cache_length(kwargs) == 0
    if injecting and not _is_deep(parts):
        _refuse_packed_rows(position_ids, attention_mask)
    four_d = isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4  # a deep prompt's layers extend it
    full_mask = None if four_d and _is_deep(parts) else _with_prompt_mask(attention_mask, num_virtual)
    if _is_deep(parts):  # keys/values in every layer: the input goes in unchanged, its positions after the prompt
        if prompt_cache is not None:
            shared_prefix.refuse_prompt_cache_of_a_deep_prompt(parts.encoder)
        if _accepts(parts, "position_ids"):
            positions = _shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting=False)
            if positions is None:  # no mask, no positions
                positions = _positions_after_prompt(kwargs, num_virtual, inputs_embeds.shape[0], new_length, inputs_embeds.device)
            kwargs["position_ids"] = positions
        check_positions_fit(_transformers_model(parts), num_virtual, new_length, _cache_length(kwargs), kwargs.get("position_ids"), given)
        rows = embed_prompts(parts, inputs_embeds, attention_mask, task_ids)
        with layer_prompts(parts, rows):
            return parts.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels,
                                    **_given(output_attentions, output_hidden_states, return_dict), **kwargs)  # fmt: skip
    mode = "on" if prompt_cache is not None else parts.shared_prefix
    padding_first = _padding_goes_first(parts, attention_mask) and not four_d
    if padding_first:
        shared_prefix.refuse_on(mode, _PADDING_FIRST_REASON)
    context_labels = labels  # (an input-dependent prompt reads each row up to its first labelled token, as given)
    if injecting and labels is not None and not padding_first:
        labels = _labels_as_in_the_rows_alone(labels, attention_mask)
    if injecting and new_length > 0 and not padding_first and shared_prefix.use_shared_prefix(mode, parts, output_attentions, kwargs):
        hidden = shared_prefix.hidden_states_asked(parts.base_model, output_hidden_states)
        prefix, rows = shared_prefix.prefix_for(parts.base_model, parts.encoder, inputs_embeds.shape[0], task_ids,
                                                inputs_embeds.dtype, prompt_cache, shared_prefix.asks_hidden_states(hidden))  # fmt: skip
        positions = _shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting=False)
        check_positions_fit(_transformers_model(parts), num_virtual, new_length, num_virtual, positions, given)  # the prefix: P cached
        return shared_prefix.causal_lm_forward(parts.base_model, prefix, rows, inputs_embeds, full_mask, positions,
                                               labels, hidden, output_attentions, return_dict, kwargs)  # fmt: skip
    if injecting:
        prompts = embed_prompts(parts, inputs_embeds, attention_mask, task_ids, context_labels)
        inputs_embeds = torch.cat((prompts, inputs_embeds), dim=1)
        new_length += num_virtual
        if labels is not None:
            labels = torch.cat((labels.new_full((labels.shape[0], num_virtual), -100), labels), dim=1)
        if kwargs.get("token_type_ids") is not None:  # GPT-2's
            kwargs["token_type_ids"] = _types_with_prompt(kwargs["token_type_ids"], num_virtual)
    if _accepts(parts, "position_ids"):
        kwargs["position_ids"] = _shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting)
    elif position_ids is not None:
        raise ValueError(f"{parts.model_class.__name__}.forward takes no position_ids, but position_ids were given.")
    check_positions_fit(_transformers_model(parts), num_virtual, new_length, _cache_length(kwargs), kwargs.get("position_ids"), given)
    if not padding_first:
        return parts.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=full_mask,
            labels=labels,
            **_given(output_attentions, output_hidden_states, return_dict),
            **kwargs,
        )
    order = _leading_padding_first_order(full_mask, num_virtual)
    if injecting:  # the tokens fed now are prompt + input: all of them move (a continuation's tokens are the last ones)
        inputs_embeds = _in_order(inputs_embeds, order)
        labels = None if labels is None else _in_order(labels, order)
        for name in ("position_ids", "token_type_ids"):
            if kwargs.get(name) is not None:
                kwargs[name] = _in_order(kwargs[name], order)
    kept = per_row = None  # the caller's logits_to_keep names its positions: the call keeps where it holds them
    if injecting and _keeps_some(kwargs.get("logits_to_keep", 0)):
        if isinstance(kwargs["logits_to_keep"], torch.Tensor) and _selected_per_row(kwargs["logits_to_keep"]):
            per_row, kwargs["logits_to_keep"] = kwargs["logits_to_keep"], 0  # (found 2026-12-07 by a review: read as 1-D)
        else:
            kept = _kept_positions(kwargs["logits_to_keep"], order)
            kwargs["logits_to_keep"] = kept[1]
    switches = _given(output_attentions, output_hidden_states, return_dict)
    output = parts.base_model(inputs_embeds=inputs_embeds, attention_mask=_in_order(full_mask, order), labels=labels,
                              **{**switches, "return_dict": True}, **kwargs)  # fmt: skip
    if injecting:
        output = _restore_order(output, order, kept)
        if per_row is not None:
            output.logits = _caller_selection(output.logits, per_row)
    asked = switches.get("return_dict", getattr(_transformers_model(parts).config, "return_dict", True))
    return output if asked is not False else output.to_tuple()


def _given(output_attentions, output_hidden_states, return_dict) -> dict:
    """The output switches the caller set: one left None is not passed, so the model's config decides it (transformers
    reads an explicit None as off, and config.output_attentions=True was lost)."""
    switches = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states, "return_dict": return_dict}
    return {name: value for name, value in switches.items() if value is not None}


def generate_keywords(parts: PromptParts, args: tuple, kwargs: dict) -> dict:
    """A causal generate call's keywords as transformers takes them: one task id for every row given as a 0-d tensor
    becomes an int (transformers repeats tensor keywords along dim 0 for beams and returned sequences, which a 0-d
    tensor has not; an int stands for every row at any batch size, `check_task_ids`, which checks it here first); input
    ids given without a mask get the mask transformers infers for them (`_inferred_attention_mask`)."""
    task_ids = kwargs.get("task_ids")
    if isinstance(task_ids, torch.Tensor) and task_ids.dim() == 0:
        kwargs = {**kwargs, "task_ids": int(check_task_ids(task_ids, 1, parts.encoder.num_tasks)[0])}
    inferred = _inferred_attention_mask(parts, kwargs.get("input_ids", args[0] if args else None), kwargs)
    return kwargs if inferred is None else {**kwargs, "attention_mask": inferred}


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
    if _is_deep(parts):  # keys/values already: nothing to run once, at most a place in the cache
        if prompt_cache is not None:
            shared_prefix.refuse_prompt_cache_of_a_deep_prompt(parts.encoder)
        return DEEP_PROMPT_IN_CACHE if _deep_prompt_fits_cache(parts, kwargs) else None
    if kwargs.get("use_cache") is False:
        return None
    static = _static_cache_of(parts, kwargs)
    if static is not None:
        _refuse_a_cache_holding_prompt_rows(parts, kwargs, static)
        shared_prefix.refuse_on(mode, f"a static cache ({static}) has no room for the prompt's rows, so the prompt runs as "
                                      "the keys and values it leaves in every layer")  # fmt: skip
        return _shallow_prompt_in_layers(parts, kwargs, static)
    if _generate_setting(parts, kwargs, "output_hidden_states", False):
        # the first step would feed the input alone: its hidden states would lack the prompt positions
        shared_prefix.refuse_on(mode, "output_hidden_states=True in generate asks for the prompt positions' hidden states")
        return None
    attentions = _generate_setting(parts, kwargs, "output_attentions", False)
    if _padding_goes_first(parts, kwargs.get("attention_mask")):
        shared_prefix.refuse_on(mode, _PADDING_FIRST_REASON)
        return None
    if not shared_prefix.use_shared_prefix(mode, parts, attentions, kwargs):
        return None
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    reference = input_ids if input_ids is not None else kwargs.get("inputs_embeds")
    dtype = parts.input_embeddings.weight.dtype if hasattr(parts.input_embeddings, "weight") else torch.float32
    with torch.no_grad():
        return shared_prefix.prefix_for(parts.base_model, parts.encoder, reference.shape[0], kwargs.get("task_ids"), dtype, prompt_cache)


def _fill_generation_cache(parts: PromptParts, model_inputs: dict, prefix) -> bool:
    """Put the shared prompt's keys/values into generate's empty cache; False if there is none."""
    cache = _given_cache(model_inputs)
    if prefix is None or cache is None or isinstance(cache, (tuple, list)) or not hasattr(cache, "update"):
        return False
    prompt_cache, rows = prefix
    reference = model_inputs.get("input_ids")
    if reference is None:
        reference = model_inputs["inputs_embeds"]
    rows = rows.to(reference.device).repeat_interleave(reference.shape[0] // rows.shape[0])  # beams / samples
    prompt_cache.fill(cache, rows, _layers_running(_transformers_model(parts)))
    return True


def _layers_running(model) -> int | None:
    """The decoder layers `model` runs now (None: as many as it has). The draft of transformers' early-exit decoding
    (`generate(assistant_early_exit=k)`) sets the config's `num_hidden_layers` to k and has a cache of k layers."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", None)
    return layers if isinstance(layers, int) else None


def _shift_cache_position(model_inputs: dict, num_virtual_tokens: int, prompt_fed_now: bool) -> None:
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


def slice_past_the_cached_tokens(parts: PromptParts, args: tuple, kwargs: dict, prefix=None) -> dict:
    """Tell transformers' prepare_inputs_for_generation how many of a step's input tokens the cache holds.

    transformers slices the whole sequence it is given past the cache's length; a cache that holds a prompt fed
    as input rows has P more entries than tokens. Mid-generate the slice is one token either way, but a
    generate that starts from a returned cache with the whole sequence so far (transformers' "re-use the
    cache" pattern) would drop P tokens the cache lacks (from 5.4 on, `next_sequence_length`) or slice nothing
    (before, `cache_position`). A deep prompt's layer path keeps its prompt out of any cache a user sees."""
    cached = _cache_length(kwargs) - parts.num_virtual_tokens
    input_ids = args[0] if args else kwargs.get("input_ids")
    in_layers = _is_deep(parts) or isinstance(prefix, ShallowPromptInLayers)
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
    check_positions_fit(_transformers_model(parts), parts.num_virtual_tokens, _fed(model_inputs).shape[1], _cache_length(model_inputs),
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
    if _is_deep(parts) or isinstance(prefix, ShallowPromptInLayers):  # the prompt is in every layer (generation_scope) or in the cache; positions count it
        in_cache = prefix is DEEP_PROMPT_IN_CACHE
        if in_cache:  # masks count it too
            if _cache_length(model_inputs) == 0:
                _fill_cache_with_deep_prompt(parts, model_inputs, fixed_prompts)
            _shift_cache_position(model_inputs, num_virtual, prompt_fed_now=False)
            full_mask = _with_prompt_mask(model_inputs.get("attention_mask"), num_virtual)
            if full_mask is not None:
                model_inputs["attention_mask"] = full_mask
        if model_inputs.get("position_ids") is not None:
            model_inputs["position_ids"] = model_inputs["position_ids"] + num_virtual
        elif not in_cache and _accepts(parts, "position_ids"):  # else the model would count from a cache without the prompt
            fed = _fed(model_inputs)
            model_inputs["position_ids"] = _positions_after_prompt(model_inputs, num_virtual, fed.shape[0], fed.shape[1], fed.device)
        if not in_cache:
            layer_prefix.mark_step(_transformers_model(parts))
        if isinstance(prefix, ShallowPromptInLayers):
            _mark_cache_without_prompt_rows(model_inputs)
        return model_inputs
    injecting = _cache_length(model_inputs) == 0
    if injecting:
        refuse_static_cache(parts, model_inputs)
    filled = injecting and _fill_generation_cache(parts, model_inputs, prefix)
    _shift_cache_position(model_inputs, num_virtual, prompt_fed_now=injecting and not filled)
    if filled:
        full_mask = _with_prompt_mask(model_inputs.get("attention_mask"), num_virtual)
        if full_mask is not None:
            model_inputs["attention_mask"] = full_mask
        position_ids = model_inputs.get("position_ids")
        if position_ids is not None:
            model_inputs["position_ids"] = _shifted_positions(position_ids, full_mask, num_virtual, position_ids.shape[-1], False)
        return model_inputs
    user_mask = model_inputs.get("attention_mask")
    full_mask = _with_prompt_mask(user_mask, num_virtual)
    if full_mask is not None:
        model_inputs["attention_mask"] = full_mask
    position_ids = model_inputs.get("position_ids")
    if injecting:
        input_ids = model_inputs.get("input_ids")
        embeds = model_inputs.get("inputs_embeds") if input_ids is None else parts.input_embeddings(input_ids)
        if fixed_prompts is not None:  # computed once per generate call; beams/samples repeat rows
            prompts = fixed_prompts.to(embeds.dtype).repeat_interleave(embeds.shape[0] // fixed_prompts.shape[0], dim=0)
        else:
            prompts = embed_prompts(parts, embeds, user_mask, task_ids)
        model_inputs["inputs_embeds"] = torch.cat((prompts, embeds), dim=1)
        model_inputs["input_ids"] = None
        if model_inputs.get("token_type_ids") is not None:
            model_inputs["token_type_ids"] = _types_with_prompt(model_inputs["token_type_ids"], num_virtual)
    if position_ids is not None:
        new_length = position_ids.shape[-1] + (num_virtual if injecting else 0)
        model_inputs["position_ids"] = _shifted_positions(position_ids, full_mask, num_virtual, new_length, injecting)
    if _padding_goes_first(parts, user_mask):  # as in forward: the cache keeps this order for the whole call
        order = _leading_padding_first_order(full_mask, num_virtual)
        model_inputs["attention_mask"] = _in_order(full_mask, order)
        if injecting:
            if model_inputs.get("position_ids") is None and _accepts(parts, "position_ids"):
                model_inputs["position_ids"] = _positions_from_mask(full_mask)
            for name in ("inputs_embeds", "position_ids", "token_type_ids"):
                if model_inputs.get(name) is not None:
                    model_inputs[name] = _in_order(model_inputs[name], order)
    return model_inputs


def _encoder_inputs(parts: PromptParts, input_ids, attention_mask, inputs_embeds, task_ids):
    """(inputs_embeds with the prompt in front, extended attention mask) for an encoder input."""
    if inputs_embeds is None:
        inputs_embeds = parts.input_embeddings(input_ids)
    prompts = embed_prompts(parts, inputs_embeds, attention_mask, task_ids)
    return torch.cat((prompts, inputs_embeds), dim=1), _with_prompt_mask(attention_mask, parts.num_virtual_tokens)


def _seq2seq_encoder_inputs(parts: PromptParts, input_ids, attention_mask, inputs_embeds, task_ids):
    """`_encoder_inputs` of a seq2seq model, in the order its encoder runs them, and that order (None: the caller's).
    Where the encoder has no absolute position table (T5's relative buckets, T5Gemma's rotary positions and window),
    each row's leading padding goes in front of the prompt: those count distances over the padding, and a row alone has
    none between its prompt and tokens (found 2026-12-07 by a probe: T5Gemma 0.10 off the row alone, plain PEFT 0.05).
    Encoders with a table of absolute positions (BART, Pegasus, Marian, M2M100) keep the caller's order: a review found
    the reorder moving the prompt's positions there, mostly further from the row alone. Cross-attention reads the
    encoder's outputs with their mask in any order; `_encoder_outputs_in_order` puts them back for the caller."""
    inputs_embeds, full_mask = _encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or not _starts_with_padding(attention_mask) \
            or _has_absolute_positions(_transformers_model(parts)):  # fmt: skip
        return inputs_embeds, full_mask, None
    order = _leading_padding_first_order(full_mask, parts.num_virtual_tokens)
    return _in_order(inputs_embeds, order), _in_order(full_mask, order), order


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
        rows = _for_rows_of(back, tensor)
        for dim in dims:
            tensor = _in_order(tensor, rows, dim)
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


def check_prompt_fits(config, model, loading: bool) -> None:
    """`position_table.check_prompt_fits` for the prompt `config` builds: a deep prompt on an encoder leaves the input its
    positions, so only an initialisation that runs its rows through the model is limited (not a load, not "zero")."""
    if config.peft_type.name != "DEEP_PROMPT_TUNING" or layer_prefix.is_causal_decoder(model):
        check_prompt_fits_table(model, config.num_virtual_tokens)
    elif not loading and config.deep_init != "zero":
        check_prompt_fits_table(model, config.num_virtual_tokens, f"deep_init={config.deep_init.value!r}")


def model_task_type(model) -> str:
    """The task type a transformers model takes: SEQ_2_SEQ_LM (an encoder-decoder), CAUSAL_LM (a model that generates),
    else SEQ_CLS (an encoder; a masked LM too, which no task type here fits)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    return "CAUSAL_LM" if _generates(model) else "SEQ_CLS"


def _generates(model) -> bool:
    """Whether a model generates: transformers' GenerationMixin gives `generate` (transformers 5.0's BertForMaskedLM
    still has prepare_inputs_for_generation without it; `can_generate()` logs a warning for such classes)."""
    return isinstance(model, GenerationMixin)


def check_task_type(task_type: str, model) -> None:
    """Refuse a task type the model is not: each puts the prompt in front of another kind of model (a causal LM's
    input, an encoder-decoder's encoder input, a classifier's input), and the wrong one runs without an error. Also
    refuses a model with a recurrent state, where no task type's prompt runs right (`_refuse_a_recurrent_state`), and a
    task type the plugin does not support, set after the config was made (found 2026-12-07 by a probe)."""
    validate_task_type(task_type)
    generates = _generates(model)
    fits = model_task_type(model)
    needs = {"CAUSAL_LM": "a causal LM (AutoModelForCausalLM)", "SEQ_2_SEQ_LM": "an encoder-decoder model (AutoModelForSeq2SeqLM)",
             "SEQ_CLS": "a sequence classifier (AutoModelForSequenceClassification)"}  # fmt: skip
    if task_type in needs and task_type != fits and not (task_type == "SEQ_CLS" and not generates):
        raise ValueError(f"task_type={task_type!r} needs {needs[task_type]}; {type(model).__name__} is not one (it takes "
                         f"task_type={fits!r}, or load the model with the class named).")  # fmt: skip
    _refuse_a_recurrent_state(model)
    _refuse_inputs_read_from_ids(model)


def _refuse_inputs_read_from_ids(model) -> None:
    """A prompt goes in as `inputs_embeds` ([prompt; text]); models whose forward reads more from `input_ids` than their
    embedding rows (and a factor, `ids_embedding.py`) are refused, naming what (found 2026-12-07 by a probe; plain PEFT
    runs them without a word): Gemma 3n looks per-layer inputs up from the ids (1.73 off on a logit scale of 4.4, where
    its altup scales are trained), and ESM with `token_dropout=True` rescales each row by its share of mask tokens."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "model_type", None) in ("gemma3n", "gemma3n_text") or getattr(config, "model_type", None) == "gemma3n":
        raise ValueError(f"{type(model).__name__} (Gemma 3n) also reads per-layer inputs looked up from the input ids, which a "
                         "soft prompt's rows have none of and which its text, given as inputs_embeds beside them, loses: "
                         "soft prompts are not supported there. Use LoRA.")  # fmt: skip
    if getattr(config, "model_type", None) == "esm" and getattr(config, "token_dropout", False):
        raise ValueError(f"{type(model).__name__} has token_dropout=True: its forward rescales each row's embeddings by its "
                         "share of mask tokens, read from input_ids, which the text given as inputs_embeds beside a prompt "
                         "skips. Load the model with token_dropout=False (a model trained with it then sees its text "
                         "scaled otherwise), or use LoRA.")  # fmt: skip


def _refuse_a_recurrent_state(model) -> None:
    """Mamba-style models (their forward takes `cache_params`) carry a state along the sequence instead of attending:
    left padding after the prompt decays its state, and generate's cached steps do not continue from a prompt fed as
    input rows (plain PEFT's prompt tuning alike). Hybrids (attention beside state-space, linear-attention or
    convolution layers) run where transformers keeps their state in its `DynamicCache` (left padding then goes in front
    of the prompt: `layer_prefix.counts_slots`); a cache class of their own (transformers 5.0's hybrids, MiniMax) is
    refused: neither shared-prefix generation nor a deep prompt's cache prefix reaches it (found 2026-12-06: cached and
    uncached generate apart, or failing, on Jamba, Bamba, Falcon-H1, Qwen3-Next, LFM2 and MiniMax)."""
    parameters = inspect.signature(model.forward).parameters
    if "cache_params" in parameters:
        raise ValueError(f"{type(model).__name__} keeps a recurrent state (cache_params) instead of attention: soft prompts "
                         "are not supported there (left-padded rows and cached generate would be wrong, as they are for "
                         "plain PEFT's prompt tuning). Use LoRA on such models.")  # fmt: skip
    recurrent = layer_prefix.recurrent_layers_of(model)
    if recurrent is None:
        return
    if not getattr(type(model), "_supports_default_dynamic_cache", lambda: True)():
        kept = "in a cache class of its own"
    elif hasattr(model, "prepare_inputs_for_generation") and "past_key_values" not in parameters:
        kept = "in its layers (its forward takes no past_key_values)"
    else:
        return
    import transformers

    raise ValueError(f"{type(model).__name__} has layers that carry a state along the sequence ({recurrent}) and, in "
                     f"transformers {transformers.__version__}, keeps it {kept}, which a prompt's cached generation cannot "
                     "reach: soft prompts are not supported there. Use LoRA, or a transformers release where the model "
                     "keeps that state in DynamicCache (in transformers 5.23 Jamba, Bamba, Qwen3-Next, LFM2 and other "
                     "hybrids do, and soft prompts run on them).")  # fmt: skip


def seq2seq_forward(
    parts: PromptParts, input_ids=None, attention_mask=None, inputs_embeds=None, task_ids=None, **kwargs
):
    """Encoder-decoder forward with the prompt in front of the encoder input.

    With `encoder_outputs` given (from an earlier call, so they already hold the prompt), the input is not read
    again; the attention mask may be the input's (the prompt's columns are added) or already cover the prompt.
    """
    refuse_training_nothing(parts, kwargs)
    encoded = kwargs.get("encoder_outputs")
    if _is_deep(parts):  # encoder and decoder self-attention read the prompt; the input is unchanged
        with layer_prompts(parts, _deep_rows(parts, input_ids, inputs_embeds, task_ids, encoded)):
            return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    if encoded is not None:
        attention_mask = _mask_for_encoder_outputs(attention_mask, encoded, parts.num_virtual_tokens)
        return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(_transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)  # BART: a learned table
    return _encoder_call(parts.base_model, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, **kwargs},
                         _transformers_model(parts).config)  # fmt: skip


def seq2seq_encode(parts: PromptParts, encoder, input_ids=None, attention_mask=None, inputs_embeds=None, task_ids=None, **kwargs):
    """`encoder` (the base model's) run with the prompt, as `seq2seq_forward` runs it: `get_encoder()`'s call."""
    if _is_deep(parts):
        with layer_prompts(parts, _deep_rows(parts, input_ids, inputs_embeds, task_ids)):
            return encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(_transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)
    return _encoder_call(encoder, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, **kwargs},
                         _transformers_model(parts).config, encoder_only=True)  # fmt: skip


def _mask_for_encoder_outputs(attention_mask, encoded, num_virtual_tokens: int):
    """The mask the decoder's cross-attention needs over given encoder outputs (prompt + input positions)."""
    if attention_mask is None:
        return None
    positions = encoded[0].shape[1]
    if attention_mask.shape[-1] == positions:
        return attention_mask
    if attention_mask.shape[-1] + num_virtual_tokens == positions:
        return _with_prompt_mask(attention_mask, num_virtual_tokens)
    raise ValueError(
        f"attention_mask has {attention_mask.shape[-1]} columns; encoder_outputs hold {positions} positions (a prompt of "
        f"{num_virtual_tokens} in front of the input): give the input's mask ({positions - num_virtual_tokens} columns) "
        f"or one covering the prompt too ({positions})."
    )


def _deep_rows(parts: PromptParts, input_ids, inputs_embeds, task_ids, encoded=None) -> torch.Tensor:
    """A deep prompt's rows [B, P, F] for this batch (a deep prompt does not read the input)."""
    reference = next((x for x in (input_ids, inputs_embeds, None if encoded is None else encoded[0]) if x is not None), None)
    if reference is None:
        raise ValueError("A deep prompt needs input_ids, inputs_embeds or encoder_outputs to know the batch size; got none.")
    return parts.encoder(reference.shape[0], task_ids=task_ids)


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
    if _is_deep(parts):
        with layer_prompts(parts, _deep_rows(parts, input_ids, inputs_embeds, task_ids)):
            return parts.base_model.generate(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    if kwargs.get("assistant_model") is not None:
        raise ValueError("generate with assistant_model and a shallow prompt on a seq2seq model: the prompt enters as "
                         "the encoder's inputs_embeds, which transformers hands to the assistant beside its input_ids, "
                         "and the assistant refuses both. A deep prompt (DeepPromptTuningConfig) keeps the input as "
                         "input_ids and works as the main model of assisted decoding; else generate without assistant_model.")  # fmt: skip
    inputs_embeds, attention_mask, order = _seq2seq_encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    check_positions_fit(_transformers_model(parts), parts.num_virtual_tokens, inputs_embeds.shape[1], decoding=False)
    return _encoder_call(parts.base_model.generate, order, {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, **kwargs},
                         _transformers_model(parts).config, generating=True)  # fmt: skip


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
    if _is_deep(parts):  # every layer reads the prompt; the input keeps its tokens and types
        if last_token and _accepts(parts, "position_ids"):  # a decoder: positions after the prompt
            num_virtual, length = parts.num_virtual_tokens, reference.shape[1]
            full_mask = None if position_ids is not None else _with_prompt_mask(attention_mask, num_virtual)
            position_ids = _shifted_positions(position_ids, full_mask, num_virtual, length, False)
            if position_ids is None:  # no mask, no positions
                position_ids = _positions_after_prompt({}, num_virtual, batch_size, length, reference.device)
            check_positions_fit(_transformers_model(parts), num_virtual, length, 0, position_ids, given, decoding=False)
        rows = _deep_rows(parts, input_ids, inputs_embeds, task_ids)
        if decoder and input_ids is None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
            # given embeddings, the classifier reads each row's last position (it finds the last real token from
            # input_ids only): right-padded rows go padding first, their positions with them (found 2026-12-06: they
            # were 0.13-0.25 off the rows alone; the shallow path's `_last_token_classifier_call` does the same)
            order = _padding_first_order(attention_mask)
            inputs_embeds, attention_mask = _in_order(inputs_embeds, order), _in_order(attention_mask, order)
            position_ids = None if position_ids is None else _in_order(position_ids, order)
            token_type_ids = None if token_type_ids is None else _in_order(token_type_ids, order)
        with layer_prompts(parts, rows):
            return parts.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                    token_type_ids=token_type_ids, position_ids=position_ids, **kwargs)  # fmt: skip
    num_virtual = parts.num_virtual_tokens
    if last_token and attention_mask is None and input_ids is not None:
        attention_mask = _up_to_the_last_real_token(_transformers_model(parts), input_ids)
        decoder = attention_mask is not None
    inputs_embeds, attention_mask = _encoder_inputs(parts, input_ids, attention_mask, inputs_embeds, task_ids)
    if token_type_ids is not None:
        kwargs["token_type_ids"] = _types_with_prompt(token_type_ids, num_virtual)
    if position_ids is not None:
        first = (position_limit(_transformers_model(parts)) or (0, "", 0))[2]  # (found 2026-12-07 by a review: RoBERTa's
        # prompt sat at rows 0..P-1, row 1 its padding row, 0.009 off the prompt without given ids)
        kwargs["position_ids"] = _shifted_positions(position_ids, None, num_virtual, None, injecting=True, first=first)
    positions = kwargs.get("position_ids")
    if positions is None and decoder:  # the last-token call counts positions from the mask
        positions = _positions_from_mask(attention_mask)
    check_positions_fit(_transformers_model(parts), num_virtual, inputs_embeds.shape[1], 0, positions, given, decoding=False)
    if decoder:
        return _last_token_classifier_call(parts, inputs_embeds, attention_mask, kwargs)
    return parts.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)


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


def _types_with_prompt(token_type_ids: torch.Tensor, num_virtual: int) -> torch.Tensor:
    """The input's token types with type 0 for the P prompt positions in front."""
    return torch.cat((token_type_ids.new_zeros(token_type_ids.shape[0], num_virtual), token_type_ids), dim=1)


def _classifies_from_the_last_token(parts: PromptParts) -> bool:
    """A classifier on a causal decoder (GPT-2, Llama, ...): it reads each row's last non-pad token,
    which it finds from input_ids, so with a prompt (inputs_embeds) it would read the last position. XLNet's reads the
    token its sequence summary names ("last" by default; found 2026-12-07 by a review: "first" was reordered too)."""
    model = _transformers_model(parts)
    summary = getattr(model, "sequence_summary", None)  # (GPT-2's config has a summary_type too, for another head)
    return layer_prefix.is_causal_decoder(model) and getattr(summary, "summary_type", "last") == "last"


def _last_token_classifier_call(parts: PromptParts, inputs_embeds, full_mask, kwargs):
    """Call a last-token classifier so that each row's last position is its last real token: rows
    with padding at the end are reordered (padding first, then the prompt and the tokens in order;
    the mask and the positions, counted from the mask as in an unpadded row, go with them). A model that takes
    no position_ids (Falcon's classifier) counts positions over the padding, and a sliding window, chunked attention
    or a recurrent layer counts slots (`layer_prefix.counts_slots`): left-padded rows are reordered there too, so that
    prompt and tokens stay next to each other."""
    takes_positions = _accepts(parts, "position_ids")
    if takes_positions:
        kwargs.setdefault("position_ids", _positions_from_mask(full_mask))
    if bool(full_mask.all()) or (takes_positions and bool(full_mask[:, -1].all()) and not layer_prefix.counts_slots(parts.base_model)):
        return parts.base_model(inputs_embeds=inputs_embeds, attention_mask=full_mask, **kwargs)
    order = _padding_first_order(full_mask)
    for name in ("position_ids", "token_type_ids"):
        if kwargs.get(name) is not None:
            kwargs[name] = _in_order(kwargs[name], order)
    return parts.base_model(inputs_embeds=_in_order(inputs_embeds, order), attention_mask=_in_order(full_mask, order), **kwargs)
