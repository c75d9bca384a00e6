"""Rows run with their leading padding in front of the prompt, and outputs put back in the caller's layout.

Where a model counts slots rather than positions (a sliding attention window, chunked attention, recurrent layers,
ALiBi distances counted in slots), padding between the prompt and the text would change what a row reads: such rows
run as [padding; prompt; text] (`padding_goes_first`), and logits, hidden states, attentions and per-token fields
come back as [prompt; padding; text], where the caller expects them."""

from __future__ import annotations

import torch

from .. import layer_prefix
from .._peft_compat import PromptParts
from .inputs import CROSS_ATTENTION_MASKS, is_deep, TOKEN_TYPES

PADDING_FIRST_REASON = ("left padding on a model with a sliding attention window, chunked attention, recurrent layers "
                        "(state-space, linear-attention, convolution) or ALiBi distances counted in slots (MPT) goes in front "
                        "of the prompt in each row, which a prompt computed once for all rows cannot sit behind")


def padding_goes_first(parts: PromptParts, attention_mask) -> bool:
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
    if is_deep(parts) or not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2 or attention_mask.shape[1] < 2:
        return False
    return starts_with_padding(attention_mask) and layer_prefix.counts_slots(parts.base_model)


def starts_with_padding(attention_mask: torch.Tensor) -> bool:
    """Whether some row of a 2D mask has padding before a real token that no real token precedes (checked first: most
    calls have no padding, and the window's check walks every module)."""
    mask = attention_mask.long()
    return bool(((mask[:, 0] == 0) & (mask.amax(dim=1) > 0)).any())


def kept_positions(keep, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def keeps_some(keep) -> bool:
    return keep.numel() > 0 if isinstance(keep, torch.Tensor) else bool(keep)


def selected_per_row(keep: torch.Tensor) -> bool:
    """A `logits_to_keep` transformers applies per row: positions [B, K], or a boolean mask [B, T]."""
    return keep.dim() > 1 or keep.dtype == torch.bool


def caller_selection(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The caller's per-row `logits_to_keep` applied to logits in the caller's layout, as transformers applies it."""
    if keep.dtype == torch.bool:
        return logits[keep.to(logits.device)]
    return in_order(logits, keep.to(logits.device).long())


def padding_first_order(full_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] indices that put each row's padding first, then its real slots in order (a classifier reading each row's
    last slot)."""
    return torch.sort(full_mask.long(), dim=1, stable=True).indices


def leading_padding_first_order(full_mask: torch.Tensor, num_virtual_tokens: int) -> torch.Tensor:
    """[B, P + L] indices that put each row's leading padding (after the prompt's P slots, before the row's first real
    token) first, then the prompt and the rest in order (`padding_goes_first`)."""
    seen = full_mask[:, num_virtual_tokens:].long().cummax(dim=1).values  # 0 until the row's first real token
    leading = torch.cat((torch.ones_like(full_mask[:, :num_virtual_tokens]).long(), seen), dim=1)
    return torch.sort(leading, dim=1, stable=True).indices


def in_order(tensor: torch.Tensor, order: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """`tensor` with its positions along `dim` taken in `order` [B, T]."""
    shape = [1] * tensor.dim()
    shape[0], shape[dim] = order.shape
    index = order.reshape(shape).expand(*tensor.shape[:dim], order.shape[1], *tensor.shape[dim + 1 :])
    return torch.gather(tensor, dim, index)


def per_token_inputs_in_order(kwargs: dict, order: torch.Tensor, names: tuple = (*TOKEN_TYPES, *CROSS_ATTENTION_MASKS)) -> None:
    """A call's per-token inputs besides embeddings and positions (`names`: token types, cross-attention masks), with
    the prompt's rows already in front, taken in `order` as the rows run (in place)."""
    for name in names:
        if kwargs.get(name) is not None:
            kwargs[name] = in_order(kwargs[name], order)


def positions_in_order(position_ids: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """`in_order` for position ids [B, T], or [A, B, T] with one row per axis (`positions.multi_axis_positions`)."""
    if position_ids.dim() <= 2:
        return in_order(position_ids, order)
    return torch.stack([positions_in_order(axis, order) for axis in position_ids])


def restore_order(output, order: torch.Tensor, kept=None):
    """A model output computed in `order` with its positions back where the caller put them (prompt first); `kept`:
    `kept_positions` of the caller's `logits_to_keep`, whose union the call kept. Per-token fields other models' heads
    add (trl's fused head: `log_probs`, `entropy`, ... of [B, T - 1], each scoring the next position's label) move too."""
    back = torch.argsort(order, dim=1)
    length, batch = order.shape[1], order.shape[0]
    if kept is not None and getattr(output, "logits", None) is not None:
        needed, union = kept
        output.logits = in_order(output.logits, torch.searchsorted(union, needed))
    elif getattr(output, "logits", None) is not None and output.logits.shape[1] == length:
        output.logits = in_order(output.logits, back)
    if getattr(output, "hidden_states", None) is not None:
        output.hidden_states = tuple(in_order(h, back) if h.shape[1] == length else h for h in output.hidden_states)
    if getattr(output, "attentions", None):
        output.attentions = tuple(in_order(in_order(a, back, 2), back, 3) if a.shape[-1] == length else a for a in output.attentions)
    # the label at the caller's position i + 1 is scored where the call held it, one slot before (a padding slot run
    # first has no slot before it: it scores nothing, as its -100 label)
    scoring = (back[:, 1:] - 1).clamp(min=0)
    for name, value in list(output.items()):
        if name in ("logits", "hidden_states", "attentions", "loss") or not isinstance(value, torch.Tensor) or value.dim() < 2 \
                or value.shape[0] != batch:  # fmt: skip
            continue
        if value.shape[1] == length:
            output[name] = in_order(value, back)
        elif value.shape[1] == length - 1:
            run_first = (back[:, 1:] == 0).reshape(batch, length - 1, *[1] * (value.dim() - 2))
            output[name] = in_order(value, scoring).masked_fill(run_first, 0)
    return output


def for_rows_of(order: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`order` [B, T] for each row of a generate output's `tensor`: beams and returned sequences repeat each input row."""
    return order.repeat_interleave(tensor.shape[0] // order.shape[0], dim=0).to(tensor.device)


def keys_in_order(attention: torch.Tensor, back: torch.Tensor, length: int, step: int) -> torch.Tensor:
    """One generate step's attention [N, heads, queries, keys] with the first `length` positions put back by `back`."""
    if attention.shape[-1] != length + step:  # a sliding window's layer that no longer holds every position
        return attention
    if attention.shape[2] == length:  # the first step's queries are those positions too
        attention = in_order(attention, back, 2)
    return torch.cat((in_order(attention[..., :length], back, 3), attention[..., length:]), dim=-1)
