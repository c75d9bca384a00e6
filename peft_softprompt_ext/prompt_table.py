"""The encoder of single-prompt methods: a [num_virtual_tokens, token_dim] table of embeddings.

Subclasses only say how the table starts (`initial_rows`); saving, loading and the forward are
shared. The saved tensor has PEFT's PROMPT_TUNING name and layout (`PROMPT_TUNING_TENSOR`).
"""

from __future__ import annotations

import torch

from . import layer_prefix, reparameterization
from ._peft_compat import PROMPT_TUNING_TENSOR, building_for_a_load
from .adapter_files import check_finite, check_float_tensor
from .prompt_encoder import PromptEncoder, check_input_rows_fit, fixed_parameter

_RAW = "reparameterization.raw_prompt"


class PromptTableEncoder(PromptEncoder):
    """A table of prompt rows, the same for every row of a batch: input rows [P, token_dim], or (a deep
    prompt, `prompt_kind = KEY_VALUES`) every layer's keys and values per virtual token [P, F].

    Input: batch_size (int); task_ids, inputs_embeds and attention_mask are accepted and unused.
    Output shape: [batch_size, num_virtual_tokens, width].
    """

    def __init__(self, config, word_embeddings: torch.nn.Module, model_config=None, base_model=None):
        super().__init__()
        self.prepare(config, base_model)
        check_input_rows_fit(config, word_embeddings, base_model)
        self.num_virtual_tokens = config.num_virtual_tokens
        self.width = config.row_width()
        self.frozen_width = layer_prefix.features(self.slots[: self.frozen_slots])  # 0 unless a deep prompt fixes layers
        # The trainable columns; the first `frozen_width` columns of the (raw) table never train.
        self.embedding = torch.nn.Embedding(config.num_virtual_tokens, self.width - self.frozen_width)
        self.frozen_rows = fixed_parameter(torch.zeros(config.num_virtual_tokens, self.frozen_width))
        self.reparameterization = reparameterization.build(config)
        self.reparameterization_name = config.reparameterization and config.reparameterization.value
        if not building_for_a_load():  # a loaded adapter gets its weights from the checkpoint
            rows = self.initial_rows(config, word_embeddings, model_config)
            expected = (config.num_virtual_tokens, self.width)
            if tuple(rows.shape) != expected:
                raise ValueError(f"The initial prompt has shape {tuple(rows.shape)}; expected {expected}.")
            if self.reparameterization is not None:
                rows = self.reparameterization.start(rows)  # the raw rows that give the initial prompt
            self._set_raw_rows(rows)

    def prepare(self, config, base_model) -> None:
        """Anything the table's shape depends on, before it is built (deep prompts: the layer layout)."""

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        """The starting table [num_virtual_tokens, width]; subclasses override."""
        raise NotImplementedError

    def raw_rows(self) -> torch.Tensor:
        """The table [P, width] before any reparameterisation: fixed columns, then the trainable ones."""
        if not self.frozen_width:
            return self.embedding.weight
        return torch.cat((self.frozen_rows, self.embedding.weight), dim=1)

    def _set_raw_rows(self, rows: torch.Tensor) -> None:
        with torch.no_grad():
            self.frozen_rows.copy_(rows[:, : self.frozen_width])
            self.embedding.weight.copy_(rows[:, self.frozen_width :])

    def prompt_rows(self, task=None) -> torch.Tensor:
        """The prompt [num_virtual_tokens, width] the model sees (one prompt: `task` may be None or 0)."""
        self.task_index(task)  # refuses a task other than the only one
        rows = self.raw_rows()
        return rows if self.reparameterization is None else self.reparameterization(rows)

    def forward(self, batch_size: int, task_ids=None, inputs_embeds=None, attention_mask=None) -> torch.Tensor:
        return self.prompt_rows().unsqueeze(0).expand(batch_size, -1, -1)

    def shared_prompts(self, batch_size: int, task_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the one prompt [1, P, width], row -> prompt index [batch_size] of zeros)."""
        table = self.prompt_rows()
        return table.unsqueeze(0), torch.zeros(batch_size, dtype=torch.long, device=table.device)

    @classmethod
    def expected_state_shapes(cls, config) -> dict[str, tuple[int, ...]]:
        """The saved tensors' names and shapes for `config` (checked against a file before loading it)."""
        table = (config.num_virtual_tokens, config.row_width())
        shapes = {PROMPT_TUNING_TENSOR: table}
        if config.reparameterization is not None:
            shapes[_RAW] = table
            shapes.update(reparameterization.state_shapes(config))
        return shapes

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        # Same tensor name and layout as PEFT's PROMPT_TUNING: plain PEFT can read the weights
        # (and ignores the extra reparameterisation tensors kept for resuming training).
        # Copies, as PEFT's prompt tuning gives them: a state dict kept in memory (the best step's) must not follow
        # training (found 2026-12-07 by a probe: views restored the latest weights, 5.4 off the kept step's logits).
        state = {PROMPT_TUNING_TENSOR: self.prompt_rows().detach().clone()}
        if self.reparameterization is not None:
            state[_RAW] = self.raw_rows().detach().clone()
            state.update({f"reparameterization.{k}": v.detach().clone() for k, v in self.reparameterization.state_dict().items()})
        return state

    def load_adapter_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        check_finite(state_dict, "Adapter weights")
        if self.reparameterization is not None:
            self._load_reparameterized(state_dict)
            return
        self._load_rows(state_dict, PROMPT_TUNING_TENSOR)

    def _load_reparameterized(self, state_dict: dict[str, torch.Tensor]) -> None:
        names = [_RAW] + [f"reparameterization.{k}" for k in self.reparameterization.state_dict()]
        missing = [name for name in names if name not in state_dict]
        if missing:
            raise ValueError(f"reparameterization={self.reparameterization_name!r} adapter weights lack {missing}; "
                             f"found {sorted(state_dict)}.")  # fmt: skip
        self._load_rows(state_dict, _RAW)
        module_state = {k.removeprefix("reparameterization."): v for k, v in state_dict.items() if k.startswith("reparameterization.") and k != _RAW}
        self.reparameterization.load_state_dict(module_state)

    def _load_rows(self, state_dict: dict[str, torch.Tensor], name: str) -> None:
        expected = (self.num_virtual_tokens, self.width)
        if name not in state_dict:
            raise ValueError(f"Adapter weights lack {name!r}; found {sorted(state_dict)}.")
        tensor = state_dict[name]
        check_float_tensor(name, tensor, expected, "(num_virtual_tokens, width)")
        self._set_raw_rows(tensor)
