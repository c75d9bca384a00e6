"""What a transformers model's forward makes of `input_ids`: its embedding module's rows, times a factor some models
put on them in their forward, not in the module, and not on `inputs_embeds` given by the caller.

Falcon-H1 multiplies the embedding of input_ids by `config.embedding_multiplier` (real checkpoints: ~5.66); the
encoders of Marian, Pegasus, MVP and BlenderbotSmall with `scale_embedding=True` by sqrt(d_model). A prompt goes in
as `inputs_embeds` ([prompt; text]), so the text must be embedded as the model's forward embeds its ids (found
2026-12-07: the text went in that factor too small beside the prompt; plain PEFT alike). Gemma's scale is inside its
embedding module (`*ScaledWordEmbedding`), so it needs nothing here. Prompt rows started from token rows (vocabulary
sampling, a text) are taken through the same module, so they start at the text's scale.
"""

from __future__ import annotations

import torch

from ._peft_compat import innermost_model, input_embeddings_of

_ENCODERS_SCALING_IDS = frozenset({"marian", "pegasus", "mvp", "blenderbot-small"})  # their encoder's `embed_scale`


def ids_scale(model) -> float:
    """The factor `model`'s forward puts on the embedding of input_ids and not on inputs_embeds (1.0 for most)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type == "falcon_h1":
        return float(getattr(config, "embedding_multiplier", 1.0))
    if model_type in _ENCODERS_SCALING_IDS and getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return float(getattr(model.get_encoder(), "embed_scale", 1.0))
    return 1.0


_DECODERS_TAKING_RAW_ROWS = frozenset({"marian", "pegasus", "blenderbot-small"})  # (MVP's decoder scales ids only, as its encoder)


def decoder_rows_factor(model) -> float:
    """The factor that turns rows as `model`'s encoder reads a text's ids (`ids_scale`) into the rows its decoder reads
    as the same tokens, given as `decoder_inputs_embeds`: Marian's and Pegasus' decoders put their sqrt(d_model) on given
    rows too, BlenderbotSmall's on neither (found 2026-12-08 by a probe: a deep prompt's decoder layers started 1.0-14.6
    off the keys and values of the tokens it was sampled from, where the encoder's were exact)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in _DECODERS_TAKING_RAW_ROWS and getattr(config, "is_encoder_decoder", False):
        return 1.0 / ids_scale(model)
    return 1.0


class ScaledIdsEmbedding(torch.nn.Module):
    """An embedding module whose rows come out times `scale`, as its model's forward scales the embedding of input_ids."""

    def __init__(self, embeddings: torch.nn.Module, scale: float):
        super().__init__()
        self.embeddings, self.scale = embeddings, scale

    @property
    def weight(self) -> torch.Tensor:
        return self.embeddings.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids) * self.scale  # (the model's own operation: a Python float)


def ids_embedding(embeddings: torch.nn.Module, model) -> torch.nn.Module:
    """`embeddings` as `model`'s forward applies it to input_ids (the module itself where no factor is put on it)."""
    scale = ids_scale(model)
    return embeddings if scale == 1.0 else ScaledIdsEmbedding(embeddings, scale)


def text_embedding_of(model) -> torch.nn.Module:
    """A transformers model's (or a PeftModel's base model's) input embedding, as its forward applies it to input_ids."""
    return ids_embedding(input_embeddings_of(model), innermost_model(model))
