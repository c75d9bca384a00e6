"""Base-model fingerprints: what hashing every embedding row costs against the sampled rows alone.

Run (2-core CPU, embedded SmolLM2, alone on the machine, a few seconds):
    OMP_NUM_THREADS=1 python benchmarks/bench_fingerprint.py --model smollm2-135m

Prints medians over rounds, from one run on the same model: `base_model_fingerprint` (every row's digests, the
sampled rows' digests and the 32 sampled values: what each load and `get_peft_model` computes) and the two
sampled-row digests alone (what a fingerprint hashed before 2026-12-07), and their ratio.
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
from peft_softprompt_ext import VocabSampledPromptTuningConfig  # noqa: E402
from peft_softprompt_ext.fingerprint import base_model_fingerprint, embedding_digest  # noqa: E402
from softprompt_bench.benchmark_args import count  # noqa: E402
from softprompt_bench.embedded_models import load_causal_lm  # noqa: E402


def _median_seconds(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="an embedded alias, a local folder or 'tiny-gpt2'")
    parser.add_argument("--rounds", type=count(), default=7)
    args = parser.parse_args()
    model = load_causal_lm(args.model)[0]
    weight = model.get_input_embeddings().weight
    full = _median_seconds(lambda: base_model_fingerprint(model), args.rounds)
    sampled = _median_seconds(lambda: (embedding_digest(weight), embedding_digest(weight, torch.float16)), args.rounds)
    print(f"{args.model}: embeddings {tuple(weight.shape)} {str(weight.dtype).removeprefix('torch.')}, {args.rounds} rounds")
    print(f"  base_model_fingerprint (every row):  {full:.3f} s median")
    print(f"  sampled rows' two digests alone:     {sampled:.3f} s median")
    print(f"  ratio:                               {full / sampled:.1f}x")
    with tempfile.TemporaryDirectory() as folder:
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, vocab_sampling="uniform")
        peft.get_peft_model(model, config).save_pretrained(folder)
        base = peft.PeftModel.from_pretrained(model, folder).unload()  # (back to the bare model, once warmed up)
        load = _median_seconds(lambda: peft.PeftModel.from_pretrained(base, folder).unload(), args.rounds)
    print(f"  PeftModel.from_pretrained + unload:  {load:.3f} s median ({load / full:.2f}x one fingerprint)")


if __name__ == "__main__":
    main()
