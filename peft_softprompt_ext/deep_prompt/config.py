"""Configuration of deep prompt tuning: trainable keys and values in every self-attention layer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Union

from .. import layer_prefix
from ..options import Option, Reparameterization, check_revision, parse_option
from ..vocab_sampled.config import VocabSampledPromptTuningConfig

PEFT_TYPE_NAME = "DEEP_PROMPT_TUNING"


class DeepInit(Option):
    """Where a deep prompt's keys and values start."""

    TEXT = "text"  # what `init_text`'s first P tokens leave in every layer (PEFT CARTRIDGE's initialisation)
    VOCAB_SAMPLED = "vocab_sampled"  # the same for P tokens drawn by `vocab_sampling` (seeded)
    PROMPT = "prompt"  # what a trained shallow prompt (`init_prompt`) leaves: step 0 gives its logits exactly in a
    # causal LM (its rows see only each other); in encoders and seq2seq they also saw the input, so it is a start there
    ZERO = "zero"  # zeros
    RANDOM = "random"  # Gaussian, each layer's key/value scale measured on P sampled tokens


@dataclass
class DeepPromptTuningConfig(VocabSampledPromptTuningConfig):
    """Deep prompts (prefix tuning / P-Tuning v2): `num_virtual_tokens` trainable keys and values in
    front of every self-attention layer's own, in the model's cache layout (grouped-query heads and
    head dims as the model uses them). For CAUSAL_LM the input's positions start after the prompt,
    as if P tokens preceded it; encoders (SEQ_CLS) and seq2seq models (encoder and decoder
    self-attention) keep the input's own positions. Trainable values (no reparameterisation):
    2 x layers x P x (key/value heads x head dim).

    Args:
        num_virtual_tokens (`int`): Prompt length P, > 0 (and below W - 1 for a sliding attention window W).
        deep_init (`str`): `"text"`, `"vocab_sampled"` (default), `"prompt"`, `"zero"` or `"random"`
            (see `DeepInit`).
        init_text (`str`): The text whose first P tokens `"text"` runs through the frozen model
            (needs `tokenizer_name_or_path`; a text of fewer than P tokens is refused).
        init_prompt (`str`): A trained shallow prompt for `"prompt"`: a folder or Hub repo id of
            this plugin's single-prompt methods or plain PEFT PROMPT_TUNING, of P virtual tokens,
            made on this base model (its fingerprint is checked).
        init_prompt_revision (`str`): Hub revision of `init_prompt`.
        allow_base_model_mismatch (`bool`): Accept an `init_prompt` whose saved base-model
            fingerprint differs from this model's (e.g. one trained on a sibling checkpoint of the
            same width); its width and length are still checked.
        vocab_sampling, num_frequent_tokens, class_labels, corpus, seed, norm_matching,
        tokenizer_name_or_path, tokenizer_kwargs: as `VocabSampledPromptTuningConfig`, for
            `"vocab_sampled"` (and `seed` for `"random"`).
        reparameterization (`str`): None, `"residual_mlp"`: one MLP over every head's key and
            value vectors while training, or `"layer_scaled"`: the prompt is trained as raw x a fixed
            scale per layer's keys and per layer's values (their starting RMS), so that an optimizer
            step moves each part relative to its own size; saved collapsed either way.
    """

    PEFT_TYPE_NAME = PEFT_TYPE_NAME
    KEYS_AND_VALUES_POSSIBLE = True

    deep_init: Union[DeepInit, str] = field(
        default=DeepInit.VOCAB_SAMPLED, metadata={"help": "'text', 'vocab_sampled', 'prompt', 'zero' or 'random'."}
    )
    init_text: Optional[str] = field(default=None, metadata={"help": "deep_init='text': the text whose first P tokens start the prompt."})
    init_prompt: Optional[str] = field(
        default=None, metadata={"help": "deep_init='prompt': a trained shallow prompt (folder or Hub id) on this model."}
    )
    init_prompt_revision: Optional[str] = field(default=None, metadata={"help": "Hub revision of init_prompt."})
    allow_base_model_mismatch: bool = field(
        default=False, metadata={"help": "deep_init='prompt': accept an init_prompt saved for another base model."}
    )
    trainable_layers: Optional[int] = field(
        default=None, metadata={"help": "None: every layer's prompt trains; k: only the last k self-attention layers'."}
    )

    def __post_init__(self):
        self.deep_init = parse_option(DeepInit, self.deep_init, "deep_init")
        if isinstance(self.init_prompt, os.PathLike):  # a folder as a Path (saved as JSON: found 2026-12-07, a bare TypeError)
            self.init_prompt = os.fspath(self.init_prompt)
        super().__post_init__()
        check_revision("init_prompt_revision", self.init_prompt_revision)
        if self.deep_init == DeepInit.TEXT:
            if not isinstance(self.init_text, str) or not self.init_text.strip():
                raise ValueError(f"deep_init='text' needs a non-empty init_text, got {self.init_text!r}.")
            if not self.tokenizer_name_or_path:
                raise ValueError(f"deep_init='text' needs tokenizer_name_or_path to read init_text; got {self.tokenizer_name_or_path!r}.")
        if self.deep_init == DeepInit.PROMPT and (not isinstance(self.init_prompt, str) or not self.init_prompt):
            raise ValueError(f"deep_init='prompt' needs init_prompt (a trained prompt's folder or Hub id), got {self.init_prompt!r}.")
        if not isinstance(self.allow_base_model_mismatch, bool):
            raise ValueError(f"allow_base_model_mismatch must be True or False, got {self.allow_base_model_mismatch!r}.")
        layer_prefix.check_trainable_layers(self.trainable_layers, self.reparameterization == Reparameterization.RESIDUAL_MLP)
