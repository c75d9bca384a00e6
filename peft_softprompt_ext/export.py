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
from peft import PromptTuningConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from ._peft_compat import adapter_config_of, prompt_encoder_of, prompt_table_of
from .adapter_files import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME
from .atomic_io import atomic_directory_write
from .fingerprint import FINGERPRINT_METADATA_KEY


def vanilla_prompt_tuning_config(config, num_virtual_tokens: int, token_dim: int) -> PromptTuningConfig:
    """A PROMPT_TUNING config for the same base model and task as `config`."""
    return PromptTuningConfig(
        task_type=config.task_type,
        num_virtual_tokens=num_virtual_tokens,
        token_dim=token_dim,
        num_transformer_submodules=1,  # plugin prompts sit in front of the (encoder) input only
        num_attention_heads=config.num_attention_heads,
        num_layers=config.num_layers,
        base_model_name_or_path=config.base_model_name_or_path,
        revision=config.revision,
        modules_to_save=sorted(set(config.modules_to_save)) if config.modules_to_save else None,
        inference_mode=True,
    )


def _trained_base_modules(peft_model, adapter_name: str) -> dict[str, torch.Tensor]:
    """Tensors PEFT saves beside the prompt (e.g. a SEQ_CLS classifier head), keyed as PEFT saves them."""
    state = get_peft_model_state_dict(peft_model, adapter_name=adapter_name)
    return {name: tensor.detach().cpu().contiguous() for name, tensor in state.items() if name.startswith("base_model.")}


def vanilla_copies(peft_model, adapter_name: str = "default") -> list[tuple[int | None, str, str]]:
    """(task, task name, folder relative to the saved adapter) of every plain PROMPT_TUNING copy a save
    writes: `vanilla/` for a single prompt, `vanilla/<task name>/` per task of a multi-task mixture,
    none where every input gets its own prompt (attention mixing)."""
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if not getattr(encoder, "exportable", True):
        return []
    labels = getattr(encoder, "task_labels", None)
    if not labels or len(labels) == 1:
        return [(None, "", "vanilla")]
    return [(index, name, f"vanilla/{name}") for index, name in enumerate(labels)]


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
    vanilla = vanilla_prompt_tuning_config(config, prompt.shape[0], prompt.shape[1])
    vanilla.save_pretrained(folder)
    tensors = {"prompt_embeddings": prompt.clone(), **_trained_base_modules(peft_model, adapter_name)}
    metadata = {"format": "pt"}
    fingerprint = getattr(config, "base_model_fingerprint", None)
    if fingerprint:
        metadata[FINGERPRINT_METADATA_KEY] = json.dumps(fingerprint, sort_keys=True)
    save_file(tensors, os.path.join(folder, ADAPTER_WEIGHTS_NAME), metadata=metadata)
