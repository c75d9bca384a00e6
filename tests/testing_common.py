"""Tiny offline models and tokenizers, and the shared checks the parametrised tests call."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    T5Config,
)

def _transformers_release() -> tuple[int, int]:
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int(minor)


# transformers 5.24 renamed the key/value cache argument and output field `past_key_values` -> `cache`.
CACHE_NAME = "cache" if _transformers_release() >= (5, 24) else "past_key_values"

VOCAB_SIZE = 512  # model embedding rows; the tokenizer is a little smaller (rows past it are unused)
CORPUS = [
    "the movie was great and the actors were wonderful",
    "a terrible film with a boring plot and bad acting",
    "positive review of a lovely story",
    "negative review of an awful story",
    "the cat sat on the mat while the dog ran in the park",
    "i really liked this film , it was fun and moving",
    "what a waste of time , the worst movie this year",
] * 20
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<unused0>", "<unused1>"]


@functools.lru_cache(maxsize=1)
def _fixture_root() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="softprompt-test-fixtures-")  # removed when the process exits


def fixture_dir(prefix: str) -> str:
    """A new folder for a cached fixture (tokenizer, bank, model), removed with the test process."""
    return tempfile.mkdtemp(prefix=prefix, dir=_fixture_root().name)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer_dir() -> str:
    """A byte-level BPE tokenizer trained on CORPUS, saved to a temp folder (path for configs)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    folder = fixture_dir("tiny-tokenizer-")
    fast.save_pretrained(folder)
    return folder


def tiny_tokenizer():
    return PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer_dir())


def _gpt2():
    config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=256, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return AutoModelForCausalLM.from_config(config)


def _llama():
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2, pad_token_id=0,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config)


def _t5():
    config = T5Config(
        vocab_size=VOCAB_SIZE, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=3, initializer_factor=2.0, dropout_rate=0.0,
    )  # fmt: skip
    return AutoModelForSeq2SeqLM.from_config(config)


def _bert():
    config = BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=256, num_labels=2, pad_token_id=0, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return AutoModelForSequenceClassification.from_config(config)


TINY_MODELS = {
    "gpt2": (_gpt2, "CAUSAL_LM"),
    "llama": (_llama, "CAUSAL_LM"),
    "t5": (_t5, "SEQ_2_SEQ_LM"),
    "bert": (_bert, "SEQ_CLS"),
}
CAUSAL_MODELS = ["gpt2", "llama"]


# Two code paths computing the same logits in float32 (the plugin's and plain PEFT's, in another process)
# may take different attention kernels: CI saw up to 2e-5 x the largest logit. A real mismatch
# (a shifted position, a prompt in front of padding) is ~0.1-1 x. Bound: FLOAT32_PATHS x max(1, |logit|).
FLOAT32_PATHS = 1e-4


def assert_float32_paths_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """`actual` equals `expected` up to two float32 code paths (see FLOAT32_PATHS)."""
    difference, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert difference <= FLOAT32_PATHS * max(1.0, scale), f"max |difference| {difference:.3g} at logit scale {scale:.3g}"


def _t5_routes_attention() -> bool:
    """transformers' T5 runs attention through the attention interface from 5.15.0 (5.0-5.14 do not:
    a deep prompt on T5 is refused there, naming why)."""
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__) >= Version("5.15.0")


T5_ROUTES_ATTENTION = _t5_routes_attention()
NO_DEEP_T5 = "transformers < 5.15: T5's attention does not run through the attention interface, so deep prompts on T5 are refused"


def innermost(model):
    """The transformers model under any PeftModel wrappers."""
    while hasattr(model, "get_base_model") and model.get_base_model() is not model:
        model = model.get_base_model()
    return model


def _gemma3(sliding_window: int = 16):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    gemma_config = Gemma3TextConfig(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=256, sliding_window=sliding_window, pad_token_id=0,
    )  # fmt: skip
    return Gemma3ForCausalLM(gemma_config)


# Every tiny model a test can ask for by name; TINY_MODELS above are the older matrices' four.
ALL_TINY_MODELS = {**TINY_MODELS, "gemma3": (_gemma3, "CAUSAL_LM")}


def tiny_gemma(sliding_window: int = 16):
    """A tiny random Gemma-3 (scaled embeddings, sliding-window layers), eval mode, seed 0."""
    torch.manual_seed(0)
    return _gemma3(sliding_window).eval()


def tiny_model(name: str, seed: int = 0):
    """A fresh tiny random model (eval mode, fixed seed) and its PEFT task type."""
    build, task_type = ALL_TINY_MODELS[name]
    torch.manual_seed(seed)
    model = build().eval()
    return model, task_type


def batch_for(name: str, batch_size: int = 3, length: int = 7, seed: int = 1, left_pad: bool = False):
    """Random token ids (no specials) with an attention mask, plus labels fitting the task."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(6, 300, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if left_pad:
        attention_mask[0, :2] = 0
        input_ids[0, :2] = 0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    task_type = ALL_TINY_MODELS[name][1]
    if task_type == "SEQ_CLS":
        batch["labels"] = torch.tensor([i % 2 for i in range(batch_size)])
    elif task_type == "SEQ_2_SEQ_LM":
        batch["labels"] = torch.randint(6, 300, (batch_size, 4), generator=generator)
    else:
        batch["labels"] = input_ids.masked_fill(attention_mask == 0, -100)
    return batch


def check_row_padded_on_both_sides_equals_alone(model, length: int, right: int) -> None:
    """Row 0 of `batch_for("llama", length, left_pad=True)` with `right` pads after it too (2 pads, length - 2 tokens,
    `right` pads: trl's GRPO / RLOO batches, a left-padded prompt and a right-padded completion): its tokens' logits
    equal the row alone's."""
    batch = batch_for("llama", length=length, left_pad=True)
    ids = torch.cat((batch["input_ids"], torch.zeros(3, right, dtype=torch.long)), dim=1)
    mask = torch.cat((batch["attention_mask"], torch.zeros(3, right, dtype=torch.long)), dim=1)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits[0, -(length - 2 + right) : -right]
        alone = model(input_ids=batch["input_ids"][:1, 2:]).logits[0, -(length - 2) :]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


def inference_batch(name: str, **kwargs):
    """batch_for without labels; seq2seq gets two decoder start tokens instead."""
    batch = {k: v for k, v in batch_for(name, **kwargs).items() if k != "labels"}
    if ALL_TINY_MODELS[name][1] == "SEQ_2_SEQ_LM":
        batch["decoder_input_ids"] = torch.zeros((batch["input_ids"].shape[0], 2), dtype=torch.long)
    return batch


def forward_logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def once_inside_generate(call):
    """A logits processor (pass it as `logits_processor=[...]`) that runs `call(input_ids)` at generate's first step, a
    call made inside a generate, and keeps its result in `.seen` (None until then)."""
    from transformers import LogitsProcessor

    class CallsOnce(LogitsProcessor):
        seen = None

        def __call__(self, input_ids, scores):
            if self.seen is None:
                self.seen = call(input_ids)
            return scores

    return CallsOnce()


def greedy_manual_loop(peft_model, input_ids, attention_mask, max_new_tokens: int, **forward_kwargs) -> torch.Tensor:
    """Greedy decoding by repeated full forwards over PeftModel.forward (no cache at all)."""
    ids, mask = input_ids.clone(), attention_mask.clone()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = peft_model(input_ids=ids, attention_mask=mask, use_cache=False, **forward_kwargs).logits
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat((ids, next_token), dim=1)
            mask = torch.cat((mask, torch.ones_like(next_token)), dim=1)
    return ids


def train_steps(peft_model, batch, steps: int = 5, lr: float = 0.1) -> list[float]:
    """A few AdamW steps on one batch; returns the losses."""
    peft_model.train()
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    peft_model.eval()
    return losses


def run_python_without_plugin(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that cannot import peft_softprompt_ext."""
    guard = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'peft_softprompt_ext':\n"
        "            raise ImportError('plugin blocked in this process')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-c", guard + code], capture_output=True, text=True, timeout=timeout, env=env
    )


def plain_peft_logits(base_folder, adapter_folders, auto_class: str, batch: dict, expected: torch.Tensor, work_dir) -> list[dict]:
    """Each adapter folder loaded by plain PEFT over a fresh `auto_class` base from `base_folder`, in a process that
    cannot import the plugin, run on `batch`: per folder its peft type, prefix_projection and max |logits - expected|."""
    work_dir = Path(work_dir)
    torch.save(batch, work_dir / "plain-batch.pt")
    torch.save(expected, work_dir / "plain-expected.pt")
    code = (
        f"import json, torch\nfrom peft import PeftModel\nfrom transformers import {auto_class}\n"
        f"for folder in {[str(folder) for folder in adapter_folders]!r}:\n"
        f"    model = PeftModel.from_pretrained({auto_class}.from_pretrained({str(base_folder)!r}), folder).eval()\n"
        f"    with torch.no_grad():\n        out = model(**torch.load({str(work_dir / 'plain-batch.pt')!r})).logits\n"
        "    config = model.peft_config['default']\n"
        f"    difference = (out - torch.load({str(work_dir / 'plain-expected.pt')!r})).abs().max().item()\n"
        "    print('RESULT', json.dumps({'type': config.peft_type.value, 'prefix_projection': getattr(config, 'prefix_projection', None), "
        "'difference': difference}))\n"
    )  # fmt: skip
    result = run_python_without_plugin(code)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line.removeprefix("RESULT ")) for line in result.stdout.splitlines() if line.startswith("RESULT ")]


# --------------------------------------------------------------------------- configs
@functools.lru_cache(maxsize=None)
def bank_folders(model_name: str, count: int = 2) -> tuple[str, ...]:
    """`count` saved single-prompt adapters (5 virtual tokens) for tiny `model_name`: a mixture's bank."""
    import peft

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    folders = []
    for index in range(count):
        model, task_type = tiny_model(model_name)
        config = VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, seed=100 + index)
        folder = fixture_dir(f"bank-{model_name}-{index}-")
        peft.get_peft_model(model, config).save_pretrained(folder)
        folders.append(folder)
    return tuple(folders)


@functools.lru_cache(maxsize=None)
def projection_folder(model_name: str) -> str:
    """A saved projection from tiny `model_name` (seed 5) to tiny `model_name` (seed 0), same tokenizer."""
    from peft_softprompt_ext import fit_projection

    source, _ = tiny_model(model_name, seed=5)
    target, _ = tiny_model(model_name)
    projection = fit_projection(source, tiny_tokenizer(), target, tiny_tokenizer())
    folder = fixture_dir(f"projection-{model_name}-")
    projection.save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=None)
def source_adapter_folder(model_name: str) -> str:
    """A trained-looking prompt (5 tokens) on tiny `model_name` seed 5: the projection's source."""
    import peft

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    model, task_type = tiny_model(model_name, seed=5)
    folder = fixture_dir(f"source-{model_name}-")
    peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, seed=9)).save_pretrained(folder)
    return folder


def all_configs():
    """name -> factory(task_type, model_name) of every plugin config variant the matrix tests cover."""
    from peft_softprompt_ext import MixturePromptTuningConfig, ProjectedPromptTuningConfig, VocabSampledPromptTuningConfig

    tokenizer_dir = tiny_tokenizer_dir()

    def vocab(**kwargs):
        return lambda task_type, model_name: VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, **kwargs)

    def mixture(**kwargs):
        return lambda task_type, model_name: MixturePromptTuningConfig(
            task_type=task_type, num_virtual_tokens=5, source_prompts=list(bank_folders(model_name)), **kwargs
        )

    return {
        "vocab_uniform": vocab(vocab_sampling="uniform", seed=3),
        "vocab_top_frequent": vocab(vocab_sampling="top_frequent", num_frequent_tokens=50, tokenizer_name_or_path=tokenizer_dir),
        "vocab_task_corpus": vocab(vocab_sampling="task_corpus", corpus=CORPUS[:7], tokenizer_name_or_path=tokenizer_dir),
        "vocab_class_labels": vocab(
            vocab_sampling="class_labels", class_labels=[" positive", " negative review"], num_frequent_tokens=50,
            norm_matching=True, tokenizer_name_or_path=tokenizer_dir,
        ),  # fmt: skip
        "projected": lambda task_type, model_name: ProjectedPromptTuningConfig(
            task_type=task_type, num_virtual_tokens=5, source_adapter=source_adapter_folder(model_name),
            projection=projection_folder(model_name),
        ),  # fmt: skip
        "vocab_reparam": vocab(vocab_sampling="uniform", reparameterization="residual_mlp", reparameterization_hidden=16),
        "mixture_task": mixture(mixing="task"),
        "mixture_task_reparam": mixture(mixing="task", reparameterization="residual_mlp", reparameterization_hidden=16),
        "mixture_attention": mixture(mixing="attention", attention_hidden=8),
    }


ALL_CONFIG_NAMES = ["vocab_uniform", "vocab_top_frequent", "vocab_task_corpus", "vocab_class_labels", "vocab_reparam",
                    "projected", "mixture_task", "mixture_task_reparam", "mixture_attention"]  # fmt: skip
# Configs whose prompt depends on the input: no single exportable prompt, and a no-cache loop
# over forward (which re-reads the generated tokens) is not what generate computes.
INPUT_DEPENDENT_CONFIGS = {"mixture_attention"}


def make_peft_model(model_name: str, config_name: str, seed: int = 0):
    import peft

    model, task_type = tiny_model(model_name, seed=seed)
    config = all_configs()[config_name](task_type, model_name)
    return peft.get_peft_model(model, config), config


# --------------------------------------------------------------------------- shared checks
def check_only_prompt_gets_grad(peft_model, batch):
    """Every trainable parameter is a prompt parameter (or, for SEQ_CLS, the classifier head PEFT
    keeps trainable in `modules_to_save`) and gets a non-zero gradient; the frozen base gets none."""
    peft_model.train()
    peft_model(**batch).loss.backward()
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    for name, parameter in trainable.items():
        assert "prompt_encoder" in name or "modules_to_save" in name, f"non-prompt parameter {name} is trainable"
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} got no gradient"
    for name, parameter in peft_model.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None, f"frozen parameter {name} got a gradient"
    peft_model.zero_grad()
    peft_model.eval()


def check_generate_matches_no_cache(peft_model, batch, max_new_tokens: int = 32, manual_loop: bool = True, **extra):
    """Greedy generate with cache == without cache (== a manual no-cache loop over forward)."""
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens,
                  do_sample=False, min_new_tokens=max_new_tokens, **extra)  # fmt: skip
    with torch.no_grad():
        cached = peft_model.generate(**kwargs, use_cache=True)
        uncached = peft_model.generate(**kwargs, use_cache=False)
    assert cached.shape[1] == batch["input_ids"].shape[1] + max_new_tokens
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)
    if manual_loop:
        manual = greedy_manual_loop(peft_model, batch["input_ids"], batch["attention_mask"], max_new_tokens, **extra)
        torch.testing.assert_close(cached, manual, rtol=0, atol=0)
    return cached


@functools.lru_cache(maxsize=None)
def tiny_model_folder(name: str = "llama") -> str:
    """A saved tiny model + the tiny tokenizer in one folder, usable as a recipe `model:` path."""
    model, _ = tiny_model(name)
    folder = fixture_dir(f"tiny-{name}-")
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=None)
def deep_bank_folders(model_name: str, count: int = 2) -> tuple[str, ...]:
    """`count` saved deep prompts (5 virtual tokens) for tiny `model_name`: a deep mixture's bank."""
    import peft

    from peft_softprompt_ext import DeepPromptTuningConfig

    folders = []
    for index in range(count):
        model, task_type = tiny_model(model_name)
        config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=200 + index)
        folder = fixture_dir(f"deep-bank-{model_name}-{index}-")
        peft.get_peft_model(model, config).save_pretrained(folder)
        folders.append(folder)
    return tuple(folders)


def deep_config(name: str, task_type: str, model_name: str):
    """The deep-prompt configs of the conformance matrix (None for other names)."""
    from peft_softprompt_ext import DeepPromptTuningConfig

    deep = functools.partial(DeepPromptTuningConfig, task_type=task_type, num_virtual_tokens=5)
    return {
        "deep_vocab": lambda: deep(deep_init="vocab_sampled", vocab_sampling="uniform", seed=4),
        "deep_text": lambda: deep(deep_init="text", init_text=" ".join(CORPUS[:2]), tokenizer_name_or_path=tiny_tokenizer_dir()),
        "deep_from_prompt": lambda: deep(deep_init="prompt", init_prompt=bank_folders(model_name)[0]),
        "deep_reparam": lambda: deep(deep_init="random", reparameterization="residual_mlp", reparameterization_hidden=16),
        "deep_layer_scaled": lambda: deep(deep_init="random", seed=5, reparameterization="layer_scaled"),
        "deep_top_layer": lambda: deep(deep_init="random", seed=6, trainable_layers=1),
    }.get(name, lambda: None)()


def conformance_config(name: str, task_type: str, model_name: str, variant: bool = False):
    """The plugin config of conformance case `name` (tests/conformance_cases.py) for one tiny model;
    `variant` reverses a mixture's bank (a second adapter whose prompts differ even with nothing trained)."""
    from peft_softprompt_ext import MixturePromptTuningConfig

    bank = list(bank_folders(model_name))[:: -1 if variant else 1]
    deep_bank = list(deep_bank_folders(model_name))[:: -1 if variant else 1] if "deep" in name else None

    def mixture(num_tasks: int, **kwargs):
        return MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=bank,
                                         num_tasks=num_tasks, attention_hidden=8, **kwargs)  # fmt: skip

    mixtures = {
        "mixture_task_1": lambda: mixture(1, mixing="task"),
        "mixture_task_2": lambda: mixture(2, mixing="task", task_names=["sentiment", "topic"]),
        "mixture_task_2_reparam": lambda: mixture(2, mixing="task", reparameterization="residual_mlp", reparameterization_hidden=16),
        "mixture_one_hot_2": lambda: mixture(2, mixing="one_hot", task_names=["first", "second"]),
        "mixture_attention_2": lambda: mixture(2, mixing="attention"),
        "mixture_deep_task_2": lambda: MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=deep_bank,
                                                                 num_tasks=2, mixing="task", task_names=["a", "b"]),
        "mixture_deep_task_2_top_layer_scaled": lambda: MixturePromptTuningConfig(
            task_type=task_type, num_virtual_tokens=5, source_prompts=deep_bank, num_tasks=2, mixing="task",
            reparameterization="layer_scaled", trainable_layers=1),  # fmt: skip
        "mixture_deep_one_hot_2": lambda: MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=deep_bank,
                                                                    num_tasks=2, mixing="one_hot"),
    }
    deep = deep_config(name, task_type, model_name)
    if deep is not None:
        return deep
    if name in mixtures:
        return mixtures[name]()
    return all_configs()[name](task_type, model_name)


def sampled_prompt_ids(peft_model) -> torch.Tensor:
    """The token ids whose embedding rows a fresh vocabulary-sampled prompt holds [2, P] (in the space the model reads
    them: Gemma's scaled by its embedding factor)."""
    rows, table = peft_model.prompt_encoder["default"](1)[0], peft_model.get_input_embeddings().weight
    similarity = torch.nn.functional.normalize(rows, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    assert bool((similarity.max(dim=-1).values > 1 - 1e-5).all()), "a prompt row is no token's embedding"
    return similarity.argmax(dim=-1).expand(2, -1)


def prompted(build, kind: str, shared_prefix: str = "auto", P: int = 5):
    """A fresh model from `build` with a vocabulary-sampled prompt of P rows: shallow, or deep (the same tokens' keys and
    values; `sampled_prompt_ids` of the shallow one gives those tokens)."""
    import peft
    from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig

    if kind == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="vocab_sampled", vocab_sampling="uniform", seed=3)
    else:
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                                shared_prefix=shared_prefix)  # fmt: skip
    return peft.get_peft_model(build(), config).eval()
