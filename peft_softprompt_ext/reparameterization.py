"""Residual reparameterisation of prompts (Razdaibiedina et al. 2023, "Residual Prompt Tuning").

Training `prompt + MLP(prompt)` instead of `prompt` lets every virtual token share the MLP's
parameters, which steadies prompt tuning across seeds and learning rates. Only the result
matters at inference, so saves and exports hold it collapsed (`prompt_embeddings`), with the raw
prompt and MLP weights kept beside it so training can resume.

No LayerNorm on the MLP output (the paper has one): it would rescale the small initial output
to unit size and move the prompt away from its careful initialisation. The up-projection starts
small, so the initial prompt is (almost exactly) the initialised one.
"""

from __future__ import annotations

import torch

from .options import Reparameterization, parse_option


class ResidualMLP(torch.nn.Module):
    """rows [..., k * width] -> rows + up(relu(down(rows))), applied to each of the k chunks of `width`
    (one chunk for input rows; each head's key or value vector for a deep prompt)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.down = torch.nn.Linear(width, hidden)
        self.up = torch.nn.Linear(hidden, width)
        torch.nn.init.normal_(self.up.weight, std=1e-3)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        chunks = rows.reshape(*rows.shape[:-1], -1, self.down.in_features)
        return (chunks + self.up(torch.relu(self.down(chunks)))).reshape(rows.shape)


def validate(config) -> None:
    """Normalises `config.reparameterization` to a `Reparameterization` (or None) and checks the MLP width."""
    config.reparameterization = parse_option(Reparameterization, config.reparameterization, "reparameterization", allow_none=True)
    hidden = config.reparameterization_hidden
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
        raise ValueError(f"reparameterization_hidden must be a positive integer, got {hidden!r}.")


def state_shapes(config, width: int, prefix: str = "reparameterization.") -> dict[str, tuple[int, ...]]:
    """Names and shapes of the MLP's saved tensors ({} without a reparameterisation)."""
    if config.reparameterization is None:
        return {}
    hidden = config.reparameterization_hidden
    shapes = {"down.weight": (hidden, width), "down.bias": (hidden,), "up.weight": (width, hidden), "up.bias": (width,)}
    return {prefix + name: shape for name, shape in shapes.items()}


def build(config, width: int) -> ResidualMLP | None:
    """The reparameterisation module a config asks for (None when it asks for none)."""
    if config.reparameterization is None:
        return None
    return ResidualMLP(width, config.reparameterization_hidden)
