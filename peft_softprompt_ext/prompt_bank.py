"""Reading saved prompts (a mixture's bank, a projection's source) from folders or Hub repos.

Any adapter whose weights hold a `prompt_embeddings` tensor qualifies: plain PEFT PROMPT_TUNING
and this plugin's single-prompt methods. Safetensors only; shapes and the base model are checked.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file

from .adapter_files import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, check_adapter_files, check_safetensors_file


def _adapter_files(source: str, revision: str | None = None) -> tuple[str, str]:
    """(config path, weights path) of a local adapter folder or a Hub repo id."""
    if os.path.isdir(source):
        check_adapter_files(source)
        return os.path.join(source, ADAPTER_CONFIG_NAME), os.path.join(source, ADAPTER_WEIGHTS_NAME)
    from huggingface_hub import hf_hub_download

    config_path = hf_hub_download(source, ADAPTER_CONFIG_NAME, revision=revision)
    check_adapter_files(source, hub_kwargs={"revision": revision})
    weights_path = hf_hub_download(source, ADAPTER_WEIGHTS_NAME, revision=revision)
    check_safetensors_file(weights_path)
    return config_path, weights_path


def load_saved_prompt(source: str, token_dim: int, fingerprint: dict | None = None, allow_mismatch: bool = False,
                      revision: str | None = None) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """The prompt [num_virtual_tokens, token_dim] (float32) of a saved adapter, and its config dict.

    Args:
        source: a local adapter folder or a Hub repo id.
        token_dim: the width the prompt must have (the model it will be used on).
        fingerprint: the current base model's fingerprint; a plugin adapter saved for another
            base model is refused unless `allow_mismatch`.
    """
    from .fingerprint import fingerprint_differences

    config_path, weights_path = _adapter_files(os.fspath(source), revision)
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    tensors = load_file(weights_path)
    if "prompt_embeddings" not in tensors:
        raise ValueError(
            f"Source prompt {source!r} ({config.get('peft_type')}) has no 'prompt_embeddings' tensor; expected a "
            "PROMPT_TUNING adapter or a single-prompt plugin adapter."
        )
    prompt = tensors["prompt_embeddings"].float()
    num_virtual = config.get("num_virtual_tokens") or prompt.shape[0]
    prompt = prompt[:num_virtual]  # vanilla seq2seq adapters hold [2P, D]: the encoder half comes first
    if prompt.dim() != 2 or prompt.shape[1] != token_dim:
        raise ValueError(f"Source prompt {source!r} has shape {tuple(prompt.shape)}; this model needs width {token_dim}.")
    saved_fingerprint = config.get("base_model_fingerprint")
    if fingerprint and saved_fingerprint and not allow_mismatch:
        differences = fingerprint_differences(saved_fingerprint, fingerprint)
        if differences:
            raise ValueError(f"Source prompt {source!r} was trained on another base model: " + "; ".join(differences) + ".")
    return prompt, config
