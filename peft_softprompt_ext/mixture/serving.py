"""Reading a mixture's weights, and serving several trained prompts per row on one base model."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from .._peft_compat import adapter_config_of, new_peft_model, prompt_encoder_of
from ..ids_embedding import text_embedding_of
from ..prompt_bank import load_saved_peft_type, saved_prompt_length
from ..prompt_encoder import check_task_ids
from .config import Mixing, MixturePromptTuningConfig, is_usable_task_name
from .model import MixturePromptEncoder


def _source_names(config) -> list[str]:
    return list(config.source_prompts) + ([] if config.mixing == Mixing.ONE_HOT else ["target"])


@torch.no_grad()
def mixing_weights(peft_model, input_ids=None, attention_mask=None, task_ids=None, adapter_name: str | None = None) -> dict:
    """Which source prompts each task leans on.

    Returns `{"sources": [source..., "target"], "weights": tensor}`: for `mixing="task"` (and
    one-hot) the weights [num_tasks, K + 1] of every task; for `mixing="attention"` the mean
    attention [K + 1] over the given batch (`input_ids`, `attention_mask`, `task_ids`).
    """
    config = adapter_config_of(peft_model, adapter_name)
    encoder = prompt_encoder_of(peft_model, adapter_name)
    if not isinstance(encoder, MixturePromptEncoder):
        raise ValueError(f"Adapter {adapter_name or peft_model.active_adapter!r} is not a mixture ({config.peft_type}).")
    if config.mixing != Mixing.ATTENTION:
        all_tasks = torch.arange(config.num_tasks, device=encoder.bank.device)
        return {"sources": _source_names(config), "weights": encoder.mixing_weights(all_tasks).cpu()}
    if input_ids is None:
        raise ValueError("mixing='attention' weights depend on the input: pass input_ids (and attention_mask).")
    task_ids = check_task_ids(task_ids, input_ids.shape[0], config.num_tasks, encoder.bank.device)
    embeds = text_embedding_of(peft_model)(input_ids)  # (as forward embeds them: found 2026-12-07, Falcon-H1's were not)
    weights = encoder.mixing_weights(task_ids, embeds, attention_mask)
    return {"sources": _source_names(config), "weights": weights.mean(dim=0).cpu()}


_BANK_TYPES = ("MIXTURE_PROMPT_TUNING", "MULTITASK_PROMPT_TUNING")  # adapters holding several prompts


def serve_prompts(base_model, prompts: dict, task_type: str = "CAUSAL_LM", revision: str | None = None,
                  allow_base_model_mismatch: bool = False):  # fmt: skip
    """Load several trained prompts side by side and address them per row.

    Args:
        base_model: the frozen model the prompts were trained on.
        prompts: `{name: adapter folder or Hub repo id}`, all with the same number of virtual tokens; each name
            can name a folder (letters, digits, '.', '_', '-'): a save of the served model keeps each prompt's plain
            copy in `vanilla/<name>/`, and `describe_prompt` / exports take it as `task=`.
        allow_base_model_mismatch: serve prompts saved on another base model (e.g. after projection).
    Returns:
        (peft_model, task_id) where `task_id(names)` maps prompt names to the `task_ids` tensor
        that `forward`/`generate` take: row i uses prompt `names[i]`.
    """
    if not isinstance(prompts, Mapping):
        raise ValueError(f"serve_prompts takes prompts as a dict {{name: adapter folder or Hub repo id}}, got a "
                         f"{type(prompts).__name__}: name each prompt, e.g. {{'movie': folder}}.")  # fmt: skip
    if not prompts:
        raise ValueError("serve_prompts needs at least one prompt: {name: adapter folder or repo id}.")
    for name, source in prompts.items():
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(f"Prompt {name!r}: {source!r} is not an adapter folder or Hub repo id.")
    names, sources = list(prompts), [os.fspath(source) for source in prompts.values()]
    unusable = [name for name in names if not is_usable_task_name(name)]
    if unusable:  # (found 2026-12-07: one such name dropped them all for task_0, task_1, ..., which could be served names)
        raise ValueError(f"Prompt names {unusable!r} cannot name a folder of the served model's save (vanilla/<name>/) "
                         "nor a task of describe_prompt / export: use letters, digits, '.', '_' or '-' (at most 64, not "
                         "starting with '.'), e.g. 'org--movie' for 'org/movie'.")  # fmt: skip
    for name, source in zip(names, sources):
        peft_type = load_saved_peft_type(source, revision)
        if peft_type in _BANK_TYPES:  # (found 2026-12-07: refused as holding a classifier head, its 'bank')
            raise ValueError(f"Prompt {name!r} ({source}) is a {peft_type} adapter, several prompts, not one prompt: load it "
                             "with PeftModel.from_pretrained (its task_ids address its tasks), or serve the prompts it was "
                             "made from.")  # fmt: skip
    lengths = {name: saved_prompt_length(source, revision) for name, source in zip(names, sources)}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name!r}{' has' if i == 0 else ''} {length}{' virtual tokens' if i == 0 else ''}"
                           for i, (name, length) in enumerate(lengths.items()))  # fmt: skip
        raise ValueError(f"serve_prompts serves prompts of one length side by side: {listed}. Serve each length apart.")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=lengths[names[0]], source_prompts=sources,
                                       num_tasks=len(sources), mixing="one_hot", source_revision=revision,
                                       task_names=names, allow_base_model_mismatch=allow_base_model_mismatch)  # fmt: skip
    peft_model = new_peft_model(base_model, config)
    index = {name: i for i, name in enumerate(names)}

    def task_id(row_names) -> torch.Tensor:
        if isinstance(row_names, str):
            raise ValueError(f"task_id takes a list of prompt names, one per row; got the string {row_names!r}: "
                             f"write task_id([{row_names!r}] * batch_size).")  # fmt: skip
        row_names = list(row_names)  # (found 2026-12-07: a generator was used up by the check below, giving no ids)
        unknown = [name for name in row_names if name not in index]
        if unknown:
            raise ValueError(f"Unknown prompt name(s) {unknown}; served prompts: {names}.")
        return torch.tensor([index[name] for name in row_names], dtype=torch.long)

    return peft_model, task_id
