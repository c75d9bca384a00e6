"""Models, batches and independent references for the conformance checks.

The references never call the plugin's forward or generate: they feed the frozen base model
`[prompt; input]` by hand, with the prompt rows the encoder gives for each row's task and the
positions the plugin promises for causal LMs (they follow the attention mask).
"""

from __future__ import annotations

import peft
import torch

import testing_common as common
from peft_softprompt_ext.prompt_encoder import is_fixed_parameter
from conformance_cases import CAUSAL, SEQ2SEQ, SEQ_CLS  # noqa: F401  (re-exported for the checks)

NUM_VIRTUAL_TOKENS = 5
LORA_TARGETS = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "gemma3": ["q_proj", "v_proj"], "t5": ["q", "v"],
                "bert": ["query", "value"]}  # fmt: skip


def fresh_base(cell):
    """The tiny base model of `cell` (always the same weights: seed 0), eval mode."""
    return common.tiny_model(cell.model)[0]


def lora_model(base, cell):
    """A LoRA PeftModel over `base` whose adapter is not the identity (init_lora_weights=False)."""
    torch.manual_seed(4)
    config = peft.LoraConfig(task_type=cell.task_type, r=4, target_modules=LORA_TARGETS[cell.model], init_lora_weights=False)
    return peft.get_peft_model(base, config).eval()


def prompted_model(config_name: str, model_name: str):
    """get_peft_model(the tiny `model_name`, the conformance configuration `config_name`), its prompt moved off the init
    (seed 0), eval mode: for checks outside the matrix."""
    base, task_type = common.tiny_model(model_name)
    model = peft.get_peft_model(base, common.conformance_config(config_name, task_type, model_name))
    perturb(model, "default", seed=0)
    return model.eval()


def build(cell, seed_offset: int = 0, base_folder=None, under=None):
    """get_peft_model(base, cell's config), its trainable values moved off the init (seeded), eval mode."""
    base = fresh_base(cell)
    if base_folder is not None:  # AutoPeftModel needs base_model_name_or_path to be a folder
        base.save_pretrained(base_folder)
        base = type(base).from_pretrained(base_folder).eval()
    if under is not None:
        base = under(base, cell)
    model = peft.get_peft_model(base, cell.case.build(cell.task_type, cell.model))
    perturb(model, "default", seed=seed_offset)
    return model.eval()


@torch.no_grad()
def perturb(model, adapter_name: str, seed: int) -> None:
    """Seeded noise on every parameter of one prompt encoder, so tasks and adapters differ visibly."""
    generator = torch.Generator().manual_seed(1000 + seed)
    for name, parameter in model.prompt_encoder[adapter_name].named_parameters():
        if is_fixed_parameter(name):  # a fixed part (a layer that does not train, layer_scaled's scale): as it started
            continue
        scale = max(float(parameter.std()) if parameter.numel() > 1 else 0.0, 0.3)
        parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def tasks_of(cell) -> list[int]:
    return list(range(cell.case.num_tasks))


def export_units(model) -> list[tuple[int, str]]:
    """(task index, subfolder) of every plain PEFT copy a save writes: the promised layout."""
    config = model.peft_config["default"]
    if getattr(config, "mixing", None) is not None and str(getattr(config.mixing, "value", config.mixing)) == "attention":
        return []
    if config.deep_layout is not None and model.prompt_encoder["default"].export_refusal is not None:
        return []  # a deep prompt where PREFIX_TUNING would differ: encoders, seq2seq, sliding windows
    num_tasks = getattr(config, "num_tasks", 1)
    if num_tasks == 1:
        return [(0, "vanilla")]
    names = getattr(config, "task_names", None) or [f"task_{k}" for k in range(num_tasks)]
    return [(k, f"vanilla/{name}") for k, name in enumerate(names)]


def make_batch(cell, padding=None, rows=None, drop_padding=False, labels=False, task=None, batch_size=3, length=7) -> dict:
    """Random ids (seed 1) with an attention mask; row 0 padded on `padding`'s side by 2 tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(6, 300, (batch_size, length), generator=generator)
    mask = torch.ones_like(input_ids)
    if padding == "left":
        mask[0, :2] = 0
    elif padding == "right":
        mask[0, -2:] = 0
    input_ids = input_ids.masked_fill(mask == 0, 0)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if cell.task_type == SEQ2SEQ:
        batch["labels"] = torch.randint(6, 300, (batch_size, 4), generator=generator)
    elif cell.task_type == SEQ_CLS:
        batch["labels"] = torch.arange(batch_size) % 2
    else:
        batch["labels"] = input_ids.masked_fill(mask == 0, -100)
    if cell.case.num_tasks > 1:
        batch["task_ids"] = torch.full((batch_size,), task) if task is not None else torch.tensor([1, 0, 1])[:batch_size]
    if rows is not None:
        batch = {key: value[rows] for key, value in batch.items()}
    if drop_padding:
        keep = batch["attention_mask"].bool().any(dim=0)
        batch = {key: value[:, keep] if key in ("input_ids", "attention_mask") or (key == "labels" and cell.task_type == CAUSAL) else value
                 for key, value in batch.items()}  # fmt: skip
    if not labels:
        batch.pop("labels")
        if cell.task_type == SEQ2SEQ:
            batch["decoder_input_ids"] = torch.zeros((batch["input_ids"].shape[0], 2), dtype=torch.long)
    return batch


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _prompted_inputs(model, batch):
    """(base model, inputs_embeds [B, P + L, D], attention mask [B, P + L]) built by hand."""
    base = model.get_base_model()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embeds = base.get_input_embeddings()(ids)
    encoder = model.prompt_encoder[model.active_adapter]
    prompts = encoder(ids.shape[0], task_ids=batch.get("task_ids"), inputs_embeds=embeds, attention_mask=mask).to(embeds.dtype)
    full_mask = torch.cat((mask.new_ones(mask.shape[0], prompts.shape[1]), mask), dim=1)
    return base, torch.cat((prompts, embeds), dim=1), full_mask


def _padding_first(base, embeds, full_mask):
    """(embeds, mask, order or None): on a model with a sliding attention window, or an encoder-decoder's encoder
    (T5's relative positions count the padding), each left-padded row's padding in front of its prompt, so that the
    model counts the row's slots as the same row alone (the plugin's promise)."""
    window = getattr(base.config.get_text_config(), "sliding_window", None) or getattr(base.config, "is_encoder_decoder", False)
    left_padded = bool((full_mask[:, -1] == 1).all()) and not bool(full_mask.all())
    if not window or not left_padded:
        return embeds, full_mask, None
    order = torch.sort(full_mask.long(), dim=1, stable=True).indices
    return embeds.gather(1, order[..., None].expand_as(embeds)), full_mask.gather(1, order), order


def is_deep(model) -> bool:
    from peft_softprompt_ext.prompt_encoder import KEY_VALUES

    return model.prompt_encoder[model.active_adapter].prompt_kind == KEY_VALUES


def _deep_reference(model, batch, loss: bool):
    """A deep prompt's reference: transformers' own key/value cache holding the prompt's keys and values
    (causal LMs: the input's positions after it; BERT: its own positions). T5's encoder takes no cache:
    its reference is each row run alone, unpadded (T5's positions are relative, so padding must not matter)."""
    from transformers import DynamicCache

    from peft_softprompt_ext import layer_prefix

    encoder = model.prompt_encoder[model.active_adapter]
    task_type = model.peft_config[model.active_adapter].task_type
    task_type = str(getattr(task_type, "value", task_type))
    if task_type == SEQ2SEQ:
        return _rows_alone(model, batch, loss)
    rows = encoder(batch["input_ids"].shape[0], task_ids=batch.get("task_ids"))
    base, mask = model.get_base_model(), batch["attention_mask"]
    cache = DynamicCache(config=common.innermost(base).config)
    for index, (keys, values) in enumerate(layer_prefix.split(rows.to(base.dtype), encoder.slots)):
        cache.update(keys, values, index)
    full_mask = torch.cat((mask.new_ones(mask.shape[0], rows.shape[1]), mask), dim=1)
    positions = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)[:, rows.shape[1] :] if task_type == CAUSAL else None
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": full_mask, common.CACHE_NAME: cache}
    if positions is not None:
        kwargs["position_ids"] = positions
    else:
        kwargs["position_ids"] = torch.arange(mask.shape[1]).expand(mask.shape[0], -1)
    if loss:
        return base(**kwargs, labels=batch["labels"]).loss
    with torch.no_grad():
        return base(**kwargs).logits


def _rows_alone(model, batch, loss: bool):
    """The plugin's own output for each row alone with its padding removed, stacked (or their mean loss)."""
    outputs = []
    for row in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][row].bool()
        alone = {k: (v[row : row + 1][:, keep] if k in ("input_ids", "attention_mask") else v[row : row + 1]) for k, v in batch.items()}
        if loss:
            outputs.append(model(**alone).loss)
        else:
            with torch.no_grad():
                outputs.append(model(**alone).logits)
    return torch.stack(outputs).mean() if loss else torch.cat(outputs)


def reference_logits(model, batch, loss: bool = False):
    """The logits (or, with `loss`, the loss) the plugin must give, from the base model fed by hand."""
    if is_deep(model):
        return _deep_reference(model, batch, loss)
    base, embeds, full_mask = _prompted_inputs(model, batch)
    task_type = model.peft_config[model.active_adapter].task_type
    task_type = str(getattr(task_type, "value", task_type))
    order = None
    if task_type in (CAUSAL, SEQ2SEQ):
        embeds, full_mask, order = _padding_first(base, embeds, full_mask)
        order = order if task_type == CAUSAL else None  # (a seq2seq model's logits are its decoder's: in place)
    kwargs = {"inputs_embeds": embeds, "attention_mask": full_mask}
    if task_type == CAUSAL:
        kwargs["position_ids"] = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)
        kwargs["use_cache"] = False
        if loss:
            prompt_labels = batch["labels"].new_full((batch["labels"].shape[0], embeds.shape[1] - batch["labels"].shape[1]), -100)
            kwargs["labels"] = torch.cat((prompt_labels, batch["labels"]), dim=1)
            if order is not None:
                kwargs["labels"] = kwargs["labels"].gather(1, order)
    elif task_type == SEQ2SEQ:
        kwargs["labels" if loss else "decoder_input_ids"] = batch["labels" if loss else "decoder_input_ids"]
    elif loss:
        kwargs["labels"] = batch["labels"]
    if loss:
        return base(**kwargs).loss
    with torch.no_grad():
        logits = base(**kwargs).logits
    if order is None:
        return logits
    back = torch.argsort(order, dim=1)  # positions where the caller put them: prompt first
    return logits.gather(1, back[..., None].expand_as(logits))


def reference_generate(model, batch, **kwargs) -> torch.Tensor | None:
    """The tokens the plugin's generate must give: the base model's generate on [prompt; input]
    (None for a deep prompt: its greedy reference is the manual no-cache loop over forward)."""
    if is_deep(model):
        return None
    with torch.no_grad():
        base, embeds, full_mask = _prompted_inputs(model, batch)
        embeds, full_mask, _ = _padding_first(base, embeds, full_mask)
        return base.generate(inputs_embeds=embeds, attention_mask=full_mask, **kwargs)


def assert_logits_close(actual, expected, mask=None, bf16: bool = False) -> None:
    """Equal within float32 noise relative to the logits' scale (bf16: bf16's own resolution).

    `mask` [B, L] (a causal LM input's attention mask) compares only real positions: the last L
    positions where it is 1, and every position in front of them (the prompt). Padding positions'
    logits are never used, so they are not compared. Callers pass `real_positions(cell, batch)`.
    """
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    if mask is not None and actual.dim() == 3 and actual.shape[1] >= mask.shape[1]:
        keep = torch.cat((mask.new_ones(mask.shape[0], actual.shape[1] - mask.shape[1]), mask), dim=1).bool()
        actual, expected = actual[keep], expected[keep]
    scale = float(expected.abs().max()) or 1.0
    tolerance = 3e-2 * scale if bf16 else 2e-5 * scale
    torch.testing.assert_close(actual, expected, rtol=0, atol=tolerance)


def assert_grads_close(actual, expected) -> None:
    """Gradients equal within float32 noise relative to their largest entry."""
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=5e-5 * scale)


def real_positions(cell, batch):
    """The attention mask to compare logits by (causal LMs: logits per input position), else None."""
    return batch["attention_mask"] if cell.task_type == CAUSAL else None


def descends(model, cell) -> tuple[float, float]:
    """(loss, loss after one small step down the gradient): training really moves the trainable part.

    The step is 1e-2 / |gradient| (then 1e-3, 1e-4 if that overshoots a sharp minimum: T5's unscaled
    attention over vocab-sampled keys is one), short enough that the loss must fall whatever the
    parameter scale (a fixed-size optimizer step can overshoot on these random models).
    """
    batch = make_batch(cell, padding="right", labels=True)
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(0)  # a model with dropout draws the same masks in both forwards
    loss = model(**batch).loss
    loss.backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in parameters))
    step = 0.0
    for size in (1e-2, 1e-3, 1e-4):  # backtracking: a true gradient descends for a short enough step
        with torch.no_grad():
            for parameter in parameters:
                parameter -= (size - step) / norm * parameter.grad
        step = size
        torch.manual_seed(0)
        with torch.no_grad():
            after = model(**batch).loss.item()
        if after < loss.item():
            break
    model.zero_grad()
    model.eval()
    return loss.item(), after


def trainer_dataset(cell, count: int = 12) -> list[dict]:
    """Equal-length examples (no padding needed) for transformers' Trainer, task_ids per row for mixtures."""
    examples = []
    for index in range(count):
        batch = make_batch(cell, labels=True, batch_size=1, length=7)
        generator = torch.Generator().manual_seed(index)
        batch["input_ids"] = torch.randint(6, 300, batch["input_ids"].shape, generator=generator)
        if cell.task_type == CAUSAL:
            batch["labels"] = batch["input_ids"].clone()
        example = {key: value[0].tolist() if value[0].dim() else int(value[0]) for key, value in batch.items()}
        if cell.case.num_tasks > 1:
            example["task_ids"] = index % cell.case.num_tasks
        examples.append(example)
    return examples
