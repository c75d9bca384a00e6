"""Export plugin prompts as plain PEFT adapters: PROMPT_TUNING for input rows, PREFIX_TUNING or CARTRIDGE for
deep prompts where PEFT holds them exactly (causal LMs with full attention; see `plain_peft_type`).

The result is `adapter_config.json` + `adapter_model.safetensors` holding `prompt_embeddings`
([num_virtual_tokens, token_dim], or [num_virtual_tokens, layers x 2 x kv dim] for PREFIX_TUNING,
and for SEQ_CLS the trained classifier head PEFT keeps beside every prompt): vanilla PEFT loads it
in a process that never imports this plugin, and gives the same logits (see README, "Sharing"). The plugin's base-model fingerprint travels in the
safetensors metadata (`FINGERPRINT_METADATA_KEY`, JSON), where plain PEFT ignores it and the
plugin's own readers (mixture banks, serving) check it.
"""

from __future__ import annotations

import json
import os
import warnings

import torch
from safetensors.torch import save_file

from ._peft_compat import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PICKLE_WEIGHTS_NAME,
    PROMPT_TUNING_TENSOR,
    adapter_config_of,
    innermost_model,
    is_plugin_config,
    peft_type_name,
    plain_cartridge_config,
    plain_prefix_tuning_config,
    plain_prompt_tuning_config,
    prompt_encoder_of,
    prompt_table_of,
    trained_head_tensors,
)
from .adapter_files import PLAIN_COPIES, is_plugin_card, local_vanilla_view, vanilla_holds
from .atomic_io import atomic_directory_write
from .fingerprint import FINGERPRINT_METADATA_KEY, base_model_fingerprint
from .ids_embedding import ids_scale
from .options import is_integer
from .prompt_encoder import KEY_VALUES


def vanilla_copies(peft_model, adapter_name: str = "default") -> list[tuple[int | None, str, str]]:
    """(task, task name, folder relative to the saved adapter) of every plain PEFT copy a save writes:
    `vanilla/` for a single prompt, `vanilla/<task name>/` per task of a multi-task mixture, none
    where plain PEFT cannot hold the prompt (`export_refusal` says why)."""
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if encoder.plain_peft_type is None:
        return []
    if encoder.num_tasks == 1:
        return [(None, "", "vanilla")]
    return [(index, name, f"vanilla/{name}") for index, name in enumerate(encoder.task_labels)]


def _not_adapter_files(name: str, path: str) -> bool:
    """An export keeps what a folder held besides an adapter, but not a plugin save's card and plain copies: they
    described the adapter the export replaces (a vanilla/ of anything else stays: found 2026-12-07 by a probe, a user's
    files there were dropped)."""
    if name == "README.md":
        return not is_plugin_card(path)
    if name == "vanilla":
        return vanilla_holds(*local_vanilla_view(os.path.dirname(path))) != PLAIN_COPIES
    return name not in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME)


def fingerprint_as_saved(peft_model, adapter_name: str) -> None:
    """A plugin adapter's `base_model_fingerprint` becomes its base model's as the model is now, before a save or an
    export writes it (found 2026-12-07 by a probe: it was the model's at the build, so a prompt saved after the base
    model changed under it, e.g. `resize_token_embeddings` for added tokens, was refused by the very model it was saved
    from and loaded into the model as it was before). Computed as the build computes it."""
    config = adapter_config_of(peft_model, adapter_name)
    if is_plugin_config(config):
        now = base_model_fingerprint(peft_model.base_model)
        if config.base_model_fingerprint != now:
            config.base_model_fingerprint = now


def export_prompt_tuning(peft_model, save_directory: str | os.PathLike, adapter_name: str = "default", task=None) -> str:
    """Write the adapter's prompt as a vanilla PEFT PROMPT_TUNING adapter; returns the folder.

    Args:
        peft_model: a PeftModel holding a plugin (or vanilla prompt-tuning) adapter.
        save_directory: the folder to write, all or nothing; existing files that are not an
            adapter's (config, weights) stay.
        adapter_name: which adapter to export.
        task: for multi-task mixtures, the task (index or name) whose prompt to export.

    Beside the prompt, the tensors PEFT's save_pretrained writes with it by default: a trained head (SEQ_CLS), and the
    embedding layers where the vocabulary was resized (PEFT's save_embedding_layers="auto").
    """
    scale = ids_scale(innermost_model(peft_model))
    if scale != 1.0:  # (found 2026-12-07 by a review: the export gave other outputs there, without a word)
        warnings.warn(f"{type(innermost_model(peft_model)).__name__}'s forward multiplies the embedding of input_ids by "
                      f"{scale:.4g}, which this plugin applies to the text beside the prompt and plain PEFT does not: loaded "
                      "by plain PEFT, this PROMPT_TUNING export gives other outputs than with the plugin.", stacklevel=2)  # fmt: skip
    fingerprint_as_saved(peft_model, adapter_name)
    with atomic_directory_write(save_directory, keep=_not_adapter_files) as staging:
        write_prompt_tuning_files(peft_model, staging, adapter_name, task)
    return os.fspath(save_directory)


def export_prefix_tuning(peft_model, save_directory: str | os.PathLike, adapter_name: str = "default", task=None) -> str:
    """Write a deep prompt as a vanilla PEFT PREFIX_TUNING adapter (prefix_projection=False); returns the folder.

    Refused, saying why, where PEFT's prefix (a key/value cache) does not hold the prompt exactly:
    encoders, seq2seq models and models with sliding-window layers. Arguments as `export_prompt_tuning`.
    """
    fingerprint_as_saved(peft_model, adapter_name)
    with atomic_directory_write(save_directory, keep=_not_adapter_files) as staging:
        write_prefix_tuning_files(peft_model, staging, adapter_name, task)
    return os.fspath(save_directory)


def export_cartridge(peft_model, save_directory: str | os.PathLike, adapter_name: str = "default", task=None,
                     num_frozen_tokens: int = 0) -> str:
    """Write a deep prompt as a vanilla PEFT CARTRIDGE adapter (a trainable key/value prefix); returns the folder.

    The same rows as `export_prefix_tuning`, refused where it is: PEFT serves a CARTRIDGE as the same cache prefix.
    `num_frozen_tokens`: how many of the first rows CARTRIDGE keeps frozen if trained further in plain PEFT (its own
    default is 1, an attention sink); it does not change the logits. Other arguments as `export_prompt_tuning`.
    """
    if not is_integer(num_frozen_tokens) or num_frozen_tokens < 0:
        raise ValueError(f"num_frozen_tokens={num_frozen_tokens!r}: expected an int >= 0 (rows CARTRIDGE keeps frozen).")
    fingerprint_as_saved(peft_model, adapter_name)
    with atomic_directory_write(save_directory, keep=_not_adapter_files) as staging:
        write_prefix_tuning_files(peft_model, staging, adapter_name, task, cartridge_frozen_tokens=num_frozen_tokens)
    return os.fspath(save_directory)


def write_plain_files(peft_model, folder: str, adapter_name: str = "default", task=None, save_embedding_layers="auto") -> None:
    """The plain PEFT copy of one task's prompt, of the kind the encoder declares (`plain_peft_type`)."""
    if prompt_encoder_of(peft_model, adapter_name).plain_peft_type == "PREFIX_TUNING":
        write_prefix_tuning_files(peft_model, folder, adapter_name, task, save_embedding_layers=save_embedding_layers)
    else:
        write_prompt_tuning_files(peft_model, folder, adapter_name, task, save_embedding_layers)


def write_prompt_tuning_files(peft_model, folder: str, adapter_name: str = "default", task=None, save_embedding_layers="auto") -> None:
    """The plain adapter's two files, written into `folder` (a fresh staging folder: not atomic by itself); beside the
    prompt, the tensors PEFT saves with it (a trained head; the embedding layers by PEFT's `save_embedding_layers`)."""
    config = adapter_config_of(peft_model, adapter_name)
    with torch.no_grad():
        prompt = prompt_table_of(peft_model, adapter_name, task).detach().float().cpu().contiguous()
    plain_prompt_tuning_config(config, prompt.shape[0], prompt.shape[1]).save_pretrained(folder)
    _write_weights(folder, {PROMPT_TUNING_TENSOR: prompt.clone(), **trained_head_tensors(peft_model, adapter_name, save_embedding_layers)},
                   config)  # fmt: skip


def write_prefix_tuning_files(peft_model, folder: str, adapter_name: str = "default", task=None,
                              cartridge_frozen_tokens: int | None = None, save_embedding_layers="auto") -> None:
    """A deep prompt's PREFIX_TUNING files: the same [P, layers x 2 x kv dim] rows in PEFT's layout; with
    `cartridge_frozen_tokens` a CARTRIDGE's (the same rows, that many frozen)."""
    config = adapter_config_of(peft_model, adapter_name)
    encoder = prompt_encoder_of(peft_model, adapter_name)
    kind = "PREFIX_TUNING" if cartridge_frozen_tokens is None else "CARTRIDGE"
    if not is_plugin_config(config):  # (found 2026-12-07 by a probe: a bare AttributeError of PEFT's encoder)
        raise ValueError(f"Adapter {adapter_name!r} is a plain PEFT {peft_type_name(config)} adapter: export_prefix_tuning and "
                         "export_cartridge write a plugin deep prompt in plain PEFT's types; save a plain adapter with "
                         "save_pretrained.")  # fmt: skip
    if encoder.plain_peft_type != "PREFIX_TUNING":  # (a prompt of input rows: its own refusal is about PROMPT_TUNING)
        not_deep = "it is not a deep prompt (use export_prompt_tuning)"
        reason = not_deep if encoder.prompt_kind != KEY_VALUES else encoder.export_refusal or not_deep
        raise ValueError(f"{type(encoder).__name__} cannot be exported as plain PEFT {kind}: {reason}.")
    heads, dims = {slot.kv_heads for slot in encoder.slots}, {slot.head_dim for slot in encoder.slots}
    if len(heads) != 1 or len(dims) != 1:
        raise ValueError(f"{kind} needs one key/value head count and head dim across layers; got {sorted(heads)}, {sorted(dims)}.")
    with torch.no_grad():
        rows = encoder.prompt_rows(task).detach().float().cpu().contiguous()
    if cartridge_frozen_tokens is None:
        plain = plain_prefix_tuning_config(config, rows.shape[0], len(encoder.slots), heads.pop(), dims.pop())
    elif cartridge_frozen_tokens > rows.shape[0]:
        raise ValueError(f"num_frozen_tokens={cartridge_frozen_tokens}: the prompt has {rows.shape[0]} virtual tokens; "
                         f"expected at most that many frozen.")  # fmt: skip
    else:
        plain = plain_cartridge_config(config, rows.shape[0], len(encoder.slots), heads.pop(), dims.pop(), cartridge_frozen_tokens)
    plain.save_pretrained(folder)
    _write_weights(folder, {PROMPT_TUNING_TENSOR: rows.clone(), **trained_head_tensors(peft_model, adapter_name, save_embedding_layers)},
                   config)  # fmt: skip


def _write_weights(folder: str, tensors: dict, config) -> None:
    metadata = {"format": "pt"}
    fingerprint = getattr(config, "base_model_fingerprint", None)
    if fingerprint:
        metadata[FINGERPRINT_METADATA_KEY] = json.dumps(fingerprint, sort_keys=True)
    save_file(tensors, os.path.join(folder, ADAPTER_WEIGHTS_NAME), metadata=metadata)
