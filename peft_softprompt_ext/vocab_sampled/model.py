"""The encoder of vocabulary-sampled prompt tuning: a table of virtual-token embeddings."""

from __future__ import annotations

import torch

from ..prompt_table import PromptTableEncoder
from .. import init, sources
from .config import VocabSampling


def load_tokenizer(config):
    """The config's `tokenizer_name_or_path` tokenizer (never with remote code); a missing local folder is named."""
    from transformers import AutoTokenizer

    kwargs = dict(config.tokenizer_kwargs or {})
    kwargs.pop("trust_remote_code", None)  # a saved config must never run remote code
    source = config.tokenizer_name_or_path
    if not sources.is_local(source):
        try:
            sources.check_hub_id(source)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"tokenizer_name_or_path: {error}") from None
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError) as error:  # (found 2026-12-08 by a probe: an adapter or model folder without
        # tokenizer files gave transformers' "Couldn't instantiate the backend tokenizer" (5.0: an ImportError asking for
        # protobuf), the field and folder unnamed; a Hub id's errors, e.g. offline, are transformers' own)
        if not sources.is_local(source):
            raise
        said = " ".join(str(error).split())
        raise ValueError(f"tokenizer_name_or_path={source!r}: AutoTokenizer could not load a tokenizer from this folder "
                         f"({type(error).__name__}: {said}). Give the folder of the base model's tokenizer, with its files.") from error  # fmt: skip


def _corpus_texts(config) -> list[str] | None:
    """The corpus's texts (a file path is read here, at initialisation), its digest recorded in the config."""
    if config.corpus is None:
        return None
    texts = init.read_corpus(config.corpus)
    config.corpus_digest = init.corpus_digest(texts)
    return texts


def _ranked_ids(counts: torch.Tensor | None, tokenizer, num_embeddings: int) -> torch.Tensor:
    """Token ids, most frequent first: by their corpus `counts` if given (ties, and the tokens the corpus never holds,
    in the tokenizer's own ranking), else the tokenizer's ranking."""
    by_tokenizer = init.merge_rank_order(tokenizer)
    if counts is None:
        return by_tokenizer
    listed = by_tokenizer[by_tokenizer < num_embeddings]
    unlisted = torch.ones(num_embeddings, dtype=torch.bool)
    unlisted[listed] = False
    ids = torch.cat((listed, unlisted.nonzero().squeeze(1)))
    return ids[torch.argsort(counts[ids], descending=True, stable=True)]


def _without_label_tokens(ids: torch.Tensor, population: torch.Tensor, label_ids: torch.Tensor, generator) -> torch.Tensor:
    """The fill with each drawn label token (its row is already in the prompt) swapped for another draw from the pool;
    a fill that drew none is kept as drawn, so the prompts of those seeds are what they always were."""
    hit = torch.isin(ids, label_ids)
    if not bool(hit.any()):
        return ids
    others = population[~torch.isin(population, label_ids)]
    if len(others) == 0:
        raise ValueError(f"The {len(population)} most frequent tokens (num_frequent_tokens) are all label tokens: nothing is "
                         "left to fill the virtual tokens after the labels; raise num_frequent_tokens.")  # fmt: skip
    unused = others[~torch.isin(others, ids)]
    ids = ids.clone()
    ids[hit] = init.sample_without_replacement(unused if len(unused) >= int(hit.sum()) else others, int(hit.sum()), generator)
    return ids


def initial_token_rows(config, word_embeddings: torch.nn.Module, model_config=None) -> torch.Tensor:
    """The initial prompt [num_virtual_tokens, token_dim] (float32) that `config` describes."""
    tokenizer = load_tokenizer(config) if config.tokenizer_name_or_path else None
    num_embeddings = word_embeddings.weight.shape[0]
    usable = init.usable_token_ids(num_embeddings, tokenizer, model_config)
    generator = torch.Generator().manual_seed(config.seed)
    strategy = config.vocab_sampling
    texts = _corpus_texts(config)
    counts = None
    if texts is not None and strategy != VocabSampling.UNIFORM:
        counts = init.corpus_token_counts(tokenizer, texts, num_embeddings)
        init.check_corpus_has_tokens(texts, counts[usable])
    count = config.num_virtual_tokens
    label_rows = None
    if strategy == VocabSampling.CLASS_LABELS:  # (checked here, at the start: a saved config's labels are not read again)
        repeated = sorted({label for label in config.class_labels if config.class_labels.count(label) > 1})
        if repeated:
            raise ValueError(f"class_labels repeat {repeated}: each label starts its own virtual token, so each must differ.")
        label_rows = init.embed_label_words(word_embeddings, tokenizer, config.class_labels, usable)
        count -= len(label_rows)
    if count == 0:  # class labels fill every virtual token
        ids = usable[:0]
    elif strategy == VocabSampling.UNIFORM:
        ids = init.sample_without_replacement(usable, count, generator)
    elif strategy == VocabSampling.TASK_CORPUS:
        if counts is None:
            raise ValueError("vocab_sampling='task_corpus' needs corpus= to initialise a new prompt (only its digest was given).")
        ids = init.sample_without_replacement(usable, count, generator, weights=counts[usable])
    else:  # TOP_FREQUENT, and the fill after the class labels
        population = init.top_frequent_population(_ranked_ids(counts, tokenizer, num_embeddings), usable, config.num_frequent_tokens)
        ids = init.sample_without_replacement(population, count, generator)
        if label_rows is not None:
            ids = _without_label_tokens(ids, population, init.label_token_ids(tokenizer, config.class_labels), generator)
    rows = init.embed_token_ids(word_embeddings, ids)
    if label_rows is not None:
        rows = torch.cat((label_rows, rows), dim=0)
    if config.norm_matching:
        rows = init.match_row_norms(rows, init.mean_row_norm(word_embeddings, usable))
    return rows


class VocabSampledPromptEmbedding(PromptTableEncoder):
    """A [num_virtual_tokens, token_dim] table initialised from sampled vocabulary embeddings.

    Example:
        >>> config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20,
        ...     vocab_sampling="top_frequent", tokenizer_name_or_path="path/to/tokenizer")
        >>> peft_model = peft.get_peft_model(model, config)   # builds this encoder

    Input: batch_size (int); task_ids, inputs_embeds and attention_mask are accepted and unused.
    Output shape: [batch_size, num_virtual_tokens, token_dim], the same rows for every batch item.
    """

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        return initial_token_rows(config, word_embeddings, model_config)
