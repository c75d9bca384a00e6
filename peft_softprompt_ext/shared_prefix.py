"""Shared-prefix execution: a causal LM runs the soft prompt once per batch, not once per row.

With causal attention and the prompt in front, the prompt's hidden states and keys/values do not
depend on the input. So instead of feeding `[prompt; input]` for each of B rows (B * (P + L)
token passes), the forward runs the batch's DISTINCT prompts once ([T, P, D]: T = 1 for a single
prompt, the number of tasks for task-level mixing) with a key/value cache, copies that cache to
every row (row -> prompt index), and runs only the input tokens against it (B * L + T * P passes).
Loss, logits (the prompt positions' logits are copied in front, so shapes are unchanged) and the
prompt's gradients equal the standard path's.

It is exact, and used under `shared_prefix="auto"` (the default), only when
* the task is CAUSAL_LM (bidirectional encoders and seq2seq encoders let the prompt read the input);
* the prompt does not depend on the input (not `mixing="attention"`);
* the base model is deterministic: in eval mode, or in train mode with no active dropout
  (a shared prefix would share one dropout mask across rows) and no gradient checkpointing;
* the prompt is shorter than a sliding attention window, no attention maps are requested, and
  the model's forward takes a `cache` and `position_ids`;
* the model reads a cached prefix as it reads the same rows in front of its input (checked once per
  model on random rows: `cache_prefix_reads_otherwise`).
Otherwise the standard path runs; `shared_prefix="on"` raises instead, naming the reason.

At inference (no gradient needed), the prompt's keys/values are kept in a `PromptKVCache` on the
prompt encoder and reused by later `forward` and `generate` calls; it is recomputed when the
prompt (its values), the dtype or the device changes. `prompt_kv_cache(peft_model)` returns it;
passing `prompt_cache=` explicitly to a model or prompt it was not computed for raises.
"""

from __future__ import annotations

import functools
import weakref

import torch

from . import layer_prefix
from ._peft_compat import adapter_config_of, is_plugin_config, plugin_parts, task_type_name
from .devices import execution_device
from .eval_mode import in_eval_mode
from .position_table import first_position, positions_in_a_row
from .prompt_encoder import KEY_VALUES

_CACHE_ATTRIBUTE = "_peft_softprompt_ext_prompt_kv_cache"
_DROPOUT_ATTRIBUTES = ("attention_dropout", "attn_dropout", "dropout", "dropout_rate")


def config_reason(task_type: str, input_dependence: str | None) -> str | None:
    """Why the shared prefix can never be exact for a config (None: it can be), known before any model.

    `input_dependence`: what makes the config's prompt read the input (e.g. "mixing='attention'"), or None.
    `not_exact_reason` adds what only a call can tell; both refuse `shared_prefix="on"` (`refuse_on`).
    """
    if task_type != "CAUSAL_LM":
        return f"is exact only for CAUSAL_LM; task_type={task_type!r} runs the prompt through a bidirectional encoder that reads the input"
    if input_dependence:
        return f"with {input_dependence}: every input gets its own prompt, so a prefix shared by the batch would not be exact"
    return None


def refuse_on(mode, reason: str | None, at_config: bool = False) -> None:
    """`shared_prefix="on"` where it is not exact: one error, naming the reason."""
    if reason is None or mode != "on":
        return
    situation = reason if at_config else f"but the shared prefix is not exact here: {reason}"
    raise ValueError(f"shared_prefix='on' {situation}. Use shared_prefix='auto' (falls back to the standard path) or 'off'.")


# --------------------------------------------------------------------------- when it is exact
def _text_config(model: torch.nn.Module):
    config = getattr(model, "config", None)
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def _active_dropout(model: torch.nn.Module) -> str | None:
    """Name of a module or config value that would drop activations in train mode, or None. Another modality's encoder
    (a submodel whose main input is not `input_ids`: an audio or vision tower) is left out: the prompt's rows never run
    through it, and its output is the same for both paths (found 2026-12-07 by a probe: an audio tower's dropout kept
    a shallow prompt on Qwen2-Audio off the shared prefix, where its audio is refused)."""
    config = _text_config(model)
    for key, value in vars(config).items() if config is not None else ():  # attributes, not a deep-copied to_dict()
        trunk = not any(word in key for word in ("summary", "classifier", "cls_"))  # heads the LM forward never runs
        if trunk and any(word in key for word in ("dropout", "pdrop", "layerdrop")) and isinstance(value, (int, float)) and value > 0:
            return f"config.{key}={value}"
    towers = tuple(f"{name}." for name, module in model.named_modules()
                   if name and isinstance(getattr(module, "main_input_name", None), str) and module.main_input_name != "input_ids")  # fmt: skip
    for name, module in model.named_modules():
        if f"{name}.".startswith(towers):
            continue
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            return f"{name or type(module).__name__} (p={module.p})"
        for attribute in _DROPOUT_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, float) and value > 0:
                return f"{name}.{attribute}={value}"
    return None


_EXACT_LAYER_TYPES = {"full_attention", "sliding_attention"}


def _attention_window(model: torch.nn.Module) -> tuple[str, int] | None:
    """("sliding window" | "attention chunk", size) if the model's attention is local, else None."""
    config = _text_config(model)
    for label, key in (("sliding window", "sliding_window"), ("attention chunk", "attention_chunk_size")):
        size = getattr(config, key, None)
        if isinstance(size, int) and size > 0:
            return label, size
    return None


_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")  # transformers' rope types whose frequencies follow the sequence length


def _length_dependent_rope(model: torch.nn.Module) -> str | None:
    """The rope type of a model whose rotary frequencies depend on the call's length (dynamic NTK, longrope), else None."""
    config = _text_config(model)
    kinds = [getattr(module, "rope_type", None) for module in model.modules()]
    for field in ("rope_parameters", "rope_scaling"):
        settings = getattr(config, field, None)
        if isinstance(settings, dict):
            kinds.append(settings.get("rope_type", settings.get("type")))
    return next((kind for kind in kinds if isinstance(kind, str) and kind in _LENGTH_DEPENDENT_ROPE), None)


def _is_gradient_checkpointing(model) -> bool:
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # the second: older transformers
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def not_exact_reason(parts, output_attentions=None, call_kwargs=None) -> str | None:
    """Why the shared prefix would not equal the standard path for this call (None: it is exact).

    `parts`: the `_peft_compat.PromptParts` of the call (base model, encoder, prompt length).
    """
    call_kwargs = call_kwargs or {}
    base_model, encoder, num_virtual_tokens = parts.base_model, parts.encoder, parts.num_virtual_tokens
    config = _text_config(base_model)
    if encoder.input_dependent:
        return f"{type(encoder).__name__} gives every input its own prompt (it reads the input)"
    if getattr(parts, "nested_adapters", False):
        return "the base model is itself a PeftModel: its adapters can be switched without changing a weight"
    if layer_prefix.cache_argument(type(base_model)) is None:
        return f"{type(base_model).__name__}.forward takes no cache/position_ids"
    if output_attentions or (output_attentions is None and getattr(config, "output_attentions", False)):
        return "output_attentions=True asks for the attention maps over prompt + input of every row"
    rope = _length_dependent_rope(base_model)
    if rope is not None:
        return (f"rope_type={rope!r} picks its rotary frequencies from the call's longest position: the prompt run alone "
                "would get other ones than the input after it")
    if call_kwargs.get("output_router_logits") or getattr(config, "output_router_logits", False):
        return "output_router_logits: the router's auxiliary loss covers prompt + input of every row"
    if call_kwargs.get("token_type_ids") is not None:
        return "token_type_ids are given for the input only"
    if call_kwargs.get("encoder_hidden_states") is not None:  # (found 2026-12-07 by a review: GPT-2's, 0.96 off)
        return "encoder_hidden_states: the prompt's rows attend to each row's encoder output, which the prompt run alone does not see"
    if call_kwargs.get("fused_lm_head"):
        return "trl's fused_lm_head scores every position's hidden state against the labels inside the model"
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - _EXACT_LAYER_TYPES:
        return f"layer types {sorted(layer_types - _EXACT_LAYER_TYPES)} keep no per-token key/value cache"
    window = _attention_window(base_model)
    if window is not None and num_virtual_tokens >= window[1] - 1:
        return f"num_virtual_tokens={num_virtual_tokens} does not fit in the {window[0]} {window[1]}"
    reads_otherwise = cache_prefix_reads_otherwise(base_model)
    if reads_otherwise is not None:
        return reads_otherwise
    if base_model.training:
        if _is_gradient_checkpointing(base_model):
            return "gradient checkpointing is on (it drops the cache in training)"
        dropout = _active_dropout(base_model)
        if dropout is not None:
            return f"the base model is in train mode with active dropout ({dropout}): rows would share one dropout mask"
    return None


class RowsOfItsOwn(Exception):
    """The model put rows of its own in front of the input behind the shared prefix: the call runs the standard path."""


# `cache_prefix_reads_otherwise`'s answer, kept on the model as `position_table` keeps its limit (a module-level weak
# dictionary read inside torch.compile'd forwards was guarded by its entries' positions)
_CHECKED_ATTRIBUTE = "_peft_softprompt_ext_cache_prefix_reason"


def cache_prefix_reads_otherwise(base_model) -> str | None:
    """Why `base_model` reads rows run before as a cached prefix otherwise than the same rows in front of its input
    (None where it reads them alike), checked once per model on 2 random rows and 3 tokens, in eval mode: a model whose
    attention derives more from its cache than keys and values to attend to (found 2026-12-07 by a probe: transformers
    5.0's Doge masks keys by its cached values otherwise, 3.2 off), or one that cannot run rows alone at all (Kosmos-2
    and Idefics want an image in every call), gets the standard path. The build asks first (`model_checks`), so that no
    call of the model pays for it."""
    if _CHECKED_ATTRIBUTE in base_model.__dict__:
        return base_model.__dict__[_CHECKED_ATTRIBUTE]
    argument = layer_prefix.cache_argument(type(base_model))
    embeddings = base_model.get_input_embeddings()
    device, dtype = embeddings.weight.device, embeddings.weight.dtype
    generator = torch.Generator().manual_seed(0)
    rows = (torch.randn(1, 2, embeddings.weight.shape[1], generator=generator) * embeddings.weight.detach().float().std().cpu()).to(device, dtype)
    text = embeddings(torch.tensor([[1, 2, 3]], device=device)).detach()
    ones = functools.partial(torch.ones, dtype=torch.long, device=device)
    positions = torch.arange(5, device=device)[None]
    try:
        with torch.no_grad(), in_eval_mode(base_model):
            joined = base_model(inputs_embeds=torch.cat((rows, text), dim=1), attention_mask=ones(1, 5), position_ids=positions).logits[:, 2:]
            prefix = base_model(inputs_embeds=rows.clone(), attention_mask=ones(1, 2), position_ids=positions[:, :2], use_cache=True)
            cache = prefix["cache"] if "cache" in prefix else prefix.get("past_key_values")
            after = base_model(inputs_embeds=text.clone(), attention_mask=ones(1, 5), position_ids=positions[:, 2:], use_cache=True,
                               **{argument: cache}).logits  # fmt: skip
        off = layer_prefix.off_beyond_tolerance(joined, after, dtype)
        reason = None if off is None else (f"{type(base_model).__name__} reads a cached prefix otherwise than the same rows in front "
                                           f"of its input ({off:.3g} off, checked on random rows)")  # fmt: skip
    except Exception as error:  # (any failure of running rows alone: the standard path does not run them alone)
        reason = f"{type(base_model).__name__} does not run a prompt's rows alone ({type(error).__name__}: {str(error)[:120]})"
    base_model.__dict__[_CHECKED_ATTRIBUTE] = reason
    return reason


def use_shared_prefix(mode: str, parts, output_attentions=None, call_kwargs=None) -> bool:
    """Whether to run the shared prefix; mode "on" raises when it would not be exact."""
    if mode == "off":
        return False
    reason = not_exact_reason(parts, output_attentions, call_kwargs)
    refuse_on(mode, reason)
    return reason is None


# --------------------------------------------------------------------------- the cache
def _model_name(model) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "name_or_path", "") or ""
    return f"{type(model).__name__}({name!r}) at {id(model):#x}"


def model_state(base_model) -> tuple:
    """What the prompt's keys/values depend on besides the prompt: weights and buffers (rotary frequencies),
    attention implementation and autocast. Tensors by their in-place version counters (optimizer steps,
    load_state_dict, edits) and by which tensors they are (`load_state_dict(assign=True)`, `param.data = ...`,
    `resize_token_embeddings`, a replaced rotary module put new ones in, whose counters may be where the old
    ones were). Parameters that train are also read by value: torch's fused optimizers (transformers Trainer's
    default AdamW on torch >= 2.8) step them without bumping their counters (found 2026-12-07 by a probe: a frozen
    prompt's cache was reused from before a step of unfrozen base weights, 5.16 off). Frozen tensors edited through
    `.data` (which bumps no counter either) are not noticed."""
    parameters = list(base_model.parameters())
    device_type = execution_device(base_model).type
    autocast = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type)
    watched = parameters + list(base_model.buffers())
    versions = sum(t._version for t in watched)
    identities = hash(tuple((id(t), t.data_ptr(), tuple(t.shape)) for t in watched))
    implementation = str(getattr(base_model.config, "_attn_implementation", None)).removeprefix(layer_prefix.ROUTE)  # routed: the same attention
    return versions, identities, implementation, autocast, _training_values(parameters)


def _training_values(parameters: list) -> tuple:
    """The sum and the norm of each parameter that trains, read in one transfer; () when none trains."""
    training = [p.detach() for p in parameters if p.requires_grad]
    if not training:
        return ()
    with torch.no_grad():  # (float32 accumulation without a float32 copy of each tensor)
        sums = torch.stack([torch.stack((t.sum(dtype=torch.float32), torch.linalg.vector_norm(t, dtype=torch.float32)))
                            .to(training[0].device) for t in training])  # fmt: skip
    return tuple(sums.flatten().tolist())


def _no_model():
    return None


class PromptKVCache:
    """Keys/values of a batch's distinct prompts on one base model (what every row attends to).

    `tables` [T, P, D] are the prompts it was computed from; `layers` the per-layer (keys,
    values) [T, heads, P, head_dim]; `logits` [T, P, V] the prompt positions' logits (the last
    one predicts the first input token); `hidden_states` per layer [T, P, D] when asked for.
    """

    def __init__(self, base_model, tables, layers, logits, hidden_states=None):
        self._model = weakref.ref(base_model)
        self.model_state = model_state(base_model)
        self.model_name = _model_name(base_model)
        self.tables = tables.detach().clone()  # a snapshot: the encoder's table may be a view of a parameter
        self.layers = layers
        self.logits = logits
        self.hidden_states = hidden_states

    def __getstate__(self):  # a copy (deepcopy, torch.save of the whole model) belongs to no model: it is recomputed
        return {**self.__dict__, "_model": None}

    def __setstate__(self, state):
        self.__dict__.update(state, _model=_no_model)

    @property
    def num_virtual_tokens(self) -> int:
        return self.tables.shape[1]

    def mismatch(self, base_model, tables) -> str | None:
        """Why this cache does not belong to (base_model, tables), or None."""
        if self._model() is not base_model:
            return f"it was computed on {self.model_name}, not on {_model_name(base_model)}"
        state = model_state(base_model)
        if state != self.model_state:
            what = ("weights version", "weight tensors", "attention implementation", "autocast", "values of trainable weights")
            changed = [name for name, before, now in zip(what, self.model_state, state) if before != now]
            return f"the base model changed since it was computed ({', '.join(changed)})"
        if tables.shape != self.tables.shape or tables.dtype != self.tables.dtype or tables.device != self.tables.device:
            return (
                f"it was computed for prompts of shape {tuple(self.tables.shape)} ({self.tables.dtype}, {self.tables.device}); "
                f"the model's prompts are {tuple(tables.shape)} ({tables.dtype}, {tables.device})"
            )
        if not torch.equal(tables, self.tables):
            change = (tables.float() - self.tables.float()).abs().max().item()
            return f"the prompt has changed since it was computed (max abs change {change:.3g})"
        return None

    def rows(self, rows: torch.Tensor):
        """Per-layer (keys, values) for each row: [B, heads, P, head_dim]."""
        return [(keys[rows], values[rows]) if keys is not None else (None, None) for keys, values in self.layers]

    def new_cache(self, base_model, rows: torch.Tensor):
        """A fresh DynamicCache holding the prompt's keys/values for each row."""
        from transformers import DynamicCache

        cache = DynamicCache(config=base_model.config)
        self.fill(cache, rows)
        return cache

    def fill(self, cache, rows: torch.Tensor, layers: int | None = None) -> None:
        """Put the prompt's keys/values for each row into an EMPTY cache (e.g. generate's own); `layers`: into the
        first so many layers only (those the model runs now)."""
        for layer_index, (keys, values) in enumerate(self.rows(rows)[:layers]):
            if keys is not None:
                cache.update(keys, values, layer_index)


def _run_prefix(base_model, tables: torch.Tensor, output_hidden_states: bool) -> PromptKVCache:
    """Run the distinct prompts [T, P, D] through the model once; keep what the rows need."""
    count, length = tables.shape[:2]
    first = first_position(base_model)  # (RoBERTa-style tables number from padding_idx + 1)
    positions = positions_in_a_row(first, length, count, tables.device)
    mask = torch.ones(count, length, dtype=torch.long, device=tables.device)
    output = base_model(
        inputs_embeds=tables.clone(),  # (a copy: CTRL scales the inputs_embeds it is given in place, which were the prompt)
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        output_hidden_states=output_hidden_states,
        return_dict=True,
    )
    cache = output["cache"] if "cache" in output else output.get("past_key_values")
    layers = [(entry[0], entry[1]) for entry in cache]
    for keys, _ in layers:
        if keys is not None and keys.shape[-2] != length:
            raise RuntimeError(
                f"The prompt cache holds {keys.shape[-2]} positions for a {length}-token prompt; "
                f"{type(base_model).__name__}'s cache layout is not supported by shared_prefix (use shared_prefix='off')."
            )
    return PromptKVCache(base_model, tables, layers, output.logits, output.get("hidden_states"))


def _needs_grad(base_model, encoder) -> bool:
    """Whether anything upstream of the prompt's keys/values needs a gradient (no stored cache then)."""
    if not torch.is_grad_enabled():
        return False
    return any(p.requires_grad for p in encoder.parameters()) or any(p.requires_grad for p in base_model.parameters())


def prefix_for(base_model, encoder, batch_size: int, task_ids, dtype, prompt_cache=None, output_hidden_states=False):
    """(PromptKVCache, row -> prompt index [B]) for this batch.

    With gradients to the prompt, the prefix is computed fresh (it is part of the graph). Without,
    the encoder's stored cache is reused while model and prompt are unchanged; an explicit
    `prompt_cache` must match them or this raises.
    """
    tables, rows = encoder.shared_prompts(batch_size, task_ids)
    tables = tables.to(dtype)
    if prompt_cache is not None:
        if _needs_grad(base_model, encoder):
            raise ValueError("prompt_cache holds no gradient, but this call needs one (training); pass no prompt_cache "
                             "when training, or run inference under torch.no_grad().")  # fmt: skip
        problem = prompt_cache.mismatch(base_model, tables.detach())
        if problem is not None:
            raise ValueError(f"prompt_cache cannot be used here: {problem}. Compute one for this model with prompt_kv_cache(peft_model).")
        if output_hidden_states and prompt_cache.hidden_states is None:
            raise ValueError("prompt_cache was computed without hidden states; compute it with output_hidden_states=True.")
        return prompt_cache, rows
    if _needs_grad(base_model, encoder):
        return _run_prefix(base_model, tables, output_hidden_states), rows
    stored = getattr(encoder, _CACHE_ATTRIBUTE, None)
    if stored is None or stored.mismatch(base_model, tables) is not None or (output_hidden_states and stored.hidden_states is None):
        with torch.no_grad():
            stored = _run_prefix(base_model, tables, output_hidden_states)
        object.__setattr__(encoder, _CACHE_ATTRIBUTE, stored)  # a plain attribute: not saved, not a buffer
    return stored, rows


# --------------------------------------------------------------------------- the forward
def _per_row(prompt_part: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`prompt_part` [T, ...] for each row [B, ...]: a view when there is one prompt, else a gather."""
    if prompt_part.shape[0] == 1:
        return prompt_part.expand(rows.shape[0], *prompt_part.shape[1:])
    return prompt_part[rows]


def _prefixed(prefix_part: torch.Tensor, rows: torch.Tensor, input_part: torch.Tensor) -> torch.Tensor:
    """[prefix_part of each row's prompt; input_part] along the sequence (one copy for one prompt)."""
    return torch.cat((_per_row(prefix_part, rows).to(input_part.dtype), input_part), dim=1)


def _loss(base_model, last_prompt_logits, rows, input_logits, labels, num_items):
    """The standard path's causal-LM loss over [prompt; input] with labels [-100] * P + labels.

    Of the prompt positions only the last has a target (the first input token). With the default
    `ForCausalLMLoss` the two parts are summed without concatenating the [B, L, V] logits; other
    loss functions get [last prompt position; input] (the same value as all P + L positions).
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    if base_model.loss_function is not ForCausalLMLoss:
        loss_logits = _prefixed(last_prompt_logits[:, None], rows, input_logits)
        loss_labels = torch.cat((labels.new_full((labels.shape[0], 1), -100), labels), dim=1)
        loss_kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
        return base_model.loss_function(logits=loss_logits, labels=loss_labels, vocab_size=loss_logits.shape[-1], **loss_kwargs)
    first = _per_row(last_prompt_logits, rows)
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    vocab = input_logits.shape[-1]
    total = torch.nn.functional.cross_entropy(first.float(), labels[:, 0], ignore_index=-100, reduction="sum")
    total = total + torch.nn.functional.cross_entropy(input_logits.float().reshape(-1, vocab), shifted.reshape(-1), ignore_index=-100, reduction="sum")
    if num_items is None:
        return total / (labels != -100).sum()
    return total / (num_items.to(total.device) if torch.is_tensor(num_items) else num_items)


def hidden_states_asked(base_model, output_hidden_states):
    """What the call asks of hidden states: its `output_hidden_states` (a flag, or transformers 5's selection of
    layers by index), else the model config's (the call passes it on explicitly, and transformers reads None as off)."""
    if output_hidden_states is None:
        return getattr(base_model.config, "output_hidden_states", False)
    return output_hidden_states


def asks_hidden_states(asked) -> bool:
    """Whether `hidden_states_asked` wants any hidden state (by identity: a selection [0] or 0 is not False)."""
    return asked is not None and asked is not False


def causal_lm_forward(base_model, prefix: PromptKVCache, rows, fed: dict, full_mask, position_ids, labels,
                      output_hidden_states, output_attentions, return_dict, kwargs):  # fmt: skip
    """The input tokens against the shared prefix; output as if `[prompt; input]` had been fed.

    `fed`: the input as the model gets it, `{"input_ids": [B, L]}` or `{"inputs_embeds": [B, L, D]}`.

    `output_hidden_states`: as `hidden_states_asked` resolves it; `output_attentions` None or False (True takes
    the standard path): False is passed on over a config that says True."""
    (fed_tensor,) = fed.values()
    length = fed_tensor.shape[1]
    rows = rows.to(fed_tensor.device)
    num_items = kwargs.pop("num_items_in_batch", None)
    user_use_cache = kwargs.pop("use_cache", None)
    keep = kwargs.pop("logits_to_keep", 0)
    input_only = isinstance(keep, int) and 0 < keep <= length
    if input_only:  # the last `keep` positions are all input positions: no prompt logits needed
        kwargs["logits_to_keep"] = keep
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    given = kwargs.pop("past_key_values", None)
    given = kwargs.pop("cache", given)
    if given is not None and hasattr(given, "update"):  # the caller's own (empty) cache: fill it, keep it
        prefix.fill(given, rows)
    else:
        given = prefix.new_cache(base_model, rows)
    kwargs[layer_prefix.cache_argument(type(base_model))] = given
    if output_attentions is not None:
        kwargs["output_attentions"] = output_attentions
    output = base_model(
        **fed,
        attention_mask=full_mask,
        use_cache=True,
        output_hidden_states=output_hidden_states,
        return_dict=True,
        **kwargs,
    )
    if not input_only and output.logits.shape[1] != length:
        reason = (f"{type(base_model).__name__} puts {output.logits.shape[1] - length} rows of its own in front of the "
                  "input (e.g. GIT's image features), which the prompt run alone would follow instead of precede")  # fmt: skip
        base_model.__dict__[_CHECKED_ATTRIBUTE] = reason  # (later calls take the standard path at once)
        raise RowsOfItsOwn(reason)
    result = dict(output)
    if not input_only:
        result["logits"] = _prefixed(prefix.logits, rows, output.logits)
        if isinstance(keep, int) and keep > 0:
            result["logits"] = result["logits"][:, -keep:]
        elif torch.is_tensor(keep):  # positions in [prompt; input], as the standard path reads them
            result["logits"] = result["logits"][:, keep.to(result["logits"].device)]
    if output.get("hidden_states") is not None:  # a selection by index leaves the other layers None
        result["hidden_states"] = tuple(None if h is None else _prefixed(p, rows, h) for p, h in zip(prefix.hidden_states, output.hidden_states))
    if labels is not None:
        if input_only:
            raise ValueError(f"logits_to_keep={keep} with labels: the loss needs the logits of every position; drop logits_to_keep.")
        result["loss"] = _loss(base_model, prefix.logits[:, -1], rows, output.logits, labels, num_items)
    if user_use_cache is False or (user_use_cache is None and getattr(base_model.config, "use_cache", True) is False):
        result.pop("cache", None)
        result.pop("past_key_values", None)
    result = type(output)(**result)
    return result if return_dict is not False else result.to_tuple()


# --------------------------------------------------------------------------- public
def refuse_prompt_cache_of_a_deep_prompt(encoder) -> None:
    """A deep prompt is keys and values in every layer already: no prefix to run once, no cache to compute or take."""
    if encoder.prompt_kind == KEY_VALUES:
        raise ValueError("This adapter is a deep prompt, with its keys and values in every layer already: there is no "
                         "prefix to run once and cache. prompt_kv_cache / prompt_cache are for prompts in front of the input; "
                         "drop them here.")  # fmt: skip


def prompt_kv_cache(peft_model, adapter_name: str | None = None, output_hidden_states: bool = False) -> PromptKVCache:
    """The keys/values of a causal LM's plugin prompt (every task's), computed once and reused.

    Example:
        >>> cache = prompt_kv_cache(peft_model)
        >>> peft_model(input_ids=ids, attention_mask=mask, prompt_cache=cache)
        >>> peft_model.generate(input_ids=ids, attention_mask=mask, prompt_cache=cache)

    The model also keeps and reuses this cache by itself at inference (`shared_prefix="auto"`);
    passing it explicitly makes a stale or foreign cache an error instead of a recomputation.
    """
    config = adapter_config_of(peft_model, adapter_name)
    if not is_plugin_config(config) or task_type_name(config) != "CAUSAL_LM":
        raise ValueError(f"prompt_kv_cache needs a CAUSAL_LM plugin prompt adapter; got {config.peft_type} / {config.task_type}.")
    parts = plugin_parts(peft_model, adapter_name)
    refuse_prompt_cache_of_a_deep_prompt(parts.encoder)
    use_shared_prefix("on", parts)
    first_task = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        cache, _ = prefix_for(parts.base_model, parts.encoder, 1, first_task, parts.input_embeddings.weight.dtype,
                              output_hidden_states=output_hidden_states)  # fmt: skip
    return cache
