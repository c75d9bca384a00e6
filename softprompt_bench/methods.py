"""Recipe method names -> PEFT configs: the one list of the methods a recipe can train.

Each builder takes (recipe config, task type, tokenizer folder, label words, training texts) and
returns a PEFT config (None: no adapter). Adding a plugin method = one builder + one line in BUILDERS.
"""

from __future__ import annotations

import peft

from peft_softprompt_ext import (
    DeepPromptTuningConfig,
    MixturePromptTuningConfig,
    ProjectedPromptTuningConfig,
    VocabSampledPromptTuningConfig,
)


def _prompt_common(config, task_type: str) -> dict:
    return dict(task_type=task_type, num_virtual_tokens=config.num_virtual_tokens)


def _plugin_common(config, task_type: str) -> dict:
    common = dict(_prompt_common(config, task_type), reparameterization=config.reparameterization,
                  reparameterization_hidden=config.reparameterization_hidden)  # fmt: skip
    if task_type == "CAUSAL_LM":
        common["shared_prefix"] = config.shared_prefix
    return common


def _sampling_extras(config, label_words, corpus) -> dict:
    """What `config.vocab_sampling` reads from the task: its label words or its training corpus."""
    if config.vocab_sampling == "class_labels":
        return {"class_labels": list(label_words)}
    if config.vocab_sampling == "task_corpus":
        return {"corpus": list(corpus)}
    return {}


def vocab_sampled(config, task_type, tokenizer_dir, label_words, corpus):
    extra = _sampling_extras(config, label_words, corpus)
    return VocabSampledPromptTuningConfig(
        vocab_sampling=config.vocab_sampling, seed=config.seed, norm_matching=config.norm_matching,
        num_frequent_tokens=config.num_frequent_tokens, tokenizer_name_or_path=tokenizer_dir,
        **_plugin_common(config, task_type), **extra,
    )  # fmt: skip


def deep_prompt(config, task_type, tokenizer_dir, label_words, corpus):
    extra = {}
    if config.deep_init == "vocab_sampled":  # (norm_matching was dropped until 2026-12-07)
        extra = dict(_sampling_extras(config, label_words, corpus), norm_matching=config.norm_matching)
    if config.deep_init == "text":  # repeated to P tokens, as for cartridge: the plugin does not pad a short text
        from transformers import AutoTokenizer

        extra["init_text"] = _repeat_to(AutoTokenizer.from_pretrained(tokenizer_dir), config.init_text, config.num_virtual_tokens)
    if config.deep_init == "prompt":  # a trained shallow prompt of this model and P (its fingerprint is checked)
        extra["init_prompt"] = config.init_prompt
    return DeepPromptTuningConfig(
        deep_init=config.deep_init, vocab_sampling=config.vocab_sampling, seed=config.seed,
        num_frequent_tokens=config.num_frequent_tokens, tokenizer_name_or_path=tokenizer_dir,
        task_type=task_type, num_virtual_tokens=config.num_virtual_tokens, reparameterization=config.reparameterization,
        reparameterization_hidden=config.reparameterization_hidden, trainable_layers=config.trainable_layers,
        modules_to_save=list(config.modules_to_save) or None, **extra,
    )  # fmt: skip


def prefix_tuning(config, task_type, tokenizer_dir, label_words, corpus):
    """Vanilla PEFT PrefixTuningConfig without projection: trainable keys/values per layer (random init)."""
    return peft.PrefixTuningConfig(prefix_projection=False, **_prompt_common(config, task_type))


def cartridge(config, task_type, tokenizer_dir, label_words, corpus):
    """Vanilla PEFT CartridgeConfig (first virtual token frozen, PEFT's default); keys/values from init_text
    by PEFT's `initialize_kv_prefix_from_text` once the adapter exists (`prepare_adapter`)."""
    return peft.CartridgeConfig(**_prompt_common(config, task_type))


def prepare_adapter(config, model, tokenizer) -> None:
    """What a method does to its adapter after `get_peft_model` (PEFT's own initialisers)."""
    if config.method == "cartridge":
        from peft.tuners.cartridge.utils import initialize_kv_prefix_from_text

        text = _repeat_to(tokenizer, config.init_text, config.num_virtual_tokens)
        initialize_kv_prefix_from_text(model, tokenizer, text=text, use_chat_template=False)


def _repeat_to(tokenizer, text: str, tokens: int) -> str:
    """`text` repeated until it has at least `tokens` tokens (PEFT's initialiser needs that many)."""
    repeated = text
    while len(tokenizer(repeated, add_special_tokens=False)["input_ids"]) < tokens:
        repeated = f"{repeated} {text}"
    return repeated


def mixture(config, task_type, tokenizer_dir, label_words, corpus):
    return MixturePromptTuningConfig(source_prompts=list(config.source_prompts), num_tasks=1, mixing=config.mixing,
                                     trainable_layers=config.trainable_layers, **_plugin_common(config, task_type))  # fmt: skip


def projected(config, task_type, tokenizer_dir, label_words, corpus):
    return ProjectedPromptTuningConfig(source_adapter=config.source_adapter, projection=config.projection,
                                       **_plugin_common(config, task_type))  # fmt: skip


def prompt_tuning(init: str):
    """Vanilla PEFT prompt tuning with PEFT's `init` (RANDOM, SAMPLE_VOCAB or TEXT)."""

    def build(config, task_type, tokenizer_dir, label_words, corpus):
        if init == "TEXT":
            return peft.PromptTuningConfig(prompt_tuning_init="TEXT", prompt_tuning_init_text=config.init_text,
                                           tokenizer_name_or_path=tokenizer_dir, **_prompt_common(config, task_type))  # fmt: skip
        return peft.PromptTuningConfig(prompt_tuning_init=init, **_prompt_common(config, task_type))

    return build


def lora(config, task_type, tokenizer_dir, label_words, corpus):
    return peft.LoraConfig(task_type=task_type, r=config.lora_r, lora_alpha=config.lora_alpha,
                           target_modules=list(config.lora_target_modules), lora_dropout=0.0,
                           modules_to_save=list(config.modules_to_save) or None)  # fmt: skip


def no_adapter(config, task_type, tokenizer_dir, label_words, corpus):
    return None


# method name -> (builder, what it is). The recipes accept exactly these names.
BUILDERS = {
    "vocab_sampled": (vocab_sampled, "this plugin: VocabSampledPromptTuningConfig (see vocab_sampling)"),
    "deep_prompt": (deep_prompt, "this plugin: DeepPromptTuningConfig, keys/values in every layer (see deep_init)"),
    "mixture": (mixture, "this plugin: MixturePromptTuningConfig over source_prompts (see mixing)"),
    "projected": (projected, "this plugin: ProjectedPromptTuningConfig (source_adapter moved by projection)"),
    "prompt_tuning_random": (prompt_tuning("RANDOM"), "vanilla PEFT PromptTuningConfig, RANDOM init"),
    "prompt_tuning_sample_vocab": (prompt_tuning("SAMPLE_VOCAB"), "vanilla PEFT, SAMPLE_VOCAB init"),
    "prompt_tuning_text": (prompt_tuning("TEXT"), "vanilla PEFT, TEXT init (init_text)"),
    "prefix_tuning": (prefix_tuning, "vanilla PEFT PrefixTuningConfig, prefix_projection=False"),
    "cartridge": (cartridge, "vanilla PEFT CartridgeConfig, keys/values from init_text (PEFT's initialiser)"),
    "lora": (lora, "vanilla PEFT LoraConfig"),
    "full_finetune": (no_adapter, "every base parameter trains"),
    "zero_shot": (no_adapter, "no training: the frozen base model, evaluated as is"),
}
METHODS = tuple(BUILDERS)
PLUGIN_METHODS = tuple(name for name, (_, what) in BUILDERS.items() if what.startswith("this plugin"))  # (their configs' settings)


def build_peft_config(config, task_type: str, tokenizer_dir: str, label_words: list[str], corpus=None):
    """The PEFT config of `config.method` (None for full fine-tuning and zero-shot)."""
    if config.method not in BUILDERS:
        raise ValueError(f"method={config.method!r} is unknown; expected one of {list(METHODS)}.")
    return BUILDERS[config.method][0](config, task_type, tokenizer_dir, label_words, corpus)
