"""The recipes' configuration: one dataclass, YAML defaults, `--key value` overrides.

`--config file.yaml` sets defaults, command-line flags override them, and the resolved config is
saved next to the results (`resolved_config.yaml`). A key that does not exist is an error, in
the YAML file and on the command line alike: a typo must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from peft_softprompt_ext import DeepInit, Mixing, Reparameterization, SharedPrefix, VocabSampling

from .data.tasks import EMBEDDED_TASKS
from .methods import METHODS, PLUGIN_METHODS


@dataclass
class RecipeConfig:
    """Everything a training run depends on. Field docs double as `--help`."""

    method: str = field(default="vocab_sampled", metadata={"help": f"One of {', '.join(METHODS)}."})
    model: str = field(default="smollm2-135m", metadata={"help": "Model alias (smollm2-135m, gemma3-270m, minilm-l6) or path."})
    task: str = field(default="movie_sentiment", metadata={"help": "Embedded task name, datasets id or local data path."})
    task_type: str = field(default="auto", metadata={"help": "'auto' (from the model's architecture), 'CAUSAL_LM' or 'SEQ_CLS'."})
    text_column: str = field(default="text", metadata={"help": "Text column of the data."})
    label_column: str = field(default="label", metadata={"help": "Label column of the data."})
    label_words: Optional[list] = field(default=None, metadata={"help": "Verbaliser words (label order); default per task."})
    template: Optional[str] = field(default=None, metadata={"help": "Prompt template with {text}; default per task."})
    train_size: int = field(default=2000, metadata={"help": "Training examples used (first N of the train split)."})
    eval_size: int = field(default=500, metadata={"help": "Examples of eval_split scored (first N)."})
    eval_split: str = field(default="validation", metadata={"help": "Split scored: 'validation' (choose defaults) or 'test' (final tables)."})
    split_seed: Optional[int] = field(default=None, metadata={"help": "Embedded tasks: None keeps the fixed split; an int (or '{seed}': the run's seed) re-draws a stratified 80/10/10 split of all rows."})
    max_length: int = field(default=64, metadata={"help": "Max tokens of the text part of an input."})
    steps: int = field(default=100, metadata={"help": "Optimizer steps (0: evaluate the initial prompt only)."})
    batch_size: int = field(default=8, metadata={"help": "Global batch size (split across processes)."})
    lr: float = field(default=3e-2, metadata={"help": "Peak learning rate."})
    head_lr: Optional[float] = field(default=None, metadata={"help": "SEQ_CLS: peak learning rate of the trained classifier head (None: lr)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    lr_schedule: str = field(default="constant", metadata={"help": "'constant' or 'linear' (decay to 0) after warm-up."})
    eval_every: int = field(default=0, metadata={"help": "Evaluate every N steps (0: only at the end)."})
    checkpoint_every: int = field(default=25, metadata={"help": "Save the trainable state every N steps (for --resume; 0: never, so nothing to resume from)."})
    seed: int = field(default=0, metadata={"help": "Seed of init and data order (the rows scored are eval_split's first eval_size, whatever the seed)."})
    num_virtual_tokens: int = field(default=20, metadata={"help": "Prompt length for prompt methods."})
    # top_frequent: the best init of the issue-7 sweep (README, "Matching LoRA"); lr 0.03 constant, no warm-up, 20 tokens too
    vocab_sampling: str = field(default="top_frequent", metadata={"help": "vocab_sampled: uniform/top_frequent/task_corpus/class_labels."})
    num_frequent_tokens: int = field(default=5000, metadata={"help": "vocab_sampled: N of top_frequent / class-label fill."})
    norm_matching: bool = field(default=False, metadata={"help": "vocab_sampled: rescale initial rows to the vocabulary norm."})
    deep_init: str = field(default="text", metadata={"help": "deep_prompt: text (init_text) / vocab_sampled / prompt (init_prompt) / zero / random."})
    init_prompt: Optional[str] = field(default=None, metadata={"help": "deep_prompt, deep_init=prompt: a trained shallow prompt's adapter folder ({seed}: this run's seed)."})
    trainable_layers: Optional[int] = field(default=None, metadata={"help": "deep_prompt, mixture of deep prompts: train only the last k layers' keys/values (None: all)."})
    source_prompts: list = field(default_factory=list, metadata={"help": "mixture: trained adapters (folders/repo ids)."})
    mixing: str = field(default="task", metadata={"help": "mixture: 'task' or 'attention'."})
    reparameterization: Optional[str] = field(default=None, metadata={"help": "plugin methods: None, 'residual_mlp' or (deep_prompt, mixture of deep prompts) 'layer_scaled'."})
    reparameterization_hidden: int = field(default=256, metadata={"help": "plugin methods: residual MLP width."})
    shared_prefix: str = field(default="auto", metadata={"help": "plugin methods on causal LMs: 'auto', 'on' or 'off'."})
    source_adapter: Optional[str] = field(default=None, metadata={"help": "projected: adapter trained on the source model."})
    projection: Optional[str] = field(default=None, metadata={"help": "projected: saved PromptProjection folder."})
    init_text: str = field(default="Classify the sentiment of this review as positive or negative.", metadata={"help": "prompt_tuning_text, deep_prompt (deep_init=text) and cartridge init."})
    modules_to_save: list = field(default_factory=list, metadata={"help": "deep_prompt, lora: base modules trained and saved beside the adapter, besides PEFT's SEQ_CLS head (e.g. [pooler])."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_target_modules: list = field(default_factory=lambda: ["q_proj", "v_proj"], metadata={"help": "LoRA targets."})
    output_dir: str = field(default="runs/latest", metadata={"help": "Where the adapter and results go."})

    def __post_init__(self):
        self._check_text_types()
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is unknown; expected one of {list(METHODS)}.")
        for name, option, allow_none in (("shared_prefix", SharedPrefix, False), ("mixing", Mixing, False),
                                         ("vocab_sampling", VocabSampling, False), ("reparameterization", Reparameterization, True)):  # fmt: skip
            allowed = [member.value for member in option] + ([None] if allow_none else [])
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; expected one of {allowed}.")
        if self.eval_split not in ("validation", "test"):
            raise ValueError(f"eval_split={self.eval_split!r} is unknown; expected 'validation' or 'test'.")
        deep_inits = [member.value for member in DeepInit]
        if self.deep_init not in deep_inits:
            raise ValueError(f"deep_init={self.deep_init!r} is unknown; expected one of {deep_inits}.")
        if self.split_seed == "{seed}":  # one re-drawn split per seed: a plan's runs of seed s share split s
            self.split_seed = self.seed
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)):
            raise ValueError(f"split_seed must be None (the fixed split), an integer or '{{seed}}' (the run's seed), got {self.split_seed!r}.")
        if self.split_seed is not None and self.task not in EMBEDDED_TASKS:  # other data keeps the splits it comes with
            raise ValueError(f"split_seed={self.split_seed!r} re-draws the splits of an embedded task ({sorted(EMBEDDED_TASKS)}); "
                             f"task={self.task!r} is not one.")  # fmt: skip
        if isinstance(self.init_prompt, str):  # one folder per seed, e.g. a plan's ".../seed{seed}/adapter"
            self.init_prompt = self.init_prompt.replace("{seed}", str(self.seed))
        # checked here as well as by DeepPromptTuningConfig: a plan's mistake stops it before any run trains
        if self.method == "deep_prompt" and self.deep_init == "prompt" and not self.init_prompt:
            raise ValueError(f"deep_init='prompt' needs init_prompt (a trained shallow prompt's adapter folder), got {self.init_prompt!r}.")
        if self.mixing == Mixing.ONE_HOT.value:  # its tasks are its sources, each a fixed prompt: nothing would train
            raise ValueError(f"mixing={self.mixing!r}: the recipes' mixture trains mixing 'task' or 'attention' (one_hot serves "
                             f"each source prompt as it is; serve_prompts does that without training), got {self.mixing!r}.")  # fmt: skip
        if self.head_lr is not None and (not _is_finite_number(self.head_lr) or self.head_lr <= 0):
            raise ValueError(f"head_lr must be a positive learning rate (or None: lr), got {self.head_lr!r}.")
        if self.task_type not in ("auto", "CAUSAL_LM", "SEQ_CLS"):
            raise ValueError(f"task_type={self.task_type!r} is unknown; expected 'auto', 'CAUSAL_LM' or 'SEQ_CLS'.")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is unknown; expected 'constant' or 'linear'.")
        self._check_numbers()
        self._check_read_by_the_method()  # (after the types: a value of the wrong type is named as such)

    def _check_read_by_the_method(self) -> None:
        """A setting the run's method never reads is refused, not kept in the run's recorded config as if it had been used
        (found 2026-12-07 by a probe: residual_mlp with LoRA, source prompts of a vocab_sampled run)."""
        method, deep_init = self.method, self.deep_init
        settings = {  # name: (set, read by this run's method, the methods that read it)
            "init_prompt": (self.init_prompt is not None, (method, deep_init) == ("deep_prompt", "prompt"),
                            "method 'deep_prompt' with deep_init 'prompt'"),
            "trainable_layers": (self.trainable_layers is not None, method in ("deep_prompt", "mixture"),
                                 "methods 'deep_prompt' and 'mixture' (a bank of deep prompts)"),
            "modules_to_save": (bool(self.modules_to_save), method in ("deep_prompt", "lora"), "methods 'deep_prompt' and 'lora'"),
            "reparameterization": (self.reparameterization is not None, method in PLUGIN_METHODS,
                                   f"the plugin's methods {list(PLUGIN_METHODS)}"),
            "source_prompts": (bool(self.source_prompts), method == "mixture", "method 'mixture'"),
            "source_adapter": (self.source_adapter is not None, method == "projected", "method 'projected'"),
            "projection": (self.projection is not None, method == "projected", "method 'projected'"),
            "norm_matching": (bool(self.norm_matching), method == "vocab_sampled" or (method, deep_init) == ("deep_prompt", "vocab_sampled"),
                              "method 'vocab_sampled' and by 'deep_prompt' with deep_init 'vocab_sampled'"),
        }  # fmt: skip
        for name, (is_set, is_read, readers) in settings.items():
            if is_set and not is_read:
                got = f"method={method!r}" + (f", deep_init={deep_init!r}" if "deep_init" in readers else "")
                raise ValueError(f"{name}={getattr(self, name)!r} is read only by {readers}; got {got}.")

    def _check_text_types(self) -> None:
        """Text keys are texts (checked first: the other checks compare them with known values; template has its own)."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type == "str" and not (isinstance(value, str) and value):
                raise ValueError(f"{item.name} must be a non-empty text, got {value!r}.")
            if item.type == "Optional[str]" and item.name != "template" and value is not None and not (isinstance(value, str) and value):
                raise ValueError(f"{item.name} must be None or a non-empty text, got {value!r}.")

    def _check_numbers(self) -> None:
        """Counts are integers (not booleans, not fractions), rates finite: YAML and the command line give either."""
        for name in ("batch_size", "train_size", "eval_size", "max_length", "num_virtual_tokens", "num_frequent_tokens",
                     "reparameterization_hidden", "lora_r", "lora_alpha"):  # fmt: skip
            value = getattr(self, name)
            if not _is_integer(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("steps", "warmup_steps", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        if not _is_finite_number(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}.")
        if not _is_finite_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}.")
        if not _is_integer(self.seed) or not 0 <= self.seed < 2**32:  # numpy's and torch's seed range
            raise ValueError(f"seed must be an integer in 0..2**32 - 1, got {self.seed!r}.")
        if not isinstance(self.norm_matching, bool):
            raise ValueError(f"norm_matching must be True or False, got {self.norm_matching!r}.")
        self._check_texts()

    def _check_texts(self) -> None:
        def strings(value) -> bool:
            return isinstance(value, list) and all(isinstance(item, str) for item in value)

        if self.label_words is not None and not (strings(self.label_words) and self.label_words):
            raise ValueError(f"label_words must be None or a list of strings (one per label), got {self.label_words!r}.")
        if self.template is not None and not (isinstance(self.template, str) and "{text}" in self.template and _formats(self.template)):
            raise ValueError(f"template must be None or a text holding {{text}} (where the input goes) and no other field "
                             f"(write a literal brace as {{{{ or }}}}), got {self.template!r}.")  # fmt: skip
        for name in ("lora_target_modules", "source_prompts", "modules_to_save"):
            if not strings(getattr(self, name)):
                raise ValueError(f"{name} must be a list of strings, got {getattr(self, name)!r}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def training_config(self) -> dict:
        """What a run's result depends on: everything but where and how often it writes and evaluates."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in ("output_dir", "eval_every", "checkpoint_every")}
        for name, default in (("task_type", "auto"), ("eval_split", "validation"), ("deep_init", "text"), ("init_prompt", None),
                              ("trainable_layers", None), ("head_lr", None), ("modules_to_save", []),
                              ("split_seed", None)):  # fmt: skip
            if relevant[name] == default:  # added later: runs made before it existed keep their digest
                del relevant[name]
        if (self.method, self.deep_init) == ("deep_prompt", "vocab_sampled") and self.norm_matching:
            relevant["norm_matching_read"] = True  # (the builder dropped it until 2026-12-07: such runs are not reused)
        return relevant

    def init_prompt_digest(self) -> Optional[str]:
        """The digest of the local prompt a deep_init='prompt' run starts from (None: none, or a Hub id): a finished
        run is reused only while the prompt it started from is unchanged."""
        weights = Path(self.init_prompt) / "adapter_model.safetensors" if self.init_prompt else None
        return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights is not None and weights.is_file() else None

    def training_digest(self) -> str:
        """Identifies what a run depends on (compare.py reuses a run whose results carry the same digest)."""
        return hashlib.sha256(json.dumps(self.training_config(), sort_keys=True).encode()).hexdigest()[:16]


FIELDS = {f.name: f for f in dataclasses.fields(RecipeConfig)}


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coerce(name: str, raw):
    """A CLI string or YAML value -> the field's type, with an error naming the key."""
    default = FIELDS[name].default if FIELDS[name].default is not dataclasses.MISSING else FIELDS[name].default_factory()
    if not isinstance(raw, str) or (name == "split_seed" and raw == "{seed}"):  # '{seed}': RecipeConfig puts the run's seed
        return raw
    kind = str(FIELDS[name].type)
    if kind.startswith("Optional[") and raw.lower() in ("none", "null"):  # e.g. --reparameterization none: unset
        return None
    number = {"Optional[int]": int, "Optional[float]": float}.get(kind)
    if default is None and number is not None:  # e.g. --trainable_layers 24, --head_lr 1e-3
        default = number(0)
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--{name} expects true/false, got {raw!r}.")
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int) and not isinstance(default, bool):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"--{name} expects an integer, got {raw!r}.") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"--{name} expects a number, got {raw!r}.") from None
    if isinstance(default, list) or name == "label_words":
        if raw.strip().startswith("["):
            return yaml.safe_load(raw)
        parts = raw.split(",") if name == "label_words" else [part.strip() for part in raw.split(",")]  # a verbaliser's spaces count
        if not all(parts):
            raise ValueError(f"{name} holds an empty entry: {raw!r} (comma-separated, e.g. q_proj,v_proj).")
        return parts
    return raw


def check_folder(path, what: str) -> None:
    """Refuse a folder path that a file holds, or that runs through a file (found 2026-12-07: a bare OS error, for a
    plan's report_dir only after every run had trained)."""
    for part in (Path(path), *Path(path).parents):
        if part.is_dir():
            return
        if part.exists():
            raise ValueError(f"{what}={os.fspath(path)!r}: {part} is a file; expected a folder (new or the one it names).")


def check_keys(keys, source: str) -> None:
    unknown = sorted(set(keys) - set(FIELDS))
    if unknown:
        raise ValueError(f"Unknown config key(s) {unknown} in {source}; known keys: {sorted(FIELDS)}.")


def _formats(template: str) -> bool:
    """Whether `template.format(text=...)` works: {text} is its only field, every other brace doubled."""
    try:
        template.format(text="")
    except (KeyError, IndexError, ValueError, AttributeError):
        return False
    return True


def options_help() -> str:
    """Every RecipeConfig key as a `--key VALUE` line with its help and default (a recipe's `--help` epilog)."""
    lines = ["config keys (in the YAML file, or as --key VALUE / --key=VALUE; lists comma-separated):"]
    for item in dataclasses.fields(RecipeConfig):
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        lines.append(f"  --{item.name} ({default!r}): {item.metadata.get('help', '')}")
    return "\n".join(lines)


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> RecipeConfig:
    """YAML file (optional) + `--key value` / `--key=value` overrides -> RecipeConfig."""
    values = {}
    if path:
        values = read_yaml(path) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(values).__name__}.")
        check_keys(values, path)
    parsed = _parse_overrides(overrides or [])
    check_keys(parsed, "the command line")
    values.update(parsed)
    return config_from_values(values)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden here
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) and key in lines:
                    raise ValueError(f"key {key!r} is given twice (lines {lines[key]} and {line}): give each key once.")
                lines.setdefault(key, line)
        return super().construct_mapping(node, deep)


def read_yaml(path):
    """A config or plan file's YAML (safe), every key of a mapping given once; errors name the file."""
    with open(path, encoding="utf-8") as handle:
        try:
            return yaml.load(handle, Loader=_UniqueKeyLoader)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def load_run(run) -> tuple[RecipeConfig, float]:
    """(config, recorded accuracy) of a finished recipe run folder: its resolved_config.yaml and results.json, both
    required and non-empty (an empty config read as every default and pointed at another model)."""
    run = Path(run)
    config_path, results_path = run / "resolved_config.yaml", run / "results.json"
    for path in (config_path, results_path):
        if not path.is_file() or not path.read_text(encoding="utf-8").strip():
            raise ValueError(f"{run} is not a finished recipe run: {path.name} is {'empty' if path.is_file() else 'missing'}.")
    try:
        accuracy = json.loads(results_path.read_text(encoding="utf-8"))["metrics"]["accuracy"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{results_path} holds no metrics.accuracy ({type(error).__name__}: {error}).") from None
    return load_config(str(config_path)), accuracy


def refuse_a_run_without_weights(run, config: RecipeConfig, tool: str) -> None:
    """SystemExit when `run` saved no trained weights (a full_finetune run keeps metrics only) for `tool` to load."""
    if config.method == "full_finetune":
        raise SystemExit(f"{tool}: {run} is a full_finetune run, which saves no weights (it keeps metrics only): there is "
                         "no adapter to load.")  # fmt: skip


def config_from_values(values: dict) -> RecipeConfig:
    """A RecipeConfig from checked keys whose values may be strings (`--lr 1e-3`, or YAML's `lr: 1e-3`, which
    YAML reads as a string): each becomes its field's type, as on the command line."""
    return RecipeConfig(**{name: _coerce(name, value) for name, value in values.items()})


def _parse_overrides(arguments: list[str]) -> dict:
    parsed, index = {}, 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--"):
            raise ValueError(f"Expected --key value, got {argument!r}.")
        key, equals, value = argument[2:].partition("=")
        key = key.replace("-", "_")
        if not equals:
            if index + 1 >= len(arguments):
                raise ValueError(f"--{key} needs a value.")
            index += 1
            value = arguments[index]
        parsed[key] = value
        index += 1
    return parsed
