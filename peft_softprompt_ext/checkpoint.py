"""Resumable training state with the trainable parameters only (never the frozen base).

A checkpoint folder holds `trainable.safetensors` (trainable parameters, optimizer tensors, RNG
state) and `state.json` (step, optimizer param groups, scheduler state, the run's config digest,
the loss curve so far). Safetensors and JSON only: resuming never unpickles anything.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

from .atomic_io import atomic_directory_write, check_safetensors_file

TENSORS_NAME = "trainable.safetensors"
STATE_NAME = "state.json"


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder, model, optimizer, scheduler, step: int, config_digest: str, history: dict) -> None:
    """Write the trainable state after `step` optimizer steps (atomically: a kill mid-write is harmless)."""
    parameters = trainable_parameters(model)
    tensors = {f"param.{name}": p.detach().cpu().contiguous() for name, p in parameters.items()}
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    state = {
        "step": step,
        "config_digest": config_digest,
        "parameter_names": list(parameters),
        "param_groups": optimizer_state["param_groups"],
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history,
    }
    with atomic_directory_write(folder) as staging:
        save_file(tensors, os.path.join(staging, TENSORS_NAME))
        with open(os.path.join(staging, STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(state, handle)


def load_checkpoint(folder, model, optimizer, scheduler, config_digest: str) -> tuple[int, dict]:
    """Restore a checkpoint into model/optimizer/scheduler; returns (step, history).

    Refuses a checkpoint written by a run with another config (digest mismatch).
    """
    with open(os.path.join(folder, STATE_NAME), encoding="utf-8") as handle:
        state = json.load(handle)
    if state["config_digest"] != config_digest:
        raise ValueError(
            f"Resume folder {os.fspath(folder)!r} was written by a run with another config "
            f"(digest {state['config_digest']}, this run {config_digest}); use the same config or another output_dir."
        )
    check_safetensors_file(os.path.join(folder, TENSORS_NAME))
    tensors = load_file(os.path.join(folder, TENSORS_NAME))
    parameters = trainable_parameters(model)
    if list(parameters) != state["parameter_names"]:
        raise ValueError(f"Checkpoint parameters {state['parameter_names'][:3]}... do not match the model's trainable ones.")
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(tensors[f"param.{name}"])
    optimizer.load_state_dict({"state": _optimizer_state(tensors), "param_groups": state["param_groups"]})
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return state["step"], state["history"]


def _optimizer_state(tensors: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return state


def has_checkpoint(folder) -> bool:
    return os.path.isfile(os.path.join(folder, STATE_NAME))
