"""Attention masks and position ids with the prompt's P positions in front of the input, and how many positions a
call's cache already holds."""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import GenerationMixin

from .. import layer_prefix
from ..position_table import positions_in_a_row


def fed_tokens(inputs: dict) -> torch.Tensor:
    """What a step feeds the model: its input_ids, else its inputs_embeds ([B, L, ...])."""
    ids = inputs.get("input_ids")
    return inputs["inputs_embeds"] if ids is None else ids


def generate_counts_from(model, first: int) -> int:
    """Where the position ids a generate step hands `model` start: 0 (GenerationMixin counts the mask from 0), or
    `first` (`position_table.first_position`) where a `prepare_inputs_for_generation` of the model's numbers them from
    its input ids as its table does (Kosmos-2.5's under transformers 5.0, found 2026-12-08: a cached generate's later
    steps were numbered `first` rows too far, other tokens than the prompt fed by hand)."""
    if not first:
        return 0
    return first if any(_numbers_from_its_ids(type(module)) for module in model.modules()) else 0


@functools.lru_cache(maxsize=None)
def _numbers_from_its_ids(cls: type) -> bool:
    prepare = getattr(cls, "prepare_inputs_for_generation", None)
    if prepare is None or prepare is GenerationMixin.prepare_inputs_for_generation:
        return False
    try:
        return "create_position_ids_from_input_ids(" in inspect.getsource(prepare)
    except (OSError, TypeError):
        return False


def positions_after_prompt(inputs: dict, num_virtual_tokens: int, batch_size: int, length: int, device, first: int = 0) -> torch.Tensor:
    """Positions of `length` fed tokens after the prompt and what the cache holds (the input only: a deep
    prompt's layer path keeps the prompt out of the cache), numbered from `first` (`position_table.first_position`)."""
    start = first + num_virtual_tokens + cache_length(inputs)
    return positions_in_a_row(start, length, batch_size, device)


def given_cache(inputs: dict):
    """The cache a generate call or step carries: `cache` (its name from transformers 5.24 on), else `past_key_values`."""
    cache = inputs.get("cache")
    return cache if cache is not None else inputs.get("past_key_values")


def cache_length(kwargs: dict) -> int:
    cache = given_cache(kwargs)
    if cache is None:
        return 0
    if isinstance(cache, (tuple, list)):
        return cache[0][0].shape[-2] if len(cache) else 0
    return int(cache.get_seq_length())


def with_prompt_mask(attention_mask: torch.Tensor | None, num_virtual_tokens: int) -> torch.Tensor | None:
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


def positions_from_mask(full_mask: torch.Tensor) -> torch.Tensor:
    positions = full_mask.long().cumsum(-1) - 1
    return positions.masked_fill(full_mask == 0, 0)


def shifted_positions(position_ids, full_mask, num_virtual_tokens, new_length, injecting, first: int = 0):
    """Position ids for the tokens fed in this call (prompt rows included when injecting, numbered from `first`: the
    first row of the position table a token uses, 2 in RoBERTa's, whose rows 0-1 serve padding; the mask's count
    too). Given ids [B, L], or [A, B, L] with one row per axis (`multi_axis_positions`), move past the prompt on every
    axis."""
    if position_ids is not None:
        shifted = position_ids + num_virtual_tokens
        if not injecting:
            return shifted
        prompt_positions = torch.arange(first, first + num_virtual_tokens, device=shifted.device).expand(*shifted.shape[:-1], -1)
        return torch.cat((prompt_positions.to(shifted.dtype), shifted), dim=-1)
    if full_mask is not None:
        return positions_from_mask(full_mask)[:, -new_length:] + first
    return None  # the model counts positions from its cache length, which includes the prompt


def refuse_packed_rows(position_ids, attention_mask) -> None:
    """Rows packing several sequences (positions restarting within a row, no mask: trl's packing, or its padding_free
    batches) cannot take a prompt in front: only each row's first sequence would read it. (trl's
    packing_strategy="wrapped" gives no position_ids: its rows cannot be told from one long sequence here.)"""
    if position_ids is None or attention_mask is not None or position_ids.shape[-1] < 2:
        return
    text_positions = position_ids[0] if position_ids.dim() > 2 else position_ids  # (multi-axis: the text axis, in order)
    if bool((text_positions[..., 1:] < text_positions[..., :-1]).any()):
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


def multi_axis_positions(model, input_ids, attention_mask, kwargs: dict, cached_prompt_rows: int):
    """The positions [A, B, L] (or [B, L]) a vision-language model numbers the call's tokens at, as the caller would
    give them (the prompt not counted), where the model computes them on several axes from its input ids (Qwen2-VL's
    M-RoPE: an image's tokens by time, height and width, the text after it past them), which its forward does only
    from input_ids, not beside the inputs_embeds a prompt gives it (found 2026-12-07 by a probe: every token ran on one
    axis, 7.0 off on a logit scale of 6.7; plain PEFT alike). A first call (empty cache) with an image or video asks
    the model's own `get_rope_index`, with the call's arguments it takes, and keeps, on the model, each row's offset
    for the text after: its next position less its real tokens (transformers 5.0's `rope_deltas` counts the padding
    too; found by a review); a first call without one clears it. A call continuing a cache (a decoding loop of forward
    calls) numbers its tokens by the mask, past that offset (found the same day: 5.9 off generate's second step;
    without a mask, by the cache's length less the `cached_prompt_rows` it holds). Text alone without a mask is
    numbered 0, 1, ... (transformers 5.0's Qwen2-VL, given no positions, asks input_ids for them). None where the
    model has no such positions, or the mask numbers them."""
    owner = layer_prefix.rope_index_owner(model)
    if owner is None:
        return None
    if cache_length(kwargs) > 0:
        offset = getattr(owner, _TEXT_OFFSET, None)
        if offset is None or input_ids is None:
            return None
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            positions = positions_from_mask(attention_mask)[:, -input_ids.shape[1]:]
        else:
            start = cache_length(kwargs) - cached_prompt_rows
            positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
        return positions + offset.to(positions.device).repeat_interleave(positions.shape[0] // offset.shape[0], dim=0)
    return first_call_positions(owner, model, input_ids, attention_mask, kwargs)


def first_call_positions(owner, model, input_ids, attention_mask, kwargs: dict):
    """`multi_axis_positions` of a first call (its cache empty), which keeps the text offset on `owner` (the module
    with `get_rope_index`); generate calls it for that too, so that a forward continuing the cache generate returns
    numbers its tokens as generate's next step would (found 2026-12-07 in the last read: 5.0 off)."""
    if input_ids is None or not any(value is not None for name, value in kwargs.items() if name.endswith("_grid_thw")):
        setattr(owner, _TEXT_OFFSET, None)  # (text alone: one axis, as the mask counts it)
        if input_ids is None or isinstance(attention_mask, torch.Tensor):
            return None
        return positions_in_a_row(0, input_ids.shape[1], input_ids.shape[0], input_ids.device)
    takes = inspect.signature(owner.get_rope_index).parameters
    given = {name: value for name, value in {**_as_rope_index_names(kwargs), "attention_mask": attention_mask}.items()
             if name in takes and name != "input_ids" and value is not None}  # fmt: skip
    needed = [name for name, parameter in takes.items() if parameter.default is inspect.Parameter.empty
              and parameter.kind is not inspect.Parameter.VAR_KEYWORD and name not in ("input_ids", *given)]  # fmt: skip
    if needed:  # (found 2026-12-07 by a review: a TypeError from inside, where the model's own error names them)
        raise ValueError(f"{type(model).__name__} numbers an image's or a video's tokens from {needed} beside the input "
                         "ids, which this call does not pass (its processor returns them with input_ids): pass them.")  # fmt: skip
    positions = owner.get_rope_index(input_ids, **given)[0]
    real = attention_mask.bool() if isinstance(attention_mask, torch.Tensor) else torch.ones_like(input_ids, dtype=torch.bool)
    axes = positions.reshape(-1, *positions.shape[-2:])  # [A, B, L]
    following = axes.masked_fill(~real.to(axes.device), -1).amax(dim=(0, 2)) + 1  # each row's next position
    setattr(owner, _TEXT_OFFSET, (following - real.sum(dim=1).to(following.device)).unsqueeze(1))
    return positions


def _as_rope_index_names(kwargs: dict) -> dict:
    """A call's arguments with those `get_rope_index` takes under other names than the forward's, as the forward hands
    them over: Qwen2.5-Omni's and Qwen3-Omni's thinkers number an audio's tokens by `audio_seqlens` (the forward's
    `audio_feature_lengths`, or its `feature_attention_mask` summed) and a video's by `second_per_grids` (the forward's
    `video_second_per_grid`) (found 2026-12-08 by a probe: None given for both, a TypeError from inside for every
    prompt on a call with an image and audio, or a video)."""
    lengths = kwargs.get("audio_feature_lengths")
    if lengths is None and isinstance(kwargs.get("feature_attention_mask"), torch.Tensor):
        lengths = kwargs["feature_attention_mask"].sum(dim=-1)
    return {"audio_seqlens": lengths, "second_per_grids": kwargs.get("video_second_per_grid"), **kwargs}


_TEXT_OFFSET = "_peft_softprompt_ext_text_offset"  # set by `multi_axis_positions` on the module that numbers positions
