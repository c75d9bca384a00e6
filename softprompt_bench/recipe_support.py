"""The building blocks `recipes/train.py` tells its story with: setup, batches, evaluation, saving.

Functions, not a trainer class: the loop itself stays in the recipe where it can be read.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import classification
from peft_softprompt_ext import atomic_directory_write, attach_results
from .data import label_words as task_label_words
from .data import load_task, prompt_template
from .data.tasks import EMBEDDED_TASKS
from .embedded_models import resolve_model_folder
from .methods import build_peft_config, prepare_adapter
from .metrics import compute_metrics, confusion_matrix

DEFAULT_TEMPLATE = "Text: {text}\nLabel:"


@dataclass
class Setup:
    """Everything the training loop and evaluation need, built once per run."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    tokenizer: object
    is_causal: bool
    train_examples: list
    eval_inputs: list  # causal: prompt ids; SEQ_CLS: examples
    eval_labels: list
    label_ids: list
    label_names: list
    pad_token_id: int
    trainable_params: int
    total_params: int
    extras: dict = field(default_factory=dict)


def model_task_type(model_folder: str, requested: str = "auto") -> str:
    """"CAUSAL_LM" (rank classification over label words) or "SEQ_CLS" (an encoder with a head).

    `requested="auto"` reads the saved architecture: one of transformers' causal-LM classes (any
    name: `GPT2LMHeadModel` as well as `LlamaForCausalLM`) is CAUSAL_LM; an encoder (`BertModel`,
    `...ForSequenceClassification`, ...) is SEQ_CLS. Anything else is an error naming it.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_config = AutoConfig.from_pretrained(model_folder)
    if model_config.is_encoder_decoder:
        raise ValueError(f"{model_folder!r} is an encoder-decoder model; the recipes train causal LMs and encoders.")
    if requested != "auto":
        return requested
    architectures = list(model_config.architectures or [])
    causal_classes = {name for names in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for name in ([names] if isinstance(names, str) else names)}
    if any(name in causal_classes for name in architectures):
        return "CAUSAL_LM"
    if any(name.endswith(("Model", "ForSequenceClassification", "ForMaskedLM")) and "LMHead" not in name for name in architectures):
        return "SEQ_CLS"
    raise ValueError(
        f"Cannot tell how to train {model_folder!r} (architectures={architectures}): set task_type to 'CAUSAL_LM' "
        "or 'SEQ_CLS' in the recipe config."
    )


def _label_words(config, names) -> list[str]:
    if config.label_words:
        if len(config.label_words) != len(names):
            raise ValueError(f"label_words={config.label_words!r} has {len(config.label_words)} words for {len(names)} labels {names}.")
        return list(config.label_words)
    return task_label_words(config.task) if config.task in EMBEDDED_TASKS else [f" {name}" for name in names]


def _data(config, tokenizer, is_causal):
    data = load_task(config.task, text_column=config.text_column, label_column=config.label_column, split_seed=config.split_seed)
    names = data["train"].features["label"].names
    train = data["train"].select(range(min(config.train_size, len(data["train"]))))
    evaluation = data[config.eval_split].select(range(min(config.eval_size, len(data[config.eval_split]))))
    for split, rows in (("train", train), (config.eval_split, evaluation)):
        if len(rows) == 0:  # checked before training: an empty scoring split failed only after the run
            raise ValueError(
                f"Split {split!r} of task={config.task!r} has no rows (it holds {len(data[split])}; "
                f"train_size={config.train_size}, eval_size={config.eval_size}): a run needs rows to train on and to score. "
                "A task without a validation / test split gets 10% of train each; give it more rows or its own splits."
            )
    if config.steps > 0 and config.batch_size > len(train):
        raise ValueError(f"batch_size={config.batch_size} but the training split gives {len(train)} rows (train_size="
                         f"{config.train_size}, task={config.task!r}): every batch would be smaller than asked; use "
                         f"batch_size <= {len(train)}.")  # fmt: skip
    words = _label_words(config, names)
    if not is_causal:
        return (names, words, [], classification.seq_cls_examples(tokenizer, train["text"], train["label"], config.max_length),
                classification.seq_cls_examples(tokenizer, evaluation["text"], evaluation["label"], config.max_length),
                evaluation["label"], train["text"])  # fmt: skip
    template = config.template or (prompt_template(config.task) if config.task in EMBEDDED_TASKS else DEFAULT_TEMPLATE)
    label_ids = classification.label_token_ids(tokenizer, words)
    train_examples = classification.causal_examples(tokenizer, train["text"], train["label"], template, label_ids, config.max_length)
    eval_prompts = [classification.prompt_ids(tokenizer, text, template, config.max_length) for text in evaluation["text"]]
    return names, words, label_ids, train_examples, eval_prompts, evaluation["label"], train["text"]


def evaluation_prompts(config) -> tuple[str, list[str], list[list[int]], list[int]]:
    """(model folder, label words, prompt ids, labels) of the rows a causal-LM run scores, exactly as `evaluate` builds them."""
    from transformers import AutoTokenizer

    folder = resolve_model_folder(config.model)
    if model_task_type(folder, config.task_type) != "CAUSAL_LM":
        raise ValueError(f"model={config.model!r} is not a causal LM: only rank-classified (CAUSAL_LM) runs have prompts to serve.")
    _, words, _, _, prompts, labels, _ = _data(config, AutoTokenizer.from_pretrained(folder), is_causal=True)
    return folder, words, prompts, list(labels)


def _schedule(config):
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "linear":
            remaining = config.steps - config.warmup_steps
            return max(0.0, (config.steps - step) / max(remaining, 1))
        return 1.0

    return factor


def _parameter_groups(model, config) -> list[dict]:
    """The trainable parameters as AdamW groups: one at `lr`, or with `head_lr` the trained classifier head
    (PEFT's `modules_to_save` copies) in a second group at that rate."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if config.head_lr is None:
        return [{"params": [p for _, p in named]}]
    head = [p for name, p in named if ".modules_to_save." in name]
    if not head:
        raise ValueError(f"head_lr={config.head_lr!r} but method={config.method!r} on model={config.model!r} trains no "
                         "classifier head (only a SEQ_CLS adapter keeps one in modules_to_save); leave head_lr unset.")  # fmt: skip
    rest = [p for name, p in named if ".modules_to_save." not in name]
    return [{"params": rest}, {"params": head, "lr": config.head_lr}]


def build_setup(config, accelerator) -> Setup:
    """Model, tokenizer, data and optimizer for `config`; the model and optimizer go through accelerate."""
    import peft
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if config.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {accelerator.num_processes} processes.")
    set_seed(config.seed)
    folder = resolve_model_folder(config.model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pad_token_id = classification.pad_token_id(tokenizer)
    is_causal = model_task_type(folder, config.task_type) == "CAUSAL_LM"
    names, words, label_ids, train_examples, eval_inputs, eval_labels, train_texts = _data(config, tokenizer, is_causal)
    if is_causal:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(names), dtype=torch.float32)
    model.config.pad_token_id = pad_token_id
    task_type = "CAUSAL_LM" if is_causal else "SEQ_CLS"
    torch.manual_seed(config.seed)  # vanilla PEFT inits draw from the global RNG
    peft_config = build_peft_config(config, task_type, folder, words, corpus=train_texts)
    if peft_config is not None:
        model = peft.get_peft_model(model, peft_config)
        prepare_adapter(config, model, tokenizer)
    elif config.method == "zero_shot":
        model.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = scheduler = None
    if trainable:
        optimizer = torch.optim.AdamW(_parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
        # The scheduler is not prepared: accelerate would step it once per process, and our
        # global batch is already split across processes.
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model = accelerator.prepare(model)
    return Setup(
        model=model, optimizer=optimizer, scheduler=scheduler, tokenizer=tokenizer, is_causal=is_causal,
        train_examples=train_examples, eval_inputs=eval_inputs, eval_labels=list(eval_labels), label_ids=label_ids,
        label_names=list(names), pad_token_id=pad_token_id, trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in accelerator.unwrap_model(model).parameters()),
    )  # fmt: skip


def batch_for_step(setup: Setup, config, step: int, accelerator) -> dict:
    """This process's share of global batch `step`: a fixed function of (seed, step), so a resumed
    run sees exactly the batches an uninterrupted one would."""
    count = len(setup.train_examples)
    per_epoch = max(count // config.batch_size, 1)
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
    chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
    local = chosen[accelerator.process_index :: accelerator.num_processes]
    batch = classification.collate([setup.train_examples[i] for i in local.tolist()], setup.pad_token_id)
    return {key: value.to(accelerator.device) for key, value in batch.items()}


def evaluate(accelerator, setup: Setup, config) -> dict:
    """Accuracy and macro-F1 on the scored subset (eval_split); each process scores a contiguous shard."""
    from accelerate.utils import gather_object

    model = accelerator.unwrap_model(setup.model)
    model.eval()
    from tqdm.auto import tqdm

    shard = _shard(len(setup.eval_inputs), accelerator)
    inputs = [setup.eval_inputs[i] for i in shard]
    with tqdm(total=len(inputs), desc="scoring", disable=not accelerator.is_main_process, leave=False) as progress:
        if setup.is_causal:
            predictions = classification.rank_classify(model, inputs, setup.label_ids, setup.pad_token_id, progress=progress)
        else:
            predictions = classification.seq_cls_classify(model, inputs, setup.pad_token_id, progress=progress)
    gathered = gather_object([(i, p) for i, p in zip(shard, predictions)])
    ordered = [p for _, p in sorted(gathered)]
    return {**compute_metrics(ordered, setup.eval_labels),
            "confusion": confusion_matrix(ordered, setup.eval_labels, len(setup.label_names))}  # fmt: skip


def _shard(count: int, accelerator) -> list[int]:
    per_process = -(-count // accelerator.num_processes)
    start = accelerator.process_index * per_process
    return list(range(start, min(start + per_process, count)))


def rank_parameter_digests(accelerator, model) -> list[str]:
    """sha256 of this process's trainable parameters, gathered from every process (rank order)."""
    import hashlib

    from accelerate.utils import gather_object

    digest = hashlib.sha256()
    for name, parameter in accelerator.unwrap_model(model).named_parameters():
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().float().numpy().tobytes())
    return gather_object([digest.hexdigest()[:16]])


def library_versions() -> dict:
    import accelerate
    import datasets
    import evaluate
    import peft
    import transformers

    import peft_softprompt_ext

    return {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "accelerate": accelerate.__version__, "datasets": datasets.__version__,
        "evaluate": evaluate.__version__, "peft_softprompt_ext": peft_softprompt_ext.__version__,
    }  # fmt: skip


RUN_FILES = ("adapter", "results.json", "resolved_config.yaml")  # one run's results: replaced together


def save_run(accelerator, setup: Setup, config, record: dict) -> None:
    """adapter/ (PEFT methods), results.json and resolved_config.yaml, swapped into `output_dir` as one
    unit (its `checkpoint/` and any other file stay). Full fine-tuning keeps metrics only."""
    import yaml

    output_dir = Path(config.output_dir)
    model = accelerator.unwrap_model(setup.model)
    if hasattr(model, "peft_config"):
        attach_results(model, record)  # the model card of a plugin adapter shows the run's metrics
        record["adapter"] = str(output_dir / "adapter")
    with atomic_directory_write(output_dir, keep=lambda name, path: name not in RUN_FILES) as staging:
        if hasattr(model, "peft_config"):
            model.save_pretrained(os.path.join(staging, "adapter"))
        with open(os.path.join(staging, "results.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
        with open(os.path.join(staging, "resolved_config.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
