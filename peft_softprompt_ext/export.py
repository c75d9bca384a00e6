"""Export any plugin prompt as a plain PEFT PROMPT_TUNING adapter.

The result is `adapter_config.json` + `adapter_model.safetensors` holding
`prompt_embeddings` [num_virtual_tokens, token_dim] (and, for SEQ_CLS, the trained classifier
head PEFT keeps beside every prompt): vanilla PEFT loads it in a process that never imports
this plugin, and gives the same logits. The plugin's base-model fingerprint travels in the
safetensors metadata (`FINGERPRINT_METADATA_KEY`, JSON), where plain PEFT ignores it and the
plugin's own readers (mixture banks, serving) check it.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file

from ._peft_compat import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PICKLE_WEIGHTS_NAME,
    PROMPT_TUNING_TENSOR,
    adapter_config_of,
    plain_prompt_tuning_config,
    prompt_encoder_of,
    prompt_table_of,
    trained_head_tensors,
)
from .atomic_io import atomic_directory_write
from .fingerprint import FINGERPRINT_METADATA_KEY


def vanilla_copies(peft_model, adapter_name: str = "default") -> list[tuple[int | None, str, str]]:
    """(task, task name, folder relative to the saved adapter) of every plain PROMPT_TUNING copy a save
    writes: `vanilla/` for a single prompt, `vanilla/<task name>/` per task of a multi-task mixture,
    none where every input gets its own prompt (attention mixing)."""
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if encoder.export_refusal is not None:
        return []
    if encoder.num_tasks == 1:
        return [(None, "", "vanilla")]
    return [(index, name, f"vanilla/{name}") for index, name in enumerate(encoder.task_labels)]


def export_prompt_tuning(peft_model, save_directory: str | os.PathLike, adapter_name: str = "default", task=None) -> str:
    """Write the adapter's prompt as a vanilla PEFT PROMPT_TUNING adapter; returns the folder.

    Args:
        peft_model: a PeftModel holding a plugin (or vanilla prompt-tuning) adapter.
        save_directory: the folder to write, all or nothing; existing files that are not an
            adapter's (config, weights) stay.
        adapter_name: which adapter to export.
        task: for multi-task mixtures, the task (index or name) whose prompt to export.
    """
    not_adapter_files = lambda name, path: name not in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME)  # noqa: E731
    with atomic_directory_write(save_directory, keep=not_adapter_files) as staging:
        write_prompt_tuning_files(peft_model, staging, adapter_name, task)
    return os.fspath(save_directory)


def write_prompt_tuning_files(peft_model, folder: str, adapter_name: str = "default", task=None) -> None:
    """The plain adapter's two files, written into `folder` (a fresh staging folder: not atomic by itself)."""
    config = adapter_config_of(peft_model, adapter_name)
    with torch.no_grad():
        prompt = prompt_table_of(peft_model, adapter_name, task).detach().float().cpu().contiguous()
    plain_prompt_tuning_config(config, prompt.shape[0], prompt.shape[1]).save_pretrained(folder)
    tensors = {PROMPT_TUNING_TENSOR: prompt.clone(), **trained_head_tensors(peft_model, adapter_name)}
    metadata = {"format": "pt"}
    fingerprint = getattr(config, "base_model_fingerprint", None)
    if fingerprint:
        metadata[FINGERPRINT_METADATA_KEY] = json.dumps(fingerprint, sort_keys=True)
    save_file(tensors, os.path.join(folder, ADAPTER_WEIGHTS_NAME), metadata=metadata)
