"""How a prompt is parameterised while training; only the result is saved as the prompt.

`residual_mlp` (Razdaibiedina et al. 2023, "Residual Prompt Tuning"): training `prompt + MLP(prompt)`
instead of `prompt` lets every virtual token share the MLP's parameters, which steadies prompt
tuning across seeds and learning rates. No LayerNorm on the MLP output (the paper has one): it would
rescale the small initial output to unit size and move the prompt away from its careful
initialisation. The up-projection starts small, so the initial prompt is (almost exactly) the
initialised one.

`layer_scaled` (deep prompts, and the target prompts of a mixture of them): the prompt is
`raw * scale`, `scale` fixed per layer and per keys/values at the size (RMS) those start with. A
deep prompt's parts differ in size by ~40x (on SmolLM2-135M the first layer's values start at RMS
0.05, keys at ~2), while Adam moves every entry by about the learning rate per step whatever its
size; trained as `raw`, each part moves by about the learning rate *relative to its own size*
(Adafactor's parameter scaling, as a reparameterisation).

Single prompts' saves and exports hold the result collapsed (`prompt_embeddings`), with the raw
prompt and the reparameterisation's tensors kept beside it so training can resume. A mixture saves
its raw target prompts and those tensors (its exports hold each task's prompt as used).
"""

from __future__ import annotations

import torch

from . import layer_prefix
from .options import Reparameterization, is_integer, parse_option
from .prompt_encoder import fixed_parameter


class ResidualMLP(torch.nn.Module):
    """rows [..., k * width] -> rows + up(relu(down(rows))), applied to each of the k chunks of `width`
    (one chunk for input rows; each head's key or value vector for a deep prompt)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.down = torch.nn.Linear(width, hidden)
        self.up = torch.nn.Linear(hidden, width)
        torch.nn.init.normal_(self.up.weight, std=1e-3)
        torch.nn.init.zeros_(self.up.bias)

    def start(self, rows: torch.Tensor) -> torch.Tensor:
        """The raw prompt to train, for initial prompt `rows`: the rows themselves (the MLP starts ~0)."""
        return rows

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        chunks = rows.reshape(*rows.shape[:-1], -1, self.down.in_features)
        return (chunks + self.up(torch.relu(self.down(chunks)))).reshape(rows.shape)


class LayerScale(torch.nn.Module):
    """raw [..., F] -> raw * scale [F]; `scale` is constant over each layer's keys and over its values.

    `parts`: [(name, width), ...] in the row's column order, e.g. ("model.layers.0.self_attn keys", 192).
    """

    def __init__(self, parts: list[tuple[str, int]]):
        super().__init__()
        self.parts = parts
        self.scale = fixed_parameter(torch.ones(sum(width for _, width in parts)))  # set by `start`, never trained

    def start(self, rows: torch.Tensor) -> torch.Tensor:
        """Sets `scale` to each part's RMS in the initial prompt `rows` [..., P, F] (a mixture's target prompts: one
        per task); returns the raw prompt rows / scale."""
        scales, start = [], 0
        for name, width in self.parts:
            rms = rows[..., start : start + width].float().pow(2).mean().sqrt()
            if not torch.isfinite(rms) or rms <= 0:
                raise ValueError(f"reparameterization='layer_scaled' scales each layer's keys and values by their starting size, "
                                 f"but {name} start at RMS {rms.item():g}: start the prompt from text, sampled tokens, a "
                                 f"trained prompt or random values (not deep_init='zero').")  # fmt: skip
            scales.append(rms.expand(width))
            start += width
        with torch.no_grad():
            self.scale.copy_(torch.cat(scales))
        return rows / self.scale

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows * self.scale


_LAYERED = ("DEEP_PROMPT_TUNING", "MIXTURE_PROMPT_TUNING")  # configs whose prompts can hold per-layer keys and values


def validate(config) -> None:
    """Normalises `config.reparameterization` to a `Reparameterization` (or None) and checks it fits the config."""
    config.reparameterization = parse_option(Reparameterization, config.reparameterization, "reparameterization", allow_none=True)
    hidden = config.reparameterization_hidden
    if not is_integer(hidden) or hidden <= 0:
        raise ValueError(f"reparameterization_hidden must be a positive integer, got {hidden!r}.")
    # a mixture may hold a bank of deep prompts (known when its bank is read: the encoder refuses an input-row bank)
    if config.reparameterization == Reparameterization.LAYER_SCALED and config.PEFT_TYPE_NAME not in _LAYERED:
        raise ValueError(f"reparameterization='layer_scaled' scales a deep prompt's per-layer keys and values; "
                         f"{type(config).__name__} takes None or 'residual_mlp'.")  # fmt: skip


def state_shapes(config, prefix: str = "reparameterization.") -> dict[str, tuple[int, ...]]:
    """Names and shapes of the reparameterisation's saved tensors ({} without one)."""
    if config.reparameterization is None:
        return {}
    if config.reparameterization == Reparameterization.LAYER_SCALED:
        return {prefix + "scale": (config.row_width(),)}
    width, hidden = config.mlp_width(), config.reparameterization_hidden
    shapes = {"down.weight": (hidden, width), "down.bias": (hidden,), "up.weight": (width, hidden), "up.bias": (width,)}
    return {prefix + name: shape for name, shape in shapes.items()}


def build(config) -> ResidualMLP | LayerScale | None:
    """The reparameterisation module a config asks for (None when it asks for none)."""
    if config.reparameterization is None:
        return None
    if config.reparameterization == Reparameterization.LAYER_SCALED:
        return LayerScale(layer_prefix.parts(layer_prefix.slots_of(config.deep_layout)))
    return ResidualMLP(config.mlp_width(), config.reparameterization_hidden)
