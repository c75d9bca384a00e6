"""Models that look positions up in a learned table (GPT-2, BERT, OPT, ...): a prompt in front moves the
input P positions on, so prompt + input (+ generated tokens) can run past the table, where the model
fails with a bare `IndexError: index out of range in self` inside torch (GPT-2) or an "expanded size"
error (BERT's token-type buffer). `check_positions_fit` names the numbers instead. Models with rotary
or relative positions (Llama, Gemma, T5) have no such table and are not limited here.
"""

from __future__ import annotations

import torch

# module names under which transformers keeps a learned absolute-position table, and the config
# fields that give its usable length
_TABLE_NAMES = ("wpe", "position_embeddings", "embed_positions")
_LIMIT_FIELDS = ("n_positions", "max_position_embeddings")
# Found once per model and config value and kept on the model: a module-level weak dictionary of models was read inside
# torch.compile'd forwards, whose guards then named its entries by position and failed (IndexError) once another model
# was collected. Found again where the config's value changes (found 2026-12-07 by a probe: a table grown from 64 to 128
# positions, `config.n_positions` with it, was still refused at 64).
_LIMIT_ATTRIBUTE = "_peft_softprompt_ext_position_limit"
_UNKNOWN = (object(), None)


def position_limit(model: torch.nn.Module) -> tuple[int, str, int] | None:
    """(positions a sequence may use, a description of where that number comes from, leading rows not used for tokens)
    of a model with a learned position table, else None."""
    config = getattr(model, "config", None)
    values = tuple(getattr(config, name, None) for name in _LIMIT_FIELDS)
    found_for, limit = model.__dict__.get(_LIMIT_ATTRIBUTE, _UNKNOWN)
    if found_for != values:
        limit = _find_limit(model)
        model.__dict__[_LIMIT_ATTRIBUTE] = (values, limit)
    return limit


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
        return value - skipped, f"config.{field}={value}, of which the first {skipped} are not used for tokens", skipped
    return value, f"config.{field}", 0


_FIRST_ATTRIBUTE = "_peft_softprompt_ext_first_position"


def positions_in_a_row(first: int, length: int, batch_size: int, device) -> torch.Tensor:
    """Positions first .. first + length - 1 for each of `batch_size` rows [B, L], each row its own memory, not a view of
    one row: Kosmos-2.5's sinusoidal table reads `position_ids.view(-1)` (found 2026-12-08 by a probe: every prompted
    generate of a batch, and a mixture's prefix, failed there on a broadcast view)."""
    return torch.arange(first, first + length, device=device).repeat(batch_size, 1)


def first_position(model: torch.nn.Module) -> int:
    """The position `model` gives a sequence's first token by its own numbering: padding_idx + 1 where its position
    module numbers as RoBERTa does (rows 0..padding_idx serve padding: the RoBERTa family's learned tables, Kosmos-2's
    sinusoidal one), else 0. Positions the plugin counts from a mask or a cache length start there (found 2026-12-07 by
    a probe: RobertaForCausalLM and Kosmos-2 read [prompt; text] numbered from 0, 2.6 and 4.1 off the prompt fed by
    hand). Found once per model and kept on it, as `position_limit`."""
    if _FIRST_ATTRIBUTE not in model.__dict__:
        limit = position_limit(model)
        first = limit[2] if limit is not None else 0
        if not first:
            first = next((module.padding_idx + 1 for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in _TABLE_NAMES
                          and getattr(module, "padding_idx", None) is not None
                          and hasattr(module, "create_position_ids_from_inputs_embeds")), 0)  # fmt: skip
        model.__dict__[_FIRST_ATTRIBUTE] = first
    return model.__dict__[_FIRST_ATTRIBUTE]


def check_prompt_fits(model, num_virtual_tokens: int, initialisation: str | None = None) -> None:
    """Refuse, when the prompt is built, a prompt of more rows than `model`'s table has positions (found 2026-12-07: a
    bare IndexError or size error, at build or at the first forward). `initialisation`: None where the prompt moves the
    input's positions on (every prompt but a deep prompt on an encoder: then no input token would fit); else what runs
    the prompt's rows through the model at build (a deep prompt on an encoder keeps the input's positions)."""
    limit = position_limit(model)
    if limit is None or num_virtual_tokens < limit[0]:
        return
    table, source, _ = limit
    what = f"A soft prompt of num_virtual_tokens={num_virtual_tokens}"
    where = f"{type(model).__name__} has a table of {table} positions ({source})"
    if initialisation is None:
        raise ValueError(f"{what} moves every input token {num_virtual_tokens} positions on, but {where}: no input token would "
                         f"fit. Use fewer than {table} virtual tokens (and leave room for the input).")  # fmt: skip
    raise ValueError(f"{what} is started by running its rows through the model ({initialisation}), but {where}. Use fewer "
                     f"than {table} virtual tokens, or deep_init='zero'.")  # fmt: skip


def check_positions_fit(model, num_virtual_tokens: int, fed_length: int, cache_length: int = 0, positions=None,
                        given: bool = False, decoding: bool = True) -> None:  # fmt: skip
    """Raise ValueError if this call would look up a position past `model`'s table.

    `fed_length`: the tokens this call feeds (prompt rows included when they are fed); `cache_length`: the
    tokens the cache holds before it; `positions`: the position ids it passes, if any (else the model counts
    from its cache); `given`: they come from the caller's own position_ids, which may hold any number; `decoding`:
    the table also numbers the tokens a generate adds (a decoder's; not an encoder's, whose generated tokens go to the
    decoder). The check reads a tensor only when positions are given or the call's shape comes near the table's end.
    """
    limit = position_limit(model)
    if limit is None or (not given and num_virtual_tokens + cache_length + fed_length <= limit[0]):  # no position can reach it
        return
    highest = int(positions.max()) if positions is not None else cache_length + fed_length - 1
    table, source, skipped = limit
    unused = skipped if positions is not None else 0  # ids index the table's rows as they are: the caller's, and the
    # plugin's, which count from the first row a token uses (`first_position`; found 2026-12-07 by a review: RoBERTa's
    # last 2 positions refused); the message counts positions, as the model numbers its tokens (a second review)
    if highest < table + unused:
        return
    highest -= unused
    keep = "prompt + input + generated tokens" if decoding else "prompt + input"
    room = f"{table - num_virtual_tokens} tokens" + (" less the tokens to generate" if decoding else "")
    raise ValueError(
        f"A soft prompt of {num_virtual_tokens} virtual tokens moves every input token {num_virtual_tokens} positions on: "
        f"this call needs position {highest}, but {type(model).__name__} has a table of {table} positions ({source}), "
        f"numbered 0..{table - 1}. Keep {keep} within {table}: truncate inputs to at most {room}, or use fewer virtual tokens."
    )
