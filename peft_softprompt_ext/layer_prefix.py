"""Per-layer prompts: keys and values in front of every self-attention layer's own. PEFT-free.

transformers 5 models run attention through `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`.
`route(model)` points a model's configs at a registered wrapper of the implementation they used
(`sdpa` or `eager`); the wrapper is exactly that implementation unless a deep prompt is active
(`prefixed(...)`), in which case it puts the layer's prompt keys/values [B, kv heads, P, head dim]
in front of the layer's own and lets every query see them. Why here and not in the key/value cache:
* the cache holds only the input, so a forward, a cached generate and an uncached one all read the
  prompt the same way (exact), and left padding never sits in front of it;
* nothing is written to a cache, so gradient checkpointing (which drops caches and replays layers
  in backward) works: transformers' checkpoint function of each layer is wrapped so that a replay in
  backward reads the prompt its own forward read (not the last forward's);
* encoders (BERT) and both T5 stacks run through the same interface: one mechanism for every task.
Keys are what the attention receives (after rotary position embeddings), so a prompt captured from
a text or a shallow prompt at positions 0..P-1 is exactly what those tokens would have left in a
cache. Sliding-window layers see the prompt like full-attention layers (it is never evicted).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import sys
from dataclasses import dataclass

import torch
import torch.utils.checkpoint

from .devices import execution_device
from .eval_mode import in_eval_mode
from .instance_attribute import instance_attribute
from .options import is_integer
from .position_table import positions_in_a_row

ROUTE = "peft_softprompt_ext_layer_prefix|"
_SUPPORTED = ("sdpa", "eager")
_active: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_layer_prefix", default=None)
_capturing: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_layer_capture", default=None)
_kept: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_layer_kept", default=False)
# set on an attention module once it read a prompt, with grad, outside `_PromptKeepingCheckpoint`: a replay of it in
# backward by another checkpoint function cannot know which prompt its forward read (refused, not run without one)
_UNKEPT_ATTRIBUTE = "_peft_softprompt_ext_prompted_outside_kept_checkpoint"
_HOOKED_ATTRIBUTE = "_peft_softprompt_ext_keeps_prompts_in_checkpoints"


@dataclass(frozen=True)
class Slot:
    """One self-attention layer, in the order the model runs them: its module path and cache layout."""

    name: str
    kv_heads: int
    head_dim: int

    @property
    def features(self) -> int:
        return 2 * self.kv_heads * self.head_dim


def features(slots: list[Slot]) -> int:
    """Width F of a deep prompt's rows [P, F]: PEFT PREFIX_TUNING's layout (layer, key/value, head, dim)."""
    return sum(slot.features for slot in slots)


def parts(slots: list[Slot]) -> list[tuple[str, int]]:
    """A row's parts in column order, named, with their widths: each layer's keys, then its values."""
    return [(f"{slot.name} {kind}", slot.kv_heads * slot.head_dim) for slot in slots for kind in ("keys", "values")]


def split(rows: torch.Tensor, slots: list[Slot]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """rows [B, P, F] -> per slot (keys, values), each [B, kv heads, P, head dim]."""
    batch, length, _ = rows.shape
    out, start = [], 0
    for slot in slots:
        block = rows[:, :, start : start + slot.features].reshape(batch, length, 2, slot.kv_heads, slot.head_dim)
        block = block.permute(2, 0, 3, 1, 4)  # [2, B, heads, P, dim]
        out.append((block[0], block[1]))
        start += slot.features
    return out


def join(key_values: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per slot (keys, values) [B, heads, P, dim] -> rows [B, P, F] (the inverse of `split`)."""
    blocks = [torch.stack((keys, values)).permute(1, 3, 0, 2, 4).flatten(2) for keys, values in key_values]
    return torch.cat(blocks, dim=-1)


# --------------------------------------------------------------------------- routing
def _configs(model, stateful: list | None = None) -> list:
    """The configs of `model`'s modules, each once; `stateful` (if given) collects the names of the modules whose class
    transformers marks `_is_stateful` (a state carried along the sequence), in the same walk."""
    seen, found = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen.add(id(config))
            found.append(config)
        if stateful is not None and getattr(type(module), "_is_stateful", False) is True:
            stateful.append(type(module).__name__)
    return found


def _text_configs(model, stateful: list | None = None) -> list:
    """`_configs`, each as its text decoder's config (a composite model's layer settings live there)."""
    return [config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config for config in _configs(model, stateful)]


def register_routes() -> None:
    """Register the routed attention (ROUTE + each supported implementation) with transformers (idempotent). The
    package does it on import: a model saved whole (torch.save) while routed names it in its config, and a fresh
    process that loads it runs it (found 2026-12-07: KeyError, as only building a deep prompt registered it)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    for base in _SUPPORTED:
        AttentionInterface.register(ROUTE + base, _attention)
        AttentionMaskInterface.register(ROUTE + base, ALL_MASK_ATTENTION_FUNCTIONS[base])


def route(model) -> None:
    """Send `model`'s attention through the prefix wrapper of its own implementation (idempotent)."""
    register_routes()
    for config in _configs(model):
        current = config._attn_implementation
        if isinstance(current, str) and current.startswith(ROUTE):
            continue
        base = current or "eager"
        if base not in _SUPPORTED:
            raise ValueError(f"Deep prompts need sdpa or eager attention; this model uses attn_implementation={base!r}. "
                             "Load it with attn_implementation='sdpa'.")  # fmt: skip
        config._attn_implementation = ROUTE + base  # (not an attribute of its own: save_pretrained would write it)
    if getattr(model, _HOOKED_ATTRIBUTE, None) is None:  # every pass, prompted or not (an adapter disabled, the base alone)
        object.__setattr__(model, _HOOKED_ATTRIBUTE, model.register_forward_pre_hook(_keep_prompts_before_a_pass))


def unroute(model) -> None:
    """Undo `route`: `model`'s configs name their own attention implementation again, and the hook and the
    checkpoint wrappers are gone (`unload()`: the base model as it was)."""
    for config in _configs(model):
        current = config._attn_implementation
        if isinstance(current, str) and current.startswith(ROUTE):
            config._attn_implementation = current[len(ROUTE) :]
    handle = getattr(model, _HOOKED_ATTRIBUTE, None)
    if handle is not None:
        handle.remove()
        object.__delattr__(model, _HOOKED_ATTRIBUTE)
    for module in model.modules():
        function = getattr(module, "_gradient_checkpointing_func", None)
        if isinstance(function, _PromptKeepingCheckpoint):
            module._gradient_checkpointing_func = function.checkpoint
        if _UNKEPT_ATTRIBUTE in vars(module):
            object.__delattr__(module, _UNKEPT_ATTRIBUTE)


@contextlib.contextmanager
def unrouted_on_failure(model):
    """A block that may route `model` (building a deep prompt for a load): if it fails, a model that came unrouted is
    left unrouted."""
    routed = getattr(model, _HOOKED_ATTRIBUTE, None) is not None
    try:
        yield
    except BaseException:
        if not routed:
            unroute(model)
        raise


def _keep_prompts_before_a_pass(model, args) -> None:
    if torch.is_grad_enabled():
        _keep_prompts_in_checkpoints(model)


def _base_attention(module):
    """The attention `module` would run unrouted: its config names ROUTE + that implementation."""
    base = module.config._attn_implementation[len(ROUTE) :]
    if base == "eager":
        if getattr(module, "reorder_and_upcast_attn", False) and hasattr(module, "_upcast_and_reordered_attn"):
            return _upcast_and_reordered  # GPT-2's eager path with reorder_and_upcast_attn=True
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[base]


def _upcast_and_reordered(module, query, key, value, attention_mask, **kwargs):
    return module._upcast_and_reordered_attn(query, key, value, attention_mask)  # (its own dropout and scaling)


def _visible(mask, prefix_length: int, query, key, module):
    """`mask` for the input's keys -> for [prefix; input] keys: every query sees the whole prefix.

    No mask with several queries means sdpa's `is_causal`, whose causal mask is aligned top-left:
    query i sees keys 0..i. transformers relies on that when keys and queries are as many, and when
    it prefills an empty static cache, whose keys past the input are empty slots no query may see."""
    queries, keys = query.shape[-2], key.shape[-2]
    if mask is None:
        if queries == 1 or not getattr(module, "is_causal", True):
            return None  # every key was visible; so is the prefix
        rows = torch.arange(queries, device=query.device).unsqueeze(1)
        mask = (torch.arange(keys, device=query.device).unsqueeze(0) <= rows)[None, None]
    fill = torch.ones if mask.dtype == torch.bool else torch.zeros
    return torch.cat((fill(*mask.shape[:-1], prefix_length, dtype=mask.dtype, device=mask.device), mask), dim=-1)


def _attention(module, query, key, value, attention_mask, **kwargs):
    active = _active.get()
    replay = active is None and torch._C._current_graph_task_id() >= 0  # recomputed in backward, not by our wrapper
    if replay and getattr(module, _UNKEPT_ATTRIBUTE, False):
        raise RuntimeError(
            f"{type(module).__name__} is being recomputed in backward by a checkpoint function other than transformers' "
            "own (model.gradient_checkpointing_enable), so which deep prompt its forward read is unknown. Checkpoint "
            "a deep-prompt model with model.gradient_checkpointing_enable(gradient_checkpointing_kwargs="
            "{'use_reentrant': False})."
        )
    prefix = active.get(id(module)) if active else None
    if prefix is not None and torch.is_grad_enabled() and not _kept.get():
        object.__setattr__(module, _UNKEPT_ATTRIBUTE, True)  # a replay of this layer could not know its prompt
    capture = _capturing.get()
    if capture is not None:
        capture.append((module, key, value, query.shape[-2]))
    attention = _base_attention(module)
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4 and attention_mask.shape[-1] > key.shape[-2]:
        # a model that builds its own mask one column longer for any implementation not named "sdpa" (transformers
        # 5.0's Mllama), which eager attention slices to the keys and the routed name reaches (found 2026-12-07)
        attention_mask = attention_mask[..., : key.shape[-2]]
    if prefix is None:
        return attention(module, query, key, value, attention_mask, **kwargs)
    keys, values = prefix
    if keys.shape[0] != key.shape[0]:  # beams / returned sequences repeat each row
        keys, values = (t.repeat_interleave(key.shape[0] // t.shape[0], dim=0) for t in (keys, values))
    length = keys.shape[-2]
    attention_mask = _visible(attention_mask, length, query, key, module)
    if kwargs.get("position_bias") is not None:  # T5: relative position bias over the keys; none for the prompt
        kwargs["position_bias"] = _visible(kwargs["position_bias"], length, query, key, module)
    key = torch.cat((keys.to(key.dtype), key), dim=-2)
    value = torch.cat((values.to(value.dtype), value), dim=-2)
    return attention(module, query, key, value, attention_mask, **kwargs)


# --------------------------------------------------------------------------- use
def prefixed(model, slots: list[Slot], rows: torch.Tensor, frozen_slots: int = 0):
    """Within this block, every slot of `model` sees its part of `rows` [B, P, F] in front of its keys/values.
    The first `frozen_slots` slots get theirs detached: nothing below the lowest trained layer runs backward."""
    return _in_front(model, _by_module(model, slots, rows, frozen_slots), rows.requires_grad)


def _by_module(model, slots: list[Slot], rows: torch.Tensor, frozen_slots: int) -> dict:
    """id(attention module) -> its (keys, values) of `rows`, the first `frozen_slots` slots' detached."""
    modules = [model.get_submodule(slot.name) for slot in slots]
    key_values = split(rows, slots)
    key_values = [(k.detach(), v.detach()) for k, v in key_values[:frozen_slots]] + key_values[frozen_slots:]
    return {id(module): kv for module, kv in zip(modules, key_values)}


@contextlib.contextmanager
def _in_front(model, by_module: dict, trains: bool):
    """`by_module`'s keys and values in front of those modules' own for the block (`prefixed`)."""
    route(model)  # again: someone may have set another attention implementation since
    if torch.is_grad_enabled():
        _keep_prompts_in_checkpoints(model, refuse_reentrant=trains)
    # another model's open block (this model runs inside its generate) keeps its own layers' prompts
    token = _active.set({**(_active.get() or {}), **by_module})
    try:
        yield
    finally:
        _active.reset(token)


_armed: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_layer_armed", default={})


@contextlib.contextmanager
def prefixed_in_steps(model, slots: list[Slot], rows: torch.Tensor, frozen_slots: int = 0):
    """Around one whole generate call of `model` (transformers' own generate, which calls `model` for each step):
    `rows` as in `prefixed`, but only in the forwards of the call's own steps: the forward of `model` that follows a
    step `mark_step` marked (transformers prepares each step's inputs, then runs it). Any other call made meanwhile (a
    logits processor's forward of the PeftModel with other task ids, a smaller batch or its adapter disabled,
    classifier-free guidance's unconditional pass of `model`) runs as outside the call: found 2026-12-06, each ran
    with the call's prompt in its layers (or failed on the batch size), unlike with generate's default cache, which
    holds the prompt for the call's own steps only."""
    route(model)
    own_forward = model.forward  # (the class's, bound, or one set on the instance: an outer call's, accelerate's)
    step = {"marked": False}
    by_module = _by_module(model, slots, rows, frozen_slots)  # once for the call, not at every step

    @functools.wraps(own_forward)  # (its signature: generate checks its keywords against it)
    def forward(*args, **kwargs):
        # the caller's context says whether this is the call's step: another thread's forward of the model meanwhile
        # finds nothing there (found by a review: it took the prompt), an inner call on the model its own entry
        if _armed.get().get(id(model)) is not step or not step["marked"]:
            return own_forward(*args, **kwargs)
        step["marked"] = False
        with _in_front(model, by_module, rows.requires_grad):
            return own_forward(*args, **kwargs)

    token = _armed.set({**_armed.get(), id(model): step})
    try:
        with instance_attribute(model, "forward", forward):
            yield
    finally:
        _armed.reset(token)


def mark_step(model) -> None:
    """The next forward of `model` is a step of the generate call `prefixed_in_steps` is around (called from
    `prepare_inputs_for_generation`); nothing outside such a call (a step prepared by hand runs as without one)."""
    step = _armed.get().get(id(model))
    if step is not None:
        step["marked"] = True


@contextlib.contextmanager
def unprompted(model):
    """No prompt in `model`'s layers for the block, whatever block is open around it: a call of the model with its
    adapter disabled, made inside a generate that keeps the prompt in the layers for the whole call (an encoder-decoder's:
    found 2026-12-06, such a call ran with the prompt, 21 off the base model)."""
    active = _active.get()
    if not active:
        yield
        return
    own = {id(module) for module in model.modules()}
    token = _active.set({key: value for key, value in active.items() if key not in own})
    try:
        yield
    finally:
        _active.reset(token)


class _PromptKeepingCheckpoint:
    """A layer's checkpoint function (transformers' `_gradient_checkpointing_func`) that runs the layer, in forward
    and in its replay in backward, under the prompts active when the forward ran: several forwards (tasks, batch
    sizes, a second adapter's reference pass) before one backward each replay their own."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint

    def __call__(self, function, *args, **kwargs):
        active = _active.get() or _NO_PROMPTS  # (a replay must tell "no prompt" from "not ours")

        def run(*inner_args, **inner_kwargs):
            tokens = _active.set(active), _kept.set(True)
            try:
                return function(*inner_args, **inner_kwargs)
            finally:
                _kept.reset(tokens[1])
                _active.reset(tokens[0])

        return self.checkpoint(run, *args, **kwargs)


_NO_PROMPTS: dict = {}


def _keep_prompts_in_checkpoints(model, refuse_reentrant: bool = False) -> None:
    """Wrap each checkpointed module's checkpoint function in a `_PromptKeepingCheckpoint` (once); with
    `refuse_reentrant` (a deep prompt trains) first raise if it is reentrant (`_refuse_reentrant`). One walk."""
    for module in model.modules():
        function = getattr(module, "_gradient_checkpointing_func", None)
        if getattr(module, "gradient_checkpointing", False) is not True:
            continue
        if refuse_reentrant and module.training and _reentrant(module):
            _refuse_reentrant(module)
        if callable(function) and not isinstance(function, _PromptKeepingCheckpoint):
            module._gradient_checkpointing_func = _PromptKeepingCheckpoint(function)


def _refuse_reentrant(module) -> None:
    """Raise: `module` checkpoints its layers reentrantly while a deep prompt trains.

    A reentrant replay runs each layer's backward as a separate pass, and every layer reads the prompt: its
    gradient arrives in as many pieces as there are layers. DistributedDataParallel syncs a parameter when its
    first piece arrives (the synced gradient was silently wrong), and a computed prompt (a mixture, a residual
    MLP, layer scales) cannot be gone back through twice. Non-reentrant checkpointing keeps one graph: exact.
    """
    raise ValueError(
        f"{type(module).__name__} checkpoints its layers with use_reentrant=True, which a deep prompt cannot train "
        "under: every layer reads the prompt, and a reentrant replay sends its gradient back one layer at a time "
        "(DistributedDataParallel syncs only part of it; a mixture or reparameterised prompt fails). Enable "
        "checkpointing with model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False}) "
        "(transformers' default; TrainingArguments(gradient_checkpointing_kwargs=...) in a Trainer)."
    )


def _reentrant(module) -> bool:
    """Whether transformers' checkpoint function of `module` is torch's reentrant one (its default when unset)."""
    function = getattr(module, "_gradient_checkpointing_func", None)
    if isinstance(function, _PromptKeepingCheckpoint):
        function = function.checkpoint
    keywords = getattr(function, "keywords", None)  # transformers sets a functools.partial of torch's checkpoint
    if function is torch.utils.checkpoint.checkpoint:
        return True
    return isinstance(keywords, dict) and keywords.get("use_reentrant", True) is not False


def discover_slots(model, task_type: str) -> list[Slot]:
    """The model's self-attention layers in running order, found by one tiny forward (3 input tokens)."""
    if state_kept_in_layers(model):
        raise ValueError(f"{type(model).__name__} keeps its recurrent layers' state in the layers themselves and restarts it "
                         "where a call's positions start at 0, which a deep prompt's shifted positions never do (a state "
                         "from an earlier call would leak into generate). Use a shallow prompt "
                         "(VocabSampledPromptTuningConfig) there.")  # fmt: skip
    route(model)
    names = {id(module): name for name, module in model.named_modules()}
    ids = torch.tensor([[1, 2, 3]], device=execution_device(model))
    try:
        calls = _run_capturing(model, ids, task_type, decoder_length=2)
    except torch.OutOfMemoryError:
        raise
    except (ValueError, RuntimeError, TypeError) as error:  # (found 2026-12-07 by probes: Kosmos-2, Idefics and BLIP-2 want
        # an image in every call; Funnel's default pooling does not run 3 tokens, a bare shape error)
        raise ValueError(f"{type(model).__name__} does not run a text of 3 tokens alone ({type(error).__name__}: {error}), which "
                         "finding its attention layers takes: deep prompts are not supported there. Use a shallow prompt "
                         "(VocabSampledPromptTuningConfig).") from error  # fmt: skip
    slots, seen = [], set()
    for module, key, value, queries in calls:
        if queries == key.shape[-2] and id(module) not in seen:  # cross-attention sees another length
            seen.add(id(module))
            if value.shape[1:] != key.shape[1:]:
                raise ValueError(f"{type(model).__name__}'s attention {names[id(module)]!r} takes keys {tuple(key.shape[1:])} and "
                                 f"values {tuple(value.shape[1:])} per token (heads, slots, head dim; e.g. multi-head latent "
                                 "attention, as in DeepSeek-V3 and Kimi Linear): deep prompts need keys and values of one "
                                 "shape. Use a shallow prompt (VocabSampledPromptTuningConfig) there.")  # fmt: skip
            if getattr(module, "kv_lora_rank", None) is not None:  # (found 2026-12-07: equal widths built, then a cached
                # generate failed inside the cache, which holds the latent parts; plain PEFT PREFIX_TUNING alike)
                raise ValueError(f"{type(model).__name__}'s attention {names[id(module)]!r} is multi-head latent attention "
                                 f"(kv_lora_rank={module.kv_lora_rank}): its cache holds the compressed latent, not the keys and "
                                 "values a deep prompt puts in front of each layer's. Use a shallow prompt "
                                 "(VocabSampledPromptTuningConfig) there.")  # fmt: skip
            slots.append(Slot(names[id(module)], key.shape[1], key.shape[-1]))
    if not slots:
        import transformers

        raise ValueError(f"{type(model).__name__} ran no attention through transformers' attention interface "
                         f"(transformers {transformers.__version__}): deep prompts need a model whose attention does "
                         "(T5 does from transformers 5.15).")  # fmt: skip
    return slots


def _run_capturing(model, ids, task_type: str, decoder_length: int = 0, inputs_embeds=None, decoder_inputs_embeds=None) -> list:
    """(module, keys, values, query length) of every attention call of one forward (seq2seq given rows: the decoder
    reads `decoder_inputs_embeds`, else the same rows)."""
    calls = []
    token = _capturing.set(calls)
    try:
        with torch.no_grad():
            inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": ids}
            if task_type == "SEQ_2_SEQ_LM" and inputs_embeds is not None:
                model(**inputs, decoder_inputs_embeds=inputs_embeds if decoder_inputs_embeds is None else decoder_inputs_embeds)
            elif task_type == "SEQ_2_SEQ_LM":
                start = getattr(model.config, "decoder_start_token_id", None) or 0
                model(**inputs, decoder_input_ids=torch.full((ids.shape[0], decoder_length), start, dtype=torch.long, device=ids.device))
            elif task_type == "CAUSAL_LM":
                reference = ids if ids is not None else inputs_embeds
                positions = {}  # (transformers 5.0's Qwen2-VL, given embeddings alone, asks input_ids for its positions)
                if rope_index_owner(model) is not None:
                    positions["position_ids"] = positions_in_a_row(0, reference.shape[1], reference.shape[0], reference.device)
                model(**inputs, use_cache=False, **positions)
            else:
                model(**inputs)
    finally:
        _capturing.reset(token)
    return calls


class RowsNotTaken(ValueError):
    """The model failed given a prompt's rows as `inputs_embeds` (`key_values_of`)."""


def key_values_of(model, slots: list[Slot], task_type: str, rows: torch.Tensor, decoder_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The deep prompt [P, F] a sequence of input rows [P, D] leaves in every slot: what P tokens (or a
    shallow prompt) at positions 0..P-1 would leave in a cache (rows [B, P, D]: [B, P, F], one per row).
    Seq2seq: encoder and decoder both read the rows (as encoder input and as decoder input; `decoder_rows`: the same
    tokens as the decoder reads them, where that differs, `ids_embedding.decoder_rows_factor`)."""
    route(model)
    batched = rows.dim() == 3
    by_module = {}

    def batch(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor if batched else tensor[None]).clone()  # (a copy: CTRL scales them in place)

    try:
        calls = _run_capturing(model, None, task_type, inputs_embeds=batch(rows),
                               decoder_inputs_embeds=None if decoder_rows is None else batch(decoder_rows))  # fmt: skip
    except torch.OutOfMemoryError:
        raise
    except (NotImplementedError, ValueError, TypeError, RuntimeError) as error:  # e.g. BartForSequenceClassification:
        # "Passing input embeddings is currently not supported"; Florence-2 makes decoder_input_ids beside given
        # decoder_inputs_embeds and refuses both (found 2026-12-08 by a probe)
        raise RowsNotTaken(f"{type(model).__name__} does not run rows given as inputs_embeds ({type(error).__name__}: {error})") from error
    for module, key, value, _ in calls:
        by_module.setdefault(id(module), (key, value))  # a layer's first call (self-attention comes first)
    modules = [model.get_submodule(slot.name) for slot in slots]
    missing = [slot.name for slot, module in zip(slots, modules) if id(module) not in by_module]
    if missing:
        raise ValueError(f"Running the prompt through the model reached no self-attention in {missing}.")
    table = join([by_module[id(module)] for module in modules])
    return table if batched else table[0]


_SLIDING = ("sliding_window", "sliding_attention")  # (config attribute, the layer type it applies to)
_CHUNKED = ("attention_chunk_size", "chunked_attention")


def rope_index_owner(model):
    """The module that numbers a vision-language model's rotary positions on several axes from its input ids (its
    `get_rope_index`: Qwen2-VL's M-RoPE, an image's tokens by time, height and width), or None."""
    return next((m for m in (model, getattr(model, "model", None)) if callable(getattr(m, "get_rope_index", None))), None)


def sliding_window_of(model) -> int | None:
    """The smallest sliding attention window of a model's layers (None: every layer sees everything)."""
    return _smallest_reach(_text_configs(model), *_SLIDING)


def chunked_attention_of(model) -> int | None:
    """The chunk size of a model whose layers attend within fixed chunks of slots (Llama 4's `attention_chunk_size` on
    its "chunked_attention" layers), counted from each row's first real token; None: no layer does."""
    return _smallest_reach(_text_configs(model), *_CHUNKED)


def _smallest_reach(configs: list, attribute: str, layer_type: str) -> int | None:
    """The smallest `attribute` of the text configs whose layers include `layer_type` (or list no types)."""
    sizes = []
    for text in configs:
        size = getattr(text, attribute, None)
        types = set(getattr(text, "layer_types", None) or ())
        if isinstance(size, int) and size > 0 and (not types or layer_type in types):
            sizes.append(size)
    return min(sizes) if sizes else None


# Layer kinds that carry a state along the sequence (state-space, linear-attention, convolution layers), as configs
# name them: `layer_types` (transformers 5.x: "linear_attention", "conv", "hybrid"), older `layers_block_type` ("mamba")
# and RecurrentGemma's `block_types` ("recurrent").
_RECURRENT_KINDS = frozenset({"linear_attention", "conv", "hybrid", "hybrid_sliding", "mamba", "mamba2", "recurrent"})
_KIND_ATTRIBUTES = ("layer_types", "layers_block_type", "block_types")


def recurrent_layers_of(model) -> str | None:
    """What makes some layer of `model` carry a state along the sequence (Mamba and hybrids such as Jamba, Bamba,
    Qwen3-Next, LFM2), as a phrase for messages; None for attention-only models. Read from the configs' layer kinds
    and transformers' `_is_stateful` flag (Falcon-H1 in transformers 5.0 names its layers "attention" only)."""
    stateful = []
    return _recurrent(_text_configs(model, stateful), stateful)


def _recurrent(configs: list, stateful: list) -> str | None:
    """`recurrent_layers_of`, from the model's text configs and its stateful modules' names."""
    for text in configs:
        for attribute in _KIND_ATTRIBUTES:
            kinds = getattr(text, attribute, None)
            found = sorted({str(kind) for kind in kinds} & _RECURRENT_KINDS) if isinstance(kinds, (list, tuple)) else []
            if found:
                return f"{attribute} {', '.join(found)}"
    return f"{stateful[0]} is stateful" if stateful else None


def state_kept_in_layers(model) -> bool:
    """RecurrentGemma's recurrent layers keep their state in the layer itself, restarted when a call's positions start
    at 0, not in the cache generate passes along."""
    return any("recurrent" in (getattr(config, "block_types", None) or ()) for config in _configs(model))


def counts_slots(model) -> bool:
    """Whether padding between a prompt and its tokens changes what each token sees: some layer's reach is counted in
    slots (a sliding window, or chunks), some layer carries a state along the slots, which decays over padding
    (`recurrent_layers_of`), or the attention biases distances counted in slots (`_alibi_over_slots`)."""
    stateful = []
    configs = _text_configs(model, stateful)  # one walk of the modules for all four
    return any(_smallest_reach(configs, *reach) is not None for reach in (_SLIDING, _CHUNKED)) or _recurrent(configs, stateful) is not None \
        or _alibi_over_slots(configs)


def _alibi_over_slots(configs: list) -> bool:
    """MPT: its attention biases each key by its distance to the query counted in slots, padding included, whatever its
    config's `attn_config.alibi` says (transformers' MPT reads no such flag) (found 2026-12-07: a left-padded row behind
    a prompt 0.39 off the row alone; Bloom and Falcon count it from the attention mask and need nothing)."""
    return any(getattr(config, "model_type", None) == "mpt" for config in configs)


def is_causal_decoder(model) -> bool:
    """A decoder-only model (GPT-2, Llama, ...; as a causal LM or a classifier): not an encoder or seq2seq model.
    Its attention modules say so (`is_causal`), or, where they carry no such flag (Bloom, MPT), transformers has a
    causal LM of its kind and no masked LM (encoders such as BERT have both)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    if any(getattr(module, "is_causal", False) is True for module in model.modules()):
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = getattr(model.config, "model_type", None)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


CACHE_PREFIX_REFUSAL = ("plain PEFT PREFIX_TUNING (a cache prefix) holds deep prompts exactly only for causal decoders (a "
                        "CAUSAL_LM, or a GPT-2 / Llama SEQ_CLS classifier) with full attention whose attention reads its "
                        "cache's keys and values as they are, not encoders, seq2seq models, sliding-window layers or "
                        "attention that does more with its cache (DiffLlama, Doge, JetMoE)")  # fmt: skip


def held_by_a_cache_prefix(model, task_type: str, slots: list[Slot] | None = None) -> bool:
    """Whether a deep prompt of `model` runs exactly as a cache prefix (plain PEFT PREFIX_TUNING; generate's own cache,
    where the plugin puts it at the first step): a causal decoder, whose input positions follow the prompt here as
    there, with no sliding window (it would evict a cached prefix), and, where its `slots` are given, whose attention
    reads its cache's keys and values as the prompt in front of its layers gives them (`_cache_prefix_runs_as_layers`).
    Else `CACHE_PREFIX_REFUSAL` says why not. `model` None (not at hand): a causal LM's is taken as held."""
    if model is None:
        return task_type == "CAUSAL_LM"
    if task_type not in ("CAUSAL_LM", "SEQ_CLS") or sliding_window_of(model) is not None:
        return False
    if task_type == "SEQ_CLS" and not is_causal_decoder(model):
        return False
    return slots is None or _cache_prefix_runs_as_layers(model, slots)


def _cache_prefix_runs_as_layers(model, slots: list[Slot], length: int = 2) -> bool:
    """Whether keys and values for `length` positions, put in a fresh cache in front of a 3-token input, give the
    logits they give in front of every layer's attention (`prefixed`). Not so where the attention does more with its
    cache's contents than attend to them (found 2026-12-07 by a probe; cached generate was 2.0 and 1.1 off forward on
    a logit scale of 2.7): DiffLlama attends twice per layer with values rebuilt from the cache's, Doge masks its keys
    by its cached values, JetMoE repeats them after the cache (a crash in its cache)."""
    from transformers import DynamicCache

    argument = cache_argument(type(model))
    if argument is None:
        return False
    device, dtype = execution_device(model), next(model.parameters()).dtype
    rows = torch.randn(1, length, features(slots), generator=torch.Generator().manual_seed(0)).to(device, dtype)
    ids = torch.tensor([[1, 2, 3]], device=device)
    positions = torch.arange(length, length + 3, device=device)[None]
    try:
        with torch.no_grad(), in_eval_mode(model):
            with prefixed(model, slots, rows):
                layered = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions, use_cache=False).logits
            cache = DynamicCache(config=model.config)
            put_in_cache(cache, model, slots, rows)
            cached = model(input_ids=ids, attention_mask=torch.ones(1, length + 3, dtype=torch.long, device=device), position_ids=positions,
                           use_cache=True, **{argument: cache}).logits  # fmt: skip
    except (RuntimeError, ValueError, IndexError, TypeError):  # (JetMoE: the cache's widths are not its attention's)
        return False
    return off_beyond_tolerance(layered, cached, dtype) is None


def put_in_cache(cache, model, slots: list[Slot], rows: torch.Tensor) -> None:
    """A deep prompt's rows [B, P, F] as the first P positions of every slot's layer in a transformers cache."""
    modules = [model.get_submodule(slot.name) for slot in slots]
    for index, (module, (keys, values)) in enumerate(zip(modules, split(rows, slots))):
        cache.update(keys.contiguous(), values.contiguous(), getattr(module, "layer_idx", index))


def off_beyond_tolerance(reference: torch.Tensor, other: torch.Tensor, dtype: torch.dtype) -> float | None:
    """How far `other`'s logits are from `reference`'s, where that is past what rounding in the model's `dtype` explains
    (1e-3 of the logit scale in float32, 5e-2 in half precision); None where they agree. The build's once-per-model
    checks of a cache prefix read it (`_cache_prefix_runs_as_layers`, `shared_prefix.cache_prefix_reads_otherwise`)."""
    off = float((reference.float() - other.float()).abs().max())
    tolerance = 1e-3 if dtype == torch.float32 else 5e-2
    return off if off > tolerance * max(1.0, float(reference.float().abs().max())) else None


@functools.lru_cache(maxsize=64)
def cache_argument(model_class: type) -> str | None:
    """The name of `model_class.forward`'s cache argument (`cache` from transformers 5.24, else
    `past_key_values`), or None if it takes no cache or no position_ids."""
    parameters = inspect.signature(model_class.forward).parameters
    if "position_ids" not in parameters:
        return None
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def layout_of(slots: list[Slot]) -> list[list]:
    """Slots as a config saves them: [[module path, key/value heads, head dim], ...]."""
    return [[slot.name, slot.kv_heads, slot.head_dim] for slot in slots]


def slots_of(layout) -> list[Slot]:
    return [Slot(str(name), int(heads), int(dim)) for name, heads, dim in layout]


def check_layout_value(layout) -> None:
    """A config's `deep_layout` must be None or a non-empty list of [module path, key/value heads, head dim]."""
    if layout is None:
        return
    entries_ok = isinstance(layout, list) and layout and all(
        isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str) and entry[0]
        and is_integer(entry[1]) and entry[1] > 0 and is_integer(entry[2]) and entry[2] > 0 for entry in layout)  # fmt: skip
    if not entries_ok:
        raise ValueError(f"deep_layout must be None or a non-empty list of [module path, key/value heads, head dim] "
                         f"(positive integers) per self-attention layer, got {layout!r:.300}.")  # fmt: skip


def check_layout(saved, slots: list[Slot], what: str) -> None:
    """A saved layout must be the model's own: the same self-attention layers with the same cache layout."""
    if saved is None:
        return
    if slots_of(saved) != slots:
        found = layout_of(slots)
        first = next((i for i, (a, b) in enumerate(zip(saved, found)) if list(a) != b), min(len(saved), len(found)))

        def at(layout) -> str:  # the first layer that differs, or that one of the two lacks
            return f"(layer {first}: {list(layout[first])})" if first < len(layout) else f"(no layer {first})"

        raise ValueError(f"{what} was made for {len(saved)} self-attention layers {at(saved)} but this model has "
                         f"{len(found)} {at(found)}: its keys and values do not fit this model.")  # fmt: skip


def check_plain_layout(saved: dict, slots: list[Slot], what: str) -> None:
    """A plain PEFT PREFIX_TUNING / CARTRIDGE adapter's table ([P, layers x 2 x token_dim], the layout of `layout_of`
    for layers alike) must be the model's own: its config's num_layers, num_attention_heads (key/value heads, after
    PEFT's grouped-query adjustment) and token_dim against the model's self-attention layers."""
    layers, heads, width = (saved.get(key) for key in ("num_layers", "num_attention_heads", "token_dim"))
    fits = layers == len(slots) and all(heads == slot.kv_heads and width == slot.kv_heads * slot.head_dim for slot in slots)
    if not fits:
        found = sorted({(slot.kv_heads, slot.head_dim) for slot in slots})
        raise ValueError(f"{what} ({saved.get('peft_type')}) was made for num_layers={layers!r}, num_attention_heads={heads!r}, "
                         f"token_dim={width!r}; this model has {len(slots)} self-attention layers of (key/value heads, head dim) "
                         f"{found}: its keys and values do not fit this model.")  # fmt: skip


def check_trainable_layers(layers, residual_mlp: bool) -> None:
    """`trainable_layers` (deep prompts and mixtures of them): None (every layer trains) or a positive count,
    and not with a residual MLP (one MLP shared over every layer would move the fixed ones)."""
    if layers is not None and (not is_integer(layers) or layers <= 0):
        raise ValueError(f"trainable_layers must be None (every layer trains) or a positive number of layers, got {layers!r}.")
    if layers is not None and residual_mlp:
        raise ValueError(f"trainable_layers={layers} keeps the lower layers' keys and values fixed, but "
                         "reparameterization='residual_mlp' shares one MLP over every layer (training it would move "
                         "them): use reparameterization=None or 'layer_scaled'.")  # fmt: skip


def frozen_slot_count(layers: int | None, slots: list[Slot]) -> int:
    """How many leading slots keep their keys/values fixed when only the last `layers` train (None: all train)."""
    if layers is None:
        return 0
    if layers > len(slots):
        raise ValueError(f"trainable_layers={layers}, but this model has {len(slots)} self-attention layers: "
                         f"give 1..{len(slots)}, or None for all of them.")  # fmt: skip
    return len(slots) - layers
