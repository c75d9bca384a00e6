"""Step time of every plugin prompt method relative to vanilla PEFT prompt tuning, and init time.

Run (2-core CPU, embedded SmolLM2; about 3 minutes):
    python benchmarks/bench_prompt_methods.py --model smollm2-135m
Quick check on a tiny random GPT-2 (seconds):
    python benchmarks/bench_prompt_methods.py --model tiny-gpt2

Prints, from ONE run on the same model and batch: the median training-step time of each method
and the median over rounds of its per-round ratio to vanilla `PromptTuningConfig` (goal <= 1.05),
and the median time to build each initial prompt on the model's vocabulary (goal < 1 s). Methods
run round-robin (order rotated each round), one step each per round, so machine noise hits them
alike. Ratios, not absolute times, are the result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import peft
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

import peft_softprompt_ext as ext  # noqa: E402
from peft_softprompt_ext.vocab_sampled import initial_token_rows  # noqa: E402
from softprompt_bench.benchmark_args import count  # noqa: E402
from softprompt_bench.embedded_models import load_causal_lm as load_model  # noqa: E402
from softprompt_bench.timing_ratios import median_ratio  # noqa: E402


def method_configs(tokenizer_dir, num_virtual_tokens: int) -> dict:
    common = dict(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens)
    configs = {"vanilla PromptTuning (RANDOM)": peft.PromptTuningConfig(**common)}
    configs["VocabSampled uniform"] = ext.VocabSampledPromptTuningConfig(vocab_sampling="uniform", **common)
    if tokenizer_dir:
        with_tokenizer = dict(tokenizer_name_or_path=tokenizer_dir, **common)
        configs["VocabSampled top_frequent"] = ext.VocabSampledPromptTuningConfig(vocab_sampling="top_frequent", **with_tokenizer)
        configs["VocabSampled class_labels"] = ext.VocabSampledPromptTuningConfig(
            vocab_sampling="class_labels", class_labels=[" positive", " negative"], norm_matching=True, **with_tokenizer
        )
    return configs


def init_times(model, configs: dict, repeats: int) -> dict[str, float]:
    """Median seconds to build each plugin method's initial prompt (tokenizer load included)."""
    embeddings = model.get_input_embeddings()
    times = {}
    for name, config in configs.items():
        if not isinstance(config, ext.VocabSampledPromptTuningConfig):
            continue
        config.token_dim = embeddings.weight.shape[1]
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            initial_token_rows(config, embeddings, model.config)
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    return times


def step_times(model, configs: dict, batch: dict, rounds: int) -> dict[str, list[float]]:
    """Round-robin training steps; each method's adapter lives in its own PeftModel over one base."""
    peft_models, optimizers = {}, {}
    for name, config in configs.items():
        peft_models[name] = peft.get_peft_model(model, config, adapter_name="default")
        params = [p for p in peft_models[name].parameters() if p.requires_grad]
        optimizers[name] = torch.optim.AdamW(params, lr=1e-3)
        model = peft_models[name].get_base_model()  # unwrap for the next method
    samples = {name: [] for name in configs}
    names = list(peft_models)
    for round_index in range(rounds + 1):
        # rotate the order every round so no method always runs right after the same neighbour
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            loss = peft_models[name](**batch).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad()
            if round_index > 0:  # round 0 warms up
                samples[name].append(time.perf_counter() - start)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt2")
    parser.add_argument("--num-virtual-tokens", type=count(), default=20)
    parser.add_argument("--batch-size", type=count(), default=8)
    parser.add_argument("--seq-len", type=count(), default=32)
    parser.add_argument("--rounds", type=count(), default=10)
    parser.add_argument("--init-repeats", type=count(), default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer_dir = load_model(args.model)
    model.train()
    configs = method_configs(tokenizer_dir, args.num_virtual_tokens)
    vocab = model.get_input_embeddings().weight.shape[0]
    print(f"model={args.model} vocab={vocab} batch={args.batch_size}x{args.seq_len} P={args.num_virtual_tokens} threads={torch.get_num_threads()}")
    for name, seconds in init_times(model, configs, args.init_repeats).items():
        print(f"init  {name:32s} median {seconds:.3f} s  (goal < 1 s: {'met' if seconds < 1 else 'MISSED'})")
    ids = torch.randint(100, vocab - 1, (args.batch_size, args.seq_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    samples = step_times(model, configs, batch, args.rounds)
    baseline_name = "vanilla PromptTuning (RANDOM)"
    baseline = statistics.median(samples[baseline_name])
    for name, values in samples.items():
        print(f"step  {name:32s} median {statistics.median(values):.4f} s  median ratio vs vanilla "
              f"{median_ratio(values, samples[baseline_name]):.3f}  (goal <= 1.05)")  # fmt: skip
    print(f"vanilla median step {baseline:.4f} s over {len(samples[baseline_name])} rounds")


if __name__ == "__main__":
    main()
