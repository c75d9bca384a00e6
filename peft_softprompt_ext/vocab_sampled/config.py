"""Configuration of vocabulary-sampled prompt tuning."""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from typing import Optional, Union

from ..init import check_corpus_texts, corpus_digest
from ..options import Option, is_integer, parse_option
from ..plugin_config import PluginPromptConfig

PEFT_TYPE_NAME = "VOCAB_SAMPLED_PROMPT_TUNING"


class VocabSampling(Option):
    """Where the initial prompt tokens come from."""

    UNIFORM = "uniform"
    TOP_FREQUENT = "top_frequent"
    TASK_CORPUS = "task_corpus"
    CLASS_LABELS = "class_labels"


_NEEDS_TOKENIZER = {VocabSampling.TOP_FREQUENT, VocabSampling.TASK_CORPUS, VocabSampling.CLASS_LABELS}


@dataclass
class VocabSampledPromptTuningConfig(PluginPromptConfig):
    """Prompt tuning whose virtual tokens start as embeddings of sampled real tokens.

    PEFT's `SAMPLE_VOCAB` draws ids uniformly from every embedding row, specials and unused slots
    included. Lester et al. (2021) drew from the 5,000 most frequent tokens, or started from the
    class label words; this config offers those and more, reproducibly.

    Args:
        num_virtual_tokens (`int`): Number of virtual tokens (prompt length), > 0.
        vocab_sampling (`str`): `"uniform"` (every usable token), `"top_frequent"` (the
            `num_frequent_tokens` most frequent: counted in `corpus` if given, else the tokenizer's
            merge ranking), `"task_corpus"` (in proportion to token frequency in `corpus`, e.g. the
            training texts) or `"class_labels"` (the label words first, multi-token labels
            averaged, the rest sampled as `"top_frequent"`). Special, padding, reserved/unused and
            byte-fallback tokens are never sampled; sampling is without replacement.
        num_frequent_tokens (`int`): N for `"top_frequent"` and the class-label fill (5000).
        class_labels (`list[str]`): Label words for `"class_labels"`, e.g. `[" positive", " negative"]`.
        corpus (`list[str]` or `str`): Texts (or a path to a one-text-per-line file, read when the
            prompt is initialised) to count token frequencies in. Not saved: the saved config keeps
            `corpus_digest` instead.
        corpus_digest (`str`): sha256 of the corpus, filled in automatically.
        seed (`int`): Seed of the sampling; the same seed gives the same sampled rows on any machine. A
            `residual_mlp` reparameterisation's weights (and an attention mixture's) are drawn from torch's global
            generator, as PEFT's are: seed it too (`transformers.set_seed`, as the recipes do) for the same start.
        norm_matching (`bool`): Rescale every initial row to the mean norm of the usable vocabulary
            (as the model consumes it). Useful when averaged label words come out short.
        tokenizer_name_or_path (`str`): Tokenizer to read the vocabulary with; required by every
            strategy but `"uniform"` (which then only excludes the special ids of the model config).
        tokenizer_kwargs (`dict`): Extra arguments for `AutoTokenizer.from_pretrained`
            (`trust_remote_code` is always dropped).
        base_model_fingerprint (`dict`): Set automatically; loading into another base model is refused.
    """

    PEFT_TYPE_NAME = PEFT_TYPE_NAME

    vocab_sampling: Union[VocabSampling, str] = field(
        default=VocabSampling.UNIFORM,
        metadata={"help": "Initial tokens: 'uniform', 'top_frequent', 'task_corpus' or 'class_labels'."},
    )
    num_frequent_tokens: int = field(
        default=5000, metadata={"help": "How many of the most frequent tokens 'top_frequent' draws from."}
    )
    class_labels: Optional[list[str]] = field(
        default=None, metadata={"help": "Label words placed first by 'class_labels', e.g. [' positive', ' negative']."}
    )
    corpus: Optional[Union[list[str], str]] = field(
        default=None,
        metadata={"help": "Texts (or a text file path) whose token frequencies guide sampling. Not saved."},
    )
    corpus_digest: Optional[str] = field(
        default=None, metadata={"help": "sha256 of the corpus used at initialisation (set automatically)."}
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed: same seed, same sampled rows (an MLP's weights: torch's global seed)."})
    norm_matching: bool = field(
        default=False, metadata={"help": "Rescale initial rows to the mean norm of the usable vocabulary."}
    )
    tokenizer_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer for the vocabulary; needed by all strategies but 'uniform'."}
    )
    tokenizer_kwargs: Optional[dict] = field(
        default=None, metadata={"help": "Keyword arguments for AutoTokenizer.from_pretrained."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.vocab_sampling = parse_option(VocabSampling, self.vocab_sampling, "vocab_sampling")
        if not is_integer(self.num_frequent_tokens) or self.num_frequent_tokens <= 0:
            raise ValueError(f"num_frequent_tokens must be a positive integer, got {self.num_frequent_tokens!r}.")
        if not is_integer(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in 0..2**63-1 (it seeds torch.Generator), got {self.seed!r}.")
        if not isinstance(self.norm_matching, bool):
            raise ValueError(f"norm_matching must be True or False, got {self.norm_matching!r}.")
        if self.tokenizer_kwargs is not None and not isinstance(self.tokenizer_kwargs, dict):
            raise ValueError(f"tokenizer_kwargs must be a dict of AutoTokenizer.from_pretrained arguments, got {self.tokenizer_kwargs!r}.")
        if self.tokenizer_name_or_path is not None and not isinstance(self.tokenizer_name_or_path, (str, os.PathLike)):
            raise ValueError(f"tokenizer_name_or_path must be a tokenizer folder or Hub id (a string), got {self.tokenizer_name_or_path!r}.")
        if self.tokenizer_name_or_path is not None:
            self.tokenizer_name_or_path = os.fspath(self.tokenizer_name_or_path)  # (saved as JSON)
        if self.vocab_sampling in _NEEDS_TOKENIZER and not self.tokenizer_name_or_path:
            raise ValueError(f"vocab_sampling={self.vocab_sampling.value!r} needs tokenizer_name_or_path; got {self.tokenizer_name_or_path!r}.")
        self._validate_class_labels()
        if isinstance(self.corpus, os.PathLike):  # a text file as a Path (found 2026-12-07: refused as "got PosixPath")
            self.corpus = os.fspath(self.corpus)
        if isinstance(self.corpus, (list, tuple)):  # texts: identified now; a file path is read (and identified) at init
            self.corpus = check_corpus_texts(self.corpus)
            self.corpus_digest = corpus_digest(self.corpus)
        elif self.corpus is not None and not isinstance(self.corpus, str):
            raise ValueError(f"corpus must be a list of texts or a text file path, got {type(self.corpus).__name__}.")
        if self.vocab_sampling == VocabSampling.TASK_CORPUS and self.corpus is None and self.corpus_digest is None:
            raise ValueError("vocab_sampling='task_corpus' needs corpus= (a list of texts or a text file path).")

    def _validate_class_labels(self):
        if self.vocab_sampling != VocabSampling.CLASS_LABELS:
            return
        labels = self.class_labels
        if not labels or not isinstance(labels, (list, tuple)):
            raise ValueError(f"vocab_sampling='class_labels' needs a non-empty list of class_labels, got {labels!r}.")
        bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
        if bad:
            raise ValueError(f"class_labels must be non-empty strings; bad entries: {bad!r}.")
        if len(labels) > self.num_virtual_tokens:
            raise ValueError(
                f"{len(labels)} class_labels do not fit in num_virtual_tokens={self.num_virtual_tokens}; "
                "use at least one virtual token per label."
            )
        self.class_labels = list(labels)

    def to_dict(self):
        """The saved form: everything but the corpus itself (its digest identifies it)."""
        output = super().to_dict()
        output.pop("corpus", None)
        return output
