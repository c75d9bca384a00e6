"""Resumable training state with the trainable parameters only (never the frozen base).

A checkpoint folder holds `trainable.safetensors` (trainable parameters, optimizer tensors, RNG
state) and `state.json` (format, step, the run's full training config, the base model's
fingerprint as the run started, the digests of its model and data files (`run_inputs.py`; absent
in checkpoints made before them), parameter names, optimizer param groups and tensor names,
scheduler state, the loss curve so far). It is written all-or-nothing (`atomic_io`). Safetensors and JSON only: resuming
never unpickles anything.

A resume never lies: a missing, partial, edited or foreign checkpoint is an error naming what is
wrong, checked before anything is loaded into the model or optimizer: config keys that differ,
another base model, changed model or data files, a step outside the run, missing optimizer or scheduler state, tensors of other
names or shapes, NaN or infinite values.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

from peft_softprompt_ext import (
    atomic_directory_write,
    check_finite,
    check_safetensors_file,
    fingerprint_differences,
    read_json_object,
    read_lock,
)

TENSORS_NAME = "trainable.safetensors"
STATE_NAME = "state.json"
FORMAT = 2
STATE_KEYS = ("format", "step", "config", "base_model_fingerprint", "parameter_names", "param_groups", "optimizer_tensors",
              "scheduler", "history")  # fmt: skip


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder, model, optimizer, scheduler, step: int, config: dict, history: dict, base_fingerprint=None,
                    inputs=None, world_size: int | None = None) -> None:  # fmt: skip
    """Write the trainable state after `step` optimizer steps, all or nothing.

    `config`: the run's training config (everything the result depends on), compared key by key on
    resume. `base_fingerprint`: the base model's fingerprint as the run started (recorded, checked on
    resume; taken before training, so that a model whose own weights train still matches a fresh
    load). `inputs`: `run_inputs.run_inputs(config)` as the run started (recorded, checked on resume).
    `world_size`: the run's number of processes (recorded; a resume by another count is refused).
    """
    parameters = trainable_parameters(model)
    tensors = {f"param.{name}": p.detach().cpu().contiguous() for name, p in parameters.items()}
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    state = {
        "format": FORMAT,
        "step": step,
        "config": config,
        "base_model_fingerprint": base_fingerprint,
        "inputs": inputs,
        "world_size": world_size,
        "parameter_names": list(parameters),
        "param_groups": optimizer_state["param_groups"],
        "optimizer_tensors": sorted(name for name in tensors if name.startswith("optimizer.")),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history,
    }
    with atomic_directory_write(folder) as staging:
        save_file(tensors, os.path.join(staging, TENSORS_NAME))
        with open(os.path.join(staging, STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(state, handle)


def has_checkpoint(folder) -> bool:
    return os.path.isfile(os.path.join(folder, STATE_NAME))


def read_checkpoint(folder) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state, tensors) of a checkpoint folder, each file checked; errors name the file and the key."""
    folder = os.fspath(folder)
    state_path, tensors_path = os.path.join(folder, STATE_NAME), os.path.join(folder, TENSORS_NAME)
    with read_lock(folder):
        for path in (state_path, tensors_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Checkpoint {folder!r} has no {os.path.basename(path)}: there is nothing to resume from.")
        state = read_json_object(state_path, "Checkpoint state")
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            written = "an older release (no format 2)" if state.get("format") != FORMAT else "something else"
            raise ValueError(f"Checkpoint state {state_path!r} lacks {missing}: written by {written}; it cannot be resumed "
                             "safely. Start the run again without --resume.")  # fmt: skip
        check_safetensors_file(tensors_path)
        tensors = load_file(tensors_path)
    check_finite(tensors, f"Checkpoint {tensors_path!r}")
    return state, tensors


class CheckpointRefused(ValueError):
    """A checkpoint refused as not this run's (config, inputs, base model, parameters, optimizer or scheduler state),
    before anything of it is restored."""


def check_resumable(state: dict, config: dict, steps: int, base_fingerprint=None, where: str = "", input_changes=None) -> None:
    """Refuse a checkpoint of another run: config keys, base model, model or data files, or a step this run cannot have
    reached. `input_changes(saved_inputs) -> [what changed]` checks the recorded input digests (a checkpoint made before
    them has none)."""
    differing = sorted(key for key in set(state["config"]) | set(config) if state["config"].get(key) != config.get(key))
    if differing:
        details = "; ".join(f"{key}: checkpoint {state['config'].get(key)!r} vs this run {config.get(key)!r}" for key in differing)
        raise CheckpointRefused(f"Resume folder {where!r} was written by a run with another config ({details}); use the same "
                         "config or another output_dir.")  # fmt: skip
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= steps:
        raise CheckpointRefused(f"Checkpoint {where!r} has step={step!r}; expected an integer in 1..{steps} (the run's steps).")
    losses = state["history"].get("loss") if isinstance(state["history"], dict) else None
    if not isinstance(losses, list) or len(losses) != step:
        raise CheckpointRefused(f"Checkpoint {where!r} holds a loss curve of {len(losses) if isinstance(losses, list) else losses!r} steps "
                         f"for step={step}: the state was edited or is incomplete.")  # fmt: skip
    if input_changes is not None and isinstance(state.get("inputs"), dict):
        changed = input_changes(state["inputs"])
        if changed:
            raise CheckpointRefused(f"Checkpoint {where!r} was trained on other inputs: {' and '.join(changed)} changed since it "
                             "was written. Start again without --resume (or restore those files).")  # fmt: skip
    if base_fingerprint is not None:
        saved = state["base_model_fingerprint"]
        differences = fingerprint_differences(saved, base_fingerprint) if isinstance(saved, dict) else ["missing"]
        if differences:
            raise CheckpointRefused(f"Checkpoint {where!r} was trained on another base model ({'; '.join(differences)}): the "
                             "weights at this model path changed. Start again without --resume.")  # fmt: skip


def load_checkpoint(folder, model, optimizer, scheduler, config: dict, steps: int, base_fingerprint=None) -> tuple[int, dict]:
    """Check a checkpoint against this run, then restore model/optimizer/scheduler/RNG; returns (step, history)."""
    state, tensors = read_checkpoint(folder)
    where = os.fspath(folder)
    check_resumable(state, config, steps, base_fingerprint, where)
    parameters = trainable_parameters(model)
    if list(parameters) != state["parameter_names"]:
        raise CheckpointRefused(f"Checkpoint {where!r} holds parameters {state['parameter_names']}, the model trains {list(parameters)}.")
    for name, parameter in parameters.items():
        saved = tensors.get(f"param.{name}")
        if saved is None or saved.shape != parameter.shape:
            raise CheckpointRefused(f"Checkpoint {where!r}: parameter {name!r} is {None if saved is None else tuple(saved.shape)}, "
                             f"the model's is {tuple(parameter.shape)}.")  # fmt: skip
    absent = [name for name in state["optimizer_tensors"] if name not in tensors]
    indices = {index for group in state["param_groups"] for index in group["params"]}
    saved_indices = {int(name.split(".")[1]) for name in state["optimizer_tensors"]}
    if absent or not state["optimizer_tensors"] or saved_indices != indices:
        raise CheckpointRefused(f"Checkpoint {where!r} lacks optimizer state ({absent or 'for some parameters'}): resuming without it "
                         "would not continue the same run.")  # fmt: skip
    if scheduler is not None and not isinstance(state["scheduler"], dict):
        raise CheckpointRefused(f"Checkpoint {where!r} lacks the learning-rate scheduler's state.")
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(tensors[f"param.{name}"])
    optimizer.load_state_dict({"state": _optimizer_state(tensors), "param_groups": state["param_groups"]})
    if scheduler is not None:
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
