"""Read a soft prompt back as words: the nearest vocabulary tokens of each virtual token."""

from __future__ import annotations

import torch

from ._peft_compat import input_embeddings_of, prompt_table_of
from .init import nearest_token_ids, usable_token_ids
from .options import is_integer


@torch.no_grad()
def describe_prompt(peft_model, tokenizer, k: int = 5, adapter_name: str | None = None, task=None, chunk: int = 8192):
    """The `k` nearest usable vocabulary tokens (cosine) of every virtual token, as data.

    Tokens are compared in the space the model consumes (the embedding module's output), and
    special/reserved tokens are left out.

    Returns:
        A list with one entry per virtual token: `{"position": i, "nearest": [{"token": str,
        "token_id": int, "cosine": float}, ...]}`, nearest first.
    """
    if not is_integer(k) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if not is_integer(chunk) or chunk <= 0:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}.")
    if not hasattr(peft_model, "peft_config"):
        raise ValueError(f"describe_prompt reads a PeftModel's prompt; got a {type(peft_model).__name__} (no adapter).")
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise ValueError(f"tokenizer must be the base model's tokenizer (AutoTokenizer.from_pretrained(...)), got {tokenizer!r:.80}.")
    embeddings = input_embeddings_of(peft_model)
    prompt = prompt_table_of(peft_model, adapter_name, task).detach().cpu()
    candidates = usable_token_ids(embeddings.weight.shape[0], tokenizer, getattr(peft_model, "config", None))
    best_scores, best_ids = nearest_token_ids(prompt, embeddings, candidates, min(k, len(candidates)), chunk=chunk)
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
