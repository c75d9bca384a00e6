"""The encoder of multi-task prompt mixing: a frozen bank, target prompts and mixing weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import layer_prefix, reparameterization
from .._peft_compat import building_for_a_load, task_type_name
from ..adapter_files import check_finite, check_float_tensor
from ..options import Reparameterization
from ..prompt_bank import KEY_VALUE_TYPES, check_served_as_saved, load_saved_config, load_saved_prompt
from ..prompt_encoder import KEY_VALUES, PromptEncoder, check_input_rows_fit, check_task_ids, fixed_parameter  # noqa: F401  (check_task_ids: re-exported)
from .config import Mixing


# The first name part of every tensor any mixture saves (`_state_tensors`): what else a file holds is not the encoder's.
_STATE_ROOTS = ("bank", "target_prompts", "task_logits", "attention_down", "attention_up", "reparameterization")


class MixturePromptEncoder(PromptEncoder):
    """Mixes a frozen bank of K source prompts and per-task target prompts, per row.

    Example:
        >>> config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20,
        ...     source_prompts=["prompts/sentiment", "org/topic-prompt"], num_tasks=2, mixing="task")
        >>> peft_model = peft.get_peft_model(model, config)
        >>> peft_model(input_ids=ids, attention_mask=mask, task_ids=torch.tensor([0, 1, 1]))

    Input: batch_size, task_ids [batch_size], and (attention mixing) inputs_embeds [B, L, D] with
    attention_mask [B, L]. Output shape: [batch_size, num_virtual_tokens, token_dim].
    Trainable: target prompts [num_tasks, P, D], and task logits [num_tasks, K + 1] or the
    attention projection; the bank [K, P, D] is a buffer and never gets a gradient. A bank of deep
    prompts has rows [P, F] (every layer's keys and values); with `trainable_layers=k` the target
    prompts' columns of the other layers are a parameter that never trains (`frozen_targets`).
    """

    def __init__(self, config, word_embeddings: torch.nn.Module, model_config=None, base_model=None):
        super().__init__()
        self.mixing = config.mixing
        self.task_labels = config.task_labels()
        self.temperature = float(config.attention_temperature)  # (an int as large as 10**30 does not fit torch's int64)
        self.input_dependent = config.mixing == Mixing.ATTENTION  # attention reads the input: nothing to share
        bank = None if building_for_a_load() else self._read_bank(config, base_model)  # (also sets config.deep_layout)
        self._prepare_kind(config, word_embeddings, base_model)
        count, length, width = len(config.source_prompts), config.num_virtual_tokens, config.row_width()
        self.register_buffer("bank", torch.zeros(count, length, width))
        if bank is not None:
            self.bank.copy_(bank)
        if self.mixing == Mixing.ONE_HOT:
            return
        # a warm start: each task's target prompt begins as the mean of the bank
        start = self.bank.mean(0, keepdim=True).repeat(config.num_tasks, 1, 1)
        self.reparameterization = reparameterization.build(config)  # over the target prompts
        if self.reparameterization is not None and not building_for_a_load():  # (loaded: from the checkpoint)
            start = self.reparameterization.start(start)
        # the raw target prompts: the first `frozen_width` columns (layers whose targets do not train) never
        # train. Unlike a deep prompt's, those layers are not detached (`frozen_slots` stays 0): their prompts still
        # mix with the trained weights, so backward runs through them and the weights get their whole gradient.
        fixed_layers = layer_prefix.frozen_slot_count(config.trainable_layers, self.slots)
        self.frozen_width = layer_prefix.features(self.slots[:fixed_layers])
        self.frozen_targets = fixed_parameter(start[..., : self.frozen_width].clone())
        self.target_prompts = torch.nn.Parameter(start[..., self.frozen_width :].clone())
        if self.mixing == Mixing.TASK:
            self.task_logits = torch.nn.Parameter(torch.zeros(config.num_tasks, count + 1))
        else:
            self.attention_down = torch.nn.Linear(width, config.attention_hidden, bias=False)
            self.attention_up = torch.nn.Linear(config.attention_hidden, width, bias=False)
            # small: the scores start close to plain cosine similarity of input and prompt
            torch.nn.init.normal_(self.attention_up.weight, std=0.01)

    def _prepare_kind(self, config, word_embeddings, base_model) -> None:
        """A bank of deep prompts makes a deep mixture: its rows are every layer's keys and values."""
        if config.deep_layout is None:
            self._refuse_layer_options(config)
            check_input_rows_fit(config, word_embeddings, base_model)
            return
        self.prompt_kind, self.slots = KEY_VALUES, layer_prefix.slots_of(config.deep_layout)
        if base_model is not None:
            layer_prefix.check_layout(config.deep_layout, layer_prefix.discover_slots(base_model, task_type_name(config)), "This mixture")
        self.exact_in_prefix_tuning = layer_prefix.held_by_a_cache_prefix(base_model, task_type_name(config), self.slots)
        if self.mixing == Mixing.ATTENTION:
            raise ValueError("mixing='attention' scores prompts by their input-space rows, which a bank of deep prompts "
                             "(keys and values per layer) has not; use mixing='task' or 'one_hot'.")  # fmt: skip

    @staticmethod
    def _refuse_layer_options(config) -> None:
        """`layer_scaled` and `trainable_layers` act on per-layer keys and values, which an input-row bank has not."""
        asked = [f"reparameterization={config.reparameterization.value!r}"] if config.reparameterization == Reparameterization.LAYER_SCALED else []
        asked += [f"trainable_layers={config.trainable_layers!r}"] if config.trainable_layers is not None else []
        if asked:
            raise ValueError(f"{' and '.join(asked)} act on a deep prompt's per-layer keys and values, but this mixture's "
                             f"bank holds input-row prompts: use them with a bank of deep prompts, or leave them unset "
                             f"(reparameterization None or 'residual_mlp').")  # fmt: skip

    @staticmethod
    def _read_bank(config, base_model) -> torch.Tensor:
        """The bank [K, P, width]; deep sources (keys and values per layer: the plugin's deep prompts, plain PEFT
        PREFIX_TUNING and CARTRIDGE adapters) set `config.deep_layout`."""
        saved_configs = {source: load_saved_config(source, config.source_revision) for source in config.source_prompts}
        kinds = {source: saved["peft_type"] for source, saved in saved_configs.items()}
        deep = {kind in KEY_VALUE_TYPES for kind in kinds.values()}
        if len(deep) > 1:
            raise ValueError(f"source_prompts mix deep prompts (keys and values per layer) with input-row prompts "
                             f"({sorted(set(kinds.values()))}: {kinds}); a bank holds one kind.")  # fmt: skip
        if deep == {True}:
            if base_model is None:
                raise ValueError("A mixture of deep prompts needs the base model to find its self-attention layers.")
            config.deep_layout = layer_prefix.layout_of(layer_prefix.discover_slots(base_model, task_type_name(config)))
            plain = [source for source, kind in kinds.items() if kind != "DEEP_PROMPT_TUNING"]
            if plain and not layer_prefix.held_by_a_cache_prefix(base_model, task_type_name(config), layer_prefix.slots_of(config.deep_layout)):
                raise ValueError(f"Bank prompt {plain[0]!r} is a plain PEFT {kinds[plain[0]]} adapter, a cache prefix, which this "
                                 f"model would run otherwise than plain PEFT: {layer_prefix.CACHE_PREFIX_REFUSAL}.")  # fmt: skip
            for source in plain:  # its layout first: a table of another width is then named by what it was made for
                layer_prefix.check_plain_layout(saved_configs[source], layer_prefix.slots_of(config.deep_layout), f"Bank prompt {source!r}")
        if config.mixing == Mixing.ONE_HOT and base_model is not None:
            names = config.task_names if config.task_names and len(config.task_names) == len(config.source_prompts) else config.source_prompts
            check_served_as_saved(base_model, dict(zip(names, config.source_prompts)), config.source_revision)
        prompts = []
        for source in config.source_prompts:
            prompt, saved = load_saved_prompt(source, config.row_width(), config.base_model_fingerprint, config.allow_base_model_mismatch,
                                              config.source_revision, input_rows=config.deep_layout is None)  # fmt: skip
            if saved.get("peft_type") != kinds[source]:  # (the table's read holds the lock; the first read did not)
                raise ValueError(f"Bank prompt {source!r} was saved again while it was read: a {kinds[source]} adapter "
                                 f"first, now a {saved.get('peft_type')} one. Build the mixture again.")  # fmt: skip
            if config.deep_layout is not None and kinds[source] == "DEEP_PROMPT_TUNING":
                layer_prefix.check_layout(saved.get("deep_layout"), layer_prefix.slots_of(config.deep_layout), f"Bank prompt {source!r}")
            elif config.deep_layout is not None:  # again on the config read with the table (a save may have come between)
                layer_prefix.check_plain_layout(saved, layer_prefix.slots_of(config.deep_layout), f"Bank prompt {source!r}")
            if prompt.shape[0] != config.num_virtual_tokens:
                raise ValueError(
                    f"Bank prompt {source!r} has {prompt.shape[0]} virtual tokens but num_virtual_tokens="
                    f"{config.num_virtual_tokens}: every bank prompt must have the mixture's length."
                )
            prompts.append(prompt)
        return torch.stack(prompts)

    @property
    def plain_peft_type(self) -> str | None:
        if self.input_dependent:
            return None
        if self.prompt_kind == KEY_VALUES:
            return "PREFIX_TUNING" if self.exact_in_prefix_tuning else None
        return "PROMPT_TUNING"

    # ------------------------------------------------------------------ mixing
    def raw_targets(self) -> torch.Tensor:
        """The target prompts [num_tasks, P, W] before any reparameterisation: fixed columns, then trained ones."""
        if not self.frozen_width:
            return self.target_prompts
        return torch.cat((self.frozen_targets, self.target_prompts), dim=-1)

    def targets(self) -> torch.Tensor:
        """The target prompts [num_tasks, P, W] as used (after the reparameterisation, if any)."""
        if self.reparameterization is None:
            return self.raw_targets()
        return self.reparameterization(self.raw_targets())

    def _pooled(self, tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Mean over the sequence dim [B, L, D] -> [B, D], counting only unmasked positions."""
        if mask is None:
            return tensor.mean(dim=1)
        weights = mask.to(tensor.dtype).unsqueeze(-1)
        return (tensor * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def mixing_weights(self, task_ids, inputs_embeds=None, attention_mask=None) -> torch.Tensor:
        """Weights [B, K + 1] over (bank..., target) for each row (one-hot: [B, K])."""
        if self.mixing == Mixing.ONE_HOT:
            return F.one_hot(task_ids, self.bank.shape[0]).float()
        if self.mixing == Mixing.TASK:
            return torch.softmax(self.task_logits[task_ids], dim=-1)
        if inputs_embeds is None:
            raise ValueError("mixing='attention' needs the input embeddings to score prompts; none were given.")
        pooled = self._pooled(inputs_embeds.to(self.attention_down.weight.dtype), attention_mask)
        query = F.normalize(pooled + self.attention_up(F.silu(self.attention_down(pooled))), dim=-1)
        bank_keys = self.bank.mean(dim=1).expand(len(task_ids), -1, -1)
        target_keys = self.targets()[task_ids].mean(dim=1, keepdim=True)
        keys = F.normalize(torch.cat((bank_keys, target_keys), dim=1), dim=-1)
        return torch.softmax(torch.einsum("bd,bkd->bk", query, keys) / self.temperature, dim=-1)

    @property
    def export_refusal(self) -> str | None:
        if self.mixing == Mixing.ATTENTION:
            return ("mixing='attention' gives every input its own prompt, so there is no single prompt for plain PEFT "
                    "PROMPT_TUNING; use mixing='task' for exportable per-task prompts")  # fmt: skip
        if self.plain_peft_type is None:
            return layer_prefix.CACHE_PREFIX_REFUSAL
        return None

    def forward(self, batch_size: int, task_ids=None, inputs_embeds=None, attention_mask=None) -> torch.Tensor:
        task_ids = self.rows_for(task_ids, batch_size, self.bank.device)
        weights = self.mixing_weights(task_ids, inputs_embeds, attention_mask)
        if self.mixing == Mixing.ONE_HOT:
            return self.bank[task_ids]
        count = self.bank.shape[0]
        mixed = torch.einsum("bk,kpd->bpd", weights[:, :count], self.bank)
        return mixed + weights[:, count, None, None] * self.targets()[task_ids]

    # ------------------------------------------------------------------ state
    @classmethod
    def expected_state_shapes(cls, config) -> dict[str, tuple[int, ...]]:
        """The saved tensors' names and shapes for `config` (checked against a file before loading it)."""
        count, tasks, length, width = len(config.source_prompts), config.num_tasks, config.num_virtual_tokens, config.row_width()
        shapes = {"bank": (count, length, width)}
        if config.mixing == Mixing.ONE_HOT:
            return shapes
        shapes["target_prompts"] = (tasks, length, width)
        if config.mixing == Mixing.TASK:
            shapes["task_logits"] = (tasks, count + 1)
        else:
            shapes["attention_down.weight"] = (config.attention_hidden, width)
            shapes["attention_up.weight"] = (width, config.attention_hidden)
        shapes.update(reparameterization.state_shapes(config))
        return shapes

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        # the bank is saved too: a loaded mixture never needs its source adapters again; copies (see PromptTableEncoder's)
        return {name: tensor.detach().clone() for name, tensor in self._state_tensors().items()}

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Saved name -> tensor: the bank, every parameter (layer_scaled's scale included), with `target_prompts`
        whole (its fixed columns, `frozen_targets`, included)."""
        state = {"bank": self.bank, **{name: p for name, p in self.named_parameters() if name != "frozen_targets"}}
        if self.mixing != Mixing.ONE_HOT:
            state["target_prompts"] = self.raw_targets()
            if self.reparameterization is not None:
                state.update({f"reparameterization.{k}": v for k, v in self.reparameterization.state_dict(keep_vars=True).items()})
        return state

    def load_adapter_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        check_finite(state_dict, "Mixture adapter weights")
        expected = self._state_tensors()
        missing = sorted(set(expected) - set(state_dict))
        if missing:
            raise ValueError(f"Mixture adapter weights lack {missing}; found {sorted(state_dict)}.")
        left_over = sorted(name for name in set(state_dict) - set(expected) if name.split(".")[0] in _STATE_ROOTS)
        if left_over:  # e.g. a reparameterisation's: the saved target prompts are raw, wrong prompts without it
            # (PEFT passes the whole adapter file: a SEQ_CLS head's `base_model....` tensors are not the encoder's)
            raise ValueError(f"Mixture adapter weights hold {left_over}, which this mixture has no place for: they were "
                             f"saved by a mixture with another mixing or reparameterization. Load them into a mixture "
                             f"configured as saved (PeftModel.from_pretrained reads the saved config).")  # fmt: skip
        for name, target in expected.items():
            check_float_tensor(name, state_dict[name], target.shape)
        with torch.no_grad():
            for name, target in expected.items():
                if name == "target_prompts":  # split into the fixed and the trained columns
                    self.frozen_targets.copy_(state_dict[name][..., : self.frozen_width])
                    self.target_prompts.copy_(state_dict[name][..., self.frozen_width :])
                else:
                    target.copy_(state_dict[name])
