"""Prompt initialisers shared by every method: small factory functions over a vocabulary.

A soft prompt lives in the OUTPUT space of the model's input-embedding module (Gemma multiplies
rows by sqrt(hidden) in its forward), so every initialiser embeds token ids by calling that
module, never by reading its `.weight` rows.

The sampling population is the "usable" vocabulary: embedding rows that the tokenizer maps to a
real token, minus special/padding tokens, added special tokens, reserved/unused slots and
byte-fallback pieces (`<0x0A>`), which are not words.
"""

from __future__ import annotations

import os

import hashlib
import json
import re
import warnings
from collections.abc import Sequence

import torch

from .devices import execution_device

# Reserved/unused vocabulary slots across tokenizer families (Gemma <unused12>, BERT [unused3],
# T5 <extra_id_0>, Llama-3 <|reserved_special_token_4|>, chat markers <|im_start|>) and
# SentencePiece byte-fallback pieces.
_RESERVED_TOKEN = re.compile(
    r"^(<unused\d+>|\[unused\d+\]|<extra_id_\d+>|<\|.*\|>|<[^<>]*reserved[^<>]*>|<0x[0-9A-Fa-f]{2}>)$",
    re.IGNORECASE,
)
_SPECIAL_ID_ATTRIBUTES = (
    "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id", "sep_token_id", "cls_token_id",
    "mask_token_id", "decoder_start_token_id",
)  # fmt: skip


def special_ids_of(model_config) -> set[int]:
    """The special ids a model's config names: its pad / bos / eos / ... ids and every other `*_token_id`, `*_token_ids`
    or `*_token_index` (a vision-language model's image, video and boundary placeholders, which its forward finds by
    their embedding where it gets inputs_embeds: found 2026-12-07 by a probe, a LLaVA prompt row sampled from the
    image token was taken for one more image), in the config and its text model's."""
    configs = [model_config]
    if hasattr(model_config, "get_text_config"):
        configs.append(model_config.get_text_config())
    found = set()
    for config in (c for c in configs if c is not None):
        names = set(_SPECIAL_ID_ATTRIBUTES)
        names.update(name for name in vars(config) if name.endswith(("_token_id", "_token_ids", "_token_index")))
        for name in names:
            value = getattr(config, name, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            found.update(int(v) for v in values if isinstance(v, int) and not isinstance(v, bool))
    return found


def check_tokenizer_fits(tokenizer, num_embeddings: int) -> None:
    """Refuse a tokenizer with more tokens than the model's input embedding has rows (another model's)."""
    if len(tokenizer) > num_embeddings:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's input embedding has only "
            f"{num_embeddings} rows: tokenizer and model do not match."
        )


def usable_token_ids(num_embeddings: int, tokenizer=None, model_config=None) -> torch.Tensor:
    """Sorted ids [n] that may seed a prompt: real tokens, no special/padding/reserved ones.

    Without a tokenizer only the special ids named in `model_config` can be excluded.
    """
    excluded = special_ids_of(model_config)
    limit = num_embeddings
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, num_embeddings)
        limit = len(tokenizer)
        excluded.update(tokenizer.all_special_ids)
        excluded.update(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
        for index, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(limit)))):
            if token is None or token == "" or _RESERVED_TOKEN.match(token):
                excluded.add(index)
    keep = torch.ones(limit, dtype=torch.bool)
    keep[[i for i in excluded if 0 <= i < limit]] = False
    return keep.nonzero().squeeze(1)


def merge_rank_order(tokenizer) -> torch.Tensor:
    """All token ids [V], most frequent first, as the tokenizer's training ranked them.

    BPE: the alphabet first, then tokens in the order their merges were learned. Unigram
    (SentencePiece): by piece log-probability. Other models (WordPiece): id order.
    """
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"] if hasattr(tokenizer, "backend_tokenizer") else {}
    size = len(tokenizer)
    if model.get("type") == "Unigram":
        scores = torch.full((size,), float("-inf"))
        for index, (_, score) in enumerate(model["vocab"][:size]):
            scores[index] = score
        return torch.argsort(scores, descending=True, stable=True)
    if model.get("type") == "BPE":
        vocab, rank = model["vocab"], torch.arange(size, dtype=torch.float64)
        for merge_index, merge in enumerate(model.get("merges", [])):
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            token_id = vocab.get(left + right)
            if token_id is not None and token_id < size:
                rank[token_id] = size + merge_index  # merged tokens come after the alphabet
        return torch.argsort(rank, stable=True)
    return torch.arange(size)


def read_corpus(corpus) -> list[str]:
    """A corpus given as texts, or as a path to a UTF-8 file with one text per line."""
    if isinstance(corpus, str):
        if not os.path.isfile(corpus):
            raise FileNotFoundError(f"corpus={corpus!r} is no text file here (a path to a UTF-8 file, one text per line, or a list of texts).")
        try:
            with open(corpus, encoding="utf-8") as handle:
                return [line.rstrip("\n") for line in handle if line.strip()]
        except UnicodeDecodeError as error:  # (found 2026-12-08 by a probe: a bare UnicodeDecodeError, no file named)
            raise ValueError(f"corpus={corpus!r} is not UTF-8 text ({error}): save it as UTF-8, one text per line.") from None
    return check_corpus_texts(corpus)


def check_corpus_texts(texts) -> list[str]:
    texts = list(texts)
    bad = [text for text in texts if not isinstance(text, str)]
    if bad:
        raise ValueError(f"corpus must be a list of strings or a path to a text file; found {bad[:3]!r}.")
    return texts


def corpus_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts (order matters): saved instead of the corpus to identify it."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def corpus_token_counts(tokenizer, texts: Sequence[str], num_embeddings: int) -> torch.Tensor:
    """How often each token id occurs in `texts` (no special tokens added): float [num_embeddings]."""
    counts = torch.zeros(num_embeddings, dtype=torch.float64)
    for start in range(0, len(texts), 1024):
        encoded = tokenizer(list(texts[start : start + 1024]), add_special_tokens=False)["input_ids"]
        flat = torch.tensor([i for ids in encoded for i in ids], dtype=torch.long)
        if flat.numel():
            counts += torch.bincount(flat, minlength=num_embeddings)[:num_embeddings].double()
    return counts


def check_corpus_has_tokens(texts: Sequence[str], usable_counts: torch.Tensor) -> None:
    """A corpus given to rank or weight tokens must hold at least one usable (not special) token."""
    if not bool((usable_counts > 0).any()):
        raise ValueError(f"corpus ({len(texts)} text{'s' if len(texts) != 1 else ''}) holds no usable token: it is empty "
                         "or only special tokens; give texts of the task (e.g. its training inputs).")  # fmt: skip


def sample_without_replacement(population: torch.Tensor, count: int, generator: torch.Generator, weights=None):
    """`count` ids from `population` [n] (optionally weighted), without replacement when n allows."""
    if weights is None:
        weights = torch.ones(len(population), dtype=torch.float64)
    available = int((weights > 0).sum())
    if available == 0:
        raise ValueError("Cannot sample prompt tokens: the population is empty.")
    replacement = available < count
    if replacement:
        warnings.warn(f"Only {available} distinct tokens to sample {count} virtual tokens from: sampling with replacement.")
    picks = torch.multinomial(weights.double(), count, replacement=replacement, generator=generator)
    return population[picks]


def top_frequent_population(ranked_ids: torch.Tensor, usable_ids: torch.Tensor, num_frequent: int) -> torch.Tensor:
    """The `num_frequent` highest-ranked usable ids."""
    usable = torch.zeros(int(max(ranked_ids.max(), usable_ids.max())) + 1, dtype=torch.bool)
    usable[usable_ids] = True
    ranked_usable = ranked_ids[usable[ranked_ids]]
    if num_frequent > len(ranked_usable):
        raise ValueError(
            f"num_frequent_tokens={num_frequent} is larger than the usable vocabulary ({len(ranked_usable)} tokens)."
        )
    return ranked_usable[:num_frequent]


@torch.no_grad()
def embed_token_ids(word_embeddings: torch.nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """Rows [n, D] (float32) as the model consumes them: the embedding module applied to the ids (on the device accelerate's
    hooks run it on, where they offload it: a card's readout after `cpu_offload`)."""
    return word_embeddings(token_ids.to(execution_device(word_embeddings))).float().cpu()


@torch.no_grad()
def mean_row_norm(word_embeddings: torch.nn.Module, token_ids: torch.Tensor, chunk: int = 8192) -> float:
    """Mean L2 norm of the embedded `token_ids`, computed in chunks to bound memory."""
    total = 0.0
    for start in range(0, len(token_ids), chunk):
        total += embed_token_ids(word_embeddings, token_ids[start : start + chunk]).norm(dim=-1).sum().item()
    return total / max(len(token_ids), 1)


def embed_label_words(word_embeddings: torch.nn.Module, tokenizer, labels: Sequence[str], usable_ids) -> torch.Tensor:
    """One row [len(labels), D] per label: the mean of its usable tokens' embeddings (multi-token labels)."""
    usable = set(usable_ids.tolist())
    rows = []
    for label in labels:
        all_ids = tokenizer(label, add_special_tokens=False)["input_ids"]
        ids = [i for i in all_ids if i in usable]
        if len(ids) == 0:
            raise ValueError(
                f"class label {label!r} tokenizes to no usable tokens (ids {all_ids} are special, reserved or "
                "absent); give a real label word."
            )
        rows.append(embed_token_ids(word_embeddings, torch.tensor(ids)).mean(dim=0))
    return torch.stack(rows)


def label_token_ids(tokenizer, labels: Sequence[str]) -> torch.Tensor:
    """Every token id the label words tokenize to."""
    ids = {i for label in labels for i in tokenizer(label, add_special_tokens=False)["input_ids"]}
    return torch.tensor(sorted(ids), dtype=torch.long)


def match_row_norms(rows: torch.Tensor, target_norm: float) -> torch.Tensor:
    """Rescale every row [n, D] to L2 norm `target_norm` (direction kept)."""
    return rows * (target_norm / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12))


@torch.no_grad()
def nearest_token_ids(queries: torch.Tensor, word_embeddings: torch.nn.Module, candidate_ids: torch.Tensor, k: int,
                      centre=None, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The `k` candidates nearest (cosine) to each query [m, D]: (scores [m, k], ids [m, k]), best first.

    Candidates are embedded as the model consumes them, in chunks to bound memory; `centre`, if
    given, is subtracted from queries and candidates first.
    """
    queries = queries.float() if centre is None else queries.float() - centre
    queries = torch.nn.functional.normalize(queries, dim=-1)
    best_scores = torch.full((len(queries), k), -2.0)
    best_ids = torch.zeros((len(queries), k), dtype=torch.long)
    for start in range(0, len(candidate_ids), chunk):
        ids = candidate_ids[start : start + chunk]
        rows = embed_token_ids(word_embeddings, ids)
        rows = torch.nn.functional.normalize(rows if centre is None else rows - centre, dim=-1)
        scores = torch.cat((best_scores, queries @ rows.T), dim=1)
        pool = torch.cat((best_ids, ids.expand(len(queries), -1)), dim=1)
        best_scores, order = scores.topk(k, dim=1)
        best_ids = pool.gather(1, order)
    return best_scores, best_ids
