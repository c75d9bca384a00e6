"""Reading saved prompts (a mixture's bank, a projection's source) from folders or Hub repos.

Any adapter whose weights hold a `prompt_embeddings` tensor qualifies: plain PEFT PROMPT_TUNING
and this plugin's single-prompt methods. Safetensors only; shapes and the base model are checked.
"""

from __future__ import annotations

import contextlib
import os

import torch
from safetensors.torch import load_file

from . import sources
from ._peft_compat import ADAPTER_CONFIG_NAME, BASE_MODULE_PREFIX, PROMPT_TUNING_TENSOR, own_weights
from .adapter_files import NO_FINGERPRINT, check_adapter_files, check_finite, claimed_fingerprint, peft_type_field, safetensors_shapes
from .atomic_io import read_json_object, read_lock
from .fingerprint import check_fingerprint_against
from .options import is_integer


def _adapter_files(source: str, revision: str | None = None) -> tuple[str, str]:
    """(config path, checked weights path) of a local adapter folder or a Hub repo id."""
    weights_path = check_adapter_files(source, hub_kwargs={"revision": revision})
    return sources.resolve_file(source, ADAPTER_CONFIG_NAME, revision=revision), weights_path


KEY_VALUE_TYPES = ("DEEP_PROMPT_TUNING", "PREFIX_TUNING", "CARTRIDGE")  # saved tables of keys and values per layer


def load_saved_prompt(source: str, token_dim: int, fingerprint: dict | None = None, allow_mismatch: bool = False,
                      revision: str | None = None, input_rows: bool = True, width_of: str = "this model") -> tuple[torch.Tensor, dict]:  # fmt: skip
    """The prompt [num_virtual_tokens, token_dim] (float32) of a saved adapter, and its config dict.

    Args:
        source: a local adapter folder or a Hub repo id.
        token_dim: the width the prompt must have (the model it will be used on, or `width_of`, named in a refusal).
        fingerprint: the current base model's fingerprint. A plugin adapter must carry a valid one
            that matches; a plain PROMPT_TUNING adapter exported by the plugin carries it in its
            safetensors metadata and is checked the same way; one made by plain PEFT has none.
            `allow_mismatch` skips the check.
        input_rows: the caller reads the table as input-embedding rows: a key/value prompt (KEY_VALUE_TYPES) is
            refused by its type, also where its per-layer width happens to equal `token_dim`.
    """
    source = os.fspath(source)
    what = f"Source prompt {source!r}"
    with read_lock(source) if sources.is_local(source) else contextlib.nullcontext():
        config_path, weights_path = _adapter_files(source, revision)
        config = read_json_object(config_path, "Adapter config")
        peft_type = peft_type_field(config, f"{what} ({config_path})")
        if peft_type == "MULTITASK_PROMPT_TUNING":  # (found 2026-12-07: read as a single prompt, 5.4-6.0 off either task's)
            raise ValueError(f"{what} is a MULTITASK_PROMPT_TUNING adapter: its {PROMPT_TUNING_TENSOR!r} is the part its tasks "
                             "share, each task's prompt that times its own factors, so no single prompt of input rows can be "
                             "read from it. Use a PROMPT_TUNING adapter or a single-prompt plugin adapter.")  # fmt: skip
        if input_rows and peft_type in KEY_VALUE_TYPES:
            raise ValueError(f"{what} is a {peft_type} adapter (keys and values per layer), not input rows: only a prompt "
                             "of input rows (PROMPT_TUNING or a single-prompt plugin method) can be read here.")  # fmt: skip
        shape = safetensors_shapes(weights_path).get(PROMPT_TUNING_TENSOR)
        if shape is None:
            raise ValueError(f"{what} ({peft_type}) has no {PROMPT_TUNING_TENSOR!r} tensor; expected a PROMPT_TUNING adapter or "
                             "a single-prompt plugin adapter.")  # fmt: skip
        if len(shape) != 2 or shape[1] != token_dim:
            raise ValueError(f"{what} has shape {tuple(shape)}; {width_of} needs width {token_dim}.")
        saved_fingerprint, _ = claimed_fingerprint(config, weights_path)
        tensors = load_file(weights_path)
    rows = tensors[PROMPT_TUNING_TENSOR]
    if not rows.is_floating_point():
        raise ValueError(f"{what}: {PROMPT_TUNING_TENSOR!r} has dtype {rows.dtype}; expected a float tensor.")
    check_finite({PROMPT_TUNING_TENSOR: rows}, what)
    if fingerprint is not None and saved_fingerprint is not NO_FINGERPRINT:
        check_fingerprint_against(saved_fingerprint, fingerprint, what, allow_mismatch)
    num_virtual, copies = config.get("num_virtual_tokens"), config.get("num_transformer_submodules")
    allowed = (1, 2) if copies not in (1, 2) or isinstance(copies, bool) else (copies,)  # plain seq2seq: 2 (older files: either)
    if not is_integer(num_virtual) or num_virtual <= 0 or rows.shape[0] not in [num_virtual * k for k in allowed]:
        raise ValueError(f"{what} ({config_path}): num_virtual_tokens={num_virtual!r} but its {PROMPT_TUNING_TENSOR!r} has "
                         f"{rows.shape[0]} rows; expected num_virtual_tokens x num_transformer_submodules "
                         f"({num_virtual} x {' or '.join(map(str, allowed))}; a plain seq2seq prompt holds 2 copies).")  # fmt: skip
    return rows.float()[:num_virtual], config  # vanilla seq2seq adapters hold [2P, D]: the encoder half comes first


def saved_base_tensors(source: str, revision: str | None = None) -> dict[str, torch.Tensor]:
    """The base model's tensors an adapter saved beside its prompt (e.g. a SEQ_CLS head), by their saved names; not the
    prompt's own (a reparameterization's training state, collapsed into its rows: found 2026-12-07, such prompts were
    refused by serve_prompts as holding a classifier head)."""
    with read_lock(source) if sources.is_local(source) else contextlib.nullcontext():
        _, weights_path = _adapter_files(source, revision)
        tensors = load_file(weights_path)
    return {name: tensor for name, tensor in tensors.items() if name.startswith(BASE_MODULE_PREFIX)}


def check_served_as_saved(base_model, sources: dict, revision: str | None = None) -> None:
    """Prompts served side by side (`mixing="one_hot"`, `serve_prompts`) run every row through one model: the base
    model's tensors each saved beside its prompt (a SEQ_CLS classifier head, modules_to_save) must be the model's own,
    or the prompt would be served without the head it was trained with (found 2026-12-07: the config path served
    them with the base model's head, 0.32 off each prompt alone). `sources`: {name: adapter folder or Hub id}."""
    own = own_weights(base_model)
    for name, source in sources.items():
        for key, tensor in saved_base_tensors(source, revision).items():
            mine = own.get(key.removeprefix(BASE_MODULE_PREFIX))
            which = repr(name) if name == source else f"{name!r} ({source})"
            if mine is None or mine.shape != tensor.shape:  # (a reward model's new one-output head, for one)
                theirs = "no such module" if mine is None else f"one of shape {tuple(mine.shape)}"
                raise ValueError(f"Prompt {which} holds {key!r} of shape {tuple(tensor.shape)}, saved with another head than this "
                                 f"model's ({theirs}): mixing='one_hot' (and serve_prompts) serves prompts as they were saved, "
                                 "through one model. Serve them on the model they were saved with, or train a prompt for this "
                                 "head.")  # fmt: skip
            if not _equal_in_the_coarser_dtype(tensor, mine):
                raise ValueError(f"Prompt {which} holds {key!r}, trained with it: mixing='one_hot' (and serve_prompts) runs "
                                 "every row through one model, so it has one classifier head (and one copy of each base "
                                 "module) for all prompts, and this prompt would be served without its own. Load it alone "
                                 "(PeftModel.from_pretrained), or serve prompts that kept the base model's modules.")  # fmt: skip


def _equal_in_the_coarser_dtype(saved: torch.Tensor, mine: torch.Tensor) -> bool:
    """The same module held in two dtypes (a head saved from a bfloat16 copy of a float32 model): equal once both are
    in the coarser one (found 2026-12-07 by a review: cast up to float32, the untouched head of a 16-bit save was
    taken for a trained one)."""
    if not (saved.is_floating_point() and mine.is_floating_point()) or saved.dtype == mine.dtype:
        return torch.equal(saved.to(mine), mine)
    coarser = max((saved.dtype, mine.dtype), key=lambda dtype: torch.finfo(dtype).eps)
    if torch.finfo(saved.dtype).bits == torch.finfo(mine.dtype).bits:  # bfloat16 and float16: neither holds what the
        # other was rounded from (a second review: 78 of 1,152 values of an untouched head one bfloat16 step apart)
        return torch.allclose(saved.float(), mine.float(), rtol=torch.finfo(coarser).eps, atol=1e-5)
    return torch.equal(saved.to(coarser), mine.to(coarser))


def saved_prompt_length(source: str, revision: str | None = None) -> int:
    """The number of virtual tokens a saved adapter declares (its config's `num_virtual_tokens`)."""
    config_path, _ = _adapter_files(os.fspath(source), revision)
    length = read_json_object(config_path, "Adapter config").get("num_virtual_tokens")
    if not is_integer(length) or length <= 0:
        raise ValueError(f"Adapter config {config_path!r}: num_virtual_tokens={length!r}; expected a positive integer.")
    return length


def load_saved_peft_type(source: str, revision: str | None = None) -> str:
    """The `peft_type` a saved adapter declares (folder or Hub repo id)."""
    return load_saved_config(source, revision)["peft_type"]


def load_saved_config(source: str, revision: str | None = None) -> dict:
    """A saved adapter's config (folder or Hub repo id), its `peft_type` checked."""
    config_path = sources.resolve_file(os.fspath(source), ADAPTER_CONFIG_NAME, revision=revision)
    config = read_json_object(config_path, "Adapter config")
    peft_type_field(config, f"Adapter config {config_path!r}")
    return config
