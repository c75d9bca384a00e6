"""Deep prompts (issue #14): training step vs LoRA, inference vs the base model, mixed-task batches.

Run (2-core CPU, embedded SmolLM2, alone on the machine: 186 s with 2 threads; `--only-step` ~1 min):
    python benchmarks/bench_deep_prompt.py --model smollm2-135m
Quick check on a tiny random GPT-2 (under a minute here with --rounds 3, not timed exactly):
    python benchmarks/bench_deep_prompt.py --model tiny-gpt2

Prints, from ONE run on the same model and batch, medians over rounds of per-round ratios (with their
quartiles: on a shared 2-core machine one round's ratio can move by 10%):
  training step: deep prompt (P keys/values per layer) / LoRA r=8 on q,v          (goal <= 0.95)
  inference:     base-model throughput ratio, deep prompt / base alone, for a
                 forward pass and for greedy generate with the KV cache          (goal >= 0.97)
  mixed tasks:   a batch mixing 4 deep prompts / a same-task batch, throughput   (goal >= 0.95)
  attention:     where the step's extra time goes: one attention layer's forward + backward at the
                 model's shapes, over the input's L keys with `is_causal` (what LoRA runs), over P + L
                 keys with the explicit mask a prefix needs (what the deep prompt runs), and over P + L
                 keys with `is_causal` after P zero queries in front (an exact alternative: no mask,
                 P wasted query rows); times relative to the first
(The attention part runs at least 20 rounds, whatever `--rounds`. `--only-attention`: that part alone, seconds;
`--only-step`: the first alone. `--trainable-layers k`: the deep prompt trains only the last k layers, so backward
stops above the others.)
Every pair runs in the same round, order alternating, so machine noise hits both alike.
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
from softprompt_bench.timing_ratios import ratio_quartiles  # noqa: E402

_SCRATCH = tempfile.TemporaryDirectory(prefix="softprompt-bench-")  # bank folders; removed at exit
ATTENTION_MIN_ROUNDS = 20  # one layer's pass is short and its per-round ratios noisy: the attention part runs at least 20


def paired(first, second, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of `first()` and `second()` per round (one warm-up round), order alternating."""
    times = ([], [])
    for index in range(rounds + 1):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            (first, second)[which]()
            if index > 0:
                times[which].append(time.perf_counter() - start)
    return times


def ratio(numerator: list[float], denominator: list[float]) -> str:
    """Median of the per-round ratios, and their quartiles [q1, q3]: how far one round's noise reaches."""
    q1, median, q3 = ratio_quartiles(numerator, denominator)
    return f"{median:.3f} [q1 {q1:.3f}, q3 {q3:.3f}]"


def training_step(model, batch, config):
    peft_model = peft.get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
    trainable = peft_model.get_nb_trainable_parameters()[0]

    def step():
        peft_model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return peft_model, step, trainable


def attention_layer(config, batch: int, length: int, prefix: int, rounds: int) -> None:
    """One attention layer's forward + backward, three ways (see the docstring), paired per round."""
    import torch.nn.functional as F

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    query, keys, values = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))
    prompt_keys, prompt_values = (torch.randn(batch, heads, prefix, dim, requires_grad=True) for _ in range(2))
    grad = torch.randn(batch, heads, length, dim)
    mask = torch.ones(length, prefix + length, dtype=torch.bool).tril(prefix)[None, None].expand(batch, 1, -1, -1)

    def joined():  # [prompt; input] keys and values
        return torch.cat((prompt_keys, keys), 2), torch.cat((prompt_values, values), 2)

    def zero_queries_in_front():
        return torch.cat((query.new_zeros(batch, heads, prefix, dim), query), 2)

    def causal():
        F.scaled_dot_product_attention(query, keys, values, is_causal=True).backward(grad)

    def masked():
        F.scaled_dot_product_attention(query, *joined(), attn_mask=mask).backward(grad)

    def padded():
        F.scaled_dot_product_attention(zero_queries_in_front(), *joined(), is_causal=True)[:, :, prefix:].backward(grad)

    with torch.no_grad():  # the padded form is the masked one exactly
        gap = (F.scaled_dot_product_attention(query, *joined(), attn_mask=mask)
               - F.scaled_dot_product_attention(zero_queries_in_front(), *joined(), is_causal=True)[:, :, prefix:]).abs().max()  # fmt: skip
    causal_times, masked_times = paired(causal, masked, rounds)
    _, padded_times = paired(causal, padded, rounds)
    print(f"attention   one layer fwd+bwd, {batch}x{heads} heads x {length} queries, head dim {dim}: "
          f"causal over {length} keys {1e3 * statistics.median(causal_times):.2f} ms; over {prefix}+{length} keys: "
          f"masked {ratio(masked_times, causal_times)}, zero queries + causal {ratio(padded_times, causal_times)} "
          f"(max difference masked vs padded {gap:.1e})")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt2")
    parser.add_argument("--num-virtual-tokens", type=count(), default=20)
    parser.add_argument("--batch-size", type=count(), default=8)
    parser.add_argument("--seq-len", type=count(), default=64)
    parser.add_argument("--new-tokens", type=count(), default=16)
    parser.add_argument("--rounds", type=count(), default=8)
    parser.add_argument("--trainable-layers", type=count(), default=None,
                        help="the deep prompt trains only the last k layers' keys/values (default: all)")
    parser.add_argument("--only-attention", action="store_true", help="run only the attention-layer part")
    parser.add_argument("--only-step", action="store_true", help="run only the training-step part")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = load_model(args.model)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(100, vocab - 1, (args.batch_size, args.seq_len))
    mask = torch.ones_like(ids)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids}
    P = args.num_virtual_tokens
    attention_rounds = max(args.rounds, ATTENTION_MIN_ROUNDS)
    rounds = f"rounds={attention_rounds}" if args.only_attention else f"rounds={args.rounds} (attention part {attention_rounds})"
    print(f"model={args.model} batch={args.batch_size}x{args.seq_len} P={P} trainable_layers={args.trainable_layers or 'all'} "
          f"{rounds} threads={torch.get_num_threads()}")  # fmt: skip
    if args.only_attention:
        attention_layer(model.config, args.batch_size, args.seq_len, P, attention_rounds)
        return

    # 1. training step, deep prompt vs LoRA (each its own PeftModel over copies of one base)
    import copy

    model.train()
    deep_config = ext.DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=0,
                                             trainable_layers=args.trainable_layers)  # fmt: skip
    lora_config = peft.LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16)  # PEFT's default targets: q,v (Llama), c_attn (GPT-2)
    deep, deep_step, deep_trainable = training_step(copy.deepcopy(model), batch, deep_config)
    lora, lora_step, lora_trainable = training_step(copy.deepcopy(model), batch, lora_config)
    deep_times, lora_times = paired(deep_step, lora_step, args.rounds)
    print(f"train step  deep {statistics.median(deep_times):.3f} s ({deep_trainable:,} trainable)  "
          f"LoRA {statistics.median(lora_times):.3f} s ({lora_trainable:,})  "
          f"ratio deep/LoRA {ratio(deep_times, lora_times)} (goal <= 0.95)")  # fmt: skip
    del lora
    if args.only_step:
        return

    # 2. inference: deep prompt vs the base model alone, same inputs
    deep.eval()
    base = deep.get_base_model()

    def forward_deep():
        with torch.no_grad():
            deep(input_ids=ids, attention_mask=mask)

    def forward_base():
        with torch.no_grad(), deep.disable_adapter():
            base(input_ids=ids, attention_mask=mask)

    generate = dict(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                    do_sample=False, use_cache=True, pad_token_id=0)  # fmt: skip

    def generate_deep():
        with torch.no_grad():
            deep.generate(**generate)

    def generate_base():
        with torch.no_grad(), deep.disable_adapter():
            base.generate(**generate)

    for name, pair in (("forward", (forward_deep, forward_base)), ("generate", (generate_deep, generate_base))):
        deep_times, base_times = paired(*pair, args.rounds)
        print(f"{name:9s}   deep {statistics.median(deep_times):.3f} s  base {statistics.median(base_times):.3f} s  "
              f"throughput deep/base {ratio(base_times, deep_times)} (goal >= 0.97)")  # fmt: skip

    # 3. a batch mixing 4 deep prompts vs a same-task batch
    folders = []
    for index in range(4):
        source = peft.get_peft_model(copy.deepcopy(base), ext.DeepPromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=10 + index))  # fmt: skip
        folders.append(tempfile.mkdtemp(prefix="bench-deep-bank-", dir=_SCRATCH.name))
        source.save_pretrained(folders[-1])
    mixture = peft.get_peft_model(copy.deepcopy(base), ext.MixturePromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=folders, num_tasks=4, mixing="one_hot")).eval()  # fmt: skip
    mixed_tasks, same_task = torch.arange(args.batch_size) % 4, torch.zeros(args.batch_size, dtype=torch.long)

    def mixed():
        with torch.no_grad():
            mixture(input_ids=ids, attention_mask=mask, task_ids=mixed_tasks)

    def same():
        with torch.no_grad():
            mixture(input_ids=ids, attention_mask=mask, task_ids=same_task)

    mixed_times, same_times = paired(mixed, same, args.rounds)
    print(f"mixture     mixed {statistics.median(mixed_times):.3f} s  same-task {statistics.median(same_times):.3f} s  "
          f"throughput mixed/same {ratio(same_times, mixed_times)} (goal >= 0.95)")  # fmt: skip

    # 4. where the training step's extra time goes
    attention_layer(model.config, args.batch_size, args.seq_len, P, attention_rounds)


if __name__ == "__main__":
    main()
