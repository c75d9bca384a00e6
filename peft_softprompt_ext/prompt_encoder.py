"""The declared protocol of every plugin prompt encoder (`PromptEncoder`).

PEFT builds one encoder per adapter (`encoder_cls(config, word_embeddings, model_config=...)`);
the plugin's injection, shared-prefix execution, saving, export and card read it only through the
members below. `tests/test_prompt_encoder_protocol.py` walks the registry and checks every method.
"""

from __future__ import annotations

import inspect
import itertools
import numbers
import re

import torch

from . import layer_prefix
from ._peft_compat import PeftEncoderHooks
from .devices import execution_device
from .eval_mode import in_eval_mode
from .options import is_integer
from .position_table import positions_in_a_row

INPUT_EMBEDDINGS = "input_embeddings"  # rows in front of the input's token embeddings
KEY_VALUES = "key_values"  # keys and values in front of every attention layer's (deep prompts)


def check_input_rows_fit(config, word_embeddings: torch.nn.Module, base_model=None) -> None:
    """Input rows go where the token embeddings go: they must have the embeddings' width, which a model that
    projects its embeddings (OPT-350m: `word_embed_proj_dim` 512 under a hidden_size of 1024) makes other than
    the hidden_size PEFT fills `token_dim` with; and the model must take its input as `inputs_embeds`, which
    encoder-decoder classifiers (BART's, T5's: they find the end-of-sequence token in `input_ids`) refuse at every
    forward (found 2026-12-07 by a probe: the prompt built, then failed there, as plain PEFT's does), and read a text
    given so as given by its ids (`_refusal_of_rows_read_otherwise`)."""
    if config.deep_layout is not None:
        return  # keys and values per layer: the input stays input_ids
    refusal = _refusal_of_inputs_embeds(base_model) if base_model is not None else None
    if refusal is not None:
        raise ValueError(refusal)
    if isinstance(config.token_dim, numbers.Integral) and not isinstance(config.token_dim, bool):
        config.token_dim = int(config.token_dim)  # (numpy's integers too, as before; saved as JSON)
    if not is_integer(config.token_dim) or config.token_dim <= 0:  # (found 2026-12-08 by a probe: token_dim=32.0 failed inside
        # torch's Embedding, "32" was refused as not 32)
        raise ValueError(f"token_dim must be a positive integer (the width of the model's input embeddings), got {config.token_dim!r}.")
    weight = getattr(word_embeddings, "weight", None)
    if weight is not None and weight.dim() == 2 and weight.shape[1] != config.token_dim:
        raise ValueError(f"token_dim={config.token_dim!r} (PEFT fills in the model's hidden_size) but the model's input embeddings are "
                         f"{weight.shape[1]} wide (it projects them, e.g. OPT's word_embed_proj_dim): pass token_dim={weight.shape[1]}.")  # fmt: skip
    refusal = _refusal_of_rows_read_otherwise(base_model, word_embeddings) if base_model is not None else None
    if refusal is not None:
        raise ValueError(refusal)


def modules_taking_the_input(model) -> tuple:
    """The modules whose forward a prompted call's input goes into: the model, and an encoder-decoder's encoder."""
    encoder = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder") else None
    return (model,) if encoder is None else (model, encoder)


def _refusal_of_inputs_embeds(model) -> str | None:
    """The refusal of a prompt of input rows (they go in as `inputs_embeds`) on a model that takes no `inputs_embeds`
    without `input_ids`, or None where it takes them: it, or an encoder-decoder's encoder, requires `input_ids` (BLIP-2;
    FSMT's encoder: found 2026-12-07 by probes, transformers' own TypeError "missing 1 required positional argument",
    plain PEFT alike); or its forward raises for them (transformers' own message), also through a subclass's forward
    that calls the one it overrides (`super().forward`, found by a review)."""
    name = type(model).__name__
    for module in modules_taking_the_input(model):
        ids = inspect.signature(module.forward).parameters.get("input_ids")
        if ids is not None and ids.default is inspect.Parameter.empty:
            return (f"{name} takes no inputs_embeds without input_ids (its forward, or its encoder's, requires input_ids), and a "
                    "prompt of input rows goes in as inputs_embeds: use LoRA (a deep prompt keeps input_ids, where the model "
                    "runs a text alone through transformers' attention interface).")  # fmt: skip
    for owner in type(model).__mro__:
        forward = vars(owner).get("forward")
        if forward is None:
            continue
        try:
            source = inspect.getsource(forward)
        except (OSError, TypeError):  # no source to read (compiled or built at run time): taken as accepting
            return None
        if "Passing input embeddings is currently not supported" in source:
            return (f"{name} takes no inputs_embeds without input_ids (transformers raises NotImplementedError in its forward), "
                    "and a prompt of input rows goes in as inputs_embeds: use DeepPromptTuningConfig(deep_init='zero'), whose "
                    "keys and values go into every layer while the input stays input_ids, or LoRA.")  # fmt: skip
        if not re.search(r"super\([^)]*\)\s*\.\s*forward\(", source):  # (a re-implementation calling other helpers: its own)
            return None
    return None


def _refusal_of_rows_read_otherwise(model, word_embeddings: torch.nn.Module) -> str | None:
    """A prompt goes in as `inputs_embeds` beside the text's rows ([prompt; text]): a model whose forward reads a text's
    ids otherwise than as those rows would read the text otherwise beside a prompt than alone (found 2026-12-08 by a
    probe: ESM skips its whole embedding module for given embeddings, absolute positions and layer norm too, 0.30 off
    on a logit scale of 0.33 without a word; Longformer makes its global attention mask from input_ids, ESMC embeds
    only ids: transformers' errors at every forward; plain PEFT alike). Checked at the build, on three plain tokens in
    eval mode: the model given the ids and given their rows (`word_embeddings`, as the plugin embeds a text) must agree.
    A model that does not run a text alone (a VLM wanting an image) is not checked here."""
    ids = _plain_token_ids(model, word_embeddings, 3)
    if ids is None:
        return None
    extra = {"decoder_input_ids": ids} if getattr(model.config, "is_encoder_decoder", False) else {}
    if layer_prefix.rope_index_owner(model) is not None:  # (transformers 5.0's Qwen2-VL, given embeddings alone, asks input_ids
        extra["position_ids"] = positions_in_a_row(0, ids.shape[1], 1, ids.device)  # for its positions; text alone: in a row)
    with torch.no_grad(), in_eval_mode(model):
        try:
            by_ids = _first_output(model(input_ids=ids, **extra))
        except Exception:  # noqa: BLE001  (not a text alone: the model's own calls say what it needs)
            return None
        try:
            by_rows = _first_output(model(inputs_embeds=word_embeddings(ids).clone(), **extra))  # (a copy: CTRL scales it in place)
        except torch.OutOfMemoryError:
            raise
        except (ValueError, TypeError, RuntimeError, IndexError, AttributeError) as error:
            said = " ".join(str(error).split())[:200]
            return (f"{type(model).__name__} runs a text given as input_ids but not given as inputs_embeds ({type(error).__name__}: "
                    f"{said}), and a prompt of input rows goes in as inputs_embeds beside the text's rows: use "
                    "DeepPromptTuningConfig (keys and values in every layer; the input stays input_ids) or LoRA.")  # fmt: skip
    if by_ids is None or by_rows is None or by_ids.shape != by_rows.shape:
        return None
    off = layer_prefix.off_beyond_tolerance(by_ids, by_rows, word_embeddings.weight.dtype)  # (the model's rounding, not float32's)
    if off is None:
        return None
    return (f"{type(model).__name__} reads a text's input_ids otherwise than as their embedding rows (given the rows as "
            f"inputs_embeds its outputs were {off:.3g} off, e.g. ESM skips its embedding module's positions and layer norm "
            "for given embeddings), and a prompt of input rows goes in as inputs_embeds beside the text's rows: use "
            "DeepPromptTuningConfig (keys and values in every layer; the input stays input_ids) or LoRA.")  # fmt: skip


def _plain_token_ids(model, word_embeddings: torch.nn.Module, count: int) -> torch.Tensor | None:
    """[1, count] ids from the middle of the vocabulary that no config of the model names (pad, bos, image tokens, ...)."""
    weight = getattr(word_embeddings, "weight", None)
    if weight is None or weight.dim() != 2:
        return None
    named = set()
    for config in (model.config, *(value for value in vars(model.config).values() if hasattr(value, "to_dict"))):
        for key, value in vars(config).items():
            if key.endswith(("_token_id", "_token_index", "_token_ids")):
                named.update(value if isinstance(value, (list, tuple)) else [value])
    vocabulary = weight.shape[0]
    ids = [index for index in range(vocabulary // 2, vocabulary) if index not in named][:count]
    return torch.tensor([ids], device=execution_device(model)) if len(ids) == count else None


def _first_output(output) -> torch.Tensor | None:
    """A forward's logits, else its first tensor."""
    if getattr(output, "logits", None) is not None:
        return output.logits.float()
    values = output.values() if hasattr(output, "values") else output
    return next((value.float() for value in values if torch.is_tensor(value)), None)


def _plain_int(task):
    """A task index given as a numpy or 0-dim torch integer, as the int it is (found 2026-12-07 by a probe: np.int64(1)
    was refused as "not in 0..1"); anything else as given."""
    if isinstance(task, torch.Tensor) and task.dim() == 0 and not task.is_floating_point() and task.dtype != torch.bool:
        return int(task)
    if type(task).__module__ == "numpy" and hasattr(task, "dtype") and task.dtype.kind in "iu":
        return int(task)
    return task


class PromptEncoder(PeftEncoderHooks):
    """What every plugin encoder provides. Shapes: B batch rows, P = num_virtual_tokens, T = number of
    tasks, W = the width of a prompt's rows (D = token_dim for input rows; F = every self-attention
    layer's key and value per virtual token for a deep prompt, PEFT PREFIX_TUNING's layout).

    Built as `encoder_cls(config, word_embeddings, model_config=..., base_model=...)` (`base_model`:
    the transformers model under any adapters, for encoders that need to run it, e.g. deep prompts).

    Where the prompt goes:
      * `prompt_kind`: `INPUT_EMBEDDINGS` (rows [P, D] in front of the input embeddings) or
        `KEY_VALUES` (rows [P, F] split per layer into keys and values [B, kv heads, P, head dim]
        in front of each self-attention layer's; `slots` lists those layers, see layer_prefix.py);
      * `frozen_slots` (KEY_VALUES): how many leading slots' keys/values never train; they are
        detached where the layers read them, so backward stops above those layers.

    The prompt, per task:
      * `task_labels` (list[str], one per task; a single-prompt method has one) and `num_tasks`;
      * `forward(batch_size, task_ids=None, inputs_embeds=None, attention_mask=None)` -> [B, P, W]:
        row i's prompt (its task `task_ids[i]`; input-dependent methods also read the input);
      * `task_index(task)` -> int: a task given by index or name (None: the only task);
      * `prompt_rows(task=None)` -> [P, W]: one task's prompt (input-independent encoders).

    Whether it depends on the input:
      * `input_dependent` (bool). False: a prompt depends only on its task, so a batch's distinct
        prompts can run once and be shared by rows (`shared_prompts`, used by shared_prefix.py).
      * `shared_prompts(batch_size, task_ids)` -> (every task's prompt [T, P, W], row -> task [B]).

    Export to plain PEFT:
      * `plain_peft_type`: "PROMPT_TUNING" or "PREFIX_TUNING" where plain PEFT holds each task's
        prompt exactly (one copy per task), else None and `export_refusal` says why;
      * `prompt_table(task=None)` -> [P, D]: the PROMPT_TUNING table (refused for other kinds).

    Saving and loading (PEFT calls these through `PeftEncoderHooks`):
      * `adapter_state_dict()` -> {safetensors name: tensor}, copies (a state dict kept in memory must not follow training);
      * `expected_state_shapes(config)` (classmethod) -> {name: shape}, checked against a file's
        header before anything is built;
      * `load_adapter_state(state_dict)`: validate names, shapes and values, then load;
      * `set_trainable()`: unfreeze what trains (a loaded adapter resuming training); tensors that hold a
        fixed part of the prompt are parameters that never train (`fixed_parameter`), so that code copying
        an adapter's parameters (trl's reference adapter) copies the whole prompt.
    """

    prompt_kind: str = INPUT_EMBEDDINGS
    input_dependent: bool = False
    task_labels: list[str] = ["default"]
    slots: list = []  # KEY_VALUES encoders: the self-attention layers (layer_prefix.Slot)
    frozen_slots: int = 0  # KEY_VALUES encoders: leading slots whose keys/values do not train

    # ------------------------------------------------------------------ the prompt
    @property
    def num_tasks(self) -> int:
        return len(self.task_labels)

    def forward(self, batch_size: int, task_ids=None, inputs_embeds=None, attention_mask=None) -> torch.Tensor:
        raise NotImplementedError

    def task_index(self, task) -> int:
        """A task given by index or by name -> its index; None is the task of a one-task encoder."""
        task = _plain_int(task)
        if task is None:
            if self.num_tasks > 1:
                raise ValueError(f"This mixture has {self.num_tasks} tasks: pass task=<0..{self.num_tasks - 1}> or one of the "
                                 f"task names {self.task_labels}.")  # fmt: skip
            return 0
        if self.num_tasks == 1 and task not in (0, self.task_labels[0]):
            label = self.task_labels[0]
            raise ValueError(f"task={task!r}: this adapter has one prompt, task {label!r} (index 0); pass task=None, 0 or {label!r}.")
        if isinstance(task, str):
            if task not in self.task_labels:
                raise ValueError(f"task={task!r} is not a task of this mixture; its tasks are {self.task_labels}.")
            return self.task_labels.index(task)
        if not is_integer(task) or not 0 <= task < self.num_tasks:
            raise ValueError(f"task={task!r} is not a task index of this mixture: expected 0..{self.num_tasks - 1} or one of "
                             f"{self.task_labels}.")  # fmt: skip
        return task

    def rows_for(self, task_ids, batch_size: int, device=None) -> torch.Tensor:
        """`task_ids` as a LongTensor [batch_size], checked; missing ids are only allowed for one task."""
        return check_task_ids(task_ids, batch_size, self.num_tasks, device)

    def prompt_rows(self, task=None) -> torch.Tensor:
        """The prompt [P, W] task `task` (index or name) gets."""
        if self.input_dependent:
            raise ValueError(f"{type(self).__name__} has no single prompt per task: {self.export_refusal}.")
        index = self.task_index(task)
        return self.forward(1, task_ids=torch.tensor([index], device=self._device()))[0]

    def _device(self):
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return tensor.device if tensor is not None else None

    # ------------------------------------------------------------------ sharing and export
    def shared_prompts(self, batch_size: int, task_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(every task's prompt [T, P, W], row -> task [batch_size]); input-independent encoders only."""
        if self.input_dependent:
            raise ValueError(f"{type(self).__name__} gives every input its own prompt; there are no shared prompts.")
        device = self._device()
        rows = self.rows_for(task_ids, batch_size, device)
        every_task = torch.arange(self.num_tasks, device=device)
        return self.forward(self.num_tasks, task_ids=every_task), rows

    @property
    def plain_peft_type(self) -> str | None:
        return "PROMPT_TUNING" if self.prompt_kind == INPUT_EMBEDDINGS and not self.input_dependent else None

    @property
    def export_refusal(self) -> str | None:
        if self.input_dependent:
            return "it gives every input its own prompt, so there is no single prompt for plain PEFT PROMPT_TUNING"
        if self.plain_peft_type is None:
            return "plain PEFT cannot hold this prompt exactly"
        return None

    def prompt_table(self, task=None) -> torch.Tensor:
        """The PROMPT_TUNING table [P, D] of task `task` (index or name)."""
        if self.plain_peft_type != "PROMPT_TUNING":
            reason = "its prompt is per-layer keys and values, which PROMPT_TUNING (input rows) cannot hold"
            reason = reason if self.prompt_kind == KEY_VALUES else self.export_refusal or reason
            raise ValueError(f"{type(self).__name__} has no single prompt of input rows to export or describe: {reason}.")
        return self.prompt_rows(task)

    # ------------------------------------------------------------------ state
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def expected_state_shapes(cls, config) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def load_adapter_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def set_trainable(self) -> None:
        """Make the trainable part of the encoder require grad: every parameter but the fixed ones."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(not is_fixed_parameter(name))


# Names (last part) of parameters that hold a fixed part of the prompt: a deep prompt's layers that do not train, a
# mixture's target columns of such layers, layer_scaled's scale. Parameters, not buffers: a copy of an adapter's
# parameters (trl's reference adapter) must carry them, or the copy keeps its own start, which may differ.
FIXED_PARAMETER_NAMES = ("frozen_rows", "frozen_targets", "scale")


def fixed_parameter(values: torch.Tensor) -> torch.nn.Parameter:
    """A parameter that never trains (its name must be one of FIXED_PARAMETER_NAMES)."""
    return torch.nn.Parameter(values, requires_grad=False)


def is_fixed_parameter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in FIXED_PARAMETER_NAMES


REQUIRED = ("forward", "adapter_state_dict", "expected_state_shapes", "load_adapter_state")


def check_task_ids(task_ids, batch_size: int, num_tasks: int, device=None) -> torch.Tensor:
    """`task_ids` as a LongTensor [batch_size]: one id per row, or one integer (a 0-d tensor) for every row;
    missing ids are only allowed for one task."""
    if task_ids is None:
        if num_tasks == 1:
            return torch.zeros(batch_size, dtype=torch.long, device=device)
        raise ValueError(
            f"task_ids is missing: this mixture has num_tasks={num_tasks}; pass one task id per row, or one integer for "
            "every row (forward and generate take task_ids=; so does a text-generation pipeline's call, which hands it "
            "to generate). transformers' Trainer drops a task_ids column unless TrainingArguments(remove_unused_columns="
            "False); trl's collators and the text-classification pipeline drop it too."
        )
    try:
        task_ids = torch.as_tensor(task_ids, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"task_ids must be integers (one task index per row), got {task_ids!r}; a mixture's task names map "
                         "to indices through its config's task_names (config.task_names.index(name)).") from None  # fmt: skip
    if task_ids.numel() == 0:  # (torch reads [] as float32: it was named by its dtype)
        task_ids = task_ids.long()
    if task_ids.dtype == torch.bool or task_ids.is_floating_point() or task_ids.is_complex():
        raise ValueError(f"task_ids must be integers (one task index per row), got dtype {task_ids.dtype}: {task_ids.tolist()!r}.")
    if task_ids.dim() == 0:  # one task for the whole batch (a pipeline passes the same task_ids to every batch it cuts)
        task_ids = task_ids.expand(batch_size)
    task_ids = task_ids.long().reshape(-1)
    if task_ids.numel() != batch_size:
        raise ValueError(f"task_ids has {task_ids.numel()} entries for a batch of {batch_size} rows; give one per row, "
                         "or one integer for every row.")  # fmt: skip
    bad = task_ids[(task_ids < 0) | (task_ids >= num_tasks)]
    if bad.numel():
        raise ValueError(f"task_ids {sorted(set(bad.tolist()))} out of range: expected 0..{num_tasks - 1}.")
    return task_ids
