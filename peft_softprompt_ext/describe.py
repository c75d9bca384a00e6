"""Read a soft prompt back as words: the nearest vocabulary tokens of each virtual token."""

from __future__ import annotations

import torch

from ._peft_compat import input_embeddings_of, prompt_table_of
from .init import embed_token_ids, usable_token_ids


@torch.no_grad()
def describe_prompt(peft_model, tokenizer, k: int = 5, adapter_name: str | None = None, task=None, chunk: int = 8192):
    """The `k` nearest usable vocabulary tokens (cosine) of every virtual token, as data.

    Tokens are compared in the space the model consumes (the embedding module's output), and
    special/reserved tokens are left out.

    Returns:
        A list with one entry per virtual token: `{"position": i, "nearest": [{"token": str,
        "token_id": int, "cosine": float}, ...]}`, nearest first.
    """
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    embeddings = input_embeddings_of(peft_model)
    prompt = torch.nn.functional.normalize(prompt_table_of(peft_model, adapter_name, task).float().cpu(), dim=-1)
    candidates = usable_token_ids(embeddings.weight.shape[0], tokenizer, getattr(peft_model, "config", None))
    k = min(k, len(candidates))
    best_scores = torch.full((prompt.shape[0], k), -2.0)
    best_ids = torch.zeros((prompt.shape[0], k), dtype=torch.long)
    for start in range(0, len(candidates), chunk):
        ids = candidates[start : start + chunk]
        rows = torch.nn.functional.normalize(embed_token_ids(embeddings, ids), dim=-1)
        scores = torch.cat((best_scores, prompt @ rows.T), dim=1)
        pool = torch.cat((best_ids, ids.expand(prompt.shape[0], -1)), dim=1)
        best_scores, order = scores.topk(k, dim=1)
        best_ids = pool.gather(1, order)
    return [
        {
            "position": position,
            "nearest": [
                {"token": tokenizer.convert_ids_to_tokens(int(i)), "token_id": int(i), "cosine": float(s)}
                for i, s in zip(best_ids[position], best_scores[position])
            ],
        }
        for position in range(prompt.shape[0])
    ]
