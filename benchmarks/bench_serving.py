"""Serving on vLLM (issue #15): soft prompts vs plain tokens vs this plugin in transformers, tasks per batch.

Run alone on the machine, from the project venv; it runs the vLLM part in the serving venv
(`bash scripts/setup_vllm.sh`) as a subprocess of this same file:
    .venv/bin/python benchmarks/bench_serving.py --model smollm2-135m

Same requests everywhere: N movie reviews (the recipe's template, cut to 64 tokens), each behind a
P=20-row prompt, greedy, exactly `--max-tokens` new tokens each (EOS ignored). Prints medians over
rounds from ONE run, and each ratio as the median of its per-round ratios (round i of one variant against round
i of its baseline; the vLLM variants alternate within each round; the prefix-cache engine's rounds and the
plugin's follow the first engine's, so those pairs share only their round number):
  vLLM, prompts (1 task) / vLLM, plain tokens of the same length   throughput and time to first token
  vLLM, prompts with 4 / 16 distinct tasks in the batch / 1 task    throughput
  vLLM prefix caching on / off, prompts (1 task, new texts each round)  throughput
  this plugin's cached generate in transformers / vLLM prompts       throughput (1 / 4 / 16 tasks) and TTFT
Time to first token = wall time of the whole batch with one new token (its prefill).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the bench / the serving room, from a checkout
from softprompt_bench.benchmark_args import count, require_rows  # noqa: E402  (argparse only: the serving venv imports it too)
from softprompt_bench.timing_ratios import median_ratio  # noqa: E402  (plain Python, as above)

P, TASK_COUNTS = 20, (1, 4, 16)
TASK = "movie_sentiment"  # its validation rows are the requests


# --------------------------------------------------------------------------- the vLLM part (serving venv)
def vllm_part(spec: dict) -> dict:
    """Seconds per round of each variant on one engine (plus one engine with prefix caching)."""
    import os

    for name, value in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto", "HF_HUB_OFFLINE": "1"}.items():
        os.environ.setdefault(name, value)
    from vllm import LLM, SamplingParams

    from softprompt_serve import PromptServer

    server = PromptServer(spec["model"], spec["prompts"], max_model_len=512)
    tasks = sorted(server.prompts)
    rounds, tokens = spec["rounds"], spec["requests"]
    full = SamplingParams(max_tokens=spec["max_tokens"], temperature=0.0, ignore_eos=True)
    first = SamplingParams(max_tokens=1, temperature=0.0)
    filler = server.embedder.token_ids(" the")[-1]

    def embeds(ids_list, count):
        return [server.request(ids, tasks[index % count], spec["max_tokens"]) for index, ids in enumerate(ids_list)]

    batch = tokens[: spec["batch"]]
    variants = {  # name -> the batch's requests
        "tokens": lambda: [{"prompt_token_ids": [filler] * P + ids} for ids in batch],
        **{f"prompts_{count}": (lambda count=count: embeds(batch, count)) for count in TASK_COUNTS},
    }
    results = {}

    def timed(llm, requests, params):
        start = time.perf_counter()
        outputs = llm.generate(requests, params, use_tqdm=False)
        return time.perf_counter() - start, outputs

    start = time.perf_counter()
    llm = LLM(model=spec["model"], enable_prompt_embeds=True, dtype="float32", max_model_len=512, enforce_eager=True,
              enable_prefix_caching=False, seed=0)  # fmt: skip
    results["engine_start_s"] = time.perf_counter() - start
    for name in ["tokens", "prompts_1"]:
        timed(llm, variants[name](), full)  # warm-up
    for index in range(rounds):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            results.setdefault(name, []).append(timed(llm, variants[name](), full)[0])
        for name in (["tokens", "prompts_1"] if index % 2 == 0 else ["prompts_1", "tokens"]):
            results.setdefault(f"{name}_ttft", []).append(timed(llm, variants[name](), first)[0])
    _, reference = timed(llm, embeds(tokens[: spec["batch"]], 1), full)
    results["prompts_1_tokens"] = [list(out.outputs[0].token_ids) for out in reference]
    results["eos_token_id"] = server.embedder.tokenizer.eos_token_id
    # prefix caching: every round new texts, so only the shared prompt rows can hit the cache
    del llm
    cached = LLM(model=spec["model"], enable_prompt_embeds=True, dtype="float32", max_model_len=512, enforce_eager=True,
                 enable_prefix_caching=True, seed=0)  # fmt: skip
    timed(cached, embeds(tokens[-spec["batch"] :], 1), full)  # warm-up
    for index in range(rounds):
        chunk = tokens[index * spec["batch"] : (index + 1) * spec["batch"]]
        results.setdefault("prompts_1_prefix_cache", []).append(timed(cached, embeds(chunk, 1), full)[0])
    _, cached_reference = timed(cached, embeds(tokens[: spec["batch"]], 1), full)
    results["prefix_cache_tokens_equal"] = [list(out.outputs[0].token_ids) for out in cached_reference] == results["prompts_1_tokens"]
    return results


# --------------------------------------------------------------------------- the plugin part (project venv)
def make_prompts(base, folder: Path, count: int) -> dict[str, str]:
    import copy

    import peft

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    prompts = {}
    for index in range(count):
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=index)
        peft.get_peft_model(copy.deepcopy(base), config).save_pretrained(folder / f"task{index:02d}")
        prompts[f"task{index:02d}"] = str(folder / f"task{index:02d}" / "vanilla")
    return prompts


def plugin_part(base, tokenizer, prompts: dict[str, str], token_lists, args) -> dict:
    """Seconds per round of the plugin's cached generate on a one_hot mixture of the prompts (task per row)."""
    import torch

    from peft_softprompt_ext import serve_prompts

    model, task_id = serve_prompts(base, {name: str(Path(folder).parent) for name, folder in prompts.items()})
    names = sorted(prompts)
    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": token_lists[: args.batch]}, return_tensors="pt")
    results = {}

    def run(count, new_tokens):
        ids = task_id([names[index % count] for index in range(args.batch)])
        start = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**batch, task_ids=ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        return time.perf_counter() - start, output

    run(1, args.max_tokens)  # warm-up
    for index in range(args.rounds):
        for count in TASK_COUNTS if index % 2 == 0 else reversed(TASK_COUNTS):
            results.setdefault(f"plugin_{count}", []).append(run(count, args.max_tokens)[0])
        results.setdefault("plugin_ttft", []).append(run(1, 1)[0])
    _, output = run(1, args.max_tokens)
    results["plugin_1_tokens"] = output[:, batch["input_ids"].shape[1] :].tolist()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=count(), default=32, help="requests per generate call")
    parser.add_argument("--max-tokens", type=count(), default=16)
    parser.add_argument("--rounds", type=count(), default=3)
    parser.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-part", help=argparse.SUPPRESS)  # internal: spec JSON path, run in the serving venv
    args = parser.parse_args()
    if args.vllm_part:
        spec = json.loads(Path(args.vllm_part).read_text())
        Path(spec["output"]).write_text(json.dumps(vllm_part(spec)))
        return
    from softprompt_bench.data import load_task

    # every round (and the prefix-cache warm-up) takes new rows; a short chunk would still count batch x max_tokens tokens
    require_rows(parser, "--batch", args.batch, args.rounds, len(load_task(TASK)["validation"]), f"{TASK}'s validation split")
    if not Path(args.vllm_python).is_file():
        raise SystemExit(f"bench_serving: no serving venv at {args.vllm_python}: build it with `bash scripts/setup_vllm.sh` "
                         "(or pass --vllm-python).")  # fmt: skip
    report(args, *measure(args))


def measure(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from softprompt_bench.classification import prompt_ids
    from softprompt_bench.data import load_task, prompt_template
    from softprompt_bench.recipe_support import resolve_model_folder

    model_dir = resolve_model_folder(args.model)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = load_task(TASK)["validation"]["text"][: args.batch * (args.rounds + 1)]
    token_lists = [prompt_ids(tokenizer, text, prompt_template(TASK), 64) for text in texts]
    with tempfile.TemporaryDirectory(prefix="softprompt-bench-serving-") as scratch:
        prompts = make_prompts(base, Path(scratch), max(TASK_COUNTS))
        spec_path, output = Path(scratch) / "spec.json", Path(scratch) / "vllm.json"
        spec_path.write_text(json.dumps({"model": model_dir, "prompts": prompts, "requests": token_lists, "batch": args.batch,
                                         "max_tokens": args.max_tokens, "rounds": args.rounds, "output": str(output)}))  # fmt: skip
        start = time.perf_counter()
        subprocess.run([args.vllm_python, __file__, "--vllm-part", str(spec_path)], check=True, stdout=subprocess.DEVNULL)
        vllm_seconds = time.perf_counter() - start
        vllm = json.loads(output.read_text())
        plugin = plugin_part(base, tokenizer, prompts, token_lists, args)
    return vllm, plugin, vllm_seconds


def report(args, vllm: dict, plugin: dict, vllm_seconds: float) -> None:
    median = statistics.median
    new_tokens = args.batch * args.max_tokens

    def ratio(baseline, seconds) -> str:
        return f"  ratio {median_ratio(baseline, seconds):.3f}"

    def line(label, seconds, baseline=None, goal=""):
        text = f"{label:66s} {median(seconds):7.3f} s  {new_tokens / median(seconds):7.1f} tok/s"
        print(text + (f"{ratio(baseline, seconds)} {goal}" if baseline else ""))

    print(f"bench_serving: {args.model}, batch {args.batch}, P={P}, {args.max_tokens} new tokens each, {args.rounds} rounds "
          f"(vLLM part {vllm_seconds:.0f} s incl. two engine starts of ~{vllm['engine_start_s']:.0f} s)")  # fmt: skip
    print("throughput ratios: higher = faster than the baseline named")
    line("vLLM, plain tokens of the same length (baseline)", vllm["tokens"])
    line("vLLM, prompts, 1 task   (vs plain tokens)", vllm["prompts_1"], vllm["tokens"])
    for count in TASK_COUNTS[1:]:
        line(f"vLLM, prompts, {count} tasks in the batch (vs 1 task)", vllm[f"prompts_{count}"], vllm["prompts_1"])
    line("vLLM, prompts, 1 task, prefix caching on (vs off)", vllm["prompts_1_prefix_cache"], vllm["prompts_1"])
    for count in TASK_COUNTS:
        line(f"plugin generate in transformers, {count} task(s) (vs vLLM prompts)", plugin[f"plugin_{count}"], vllm[f"prompts_{count}"])
    print("time to first token (the batch's prefill), ratio = baseline / this:")
    for label, seconds, baseline in [("vLLM, plain tokens", vllm["tokens_ttft"], None), ("vLLM, prompts", vllm["prompts_1_ttft"], vllm["tokens_ttft"]),
                                     ("plugin in transformers (vs vLLM prompts)", plugin["plugin_ttft"], vllm["prompts_1_ttft"])]:  # fmt: skip
        print(f"  {label:64s} {median(seconds):7.3f} s" + (ratio(baseline, seconds) if baseline else ""))
    # vLLM ignores EOS and goes on; transformers' min_new_tokens forbids it: compare up to vLLM's first EOS
    eos = vllm["eos_token_id"]
    cut = [tokens[: tokens.index(eos)] if eos in tokens else tokens for tokens in vllm["prompts_1_tokens"]]
    same = sum(a == b[: len(a)] for a, b in zip(cut, plugin["plugin_1_tokens"]))
    print(f"greedy tokens, vLLM prompts vs plugin generate: {same}/{len(plugin['plugin_1_tokens'])} requests identical; "
          f"with prefix caching: {'identical' if vllm['prefix_cache_tokens_equal'] else 'DIFFERENT'} to without")  # fmt: skip


if __name__ == "__main__":
    main()
