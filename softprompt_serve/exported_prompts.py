"""Prompts exported by the plugin, read without it: plain PEFT PROMPT_TUNING folders.

A plugin save writes `vanilla/` (one prompt) or `vanilla/<task>/` (one per task of a mixture);
`export_prompt_tuning` writes the same files anywhere. Each holds `adapter_config.json` and
`adapter_model.safetensors` with `prompt_embeddings` [P, hidden] and, in the safetensors metadata,
the plugin's base-model fingerprint, which is checked against the served model here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .plugin_fingerprint import fingerprint_module

CONFIG_NAME, WEIGHTS_NAME, PROMPT_TENSOR = "adapter_config.json", "adapter_model.safetensors", "prompt_embeddings"


@dataclass(frozen=True)
class ExportedPrompt:
    """One task's prompt rows [P, hidden] and where they came from."""

    task: str
    rows: torch.Tensor
    source: str

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.rows.shape[0])


def task_folders(adapter_dir: str | Path) -> dict[str, Path]:
    """task name -> plain PROMPT_TUNING folder, for a plugin save (its `vanilla/` copies) or a plain folder.

    A single-prompt folder maps to the task name `default`; a mixture's `vanilla/<task>/` to each task.
    """
    adapter_dir = Path(adapter_dir)
    vanilla = adapter_dir / "vanilla"
    if (vanilla / CONFIG_NAME).is_file():
        return {"default": vanilla}
    if vanilla.is_dir():
        tasks = {path.name: path for path in sorted(vanilla.iterdir()) if (path / CONFIG_NAME).is_file()}
        if tasks:
            return tasks
    if (adapter_dir / CONFIG_NAME).is_file():
        return {"default": adapter_dir}
    raise FileNotFoundError(f"{adapter_dir} holds no exported prompt: expected {CONFIG_NAME} in it, in vanilla/ or in vanilla/<task>/.")


def load_exported_prompt(folder: str | Path, task: str, model_fingerprint: dict, allow_base_model_mismatch: bool = False) -> ExportedPrompt:
    """Read and check one exported prompt for the model whose fingerprint is `model_fingerprint`.

    Refused with a ValueError naming the value: not a PROMPT_TUNING adapter (deep prompts have no
    vLLM input path), not a causal LM prompt, rows of another width, a missing or different fingerprint.
    """
    folder = Path(folder)
    config = _read_config(folder, task)
    peft_type, task_type = config.get("peft_type"), config.get("task_type")
    if peft_type != "PROMPT_TUNING":
        raise ValueError(f"task {task!r}: {folder} is a {peft_type!r} adapter{_why_not_served(peft_type)}; serving needs a PROMPT_TUNING export.")
    if task_type != "CAUSAL_LM":
        raise ValueError(f"task {task!r}: {folder} is a {task_type!r} prompt; vLLM generation serves CAUSAL_LM prompts only.")
    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as weights:
            rows = weights.get_tensor(PROMPT_TENSOR)
            metadata = weights.metadata() or {}
    except (OSError, KeyError, SafetensorError) as error:
        raise ValueError(f"task {task!r}: {folder / WEIGHTS_NAME} holds no readable {PROMPT_TENSOR!r} tensor "
                         f"({type(error).__name__}: {error}); expected a PROMPT_TUNING export's weights.") from None  # fmt: skip
    hidden = model_fingerprint["hidden_size"]
    if rows.dim() != 2 or rows.shape[1] != hidden:
        raise ValueError(f"task {task!r}: the prompt in {folder} has shape {tuple(rows.shape)}; the served model needs "
                         f"[num_virtual_tokens, {hidden}] (its hidden size).")  # fmt: skip
    _check_rows(rows, config, f"task {task!r}: {folder / WEIGHTS_NAME}")
    rows = rows.float()
    rules = fingerprint_module()
    saved = metadata.get(rules.FINGERPRINT_METADATA_KEY)
    try:
        saved = json.loads(saved) if saved else None
    except ValueError:
        pass  # the raw text: refused below as a malformed fingerprint (unless a mismatch is allowed)
    rules.check_fingerprint_against(saved, model_fingerprint, f"the prompt of task {task!r} ({folder})",
                                    allow_mismatch=allow_base_model_mismatch)  # fmt: skip
    return ExportedPrompt(task=task, rows=rows, source=str(folder))


def _read_config(folder: Path, task: str) -> dict:
    """The export's adapter config, a JSON object (found 2026-12-07: a corrupt one failed with a bare JSONDecodeError)."""
    path = folder / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        config = error
    if not isinstance(config, dict):
        raise ValueError(f"task {task!r}: {path} is not a JSON object ({config if isinstance(config, ValueError) else type(config).__name__}); "
                         "expected a PROMPT_TUNING export's adapter config.")  # fmt: skip
    return config


def _check_rows(rows: torch.Tensor, config: dict, what: str) -> None:
    """Float rows, all finite, as many as the config's num_virtual_tokens: what the plugin's loads check too (found
    2026-12-07: a NaN row was served, 10 rows went out under num_virtual_tokens=5, integer rows were cast)."""
    if not rows.is_floating_point():
        raise ValueError(f"{what}: {PROMPT_TENSOR!r} has dtype {rows.dtype}; expected a float tensor.")
    bad = int((~torch.isfinite(rows)).sum())
    if bad:
        raise ValueError(f"{what}: {PROMPT_TENSOR!r} holds {bad} value(s) that are NaN or infinite; a prompt must be finite.")
    length = config.get("num_virtual_tokens")
    if rows.shape[0] != length:
        raise ValueError(f"{what}: num_virtual_tokens={length!r} but its {PROMPT_TENSOR!r} has {rows.shape[0]} rows; expected "
                         "one row per virtual token.")  # fmt: skip


# Key/value prompts in every layer (the plugin's deep prompts, their PREFIX_TUNING exports, PEFT's cartridges).
_DEEP_TYPES = frozenset({"PREFIX_TUNING", "DEEP_PROMPT_TUNING", "CARTRIDGE"})


def _why_not_served(peft_type) -> str:
    if peft_type in _DEEP_TYPES:
        return " (a deep per-layer key/value prompt: vLLM takes input embeddings only)"
    if peft_type == "MIXTURE_PROMPT_TUNING":
        return (" (a mixture: add_adapter serves each task's vanilla/<task>/ copy; a mixture whose prompt depends on the input, "
                "mixing='attention', has none)")
    if isinstance(peft_type, str) and peft_type.endswith("PROMPT_TUNING"):
        return " (a plugin save: its vanilla/ folder holds the PROMPT_TUNING copy, which add_adapter reads)"
    return ""
