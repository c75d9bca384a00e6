"""Throughput of a batch that mixes 4 tasks vs a same-task batch vs 4 separate per-task passes.

Run (2-core CPU, embedded SmolLM2; about 2 minutes):
    python benchmarks/bench_mixture.py --model smollm2-135m
Quick check on a tiny random GPT-2 (seconds):
    python benchmarks/bench_mixture.py --model tiny-gpt2

A 4-task mixture (mixing="task") over a bank of 4 prompts, inference forward passes on the same
shape [batch, seq]. Reports, as medians over rounds of per-round ratios:
  mixed / same-task throughput (goal >= 0.9), and mixed / (4 separate per-task passes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import peft
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

import peft_softprompt_ext as ext  # noqa: E402
from softprompt_bench.benchmark_args import count  # noqa: E402
from softprompt_bench.embedded_models import load_causal_lm as load_model  # noqa: E402
from softprompt_bench.timing_ratios import median_ratio  # noqa: E402

_SCRATCH = tempfile.TemporaryDirectory(prefix="softprompt-bench-")  # bank folders; removed at exit


def build_mixture(model, num_tasks: int, num_virtual_tokens: int):
    """A task-mixing mixture over `num_tasks` freshly sampled (untrained) bank prompts."""
    folders = []
    base = model
    for index in range(num_tasks):
        config = ext.VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, seed=index)
        source = peft.get_peft_model(base, config)
        folder = tempfile.mkdtemp(prefix="bench-bank-", dir=_SCRATCH.name)
        source.save_pretrained(folder)
        folders.append(folder)
        base = source.get_base_model()
    config = ext.MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, source_prompts=folders,
                                           num_tasks=num_tasks, mixing="task")  # fmt: skip
    return peft.get_peft_model(base, config).eval()


def timed(function) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt2")
    parser.add_argument("--batch-size", type=count(minimum=4, multiple_of=4), default=16, help="rows, 4 tasks' worth")
    parser.add_argument("--seq-len", type=count(), default=48)
    parser.add_argument("--num-virtual-tokens", type=count(), default=20)
    parser.add_argument("--rounds", type=count(), default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = load_model(args.model)
    mixture = build_mixture(model.eval(), 4, args.num_virtual_tokens)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(100, vocab - 1, (args.batch_size, args.seq_len))
    mask = torch.ones_like(ids)
    mixed_tasks = torch.arange(args.batch_size) % 4
    same_task = torch.zeros(args.batch_size, dtype=torch.long)
    quarter = args.batch_size // 4

    def mixed():
        mixture(input_ids=ids, attention_mask=mask, task_ids=mixed_tasks)

    def same():
        mixture(input_ids=ids, attention_mask=mask, task_ids=same_task)

    def separate():
        for task in range(4):
            rows = slice(task * quarter, (task + 1) * quarter)
            mixture(input_ids=ids[rows], attention_mask=mask[rows], task_ids=torch.full((quarter,), task))

    timed(mixed), timed(same), timed(separate)  # warm-up
    samples = {"mixed": [], "same": [], "separate": []}
    for _ in range(args.rounds):
        for name, function in (("mixed", mixed), ("same", same), ("separate", separate)):
            samples[name].append(timed(function))
    vs_same = median_ratio(samples["same"], samples["mixed"])
    vs_separate = median_ratio(samples["separate"], samples["mixed"])
    print(f"model={args.model} batch={args.batch_size}x{args.seq_len} P={args.num_virtual_tokens} rounds={args.rounds}")
    for name, values in samples.items():
        print(f"{name:9s} median {statistics.median(values):.4f} s per batch")
    print(f"mixed-batch throughput / same-task throughput: {vs_same:.3f} (goal >= 0.9)")
    print(f"mixed-batch throughput / 4 separate per-task passes: {vs_separate:.3f}")


if __name__ == "__main__":
    main()
