"""What every plugin prompt config shares: validation and the base-model fingerprint."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional, Union

from . import layer_prefix, reparameterization, shared_prefix
from ._peft_compat import PeftType, PromptLearningConfig, task_type_name, validate_task_type
from .options import Reparameterization, SharedPrefix, is_integer, parse_shared_prefix


@dataclass
class PluginPromptConfig(PromptLearningConfig):
    """Base of the plugin's prompt configs (subclasses set `PEFT_TYPE_NAME`).

    Args:
        num_virtual_tokens (`int`): Number of virtual tokens (prompt length), > 0.
        base_model_fingerprint (`dict`): Architecture, width, vocabulary size and embedding digest
            of the base model, filled in when the prompt is created; loading checks it.
        reparameterization (`str`): None, `"residual_mlp"`: train `prompt + MLP(prompt)`
            (Residual Prompt Tuning), or (deep prompts only) `"layer_scaled"`: train each layer's
            keys and values relative to their starting size (see `reparameterization.py`); saved
            and exported collapsed into plain prompt embeddings.
        reparameterization_hidden (`int`): Hidden width of that MLP.
        deep_layout (`list`): For prompts in every layer (deep prompts, or a mixture of them): the
            self-attention layers' module paths and cache layout, filled in when the prompt is
            created; loading checks it against the model.
        shared_prefix (`str`): Causal LMs only: `"auto"` (default) runs the prompt once per batch
            and reuses its keys/values across rows and inference calls wherever that is exact
            (see `shared_prefix.py`), else the standard path; `"on"` raises where it is not exact;
            `"off"` always feeds `[prompt; input]` per row.
    """

    PEFT_TYPE_NAME = None  # set by each subclass, e.g. "VOCAB_SAMPLED_PROMPT_TUNING"
    KEYS_AND_VALUES_POSSIBLE = False  # a prompt of keys and values per layer (a `deep_layout`) is possible

    base_model_fingerprint: Optional[dict] = field(
        default=None, metadata={"help": "Fingerprint of the base model the prompt was made for (set automatically)."}
    )

    reparameterization: Optional[Union[Reparameterization, str]] = field(
        default=None, metadata={"help": "None, 'residual_mlp' (prompt + MLP(prompt)) or, deep prompts only, 'layer_scaled'; saved collapsed."}
    )
    reparameterization_hidden: int = field(default=256, metadata={"help": "Hidden width of the residual MLP."})
    deep_layout: Optional[list] = field(
        default=None,
        metadata={"help": "Deep prompts: [module, key/value heads, head dim] of every self-attention layer (set automatically)."},
    )
    shared_prefix: Union[SharedPrefix, str] = field(
        default=SharedPrefix.AUTO, metadata={"help": "'auto', 'on' or 'off': run the prompt once per batch (causal LMs) where exact."}
    )

    def __post_init__(self):
        super().__post_init__()
        # what the config was made with (read from a save, or given): not a field, so never saved (see fingerprint_claimed)
        self._fingerprint_made_with = copy.deepcopy(self.base_model_fingerprint)
        self.peft_type = PeftType[self.PEFT_TYPE_NAME]
        layer_prefix.check_layout_value(self.deep_layout)
        if self.deep_layout is not None and not self.KEYS_AND_VALUES_POSSIBLE:  # (found 2026-12-07: read as rows' width)
            raise ValueError(f"deep_layout is set on a {type(self).__name__}, whose prompt is input rows: only a deep prompt "
                             "(DeepPromptTuningConfig, or a mixture of deep prompts) has one.")  # fmt: skip
        reparameterization.validate(self)
        validate_task_type(self.task_type)
        self.shared_prefix = parse_shared_prefix(self.shared_prefix)
        reason = shared_prefix.config_reason(task_type_name(self), self.input_dependence())
        shared_prefix.refuse_on(self.shared_prefix, reason, at_config=True)
        if not is_integer(self.num_virtual_tokens) or self.num_virtual_tokens <= 0:
            raise ValueError(f"num_virtual_tokens must be a positive integer, got {self.num_virtual_tokens!r}.")

    def check_fields(self) -> None:
        """Check every field again, as when the config was made: a value set on it since (`config.num_tasks = 3`) is
        refused when the prompt is built, not after training by the save's own load (found 2026-12-07 by a probe). What
        the config was made with (its claimed fingerprint) stays as it was."""
        made_with = getattr(self, "_fingerprint_made_with", None)
        try:
            self.__post_init__()
        finally:
            self._fingerprint_made_with = made_with

    def shared_prefix_mode(self) -> str:
        """`shared_prefix` as a call reads it ("auto", "on" or "off"), checked as when the config was made: a value set
        since the build is read as the constructor reads it (found 2026-12-07 by a probe: `False`, the constructor's
        "off", ran the shared prefix after the build; "ON" or "bogus" ran as "auto")."""
        mode = parse_shared_prefix(self.shared_prefix)
        shared_prefix.refuse_on(mode, shared_prefix.config_reason(task_type_name(self), self.input_dependence()), at_config=True)
        return mode.value

    def fingerprint_claimed(self) -> bool:
        """Whether the config carries the fingerprint it was made with (read from a save, or given when it was made): it
        claims its prompt is that model's, which a build checks. One a build wrote in (PEFT keeps the config object it is
        given, which a caller may use again) claims nothing: used again, it starts a new prompt (found 2026-12-07: it
        read as a save's, so a second build of an inference_mode=True config kept random rows)."""
        return self.base_model_fingerprint is not None and self.base_model_fingerprint == getattr(self, "_fingerprint_made_with", None)

    def input_dependence(self) -> str | None:
        """What makes this config's prompt read the input (e.g. "mixing='attention'"); None by default."""
        return None

    def row_width(self) -> int:
        """Width of the prompt's rows: token_dim (input rows), or a deep prompt's keys and values of every layer."""
        if self.deep_layout is None:
            return self.token_dim
        return sum(2 * heads * dim for _, heads, dim in self.deep_layout)

    def mlp_width(self) -> int:
        """The vectors a residual MLP reparameterises: a whole row, or one head's key or value in a deep prompt."""
        if self.deep_layout is None:
            return self.token_dim
        widths = {dim for _, _, dim in self.deep_layout}
        if len(widths) != 1:
            raise ValueError(f"reparameterization needs one head dim across layers; this model's are {sorted(widths)}.")
        return widths.pop()
