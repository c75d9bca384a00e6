"""A call's inputs besides the text (audio features, images) that a model reads only beside `input_ids`.

Qwen2-Audio puts its audio features on the audio tokens only when it gets no `inputs_embeds`, Voxtral only when it gets
`input_ids`, and Llama 4 refuses `pixel_values` beside `inputs_embeds` (found 2026-12-07 by a probe: a prompted forward
ran without the audio, 6.9 off the prompt fed by hand; plain PEFT alike). A deep prompt and the shared prefix hand the
model the caller's `input_ids` as given; a prompt of input rows joined to the input's goes in as `inputs_embeds`, and
is refused on such a call, once checked per model and set of inputs (`refuse_inputs_dropped_beside_embeddings`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import shared_prefix
from .._peft_compat import PromptParts
from ..eval_mode import in_eval_mode
from ..layer_prefix import off_beyond_tolerance
from ..position_table import first_position, positions_in_a_row
from .inputs import CROSS_ATTENTION_MASKS, TOKEN_TYPES, model_accepts, transformers_model
from .padding_order import PADDING_FIRST_REASON
from .positions import positions_from_mask

_CHECKED = "_peft_softprompt_ext_inputs_dropped_beside_embeddings"  # on the model: {input names: reason or None}
_TEXT_ARGUMENTS = ("input_ids", "inputs_embeds", "attention_mask", "position_ids", "labels")
_CACHE_ARGUMENTS = ("past_key_values", "cache", "cache_position", "use_cache", "logits_to_keep", "num_items_in_batch", "rope_deltas")
_NOT_MODALITY = {*_TEXT_ARGUMENTS, *_CACHE_ARGUMENTS, *TOKEN_TYPES, *CROSS_ATTENTION_MASKS}


def model_input(input_ids, inputs_embeds: torch.Tensor, given_embeds: bool) -> dict:
    """The input as the model gets it where the prompt does not join its rows (a deep prompt, the shared prefix): the
    caller's `input_ids` where the caller gave ids, so that the model puts its other inputs on them; else the rows, a
    copy (GIT and CTRL change theirs in place: the caller's tensor stays as given, and a leaf that requires a gradient
    stays usable; a review of 2026-12-08 found an uncopied deep path failing backward on CTRL)."""
    if input_ids is not None and not given_embeds:
        return {"input_ids": input_ids}
    return {"inputs_embeds": inputs_embeds.clone()}


def refuse_inputs_dropped_beside_embeddings(parts: PromptParts, input_ids, attention_mask, position_ids, kwargs: dict,
                                            why_joined: Callable[[], str]) -> None:  # fmt: skip
    """Refuse a call that joins prompt rows to the input's (`inputs_embeds`) where the model reads the call's other
    inputs (`input_features`, `pixel_values`, ...) only beside `input_ids`: checked once per model and set of input names,
    by running the base model on the call without a prompt both ways (the logits must agree, in the model's dtype).
    `kwargs`: the call's other arguments (a forward's, or a generate step's model inputs); `why_joined()`: why this call
    is off the shared prefix (`why_joined`), named in the refusal (a probe: the message listed every cause but the user's)."""
    names = _modality_inputs(kwargs)
    if input_ids is None or not names:
        return
    model = transformers_model(parts)
    answers = model.__dict__.setdefault(_CHECKED, {})
    if names not in answers:
        answers[names] = _why_dropped(parts, input_ids, attention_mask, position_ids, kwargs)
    if answers[names] is not None:
        raise ValueError(f"{type(model).__name__} {answers[names].format(names=', '.join(names))}, and this call joins the prompt's "
                         f"rows to the input's as inputs_embeds, off the shared prefix (the prompt as a cached prefix, the input as "
                         f"input_ids) because {why_joined()}. Remove that where it can go (shared_prefix='auto'; generate with the "
                         "cache; train without gradient checkpointing, and with the language model's dropout at 0), or use "
                         "DeepPromptTuningConfig (keys and values in every layer; the input stays input_ids) or LoRA.")  # fmt: skip


def refuse_generate_dropping_inputs_beside_embeddings(parts: PromptParts, input_ids, attention_mask, kwargs: dict,
                                                     error: Exception) -> None:  # fmt: skip
    """Where a seq2seq generate given a shallow prompt's rows (`inputs_embeds`) failed, on a call with inputs besides the
    text, and the model's generate runs the call given `input_ids`: refuse, naming the inputs and the error (found
    2026-12-08 by a probe: Florence-2's generate looks for its image tokens in the input tensor, which given embeddings
    holds none, "Image features and image tokens do not match, tokens: 0"; plain PEFT alike). Returns where the failure
    has another cause, for the caller to raise the error as it was."""
    names = tuple(name for name in _modality_inputs(kwargs) if not name.startswith("decoder_"))
    if input_ids is None or not names:
        return
    model = transformers_model(parts)
    settings = {name: value for name, value in kwargs.items() if name not in _LENGTH_AND_STREAMING}
    try:
        with torch.no_grad():  # (the caller's own call by ids, one token: a mistake of the caller's fails here too)
            parts.base_model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings, max_new_tokens=1)
    except Exception:  # noqa: BLE001  (any failure: the caller's error stands as raised)
        return
    said = str(error).splitlines()[0][:200]
    raise ValueError(f"{type(model).__name__}'s generate refuses this call's {', '.join(names)} beside inputs_embeds ({type(error).__name__}: "
                     f"{said}), and a soft prompt goes into the encoder as inputs_embeds, in front of the input's rows (given "
                     "input_ids alone, without the prompt, it runs). The prompted forward takes them: decode with forward "
                     "calls, or use LoRA.") from error  # fmt: skip


_LENGTH_AND_STREAMING = ("max_new_tokens", "max_length", "min_new_tokens", "min_length", "streamer")


def _modality_inputs(kwargs: dict) -> tuple:
    """The names of a call's inputs besides the text (`input_features`, `pixel_values`, ...), sorted."""
    return tuple(sorted(name for name, value in kwargs.items() if _holds_a_tensor(value) and name not in _NOT_MODALITY))


def why_joined(parts: PromptParts, mode: str, padding_first: bool, output_attentions, call_kwargs: dict, generating: bool) -> str:
    """Why a first call (its cache empty) joins a shallow prompt's rows to the input's instead of running on the shared
    prefix, for `refuse_inputs_dropped_beside_embeddings`: `mode` the call's shared_prefix setting, `call_kwargs` a
    forward's other arguments or a generate step's model inputs (`generating`)."""
    if generating and call_kwargs.get("use_cache") is False:
        return "generate runs without a cache (use_cache=False)"
    if mode == "off":
        return "shared_prefix='off'"
    if padding_first:
        return PADDING_FIRST_REASON
    if generating:
        return (shared_prefix.not_exact_reason(parts, None, call_kwargs) or
                "of this generate's settings (output_hidden_states=True, or no cache made for its first step)")  # fmt: skip
    return shared_prefix.not_exact_reason(parts, output_attentions, call_kwargs) or "the shared prefix does not apply to this call"


def _why_dropped(parts: PromptParts, input_ids, attention_mask, position_ids, kwargs: dict) -> str | None:
    call = {name: value for name, value in kwargs.items() if name not in (*_TEXT_ARGUMENTS, *_CACHE_ARGUMENTS)}
    model = transformers_model(parts)
    if model_accepts(parts, "position_ids"):  # both ways numbered as the standard path numbers them, by the mask (found
        # 2026-12-07 by a review: RoBERTa numbers ids around its padding id, rows in a row, and a padded call was refused)
        call["position_ids"] = position_ids if position_ids is not None else _counted(input_ids, attention_mask, first_position(model))
    with torch.no_grad(), in_eval_mode(model):
        rows = parts.input_embeddings(input_ids)
        by_ids = parts.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **call).logits
        try:
            by_rows = parts.base_model(inputs_embeds=rows, attention_mask=attention_mask, use_cache=False, **call).logits
        except (ValueError, TypeError, RuntimeError) as error:
            said = str(error).splitlines()[0][:200].replace("{", "{{").replace("}", "}}")  # (read by str.format below)
            return f"refuses this call's {{names}} beside inputs_embeds ({type(error).__name__}: {said})"
    off = off_beyond_tolerance(by_ids, by_rows, rows.dtype)
    return None if off is None else f"reads this call's {{names}} only beside input_ids (given inputs_embeds, its logits were {off:.3g} off)"


def _holds_a_tensor(value) -> bool:
    """A tensor, or a dict of them (transformers 5.23's `mm_encoder_outputs`: the images a generate encoded first)."""
    return torch.is_tensor(value) or (isinstance(value, dict) and any(torch.is_tensor(item) for item in value.values()))


def _counted(input_ids: torch.Tensor, attention_mask, first: int) -> torch.Tensor:
    """The positions [B, L] of a call's tokens counted by its 2-D mask (else in a row), from the table's `first` row."""
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
        return positions_from_mask(attention_mask) + first
    return positions_in_a_row(first, input_ids.shape[1], input_ids.shape[0], input_ids.device)
