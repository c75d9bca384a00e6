"""`PromptProjection`: a fitted map from one model's prompt space to another's, saved as safetensors + JSON."""

from __future__ import annotations

import contextlib
import json
import os

import torch
from safetensors.torch import load_file, save_file

from .. import sources
from ..adapter_files import check_finite, check_safetensors_file
from ..atomic_io import atomic_directory_write, read_json_object, read_lock
from ..init import match_row_norms
from ..options import is_finite_number

TENSORS_NAME = "projection.safetensors"
CONFIG_NAME = "projection_config.json"
_TENSOR_NAMES = ("weight", "source_mean", "target_mean")
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # rows are rescaled in float32


class PromptProjection:
    """y = ((x - source_mean) / source_scale) @ weight * target_scale + target_mean,
    then, if `row_norm` is set, every row y_i rescaled to L2 norm `row_norm` (direction kept).

    `weight` [source_width, target_width] is a ridge least-squares or a (semi-)orthogonal
    Procrustes map between centred, scale-normalised embedding spaces (see `fit_projection`);
    `info` holds the method, the fit quality on held-out anchor tokens, and both models'
    fingerprints (a prompt from another source model is refused by `ProjectedPromptTuningConfig`).

    Why `row_norm`: a trained prompt lies off the token manifold (SmolLM2's rows are ~1.8x its
    token norm), and the linear map amplifies exactly those directions: projected rows came out
    ~3x the target's token norm and the target model misread them. `None` keeps the plain map.
    """

    def __init__(self, weight, source_mean, target_mean, source_scale: float, target_scale: float, info: dict | None = None,
                 row_norm: float | None = None):  # fmt: skip
        self.weight = weight.float()
        self.source_mean = source_mean.float()
        self.target_mean = target_mean.float()
        self.source_scale = float(source_scale)
        self.target_scale = float(target_scale)
        self.info = dict(info or {})
        if row_norm is not None and not (is_finite_number(row_norm) and 0 < row_norm <= _FLOAT32_MAX):
            raise ValueError(f"row_norm must be a finite number > 0 (a float32) or None, got {row_norm!r}.")
        self.row_norm = None if row_norm is None else float(row_norm)

    @property
    def source_width(self) -> int:
        return self.weight.shape[0]

    @property
    def target_width(self) -> int:
        return self.weight.shape[1]

    def project(self, prompt: torch.Tensor) -> torch.Tensor:
        """Map a prompt [tokens, source_width] to [tokens, target_width] (float32)."""
        if prompt.dim() != 2 or prompt.shape[1] != self.source_width:
            raise ValueError(
                f"prompt has shape {tuple(prompt.shape)}; this projection maps [tokens, {self.source_width}] -> "
                f"[tokens, {self.target_width}]."
            )
        return self.apply(prompt.float().cpu(), self.weight)

    def apply(self, prompt: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The projection with another `weight` (same shape): differentiable, used by `refine_projection`."""
        mapped = (prompt - self.source_mean) / self.source_scale @ weight * self.target_scale + self.target_mean
        return mapped if self.row_norm is None else match_row_norms(mapped, self.row_norm)

    def save_pretrained(self, save_directory) -> None:
        tensors = {name: getattr(self, name).contiguous() for name in _TENSOR_NAMES}
        config = {"source_scale": self.source_scale, "target_scale": self.target_scale, "row_norm": self.row_norm, **self.info}
        # other entries of an existing folder (a user's notes, an adapter beside it) are carried over
        with atomic_directory_write(save_directory, keep=lambda name, path: name not in (TENSORS_NAME, CONFIG_NAME)) as staging:
            save_file(tensors, os.path.join(staging, TENSORS_NAME))
            with open(os.path.join(staging, CONFIG_NAME), "w", encoding="utf-8") as handle:
                json.dump(config, handle, indent=2)

    @classmethod
    def from_pretrained(cls, directory, revision: str | None = None) -> "PromptProjection":
        """Load a saved projection (a local folder or a Hub repo id); safetensors only, values checked."""
        directory = os.fspath(directory)
        with read_lock(directory) if sources.is_local(directory) else contextlib.nullcontext():
            tensors_path = sources.resolve_file(directory, TENSORS_NAME, revision=revision)
            config_path = sources.resolve_file(directory, CONFIG_NAME, revision=revision)
            check_safetensors_file(tensors_path)
            config = read_json_object(config_path, "Projection config")
            tensors = load_file(tensors_path)
        missing = [name for name in _TENSOR_NAMES if name not in tensors]
        if missing:
            raise ValueError(f"Projection {directory!r} lacks tensors {missing}.")
        check_finite(tensors, f"Projection {directory!r}")
        weight = tensors["weight"]
        if weight.dim() != 2 or tensors["source_mean"].shape != (weight.shape[0],) or tensors["target_mean"].shape != (weight.shape[1],):
            raise ValueError(f"Projection {directory!r} has inconsistent shapes: weight {tuple(weight.shape)}.")
        scales = {key: config.pop(key, None) for key in ("source_scale", "target_scale")}
        for key, value in scales.items():
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"Projection config {config_path!r}: {key}={value!r}; expected a finite number > 0.")
        row_norm = config.pop("row_norm", None)  # absent in projections saved before the option existed
        if row_norm is not None and not (is_finite_number(row_norm) and 0 < row_norm <= _FLOAT32_MAX):
            raise ValueError(f"Projection config {config_path!r}: row_norm={row_norm!r}; expected a finite number > 0 or null.")
        return cls(weight, tensors["source_mean"], tensors["target_mean"], scales["source_scale"], scales["target_scale"], config,
                   row_norm=row_norm)  # fmt: skip
