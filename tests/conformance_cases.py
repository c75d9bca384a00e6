"""The conformance matrix, declared once: plugin configurations x tiny models x public paths.

`tests/test_conformance.py` runs every cell; `scripts/support_table.py` renders the README's
support table from the same declaration, so the table cannot say what the tests do not check.
A cell either works (its check asserts numbers: logits, tokens, gradients) or is an expected
refusal: the check must raise the declared error, whose message says why and what to do instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import testing_common as common

CAUSAL, SEQ2SEQ, SEQ_CLS = "CAUSAL_LM", "SEQ_2_SEQ_LM", "SEQ_CLS"
MODELS = {"gpt2": CAUSAL, "llama": CAUSAL, "gemma3": CAUSAL, "t5": SEQ2SEQ, "bert": SEQ_CLS}


@dataclass(frozen=True)
class ConfigCase:
    """One registered plugin configuration the matrix covers."""

    name: str
    label: str  # the README row
    num_tasks: int = 1
    mixing: str | None = None  # mixtures only
    trains: bool = True  # mixing="one_hot" serves fixed prompts: nothing trains
    fast: bool = True  # False: its cells run only with `-m slow` (an init variant of a covered method)
    trainable_layers: int | None = None  # deep cases whose (target) prompts train only in the last k layers

    @property
    def input_dependent(self) -> bool:
        return self.mixing == "attention"

    @property
    def deep(self) -> bool:
        """Keys and values in every layer (a deep prompt, or a mixture of them)."""
        return "deep" in self.name

    def build(self, task_type: str, model_name: str, variant: bool = False):
        """The PEFT config; `variant` gives a second adapter of the same kind (a mixture's bank reversed)."""
        return common.conformance_config(self.name, task_type, model_name, variant=variant)


CONFIGS = [
    ConfigCase("vocab_top_frequent", "vocab_sampled (top_frequent)"),
    ConfigCase("vocab_uniform", "vocab_sampled (uniform)", fast=False),
    ConfigCase("vocab_task_corpus", "vocab_sampled (task_corpus)", fast=False),
    ConfigCase("vocab_class_labels", "vocab_sampled (class_labels, norm_matching)", fast=False),
    ConfigCase("vocab_reparam", "vocab_sampled + residual_mlp"),
    ConfigCase("projected", "projected"),
    ConfigCase("mixture_task_1", "mixture, mixing=task, 1 task", mixing="task"),
    ConfigCase("mixture_task_2", "mixture, mixing=task, 2 tasks", num_tasks=2, mixing="task"),
    ConfigCase("mixture_task_2_reparam", "mixture, mixing=task, 2 tasks + residual_mlp", num_tasks=2, mixing="task"),
    ConfigCase("mixture_one_hot_2", "mixture, mixing=one_hot, 2 tasks (serve_prompts)", num_tasks=2, mixing="one_hot", trains=False),
    ConfigCase("mixture_attention_2", "mixture, mixing=attention, 2 tasks", num_tasks=2, mixing="attention"),
    ConfigCase("deep_vocab", "deep prompt (vocab_sampled init)"),
    ConfigCase("deep_text", "deep prompt (text init)", fast=False),
    ConfigCase("deep_from_prompt", "deep prompt (init from a shallow prompt)", fast=False),
    ConfigCase("deep_reparam", "deep prompt + residual_mlp"),
    ConfigCase("deep_layer_scaled", "deep prompt + layer_scaled"),
    ConfigCase("deep_top_layer", "deep prompt, trainable_layers=1 (the last layer trains)", trainable_layers=1),
    ConfigCase("mixture_deep_task_2", "mixture of deep prompts, mixing=task, 2 tasks", num_tasks=2, mixing="task"),
    ConfigCase("mixture_deep_task_2_top_layer_scaled", "mixture of deep prompts, mixing=task, 2 tasks, layer_scaled targets, trainable_layers=1",
               num_tasks=2, mixing="task", trainable_layers=1),  # fmt: skip
    ConfigCase("mixture_deep_one_hot_2", "mixture of deep prompts, mixing=one_hot, 2 tasks", num_tasks=2, mixing="one_hot", trains=False),
]
CONFIG_BY_NAME = {case.name: case for case in CONFIGS}


@dataclass(frozen=True)
class Path:
    """A public PEFT / transformers / trl path a user calls."""

    name: str
    label: str
    task_types: tuple[str, ...] = (CAUSAL, SEQ2SEQ, SEQ_CLS)
    slow: bool = False  # seconds per cell: only `-m slow` (and the cells listed in CI_CELLS)


PATHS = [
    Path("forward_right_pad", "forward, right padding"),
    Path("forward_left_pad", "forward, left padding"),
    Path("gradients", "backward: prompt gradients"),
    Path("generate_greedy", "generate greedy, cache on/off", (CAUSAL, SEQ2SEQ)),
    Path("generate_beams", "generate beams, num_return_sequences", (CAUSAL, SEQ2SEQ)),
    Path("generate_sampling", "generate sampling, num_return_sequences", (CAUSAL, SEQ2SEQ)),
    Path("generate_static_cache", 'generate greedy, cache_implementation="static"', (CAUSAL, SEQ2SEQ)),
    Path("generate_continue_cache", "generate again from a returned cache (past_key_values)", (CAUSAL,)),
    Path("generate_inputs_embeds", "generate from inputs_embeds", (CAUSAL,)),
    Path("save_load", "save_pretrained / from_pretrained"),
    Path("load_trainable", "from_pretrained(is_trainable=True)"),
    Path("auto_peft_model", "AutoPeftModel*.from_pretrained"),
    Path("hub", "push_to_hub / pull", slow=True),
    Path("export", "export_prompt_tuning"),
    Path("vanilla_copy", "vanilla/ copy in plain PEFT"),
    Path("prompt_embedding_to_save", "get_prompt_embedding_to_save"),
    Path("nb_trainable_parameters", "get_nb_trainable_parameters"),
    Path("add_set_delete_adapter", "add_adapter / set_adapter / delete_adapter"),
    Path("load_adapter", "load_adapter"),
    Path("disable_adapter", "disable_adapter"),
    Path("merge_and_unload", "merge_and_unload / unload"),
    Path("gradient_checkpointing", "gradient checkpointing"),
    Path("bf16", "bf16"),
    Path("torch_compile", "torch.compile(forward)", slow=True),
    Path("over_lora", "nested over a LoRA PeftModel", (CAUSAL, SEQ2SEQ, SEQ_CLS)),
    Path("trainer", "transformers Trainer", slow=True),
    Path("trainer_resume", "Trainer checkpoints, save_model, resume_from_checkpoint", slow=True),
    Path("sft_trainer", "trl SFTTrainer", (CAUSAL,), slow=True),
    Path("dpo_trainer", "trl DPOTrainer (ref_model=None: a frozen copy of the adapter)", (CAUSAL,), slow=True),
    Path("reward_trainer", "trl RewardTrainer (one-output head)", (SEQ_CLS,), slow=True),
    Path("pipeline_generation", 'pipeline("text-generation"), batched', (CAUSAL,)),
    Path("pipeline_classification", 'pipeline("text-classification"), batched', (SEQ_CLS,)),
]
PATH_BY_NAME = {path.name: path for path in PATHS}


@dataclass(frozen=True)
class Refusal:
    """An expected refusal: which cells, the error and message the check must raise, and why."""

    path: str
    applies: Callable[[ConfigCase, str], bool]
    error: type
    match: str
    why: str


def _attention(case: ConfigCase, model: str) -> bool:
    return case.input_dependent


def _multi_task(case: ConfigCase, model: str) -> bool:
    return case.num_tasks > 1


def _task_prompts(case: ConfigCase, model: str) -> bool:
    """Several tasks, each with one prompt (task-level mixing)."""
    return case.num_tasks > 1 and not case.input_dependent


def _always(case: ConfigCase, model: str) -> bool:
    return True


def _nothing_trains(case: ConfigCase, model: str) -> bool:
    """Fixed prompts (one_hot) on a model with no trained head: a training step has nothing to train."""
    return not case.trains and MODELS[model] != SEQ_CLS


def _deep_without_prefix_tuning(case: ConfigCase, model: str) -> bool:
    """Deep prompts where plain PEFT PREFIX_TUNING (a cache prefix) would differ: encoders, seq2seq, sliding windows."""
    return case.deep and model in ("gemma3", "t5", "bert")


def _input_prompt_in_causal_lm(case: ConfigCase, model: str) -> bool:
    """A prompt fed as input rows (not keys/values in every layer) of a causal LM."""
    return not case.deep and MODELS[model] == CAUSAL


def _input_prompt_in_sliding_window_lm(case: ConfigCase, model: str) -> bool:
    """A prompt fed as input rows of a causal LM with sliding-window layers (Gemma-3)."""
    return _input_prompt_in_causal_lm(case, model) and model == "gemma3"


def _one_hot_classifier(case: ConfigCase, model: str) -> bool:
    """A one_hot mixture (served prompts) of a classifier."""
    return case.mixing == "one_hot" and MODELS[model] == SEQ_CLS


_NOTHING_TRAINS = "one_hot serves fixed prompts: nothing requires a gradient (SEQ_CLS still trains its head)"


REFUSALS = [
    Refusal("gradients", _nothing_trains, ValueError, "Nothing in this model trains", _NOTHING_TRAINS),
    Refusal("gradient_checkpointing", _nothing_trains, ValueError, "Nothing in this model trains", _NOTHING_TRAINS),
    Refusal("trainer", _nothing_trains, ValueError, "Nothing in this model trains", _NOTHING_TRAINS),
    Refusal("trainer_resume", _nothing_trains, ValueError, "Nothing in this model trains", _NOTHING_TRAINS),
    Refusal("sft_trainer", _nothing_trains, ValueError, "Nothing in this model trains|task_ids is missing", _NOTHING_TRAINS),
    Refusal("export", _attention, ValueError, "every input its own prompt",
            "attention mixing computes a prompt per input: there is no single prompt for plain PEFT"),
    Refusal("prompt_embedding_to_save", _attention, ValueError, "every input its own prompt",
            "attention mixing computes a prompt per input"),
    Refusal("export", _deep_without_prefix_tuning, ValueError, "holds deep prompts exactly only for causal decoders",
            "plain PEFT PREFIX_TUNING or CARTRIDGE (a cache prefix) differs from a deep prompt in encoders, seq2seq models and sliding-window layers"),
    Refusal("generate_static_cache", _input_prompt_in_sliding_window_lm, ValueError, "does not fit a static cache.*sliding attention window",
            "a shallow prompt on sliding-window layers: a static cache has no room for its rows, and as keys and values in "
            "every layer it would never leave the window (the default dynamic cache works, and so do deep prompts)"),
    Refusal("merge_and_unload", _always, ValueError, "cannot be merged",
            "a soft prompt is an input, not a weight delta; use export_prompt_tuning, or unload() for the base model"),
    Refusal("sft_trainer", _multi_task, ValueError, "task_ids is missing",
            "trl's collator drops task_ids; train each task's prompt alone or pass a collator that keeps task_ids"),
    Refusal("dpo_trainer", _nothing_trains, ValueError, "Nothing in this model trains", _NOTHING_TRAINS),
    Refusal("dpo_trainer", _multi_task, ValueError, "task_ids is missing",
            "trl's preference collator drops task_ids; train each task's prompt alone"),
    Refusal("reward_trainer", _one_hot_classifier, ValueError, "saved with another head than this model's",
            "a one_hot mixture serves its bank prompts as saved, through one head: a reward model's new one-output head is "
            "not the head they were saved with"),
    Refusal("reward_trainer", _multi_task, ValueError, "task_ids is missing",
            "trl's reward collator drops task_ids; train each task's prompt alone"),
    Refusal("pipeline_classification", _multi_task, ValueError, "task_ids is missing",
            "the text-classification pipeline hands the model no task_ids; call the model with task_ids=, "
            "or export one task's prompt (text-generation pipelines take task_ids=<int>)"),
]


def expected_refusal(case: ConfigCase, model: str, path: str) -> Refusal | None:
    return next((r for r in REFUSALS if r.path == path and r.applies(case, model)), None)


@dataclass(frozen=True)
class Note:
    """How a working cell works (shown in the README table); the check asserts it."""

    path: str
    applies: Callable[[ConfigCase, str], bool]
    text: str


NOTES = [
    Note("prompt_embedding_to_save", _task_prompts, "pass task= (index or name)"),
    Note("export", _task_prompts, "one export per task (task= index or name)"),
    Note("vanilla_copy", _task_prompts, "one copy per task: vanilla/<task name>/"),
    Note("vanilla_copy", _attention, "no copy (every input gets its own prompt); the card says so"),
    Note("vanilla_copy", lambda case, model: case.deep and not _deep_without_prefix_tuning(case, model),
         "a PREFIX_TUNING copy (gpt2, llama)"),
    Note("vanilla_copy", _deep_without_prefix_tuning, "no copy for gemma3 / t5 / bert (PREFIX_TUNING differs there); the card says why"),
    Note("export", lambda case, model: case.deep, "deep prompts: export_prefix_tuning or export_cartridge"),
    Note("generate_static_cache", lambda case, model: _input_prompt_in_causal_lm(case, model) and model != "gemma3",
         "gpt2, llama: the prompt runs as the keys and values it leaves in every layer (a static cache has no room for its rows)"),
    Note("prompt_embedding_to_save", lambda case, model: case.deep, "deep prompts: [P, layers x 2 x kv dim], PEFT PREFIX_TUNING's layout"),
    Note("trainer", _multi_task, "TrainingArguments(remove_unused_columns=False) keeps task_ids"),
    Note("trainer_resume", _multi_task, "TrainingArguments(remove_unused_columns=False) keeps task_ids"),
    Note("pipeline_generation", _multi_task, "task_ids=<int>: one task for every row"),
    Note("merge_and_unload", _always, "unload() returns the base model (a SEQ_CLS head trained beside the prompt kept, as PEFT keeps LoRA's)"),
]


def notes_for(case: ConfigCase, model: str, path: str) -> list[Note]:
    return [note for note in NOTES if note.path == path and note.applies(case, model)]


@dataclass(frozen=True)
class Cell:
    config: str
    model: str
    path: str

    @property
    def case(self) -> ConfigCase:
        return CONFIG_BY_NAME[self.config]

    @property
    def task_type(self) -> str:
        return MODELS[self.model]

    @property
    def id(self) -> str:
        return f"{self.config}-{self.model}-{self.path}"


# Slow cells CI still runs: one or two per slow path, chosen to cover a single prompt and a mixture.
CI_CELLS = {
    Cell("vocab_top_frequent", "llama", "trainer"),
    Cell("mixture_task_2", "gpt2", "trainer"),
    Cell("vocab_reparam", "t5", "trainer"),
    Cell("vocab_top_frequent", "llama", "trainer_resume"),
    Cell("deep_vocab", "gpt2", "trainer_resume"),
    Cell("vocab_top_frequent", "gpt2", "sft_trainer"),
    Cell("mixture_task_2", "gpt2", "sft_trainer"),
    Cell("vocab_top_frequent", "llama", "dpo_trainer"),
    Cell("deep_vocab", "gpt2", "dpo_trainer"),
    Cell("deep_vocab", "bert", "reward_trainer"),
    Cell("vocab_top_frequent", "gpt2", "torch_compile"),
    Cell("mixture_task_2", "llama", "hub"),
    Cell("vocab_reparam", "t5", "hub"),
}


@functools.lru_cache(maxsize=1)
def all_cells() -> list[Cell]:
    """Every applicable (config, model, path) cell, in table order."""
    return [Cell(case.name, model, path.name) for case in CONFIGS for path in PATHS for model, task_type in MODELS.items()
            if task_type in path.task_types]  # fmt: skip


def is_slow(cell: Cell) -> bool:
    return (PATH_BY_NAME[cell.path].slow or not cell.case.fast) and cell not in CI_CELLS
