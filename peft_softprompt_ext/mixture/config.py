"""Configuration of multi-task prompt mixing (a frozen bank of source prompts + target prompts)."""

from __future__ import annotations

import os

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from .. import layer_prefix
from ..options import Option, Reparameterization, check_revision, is_finite_number, is_integer, parse_option
from ..plugin_config import PluginPromptConfig

PEFT_TYPE_NAME = "MIXTURE_PROMPT_TUNING"


class Mixing(Option):
    """How the bank prompts (and the target prompt) are combined."""

    TASK = "task"  # one learned weight vector per task
    ATTENTION = "attention"  # ATTEMPT-style: per input, from its pooled embeddings
    ONE_HOT = "one_hot"  # task k uses bank prompt k as is: serving many plain prompts, nothing trains


MIN_TEMPERATURE = 1e-4  # attention mixing's: 1 / 1e-4 fits float16 (max 65504)


@dataclass
class MixturePromptTuningConfig(PluginPromptConfig):
    """Soft prompts for `num_tasks` tasks, mixed from a frozen bank of trained source prompts.

    The prompt a row gets is a convex combination of the bank prompts and its task's target
    prompt: `prompt = sum_k w_k * C_k`, `C = [bank_1, ..., bank_K, target_task]`, `w = softmax(...)`.
    With `mixing="task"` the logits are learned per task (SPoT/MPT-like transfer: for a given task
    the result is one fixed prompt, exportable to vanilla PEFT). With `mixing="attention"` they
    come from the input (ATTEMPT, Asai et al. 2022): the input's mean-pooled embedding goes
    through a small bottleneck projection and is compared with each mean-pooled candidate
    prompt, so every input gets its own prompt (not exportable as one prompt). `mixing="one_hot"`
    serves several trained prompts side by side: task k is bank prompt k; nothing is trained.
    Each row picks its task with `task_ids` in `forward` and `generate`.

    Args:
        num_virtual_tokens (`int`): Prompt length; every bank prompt must have exactly this many
            virtual tokens (prompts of other lengths or widths are refused, naming the source).
        source_prompts (`list[str]`): Saved adapter folders or Hub repo ids (plain PEFT
            PROMPT_TUNING or this plugin's single-prompt methods). Read once at creation; the
            bank is saved inside the adapter, so loading never needs the sources again.
        num_tasks (`int`): Number of tasks (rows choose one with `task_ids`).
        task_names (`list[str]`): Optional names of the tasks, in task-id order (letters, digits,
            `.`, `_`, `-`). They name each task's plain PEFT copy (`vanilla/<name>/`) and are
            accepted wherever a task is asked for (`export_prompt_tuning(..., task="sentiment")`).
        mixing (`str`): `"task"`, `"attention"` or `"one_hot"`.
        attention_hidden (`int`): Bottleneck width of the attention projection.
        attention_temperature (`float`): Softmax temperature of the attention scores.
        source_revision (`str`): Hub revision for repo-id sources.
        allow_base_model_mismatch (`bool`): Accept plugin source prompts whose saved base-model
            fingerprint differs from this model's.
        reparameterization (`str`): Of the target prompts while training: None, `"residual_mlp"`,
            or (a bank of deep prompts) `"layer_scaled"`, as `DeepPromptTuningConfig`'s.
        trainable_layers (`int`): A bank of deep prompts only. None: every layer's target prompts
            train; k: only the last k self-attention layers' do, the others keep their start (the
            bank's mean). The mixing weights are shared by every layer and get their whole
            gradient, so backward still runs through every layer (unlike a deep prompt's
            `trainable_layers`, this saves no backward time).
    """

    PEFT_TYPE_NAME = PEFT_TYPE_NAME
    KEYS_AND_VALUES_POSSIBLE = True  # (a bank of deep prompts)

    source_prompts: list = field(default_factory=list, metadata={"help": "Adapter folders or Hub ids of the bank."})
    num_tasks: int = field(default=1, metadata={"help": "Number of tasks; rows pick theirs with task_ids."})
    task_names: Optional[list] = field(
        default=None, metadata={"help": "Names of the tasks in task-id order (name the per-task plain PEFT copies)."}
    )
    mixing: Union[Mixing, str] = field(default=Mixing.TASK, metadata={"help": "'task', 'attention' or 'one_hot'."})
    attention_hidden: int = field(default=64, metadata={"help": "Bottleneck width of the attention projection."})
    attention_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of attention mixing."})
    source_revision: Optional[str] = field(default=None, metadata={"help": "Hub revision for repo-id sources."})
    allow_base_model_mismatch: bool = field(
        default=False, metadata={"help": "Accept bank prompts saved for another base model."}
    )
    trainable_layers: Optional[int] = field(
        default=None, metadata={"help": "Deep banks: None, every layer's target prompts train; k: only the last k layers'."}
    )

    def __post_init__(self):
        self.mixing = parse_option(Mixing, self.mixing, "mixing")  # first: the base class asks input_dependence()
        super().__post_init__()
        check_revision("source_revision", self.source_revision)
        if not isinstance(self.source_prompts, (list, tuple)) or not self.source_prompts:
            raise ValueError(f"source_prompts must be a non-empty list of adapter folders or repo ids, got {self.source_prompts!r}.")
        bad = [source for source in self.source_prompts if not isinstance(source, (str, os.PathLike)) or not os.fspath(source)]
        if bad:
            raise ValueError(f"source_prompts must be adapter folders or Hub repo ids (non-empty strings); bad entries: {bad!r}.")
        self.source_prompts = [os.fspath(source) for source in self.source_prompts]
        if not is_integer(self.num_tasks) or self.num_tasks <= 0:
            raise ValueError(f"num_tasks must be a positive integer, got {self.num_tasks!r}.")
        self._validate_task_names()
        if self.mixing == Mixing.ONE_HOT and self.num_tasks != len(self.source_prompts):
            raise ValueError(
                f"mixing='one_hot' serves one bank prompt per task: num_tasks={self.num_tasks} but "
                f"{len(self.source_prompts)} source_prompts."
            )
        if self.mixing == Mixing.ONE_HOT and self.reparameterization is not None:
            raise ValueError("mixing='one_hot' trains nothing, so reparameterization must be None.")
        layer_prefix.check_trainable_layers(self.trainable_layers, self.reparameterization == Reparameterization.RESIDUAL_MLP)
        if self.mixing == Mixing.ONE_HOT and self.trainable_layers is not None:
            raise ValueError(f"mixing='one_hot' trains nothing, so trainable_layers must be None; got {self.trainable_layers!r}.")
        if not is_integer(self.attention_hidden) or self.attention_hidden <= 0:
            raise ValueError(f"attention_hidden must be a positive integer, got {self.attention_hidden!r}.")
        temperature = self.attention_temperature
        if not is_finite_number(temperature) or not float(temperature) >= MIN_TEMPERATURE:
            raise ValueError(f"attention_temperature must be a finite number >= {MIN_TEMPERATURE}, got {temperature!r}: the scores "
                             "are cosines divided by it, which overflow (NaN weights) in half precision below it.")  # fmt: skip
        if not isinstance(self.allow_base_model_mismatch, bool):
            raise ValueError(f"allow_base_model_mismatch must be True or False, got {self.allow_base_model_mismatch!r}.")

    def _validate_task_names(self):
        if self.task_names is None:
            return
        names = self.task_names
        if not isinstance(names, (list, tuple)) or len(names) != self.num_tasks:
            raise ValueError(f"task_names must be a list of num_tasks={self.num_tasks} names, got {names!r}.")
        bad = [name for name in names if not is_usable_task_name(name)]
        if bad:
            raise ValueError(f"task_names {bad!r} are not usable names: expected letters, digits, '.', '_' or '-' "
                             "(each names a folder of the saved adapter).")  # fmt: skip
        if len(set(names)) != len(names):
            raise ValueError(f"task_names must be distinct, got {list(names)!r}.")
        self.task_names = list(names)

    def input_dependence(self) -> str | None:
        return "mixing='attention'" if self.mixing == Mixing.ATTENTION else None

    def task_labels(self) -> list[str]:
        """The name of every task: `task_names`, or `task_<k>` where none were given."""
        return list(self.task_names) if self.task_names else [f"task_{k}" for k in range(self.num_tasks)]


_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_usable_task_name(name) -> bool:
    """A task name that can name a folder: letters, digits, '.', '_', '-' (at most 64, not starting with '.')."""
    return isinstance(name, str) and _TASK_NAME.fullmatch(name) is not None
