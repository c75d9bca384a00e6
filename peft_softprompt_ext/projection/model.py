"""The encoder of projected prompt tuning: a prompt table started from a projected source prompt."""

from __future__ import annotations

import torch

from ..fingerprint import fingerprint_differences, fingerprint_problem
from ..prompt_bank import load_saved_prompt
from ..prompt_table import PromptTableEncoder
from .projection import PromptProjection


def projected_source_prompt(config) -> torch.Tensor:
    """projection.project(source prompt): [num_virtual_tokens, target width], checked on the way.

    The projection must name both models by valid fingerprints: the source adapter must be of its
    source model, and this model must be its target.
    """
    projection = PromptProjection.from_pretrained(config.projection)
    what = f"Projection {config.projection!r}"
    for key in ("source_fingerprint", "target_fingerprint"):
        problem = fingerprint_problem(projection.info.get(key))
        if problem is not None:
            raise ValueError(f"{what} has no valid {key} ({problem}); refit it with fit_projection.")
    if projection.target_width != config.token_dim:
        raise ValueError(f"{what} maps to width {projection.target_width}; this model is {config.token_dim} wide.")
    this_model = config.base_model_fingerprint
    differences = fingerprint_differences(projection.info["target_fingerprint"], this_model) if this_model else []
    if differences:
        if not fingerprint_differences(projection.info["source_fingerprint"], this_model):
            raise ValueError(f"{what} maps its source model's prompts to its target model, and this model is its source model: "
                             "the projection runs the other way. Fit one from the source adapter's model to this model "
                             "(fit_projection(that model, its tokenizer, this model, this tokenizer)).")  # fmt: skip
        raise ValueError(f"{what} was fitted for another target model: " + "; ".join(differences) + ".")
    width_of = f"the projection's source model (whose prompts it maps; this model is {config.token_dim} wide)"
    prompt, _ = load_saved_prompt(config.source_adapter, projection.source_width, projection.info["source_fingerprint"],
                                  revision=config.source_revision, width_of=width_of)  # fmt: skip
    if prompt.shape[0] != config.num_virtual_tokens:
        raise ValueError(f"Source prompt has {prompt.shape[0]} virtual tokens but num_virtual_tokens={config.num_virtual_tokens}.")
    return projection.project(prompt)


class ProjectedPromptEmbedding(PromptTableEncoder):
    """A prompt table whose initial rows are the projected source prompt.

    Input: batch_size (int). Output shape: [batch_size, num_virtual_tokens, token_dim].
    """

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        return projected_source_prompt(config)
