"""The encoder of deep prompt tuning: every layer's keys and values per virtual token, as one table."""

from __future__ import annotations

import inspect
import warnings

import torch

from .. import layer_prefix
from .._peft_compat import task_type_name
from ..eval_mode import in_eval_mode
from ..ids_embedding import decoder_rows_factor
from ..init import check_tokenizer_fits
from ..prompt_bank import KEY_VALUE_TYPES, load_saved_peft_type, load_saved_prompt, saved_base_tensors
from ..prompt_encoder import KEY_VALUES
from ..prompt_table import PromptTableEncoder
from ..vocab_sampled.config import VocabSampling
from ..vocab_sampled.model import initial_token_rows, load_tokenizer
from .config import DeepInit


def _input_rows(config, word_embeddings, model_config, text_tokens: int) -> torch.Tensor:
    """The input rows [P, D] whose keys and values start the prompt (text, sampled tokens or a shallow prompt)."""
    length = config.num_virtual_tokens
    if config.deep_init == DeepInit.TEXT:
        tokenizer = load_tokenizer(config)
        check_tokenizer_fits(tokenizer, word_embeddings.weight.shape[0])  # (found 2026-12-07: a bare IndexError, or silence)
        ids = tokenizer(config.init_text, add_special_tokens=False)["input_ids"]
        if len(ids) < length:
            raise ValueError(f"init_text has {len(ids)} tokens but num_virtual_tokens={length}: give a text of at least "
                             f"{length} tokens (it is not padded), or fewer virtual tokens.")  # fmt: skip
        device = word_embeddings.weight.device
        return word_embeddings(torch.tensor(ids[:length], device=device))
    if config.deep_init == DeepInit.PROMPT:
        kind = load_saved_peft_type(config.init_prompt, config.init_prompt_revision)
        if kind in KEY_VALUE_TYPES:  # its table is keys and values, not input rows (the widths may even agree)
            raise ValueError(f"init_prompt {config.init_prompt!r} is a {kind} adapter (keys and values per layer); deep_init="
                             "'prompt' starts from a shallow prompt's input rows. To go on training a deep prompt, load it "
                             "with PeftModel.from_pretrained(base, folder, is_trainable=True).")  # fmt: skip
        prompt, _ = load_saved_prompt(config.init_prompt, word_embeddings.weight.shape[1], config.base_model_fingerprint,
                                      config.allow_base_model_mismatch, config.init_prompt_revision)  # fmt: skip
        if prompt.shape[0] != length:
            raise ValueError(f"init_prompt {config.init_prompt!r} has {prompt.shape[0]} virtual tokens but num_virtual_tokens={length}.")
        others = sorted(saved_base_tensors(config.init_prompt, config.init_prompt_revision))
        if others:  # (found 2026-12-07: a GPT-2 classifier's step 0 was 4.7 off its shallow prompt's, without a word)
            warnings.warn(f"init_prompt {config.init_prompt!r} also holds {others}, trained with its prompt (e.g. a classifier "
                          "head): deep_init='prompt' takes the prompt only, so the new model's head starts as the base "
                          "model's and step 0 differs from that adapter by it.", stacklevel=2)  # fmt: skip
        return prompt.to(word_embeddings.weight)
    if config.deep_init == DeepInit.RANDOM:
        config = _uniform(config)
    return initial_token_rows(config, word_embeddings, model_config).to(word_embeddings.weight)


# what a deep init that promises some input's keys and values starts from, as its messages name it
_STARTS_FROM = {DeepInit.TEXT: "init_text", DeepInit.VOCAB_SAMPLED: "the sampled tokens", DeepInit.PROMPT: "init_prompt"}


def _warn_layers_without_a_prompt(config, base_model) -> None:
    """On a hybrid (attention beside layers that carry a state along the sequence: Qwen3-Next, Qwen3.5, Jamba, ...) a
    deep prompt is keys and values in the attention layers only: the other layers' state never sees it. An init that
    promises what some input leaves in front of the text (its keys and values) gets there only in part: warned, naming
    the layers (found 2026-12-07 by a probe: `deep_init="prompt"` on a tiny Qwen3.5 was 10.7 off the shallow prompt's
    logits at step 0, on a logit scale of 6.5, without a word; 0.0 with every layer attention)."""
    recurrent = layer_prefix.recurrent_layers_of(base_model)
    source = _STARTS_FROM.get(config.deep_init)
    if recurrent is None or source is None:
        return
    warnings.warn(f"{type(base_model).__name__} has layers that carry a state along the sequence ({recurrent}): a deep prompt "
                  f"is keys and values in its attention layers only, so deep_init={str(config.deep_init)!r} starts from what "
                  f"{source} leaves there, not from {source} in front of the input (those layers' state never sees it). A "
                  "shallow prompt (VocabSampledPromptTuningConfig) reaches every layer.", stacklevel=2)  # fmt: skip


def _warn_a_decoder_without_positions(config, base_model) -> None:
    """A deep start from tokens (text, sampled tokens, a shallow prompt) promises those tokens in front of the input,
    whose positions then move P on; a causal decoder whose forward takes no `position_ids` (BART's, Marian's, Pegasus',
    Whisper's `*ForCausalLM`) numbers the input from 0 beside the prompt in its layers, so that start is not those tokens
    (found 2026-12-08 by a probe: 1.4-5.7 off the sampled tokens fed by hand). Warned at the build (a review: a refusal
    of every deep prompt there refused self-consistent ones, and saved adapters no longer loaded); the prompt itself
    runs the same in forward and generate."""
    source = _STARTS_FROM.get(config.deep_init)
    if source is None or task_type_name(config) != "CAUSAL_LM" or not layer_prefix.is_causal_decoder(base_model):
        return
    if "position_ids" not in inspect.signature(base_model.forward).parameters:
        warnings.warn(f"{type(base_model).__name__}.forward takes no position_ids, so the input is numbered from 0 beside a deep "
                      f"prompt's keys and values, not past them: deep_init={str(config.deep_init)!r} starts from what {source} "
                      f"leaves in every layer, not from {source} in front of the input (a shallow prompt, "
                      "VocabSampledPromptTuningConfig, is exact there).", stacklevel=2)  # fmt: skip


def _warn_a_stack_without_a_prompt(config, base_model, slots) -> None:
    """A seq2seq deep prompt goes into the self-attention layers that run through transformers' attention interface:
    where one stack's do not (LongT5's local, BigBird-Pegasus' block-sparse and Pegasus-X's global encoder attention;
    T5Gemma2's decoder, which runs self- and cross-attention as one call), that stack gets no prompt: warned, naming it
    (found 2026-12-08 by a probe: built without a word)."""
    if task_type_name(config) != "SEQ_2_SEQ_LM" or not hasattr(base_model, "get_encoder"):
        return
    encoder = {id(module) for module in base_model.get_encoder().modules()}
    in_encoder = [id(base_model.get_submodule(slot.name)) in encoder for slot in slots]
    bare = "encoder" if not any(in_encoder) else "decoder" if all(in_encoder) else None
    if bare is not None:
        warnings.warn(f"{type(base_model).__name__}'s {bare} runs its self-attention outside transformers' attention interface, "
                      f"so a deep prompt goes into the {'decoder' if bare == 'encoder' else 'encoder'}'s layers only; the "
                      f"{bare} reads the input without one. A shallow prompt (VocabSampledPromptTuningConfig) goes in front of "
                      "the encoder's input.", stacklevel=2)  # fmt: skip


def _warn_a_start_read_otherwise(config, base_model, held_by_a_cache_prefix: bool) -> None:
    """A deep prompt started from a text, sampled tokens or a shallow prompt holds the keys and values they leave in
    every layer, which a causal decoder reads as those tokens in front of the input, unless its attention does more with
    keys and values in front of its own than attend to them (`layer_prefix.held_by_a_cache_prefix`: DiffLlama's two
    attentions per layer, Doge's key mask read from its values). There the start is not what it says: warned (found
    2026-12-08 by a probe: `deep_init="prompt"` 1.90 and 1.78 off the shallow prompt's logits on logit scales of 2.2
    and 2.5, without a word). Sliding windows and hybrids have their own limits (README, `_warn_layers_without_a_prompt`)."""
    source = _STARTS_FROM.get(config.deep_init)
    if held_by_a_cache_prefix or source is None:
        return
    if not layer_prefix.is_causal_decoder(base_model) or layer_prefix.sliding_window_of(base_model) is not None \
            or layer_prefix.recurrent_layers_of(base_model) is not None:  # fmt: skip
        return
    warnings.warn(f"{type(base_model).__name__}'s attention does more with keys and values in front of its own than attend to "
                  f"them (it reads a cached prefix otherwise than the tokens that left it), so deep_init={str(config.deep_init)!r} "
                  f"starts from the keys and values {source} leaves in every layer, not from {source} in front of the input: its "
                  "first logits are not those. deep_init='zero' or 'random' make no such promise.", stacklevel=2)  # fmt: skip


def _uniform(config):
    """A copy of `config` that samples uniformly (the tokens whose key/value scale `"random"` matches)."""
    import copy

    uniform = copy.copy(config)
    uniform.vocab_sampling = VocabSampling.UNIFORM
    return uniform


def initial_key_values(config, word_embeddings, model_config, base_model, slots) -> torch.Tensor:
    """The starting table [P, F] that `config.deep_init` describes."""
    width = layer_prefix.features(slots)
    if config.deep_init == DeepInit.ZERO:
        return torch.zeros(config.num_virtual_tokens, width)
    _warn_layers_without_a_prompt(config, base_model)
    with in_eval_mode(base_model):  # no dropout in what the prompt starts from
        rows = _input_rows(config, word_embeddings, model_config, config.num_virtual_tokens)
        try:
            factor = decoder_rows_factor(base_model)
            table = layer_prefix.key_values_of(base_model, slots, task_type_name(config), rows,
                                               decoder_rows=None if factor == 1.0 else rows * factor).float()  # fmt: skip
        except layer_prefix.RowsNotTaken as error:
            raise ValueError(f"deep_init={str(config.deep_init)!r} runs input rows through {type(base_model).__name__} as inputs_embeds, "
                             f"which it does not take ({error.__cause__.__class__.__name__}: {error.__cause__}). Use "
                             "deep_init='zero', which runs nothing.") from error.__cause__  # fmt: skip
    if config.deep_init != DeepInit.RANDOM:
        return table
    generator = torch.Generator().manual_seed(config.seed)
    blocks, start = [], 0
    for slot in slots:  # each layer's keys and values keep the scale real tokens give them
        block = table[:, start : start + slot.features].reshape(-1, 2, slot.kv_heads * slot.head_dim)
        scale = block.std(dim=(0, 2)).repeat_interleave(slot.kv_heads * slot.head_dim)
        blocks.append(torch.randn(table.shape[0], slot.features, generator=generator) * scale)
        start += slot.features
    return torch.cat(blocks, dim=1)


class DeepPromptEncoder(PromptTableEncoder):
    """Keys and values for P virtual tokens in front of every self-attention layer's.

    Example:
        >>> config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, deep_init="text",
        ...     init_text="Classify the sentiment of this review.", tokenizer_name_or_path=model_dir)
        >>> peft_model = peft.get_peft_model(model, config)

    Input: batch_size (int). Output: [batch_size, P, F], F = sum over layers of 2 x kv heads x head
    dim (PEFT PREFIX_TUNING's layout); `layer_prefix.split` turns it into each layer's keys/values
    [batch, kv heads, P, head dim], which the model's attention sees in front of its own.
    """

    prompt_kind = KEY_VALUES

    def prepare(self, config, base_model) -> None:
        if base_model is None:
            raise ValueError("A deep prompt needs the base model to find its self-attention layers.")
        slots = layer_prefix.discover_slots(base_model, task_type_name(config))
        _warn_a_stack_without_a_prompt(config, base_model, slots)
        layer_prefix.check_layout(config.deep_layout, slots, "This deep prompt")
        config.deep_layout = layer_prefix.layout_of(slots)
        window = layer_prefix.sliding_window_of(base_model)
        if window is not None and config.num_virtual_tokens >= window - 1:
            room = f"use fewer than {window - 1} virtual tokens" if window > 2 else f"a window of {window} leaves no room for a prompt"
            raise ValueError(f"num_virtual_tokens={config.num_virtual_tokens} does not fit in the model's sliding attention "
                             f"window {window}: {room}.")  # fmt: skip
        chunk = layer_prefix.chunked_attention_of(base_model)
        if chunk is not None:
            raise ValueError(f"{type(base_model).__name__} has chunked attention (attention_chunk_size={chunk}, e.g. Llama 4), which "
                             "deep prompts do not support: its chunks are counted from the input's own positions, so a prompt in "
                             "every layer would fall in other chunks in forward than as generate's cache prefix. Use a shallow "
                             "prompt (VocabSampledPromptTuningConfig) there.")  # fmt: skip
        self.slots = slots
        self.frozen_slots = layer_prefix.frozen_slot_count(config.trainable_layers, slots)  # the first layers keep their start
        self.exact_in_prefix_tuning = layer_prefix.held_by_a_cache_prefix(base_model, task_type_name(config), slots)
        self._base_model = [base_model]  # a list: not a registered submodule (its weights are not the adapter's)

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        _warn_a_start_read_otherwise(config, self._base_model[0], self.exact_in_prefix_tuning)
        _warn_a_decoder_without_positions(config, self._base_model[0])
        return initial_key_values(config, word_embeddings, model_config, self._base_model[0], self.slots)

    @property
    def plain_peft_type(self) -> str | None:
        return "PREFIX_TUNING" if self.exact_in_prefix_tuning else None

    @property
    def export_refusal(self) -> str | None:
        if self.exact_in_prefix_tuning:
            return None
        return layer_prefix.CACHE_PREFIX_REFUSAL
