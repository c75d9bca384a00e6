"""A model in eval mode for one block (a check or an initialisation that runs it), every module's own mode given back."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def in_eval_mode(model: torch.nn.Module):
    """`model.eval()` for the block; afterwards each module has the mode it had, not the top module's (found 2026-12-07
    by a review: a build that ran a check restored `model.train(was_training)`, which put a layer the user had left in
    eval mode into train mode, its dropout active)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
