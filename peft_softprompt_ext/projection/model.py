"""The encoder of projected prompt tuning: a prompt table started from a projected source prompt."""

from __future__ import annotations

import torch

from ..prompt_bank import load_saved_prompt
from ..prompt_table import PromptTableEncoder
from .projection import PromptProjection


def projected_source_prompt(config) -> torch.Tensor:
    """projection.project(source prompt): [num_virtual_tokens, target width], checked on the way."""
    projection = PromptProjection.from_pretrained(config.projection)
    source_fingerprint = projection.info.get("source_fingerprint")
    prompt, _ = load_saved_prompt(config.source_adapter, projection.source_width, source_fingerprint,
                                  revision=config.source_revision)  # fmt: skip
    if projection.target_width != config.token_dim:
        raise ValueError(f"Projection {config.projection!r} maps to width {projection.target_width}; this model is {config.token_dim} wide.")
    target_fingerprint = projection.info.get("target_fingerprint")
    if target_fingerprint and config.base_model_fingerprint:
        from ..fingerprint import fingerprint_differences

        differences = fingerprint_differences(target_fingerprint, config.base_model_fingerprint)
        if differences:
            raise ValueError(f"Projection {config.projection!r} was fitted for another target model: " + "; ".join(differences) + ".")
    if prompt.shape[0] != config.num_virtual_tokens:
        raise ValueError(f"Source prompt has {prompt.shape[0]} virtual tokens but num_virtual_tokens={config.num_virtual_tokens}.")
    return projection.project(prompt)


class ProjectedPromptEmbedding(PromptTableEncoder):
    """A prompt table whose initial rows are the projected source prompt.

    Input: batch_size (int). Output shape: [batch_size, num_virtual_tokens, token_dim].
    """

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        return projected_source_prompt(config)
