"""Models that look positions up in a learned table (GPT-2, BERT, OPT, ...): a prompt in front moves the
input P positions on, so prompt + input (+ generated tokens) can run past the table, where the model
fails with a bare `IndexError: index out of range in self` inside torch (GPT-2) or an "expanded size"
error (BERT's token-type buffer). `check_positions_fit` names the numbers instead. Models with rotary
or relative positions (Llama, Gemma, T5) have no such table and are not limited here.
"""

from __future__ import annotations

import weakref

import torch

# module names under which transformers keeps a learned absolute-position table, and the config
# fields that give its usable length
_TABLE_NAMES = ("wpe", "position_embeddings", "embed_positions")
_LIMIT_FIELDS = ("n_positions", "max_position_embeddings")
_LIMITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (limit, field) or None, found once


def position_limit(model: torch.nn.Module) -> tuple[int, str] | None:
    """(positions a sequence may use, a description of where that number comes from) of a model with a learned
    position table, else None."""
    if model not in _LIMITS:
        _LIMITS[model] = _find_limit(model)
    return _LIMITS[model]


def _find_limit(model: torch.nn.Module) -> tuple[int, str] | None:
    config = getattr(model, "config", None)
    field = next((name for name in _LIMIT_FIELDS if isinstance(getattr(config, name, None), int)), None)
    if field is None:
        return None
    tables = [module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in _TABLE_NAMES and isinstance(module, torch.nn.Embedding)]
    if not tables:
        return None
    value = getattr(config, field)
    # RoBERTa-style tables number positions from padding_idx + 1 (OPT / BART offset theirs inside a longer table)
    skipped = max((table.padding_idx + 1 for table in tables if table.padding_idx is not None), default=0)
    if skipped:
        return value - skipped, f"config.{field}={value}, of which the first {skipped} are not used for tokens"
    return value, f"config.{field}"


def check_prompt_fits(config, model) -> None:
    """Refuse, when the prompt is built, a prompt that leaves no position of `model`'s table to any input token (found
    2026-12-07: a bare IndexError or size error, at build where the prompt runs through the model, else at the first
    forward). A deep prompt on an encoder leaves the input its positions, but its build runs the prompt's P rows."""
    limit, num_virtual_tokens = position_limit(model), config.num_virtual_tokens
    if limit is None or num_virtual_tokens < limit[0]:
        return
    table, source = limit
    raise ValueError(f"A soft prompt of num_virtual_tokens={num_virtual_tokens} moves every input token {num_virtual_tokens} "
                     f"positions on, but {type(model).__name__} has a table of {table} positions ({source}): no input token "
                     f"would fit. Use fewer than {table} virtual tokens (and leave room for the input).")


def check_positions_fit(model, num_virtual_tokens: int, fed_length: int, cache_length: int = 0, positions=None,
                        given: bool = False) -> None:  # fmt: skip
    """Raise ValueError if this call would look up a position past `model`'s table.

    `fed_length`: the tokens this call feeds (prompt rows included when they are fed); `cache_length`: the
    tokens the cache holds before it; `positions`: the position ids it passes, if any (else the model counts
    from its cache); `given`: they come from the caller's own position_ids, which may hold any number. The
    check reads a tensor only when positions are given or the call's shape comes near the table's end.
    """
    limit = position_limit(model)
    if limit is None or (not given and num_virtual_tokens + cache_length + fed_length <= limit[0]):  # no position can reach it
        return
    highest = int(positions.max()) if positions is not None else cache_length + fed_length - 1
    table, source = limit
    if highest < table:
        return
    raise ValueError(
        f"A soft prompt of {num_virtual_tokens} virtual tokens moves every input token {num_virtual_tokens} positions on: "
        f"this call needs position {highest}, but {type(model).__name__} has a table of {table} positions ({source}), "
        f"numbered 0..{table - 1}. Keep prompt + input + generated tokens within {table}: truncate inputs to at most "
        f"{table - num_virtual_tokens} tokens less the tokens to generate, or use fewer virtual tokens."
    )
