"""The device a module runs on, where accelerate may keep its parameters elsewhere between calls."""

from __future__ import annotations

import torch


def execution_device(model) -> torch.device:
    """The device `model` runs on: its parameters', or, where accelerate keeps them elsewhere between calls
    (`cpu_offload`, `dispatch_model` with offloading leave them on the meta device), the one its hooks run it on."""
    device = next(model.parameters()).device
    if device.type != "meta":
        return device
    for module in model.modules():
        hooked = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if hooked is not None:
            return torch.device(hooked)
    return device
