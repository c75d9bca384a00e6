"""Recipe method names -> PEFT configs, so every method is built the same way in every recipe."""

from __future__ import annotations

import peft

from .mixture import MixturePromptTuningConfig
from .projection import ProjectedPromptTuningConfig
from .vocab_sampled import VocabSampledPromptTuningConfig

PROMPT_METHODS = ("vocab_sampled", "mixture", "projected", "prompt_tuning_random", "prompt_tuning_sample_vocab", "prompt_tuning_text")


def build_peft_config(config, task_type: str, tokenizer_dir: str, label_words: list[str], corpus=None):
    """The PEFT config of `config.method` (None for full fine-tuning and zero-shot)."""
    method = config.method
    prompt_common = dict(task_type=task_type, num_virtual_tokens=config.num_virtual_tokens)
    plugin_common = dict(prompt_common, reparameterization=config.reparameterization,
                         reparameterization_hidden=config.reparameterization_hidden)  # fmt: skip
    if task_type == "CAUSAL_LM":
        plugin_common["shared_prefix"] = config.shared_prefix
    if method == "vocab_sampled":
        extra = {}
        if config.vocab_sampling == "class_labels":
            extra["class_labels"] = list(label_words)
        if config.vocab_sampling == "task_corpus":
            extra["corpus"] = list(corpus)
        return VocabSampledPromptTuningConfig(
            vocab_sampling=config.vocab_sampling, seed=config.seed, norm_matching=config.norm_matching,
            num_frequent_tokens=config.num_frequent_tokens,
            tokenizer_name_or_path=tokenizer_dir, **plugin_common, **extra,
        )  # fmt: skip
    if method == "mixture":
        return MixturePromptTuningConfig(source_prompts=list(config.source_prompts), num_tasks=1, mixing=config.mixing, **plugin_common)
    if method == "projected":
        return ProjectedPromptTuningConfig(source_adapter=config.source_adapter, projection=config.projection, **plugin_common)
    if method == "prompt_tuning_random":
        return peft.PromptTuningConfig(prompt_tuning_init="RANDOM", **prompt_common)
    if method == "prompt_tuning_sample_vocab":
        return peft.PromptTuningConfig(prompt_tuning_init="SAMPLE_VOCAB", **prompt_common)
    if method == "prompt_tuning_text":
        return peft.PromptTuningConfig(
            prompt_tuning_init="TEXT", prompt_tuning_init_text=config.init_text, tokenizer_name_or_path=tokenizer_dir,
            **prompt_common,
        )  # fmt: skip
    if method == "lora":
        return peft.LoraConfig(
            task_type=task_type, r=config.lora_r, lora_alpha=config.lora_alpha,
            target_modules=list(config.lora_target_modules), lora_dropout=0.0,
        )  # fmt: skip
    if method in ("full_finetune", "zero_shot"):
        return None
    raise ValueError(f"method={method!r} has no PEFT config builder.")
