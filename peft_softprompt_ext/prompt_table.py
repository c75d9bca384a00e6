"""The encoder of single-prompt methods: a [num_virtual_tokens, token_dim] table of embeddings.

Subclasses only say how the table starts (`initial_rows`); saving, loading and the forward are
shared. The saved tensor has PEFT's PROMPT_TUNING name and layout (`prompt_embeddings`).
"""

from __future__ import annotations

import torch

from ._peft_compat import PluginPromptEncoder


class PromptTableEncoder(PluginPromptEncoder):
    """A table of virtual-token embeddings, the same for every row of a batch.

    Input: batch_size (int); task_ids, inputs_embeds and attention_mask are accepted and unused.
    Output shape: [batch_size, num_virtual_tokens, token_dim].
    """

    def __init__(self, config, word_embeddings: torch.nn.Module, model_config=None):
        super().__init__()
        self.num_virtual_tokens = config.num_virtual_tokens
        self.token_dim = config.token_dim
        self.embedding = torch.nn.Embedding(config.num_virtual_tokens, config.token_dim)
        if not config.inference_mode:  # a loaded adapter gets its weights from the checkpoint
            rows = self.initial_rows(config, word_embeddings, model_config)
            expected = (config.num_virtual_tokens, config.token_dim)
            if tuple(rows.shape) != expected:
                raise ValueError(f"The initial prompt has shape {tuple(rows.shape)}; expected {expected}.")
            with torch.no_grad():
                self.embedding.weight.copy_(rows)

    def initial_rows(self, config, word_embeddings, model_config) -> torch.Tensor:
        """The starting table [num_virtual_tokens, token_dim]; subclasses override."""
        raise NotImplementedError

    def prompt_table(self, task: int | None = None) -> torch.Tensor:
        """The prompt [num_virtual_tokens, token_dim] the model sees (one task: `task` is ignored)."""
        return self.embedding.weight

    def forward(self, batch_size: int, task_ids=None, inputs_embeds=None, attention_mask=None) -> torch.Tensor:
        return self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        # Same tensor name and layout as PEFT's PROMPT_TUNING: plain PEFT can read the weights.
        return {"prompt_embeddings": self.embedding.weight.detach()}

    def load_adapter_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        expected = (self.num_virtual_tokens, self.token_dim)
        if "prompt_embeddings" not in state_dict:
            raise ValueError(f"Adapter weights lack 'prompt_embeddings'; found {sorted(state_dict)}.")
        tensor = state_dict["prompt_embeddings"]
        if tuple(tensor.shape) != expected or not tensor.is_floating_point():
            raise ValueError(
                f"'prompt_embeddings' has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; expected a float "
                f"tensor of shape {expected} (num_virtual_tokens, token_dim) for this base model."
            )
        with torch.no_grad():
            self.embedding.weight.copy_(tensor)
