"""Sharing soft prompts: the files a saved/pushed plugin adapter carries beside PEFT's own.

`save_pretrained` (and so PEFT's own `push_to_hub`, which saves then uploads) writes, for every
plugin adapter:
* the native adapter (`adapter_config.json`, `adapter_model.safetensors`), as PEFT does;
* `vanilla/` (one prompt) or `vanilla/<task name>/` (each task of a multi-task mixture): the same
  prompt as a plain PROMPT_TUNING adapter, so users without this plugin load it with
  `PeftModel.from_pretrained(base, repo, subfolder="vanilla")`; attention mixing has none (every
  input gets its own prompt);
* `README.md`: a model card (`huggingface_hub.ModelCard`) with `library_name: peft`, the base
  model (its Hub id in the metadata; a local folder in the text only), tags, the method and init settings,
  the prompt size, trainable parameters (the prompt's and a trained head's), the recipe's
  metrics when results are attached (`attach_results`), the nearest-token readout and how to
  load it with and without the plugin.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from huggingface_hub import ModelCard, ModelCardData

from . import sources
from ._peft_compat import active_adapter_of, adapter_config_of, adapter_names, is_plugin_config, peft_type_name, prompt_encoder_of, trained_head_tensors
from .adapter_files import PLUGIN_CARD_TAG
from .describe import describe_prompt
from .export import vanilla_copies, write_plain_files
from .prompt_encoder import is_fixed_parameter

CARD_TAGS = ["prompt-tuning", "soft-prompt", PLUGIN_CARD_TAG]
_RESULTS_ATTRIBUTE = "_softprompt_card_results"
_HIDDEN_CONFIG_KEYS = {"base_model_fingerprint", "corpus", "auto_mapping", "revision", "modules_to_save"}


def attach_results(peft_model, results, adapter_name: str | None = None) -> None:
    """Attach a recipe's `results.json` (path or dict) to one adapter (`adapter_name`, else the active one), so the
    next save/push puts its metrics on that adapter's card (found 2026-12-07: one run's metrics went on every adapter's
    card, also one of another size that never ran)."""
    if isinstance(results, (str, os.PathLike)):
        with open(results, encoding="utf-8") as handle:
            results = json.load(handle)
    if not isinstance(results, dict):
        raise ValueError(f"results must be a results.json path or a dict, got {type(results).__name__}.")
    metrics = results.get("metrics")
    if metrics is not None and not (isinstance(metrics, dict) and all(isinstance(name, str) for name in metrics)):
        raise ValueError(f"results['metrics'] must be a dict of metric names to values, got {metrics!r:.80}.")
    adapter_name = adapter_name if adapter_name is not None else active_adapter_of(peft_model)
    if adapter_name not in adapter_names(peft_model):
        raise ValueError(f"adapter_name={adapter_name!r} is not an adapter of this model; it has {adapter_names(peft_model)}.")
    if not is_plugin_config(adapter_config_of(peft_model, adapter_name)):
        return  # no card of this plugin's for it (a LoRA run of the recipes attaches too)
    # kept by the adapter's prompt encoder with a digest of the prompt they were measured on: a prompt deleted and
    # another added under its name, or loaded over it or trained further, has none (found 2026-12-07: kept by the model,
    # a deleted adapter's metrics went on the new one's card; a review: a prompt loaded over it kept them)
    encoder = prompt_encoder_of(peft_model, adapter_name)
    setattr(encoder, _RESULTS_ATTRIBUTE, (_prompt_digest(encoder), results))


def _prompt_digest(encoder) -> str:
    """A digest of every tensor of a prompt encoder (its names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _attached_results(encoder) -> tuple[dict | None, bool]:
    """(the results attached to this prompt as it is now, whether results of an earlier state were dropped)."""
    attached = getattr(encoder, _RESULTS_ATTRIBUTE, None)
    if attached is None:
        return None, False
    digest, results = attached
    return (results, False) if digest == _prompt_digest(encoder) else (None, True)


def _method_name(config) -> str:
    return peft_type_name(config).lower()


def _readout_lines(peft_model, adapter_name: str, config) -> list[str]:
    """Nearest-token readout of the prompt, if a tokenizer can be loaded offline; else a note why not."""
    from transformers import AutoTokenizer

    source = getattr(config, "tokenizer_name_or_path", None) or config.base_model_name_or_path
    if not source:  # a base model built from a config names none (found 2026-12-07: looked up as a Hub repo "None")
        return ["Nearest-token readout unavailable (the base model names no tokenizer)."]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as error:  # the readout is optional: no tokenizer (offline, a missing converter) never fails a save
        return [f"Nearest-token readout unavailable (no tokenizer at {source!r}: {type(error).__name__})."]
    try:
        description = describe_prompt(peft_model, tokenizer, k=3, adapter_name=adapter_name)
    except ValueError as error:  # a prompt with no single table of input rows (several tasks, input-dependent, deep)
        return [f"Nearest-token readout unavailable: {str(error).split(': ')[0].rstrip('.')}."]
    lines = ["| virtual token | nearest tokens (cosine) |", "|---:|---|"]
    for entry in description:
        nearest = ", ".join(f"`{n['token']}` ({n['cosine']:.2f})" for n in entry["nearest"])
        lines.append(f"| {entry['position']} | {nearest} |")
    return lines


def _metrics_lines(results: dict | None, stale: bool = False) -> list[str]:
    if stale:
        return ["No recipe results attached to this prompt (results attached before it changed, trained further, loaded "
                "over or cast to another dtype, are not shown)."]  # fmt: skip
    if not results:
        return ["No recipe results attached."]
    config, confusion = results.get("config") or {}, (results.get("metrics") or {}).get("confusion")
    scored = f", scored on the {config['eval_split']} split" if isinstance(config, dict) and config.get("eval_split") else ""
    if scored and isinstance(confusion, list) and all(isinstance(line, list) for line in confusion):
        scored += f" ({sum(sum(line) for line in confusion):,} rows)"
    lines = [f"Recipe run: method `{results.get('method')}`, task `{results.get('task')}`, seed {results.get('seed')}, "
             f"{results.get('steps')} steps, batch {results.get('batch_size')}{scored}.", "", "| metric | value |", "|---|---:|"]  # fmt: skip
    for name, value in (results.get("metrics") or {}).items():
        lines.append(f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |")
    return lines


# What plain PEFT 0.21 reproduces from a vanilla copy, measured by tests/test_conformance.py
# (vanilla_copy cells) and tests/test_fingerprint_and_card.py; the README says the same.
PLAIN_PEFT_SCOPE = [
    "Plain PEFT gives this prompt's logits for unpadded and right-padded inputs, and the same greedy tokens "
    "for unpadded inputs.",
    "With left padding it places the prompt in front of the padding, so positions and logits differ: use the plugin "
    "(positions follow the attention mask), or pad on the right.",
    "With transformers >= 5.24, PEFT 0.21's `generate(use_cache=True)` feeds the virtual tokens again at every step: "
    "pass `use_cache=False` there, or use the plugin.",
]


def _task_lines(encoder) -> list[str]:
    """For a multi-task mixture: how rows pick their task."""
    if encoder.num_tasks < 2:
        return []
    tasks = ", ".join(f"{index} = {name}" for index, name in enumerate(encoder.task_labels))
    return [f"outputs = model(**batch, task_ids=task_ids)  # one task id per row: {tasks}"]


# What plain PEFT PREFIX_TUNING reproduces from a deep prompt's plain copy (tests/test_deep_prompt.py).
PREFIX_TUNING_SCOPE = [
    "Plain PEFT PREFIX_TUNING gives this prompt's logits for unpadded inputs (its prefix is the same keys and values).",
    "With padding, or in generate, use the plugin: PEFT's prefix sits in its cache, in front of left padding.",
]


def _plain_loading_lines(copies, encoder, where: str = "") -> list[str]:
    if not copies:
        return [f"No plain PEFT copy: {encoder.export_refusal}. Load it with the plugin.", ""]
    lines = [f"Without the plugin (plain PEFT {encoder.plain_peft_type}):", ""]
    if len(copies) > 1:
        lines += ["| task id | task | subfolder |", "|---:|---|---|"]
        lines += [f"| {index} | {name} | `{where}{folder}` |" for index, name, folder in copies] + [""]
    lines += ["```python", "from peft import PeftModel"]
    if len(copies) == 1:
        lines.append(f'model = PeftModel.from_pretrained(base_model, REPO_ID, subfolder="{where}{copies[0][2]}")')
    else:  # one plain adapter per task: load the one you need (a fresh base model for each)
        lines += [f'task_{index} = PeftModel.from_pretrained(base_model, REPO_ID, subfolder="{where}{folder}")  # {name}'
                  for index, name, folder in copies]  # fmt: skip
    scope = PLAIN_PEFT_SCOPE if encoder.plain_peft_type == "PROMPT_TUNING" else PREFIX_TUNING_SCOPE
    return lines + ["```", "", *[f"- {line}" for line in scope], ""]


def _hub_model_id(name):
    """`name` if it can be a Hub model id, else None: the Hub refuses a card whose `base_model` is a local path."""
    return name if isinstance(name, str) and not os.path.exists(name) and sources.could_be_hub_id(name) else None


def keep_card_data(peft_model, output_dir) -> None:
    """The README.md PEFT's `create_or_update_model_card` rewrote, if it is the plugin's card of the active adapter:
    the plugin's tags back beside PEFT's, and no `base_model` that cannot be a Hub id (a local path: the Hub refuses it)."""
    path = os.path.join(os.fspath(output_dir), "README.md")
    config = adapter_config_of(peft_model)
    if not os.path.isfile(path) or not is_plugin_config(config):
        return
    card = ModelCard.load(path)
    if PLUGIN_CARD_TAG not in card.text:
        return  # a card of the user's own
    card.data.tags = sorted(set(card.data.tags or []) | set(CARD_TAGS) | {_method_name(config)})
    if _hub_model_id(card.data.base_model) is None:
        card.data.base_model = None
    card.save(path)


def build_model_card(peft_model, adapter_name: str = "default") -> ModelCard:
    """The model card of one plugin adapter (see module docstring for what it holds)."""
    config = adapter_config_of(peft_model, adapter_name)
    if not is_plugin_config(config):
        raise ValueError(f"Adapter {adapter_name!r} is a plain PEFT {peft_type_name(config)} adapter: build_model_card writes the card "
                         "of a plugin adapter (PEFT writes its own card when it saves this one).")  # fmt: skip
    encoder = prompt_encoder_of(peft_model, adapter_name)
    method = _method_name(config)
    prompt = sum(p.numel() for name, p in encoder.named_parameters() if not is_fixed_parameter(name))
    head = sum(t.numel() for t in trained_head_tensors(peft_model, adapter_name).values())  # e.g. a SEQ_CLS classifier
    trainable = f"{prompt + head:,} trainable parameters" + (f": {prompt:,} in the prompt, {head:,} in the trained head" if head else "")
    results, stale = _attached_results(encoder)
    data = ModelCardData(
        library_name="peft", base_model=_hub_model_id(config.base_model_name_or_path), tags=CARD_TAGS + [method],
        model_index=None,
    )  # fmt: skip
    settings = {k: v for k, v in config.to_dict().items() if k not in _HIDDEN_CONFIG_KEYS and v is not None}
    base = config.base_model_name_or_path
    where = "" if adapter_name == "default" else f"{adapter_name}/"  # PEFT saves other adapters in a subfolder of that name
    subfolder = f', subfolder="{adapter_name}"' if where else ""
    sections = [
        f"# Soft prompt: {method}", "",
        f"A soft prompt of **{config.num_virtual_tokens} virtual tokens** ({trainable}) for "
        f"{f'`{base}`' if base else 'a base model built from its config (its fingerprint is in the adapter config)'}, made with [peft_softprompt_ext](https://pypi.org/project/peft-softprompt-ext/).", "",
        "## Settings", "", "```json", json.dumps(settings, indent=2, default=str), "```", "",
        "## Results", "", *_metrics_lines(results, stale), "",
        "## What the prompt reads as", "", *_readout_lines(peft_model, adapter_name, config), "",
        "## How to load", "", "With the plugin (the native adapter; the base model's fingerprint is checked):", "",
        "```python", "import peft_softprompt_ext  # registers the method", "from peft import PeftModel",
        f"model = PeftModel.from_pretrained(base_model, REPO_ID{subfolder})", *_task_lines(encoder), "```", "",
        *_plain_loading_lines(vanilla_copies(peft_model, adapter_name), encoder, where),
    ]  # fmt: skip
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections))


def write_sharing_files(peft_model, save_directory: str, selected_adapters=None, save_embedding_layers="auto") -> None:
    """Add the plain copies (`vanilla/...`) and the model card for every plugin adapter saved into `save_directory`;
    the copies hold the embedding layers PEFT's save held (`save_embedding_layers`, its save_pretrained option)."""
    for adapter_name in selected_adapters or adapter_names(peft_model):
        if not is_plugin_config(adapter_config_of(peft_model, adapter_name)):
            continue
        folder = save_directory if adapter_name == "default" else os.path.join(save_directory, adapter_name)
        for task, _, relative in vanilla_copies(peft_model, adapter_name):  # `folder` is inside the save's staging folder
            os.makedirs(os.path.join(folder, relative), exist_ok=True)
            write_plain_files(peft_model, os.path.join(folder, relative), adapter_name, task, save_embedding_layers)
        build_model_card(peft_model, adapter_name).save(os.path.join(folder, "README.md"))
