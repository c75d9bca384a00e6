"""Training-step time and inference throughput of soft prompts with and without a shared prefix.

Run (2-core CPU, embedded SmolLM2 and movie sentiment; about 6 minutes):
    python benchmarks/bench_shared_prefix.py --model smollm2-135m
Quick check on a tiny random Llama (seconds):
    python benchmarks/bench_shared_prefix.py --model tiny-llama --rounds 3

One run, one base model, real task batches (the recipe's template and label words):
* training: a step (forward + backward + AdamW) of vanilla PEFT prompt tuning, the plugin with
  `shared_prefix="off"` and `"auto"` at each prompt length, and LoRA r=8 on q/v; reported as the
  median over rounds of each method's per-round ratio to LoRA (goal for the plugin: <= 1.0);
* inference: a no-grad forward over evaluation batches of the base model alone, vanilla prompt
  tuning and the plugin with its cached prompt, once returning all logits (the plugin copies the
  prompt positions' cached logits in front, as the standard path's shape requires) and once with
  `logits_to_keep=1` (what generate and next-token classification read); reported as throughput
  relative to the base model, median of per-round ratios (goal for the plugin: >= 0.95; vanilla
  pays (L+P)/L).
Methods run round-robin with the order rotated each round, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import peft
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

import peft_softprompt_ext as ext  # noqa: E402
from softprompt_bench import classification
from softprompt_bench.data import label_words, load_task, prompt_template
from softprompt_bench.benchmark_args import count, counts, require_rows
from softprompt_bench.timing_ratios import median_ratio


def load_model(name: str):
    """(model, tokenizer) for an embedded alias or 'tiny-llama' (with the SmolLM2 tokenizer when present)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from softprompt_bench.embedded_models import resolve_model_folder

    folder = resolve_model_folder("smollm2-135m" if name == "tiny-llama" else name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if name == "tiny-llama":
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
        return AutoModelForCausalLM.from_config(config), tokenizer
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), tokenizer


def task_batches(tokenizer, data, task: str, batch_size: int, eval_batch_size: int, rounds: int):
    """(training batches, evaluation batches) of `data`'s real examples, one of each per round."""
    template = prompt_template(task)
    label_ids = classification.label_token_ids(tokenizer, label_words(task))
    pad = classification.pad_token_id(tokenizer)
    train = data["train"].select(range(batch_size * (rounds + 1)))
    examples = classification.causal_examples(tokenizer, train["text"], train["label"], template, label_ids, 64)
    training = [classification.collate(examples[i : i + batch_size], pad) for i in range(0, len(examples), batch_size)]
    evaluation_rows = data["validation"].select(range(eval_batch_size * (rounds + 1)))
    prompts = [{"input_ids": classification.prompt_ids(tokenizer, t, template, 64), "labels": [0]} for t in evaluation_rows["text"]]
    evaluation = []
    for start in range(0, len(prompts), eval_batch_size):
        batch = classification.collate([dict(p, labels=[0] * len(p["input_ids"])) for p in prompts[start : start + eval_batch_size]], pad)
        evaluation.append({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    return training, evaluation


def round_robin(functions: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, one call each per round, order rotated; round 0 warms up."""
    names, samples = list(functions), {name: [] for name in functions}
    for round_index in range(rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name](round_index)
            if round_index > 0:
                samples[name].append(time.perf_counter() - start)
    return samples


def report(samples: dict, baseline: str, label: str, invert: bool = False) -> None:
    for name, values in samples.items():
        ratio = median_ratio(samples[baseline], values) if invert else median_ratio(values, samples[baseline])
        print(f"{label}  {name:40s} median {statistics.median(values):.4f} s  {'throughput' if invert else 'time'} "
              f"ratio vs {baseline}: {ratio:.3f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--task", default="movie_sentiment")
    parser.add_argument("--lengths", type=counts(distinct=True), default=[20, 5], help="Prompt lengths of the plugin rows (comma-separated, distinct).")
    parser.add_argument("--batch-size", type=count(), default=8)
    parser.add_argument("--eval-batch-size", type=count(), default=16)
    parser.add_argument("--rounds", type=count(), default=8)
    args = parser.parse_args()
    data = load_task(args.task)  # each round and the warm-up take their own rows: checked before the model loads
    require_rows(parser, "--batch-size", args.batch_size, args.rounds, len(data["train"]), f"{args.task}'s train split")
    require_rows(parser, "--eval-batch-size", args.eval_batch_size, args.rounds, len(data["validation"]), f"{args.task}'s validation split")
    torch.manual_seed(0)
    base, tokenizer = load_model(args.model)
    training, evaluation = task_batches(tokenizer, data, args.task, args.batch_size, args.eval_batch_size, args.rounds)
    lengths = args.lengths
    mean_length = statistics.mean(float(b["attention_mask"].sum(1).float().mean()) for b in training)
    print(f"model={args.model} task={args.task} batch={args.batch_size} mean input length {mean_length:.1f} tokens, "
          f"padded width {statistics.mean(b['input_ids'].shape[1] for b in training):.1f}; threads={torch.get_num_threads()}")  # fmt: skip

    models = {"LoRA r=8 q,v": peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16,
                                                                                       target_modules=["q_proj", "v_proj"]))}  # fmt: skip
    models[f"vanilla PromptTuning P={lengths[0]}"] = peft.get_peft_model(base, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=lengths[0]))
    base = models[f"vanilla PromptTuning P={lengths[0]}"].get_base_model()
    for length in lengths:
        for mode in ("off", "auto"):
            config = ext.VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=length, vocab_sampling="uniform",
                                                        shared_prefix=mode)  # fmt: skip
            models[f"plugin P={length} shared_prefix={mode}"] = peft.get_peft_model(base, config)
            base = models[f"plugin P={length} shared_prefix={mode}"].get_base_model()

    def train_step(model, optimizer):
        def step(index):
            model.train()
            model(**training[index]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        return step

    steps = {}
    for name, model in models.items():
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        steps[name] = train_step(model, optimizer)
    trainable = {name: sum(p.numel() for p in model.parameters() if p.requires_grad) for name, model in models.items()}
    for name, values in trainable.items():
        print(f"params {name:40s} trainable {values:,}")
    report(round_robin(steps, args.rounds), "LoRA r=8 q,v", "step ")

    def infer(model, last_only: bool):
        def run(index):
            model.eval()
            with torch.no_grad():
                if last_only:  # what generate and next-token classification read
                    model(**evaluation[index], logits_to_keep=1)
                else:
                    model(**evaluation[index])

        return run

    for last_only in (False, True):
        suffix = " last logits" if last_only else ""
        inference = {"base model (no prompt)": infer(base, last_only)}
        inference[f"vanilla PromptTuning P={lengths[0]}"] = infer(models[f"vanilla PromptTuning P={lengths[0]}"], last_only)
        for length in lengths:
            inference[f"plugin P={length} (cached prompt)"] = infer(models[f"plugin P={length} shared_prefix=auto"], last_only)
        print("inference with logits_to_keep=1 (left padding not needed: the mask gives positions)" if last_only else "inference, all logits")
        report(round_robin(inference, args.rounds), "base model (no prompt)", "infer" + suffix, invert=True)


if __name__ == "__main__":
    main()
