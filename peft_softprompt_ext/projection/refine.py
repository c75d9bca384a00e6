"""Optional refinement of a projection with task data (Su et al. 2022 style, but small).

A low-rank correction `A @ B` (rank r, B starts at zero) is added to the fitted map and trained
so that the projected source prompt lowers the target model's loss on task batches. The target
model stays frozen; the result is an ordinary `PromptProjection`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .._peft_compat import PromptParts
from ..fingerprint import base_model_fingerprint, check_fingerprint_against
from ..ids_embedding import text_embedding_of
from ..injection.causal_forward import causal_lm_forward
from ..injection.model_checks import model_task_type
from ..options import is_finite_number, is_integer
from ..prompt_encoder import INPUT_EMBEDDINGS
from .projection import PromptProjection


class _ProjectedPrompt(torch.nn.Module):
    prompt_kind = INPUT_EMBEDDINGS  # rows in front of the input embeddings, like every shallow encoder
    input_dependent = False  # one prompt for every input (the encoder protocol's field)

    def __init__(self, projection: PromptProjection, source_prompt: torch.Tensor, rank: int):
        super().__init__()
        self.projection, self.source_prompt = projection, source_prompt.float()
        self.down = torch.nn.Parameter(torch.randn(projection.source_width, rank) * 0.01)
        self.up = torch.nn.Parameter(torch.zeros(rank, projection.target_width))

    def weight(self) -> torch.Tensor:
        return self.projection.weight + self.down @ self.up

    def forward(self, batch_size, task_ids=None, inputs_embeds=None, attention_mask=None):
        prompt = self.projection.apply(self.source_prompt, self.weight())
        return prompt.unsqueeze(0).expand(batch_size, -1, -1)


def refine_projection(projection: PromptProjection, source_prompt: torch.Tensor, target_model, batches, steps: int = 50,
                      lr: float = 1e-3, rank: int = 8) -> PromptProjection:  # fmt: skip
    """Train a rank-`rank` correction of `projection` on causal-LM `batches` (dicts of input_ids,
    attention_mask, labels) of the target task; returns the refined projection."""
    if model_task_type(target_model) != "CAUSAL_LM":  # (found 2026-12-07: classifiers failed inside torch, a masked LM trained)
        raise ValueError(f"refine_projection trains through a causal LM (AutoModelForCausalLM); got a {type(target_model).__name__} "
                         "target model. Use the fitted projection as it is (fit_projection), or refine on a causal LM.")  # fmt: skip
    for name, value in (("steps", steps), ("rank", rank)):
        if not is_integer(value) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not is_finite_number(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}.")
    _check_source_prompt(source_prompt, projection.source_width)
    check_fingerprint_against(projection.info.get("target_fingerprint"), base_model_fingerprint(target_model),
                              "The projection (fitted for another target model)")  # fmt: skip
    prompt = _ProjectedPrompt(projection, source_prompt, rank)
    parts = PromptParts(target_model, text_embedding_of(target_model), prompt, source_prompt.shape[0])
    optimizer = torch.optim.AdamW(prompt.parameters(), lr=lr)
    losses = []
    trainable = [p for p in target_model.parameters() if p.requires_grad]
    target_model.requires_grad_(False)  # frozen while refining; the caller's flags come back afterwards
    try:
        for index, batch in enumerate(_steps_of(batches, steps)):
            if not isinstance(batch, Mapping) or batch.get("labels") is None:  # (a dict, a tokenizer's BatchEncoding)
                raise ValueError(f"batch {index} has no 'labels' (got {type(batch).__name__}"
                                 f"{' with ' + str(sorted(batch)) if isinstance(batch, Mapping) else ''}): refinement lowers the loss "
                                 "of labelled causal-LM batches (dicts of input_ids, attention_mask, labels).")  # fmt: skip
            loss = causal_lm_forward(parts, **batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    if not losses:
        raise ValueError(f"batches gave no batch to refine on (got {type(batches).__name__} {batches!r:.80}).")
    if len(losses) < steps:
        raise ValueError(f"batches ran out after {len(losses)} of steps={steps}: gone through again, the {type(batches).__name__} gave "
                         "no more (an iterator, or a loader over a one-pass dataset). Pass a list or tuple, a DataLoader over "
                         f"a map-style dataset (gone through again as often as the steps need), or steps={len(losses)}.")  # fmt: skip
    info = dict(projection.info, refined={"steps": len(losses), "rank": rank, "lr": lr, "first_loss": losses[0], "last_loss": losses[-1]})
    return PromptProjection(prompt.weight().detach(), projection.source_mean, projection.target_mean,
                            projection.source_scale, projection.target_scale, info, row_norm=projection.row_norm)  # fmt: skip


def _steps_of(batches, steps: int):
    """`steps` batches: a collection or loader (whose `iter` starts again) is gone through as often as needed (found
    2026-12-07: only a list was, so a tuple or DataLoader of 2 batches ran 2 of 20 steps); an iterator, once."""
    given = 0
    while given < steps:
        before = given
        for batch in batches:
            yield batch
            given += 1
            if given == steps:
                return
        if given == before or iter(batches) is batches:  # empty, or an iterator: nothing more to come
            return


def _check_source_prompt(source_prompt, width: int) -> None:
    if not isinstance(source_prompt, torch.Tensor) or source_prompt.dim() != 2 or source_prompt.shape[1] != width:
        shape = tuple(source_prompt.shape) if isinstance(source_prompt, torch.Tensor) else type(source_prompt).__name__
        raise ValueError(f"source_prompt has shape {shape}; expected [virtual tokens, {width}] (the projection's source width).")
    bad = int((~torch.isfinite(source_prompt)).sum())
    if bad:
        raise ValueError(f"source_prompt holds {bad} value(s) that are NaN or infinite; a projection of it would be too.")
