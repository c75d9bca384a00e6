"""The benchmark scripts refuse bad arguments before any work, naming them.

Found by probing: `--rounds 0` (or `--init-repeats 0`) ended in `statistics.StatisticsError: no median for
empty data` after the whole run; `bench_mixture.py --batch-size 6` timed 4 of 6 rows in its per-task passes
(a ratio of 1.00 where batch 4 gave 1.98) and `--batch-size 2` crashed inside GPT-2 on an empty batch;
`--model nosuch` went to the Hub; `bench_serving.py` without the serving venv raised a bare FileNotFoundError
after its setup. Each script's `main` runs in-process here with `sys.argv` set (argparse exits with status 2).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _benchmark(script: str):
    """benchmarks/<script>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{script}", REPO / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_main(script: str, monkeypatch, *args: str):
    module = _benchmark(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    module.main()


@pytest.mark.parametrize("script,args,message", [
    ("bench_mixture", ["--rounds", "0"], "argument --rounds: 0 is below 1"),
    ("bench_mixture", ["--batch-size", "6"], "argument --batch-size: 6 is not a multiple of 4"),
    ("bench_mixture", ["--batch-size", "2"], "argument --batch-size: 2 is below 4"),
    ("bench_prompt_methods", ["--init-repeats", "0"], "argument --init-repeats: 0 is below 1"),
    ("bench_prompt_methods", ["--rounds", "-1"], "argument --rounds: -1 is below 1"),
    ("bench_deep_prompt", ["--rounds", "0", "--only-step"], "argument --rounds: 0 is below 1"),
    ("bench_deep_prompt", ["--seq-len", "x"], "argument --seq-len: 'x' is not an integer"),
    ("bench_shared_prefix", ["--rounds", "0"], "argument --rounds: 0 is below 1"),
    ("bench_shared_prefix", ["--lengths", "x"], "argument --lengths: 'x' is not an integer"),
    ("bench_shared_prefix", ["--lengths", "20,-3"], "argument --lengths: -3 is below 1"),
    ("bench_serving", ["--rounds", "0"], "argument --rounds: 0 is below 1"),
    ("bench_shared_prefix", ["--lengths", "5,5"], "argument --lengths: 5 is repeated"),
    ("bench_deep_prompt", ["--trainable-layers", "0"], "argument --trainable-layers: 0 is below 1"),
    ("bench_fingerprint", ["--rounds", "0"], "argument --rounds: 0 is below 1"),
])  # fmt: skip
def test_bad_counts_are_refused_before_any_work(script, args, message, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_main(script, monkeypatch, *args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_model_name_is_named_not_sent_to_the_hub(monkeypatch):
    with pytest.raises(ValueError, match=r"model='nosuch' is neither a known alias .* nor a local folder"):
        _run_main("bench_mixture", monkeypatch, "--model", "nosuch", "--rounds", "1")


def test_bench_serving_without_the_serving_venv_says_how_to_build_it(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match=r"no serving venv at .*nope/bin/python: build it with `bash scripts/setup_vllm.sh`"):
        _run_main("bench_serving", monkeypatch, "--vllm-python", str(tmp_path / "nope" / "bin" / "python"))


# Each timed round (and the warm-up round) takes its own rows: more than the split holds used to end in an
# IndexError after the model loaded (bench_shared_prefix), or in short and empty batches whose tokens/s still
# counted the full batch (bench_serving). `--model nosuch` shows the check comes before any model is loaded.
@pytest.mark.parametrize("script,args,message", [
    ("bench_shared_prefix", ["--rounds", "1", "--eval-batch-size", "700", "--batch-size", "1"],
     "--eval-batch-size 700 x (--rounds 1 + 1 warm-up) needs 1400 rows; movie_sentiment's validation split has 1056: "
     "use --eval-batch-size <= 528 or fewer --rounds"),
    ("bench_shared_prefix", ["--rounds", "1", "--batch-size", "5000"],
     "--batch-size 5000 x (--rounds 1 + 1 warm-up) needs 10000 rows; movie_sentiment's train split has 8454"),
    ("bench_serving", ["--batch", "300", "--rounds", "3"],
     "--batch 300 x (--rounds 3 + 1 warm-up) needs 1200 rows; movie_sentiment's validation split has 1056: "
     "use --batch <= 264 or fewer --rounds"),
])  # fmt: skip
def test_batches_larger_than_the_split_are_refused_before_loading(script, args, message, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_main(script, monkeypatch, "--model", "nosuch", *args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_deep_prompt_prints_the_rounds_its_attention_part_runs(monkeypatch, capsys):
    _run_main("bench_deep_prompt", monkeypatch, "--only-attention", "--rounds", "1", "--batch-size", "1", "--seq-len", "8",
              "--num-virtual-tokens", "2")  # fmt: skip
    out = capsys.readouterr().out
    assert "rounds=20 " in out and "rounds=1 " not in out, out



def test_bench_serving_reports_the_median_of_per_round_ratios(capsys):
    """Found 2026-12-06: its ratios were ratios of two medians, unlike the other benchmarks' per-round pairs."""
    import argparse

    bench = _benchmark("bench_serving")
    ones = [1.0] * 3
    # per round 0.5, 4.0, 0.5 -> median 0.5; the ratio of the medians would be 4.0 / 2.0 = 2.0
    vllm = {"tokens": [1.0, 4.0, 10.0], "prompts_1": [2.0, 1.0, 20.0], "prompts_4": ones, "prompts_16": ones,
            "prompts_1_prefix_cache": ones, "tokens_ttft": ones, "prompts_1_ttft": ones, "engine_start_s": 1.0,
            "eos_token_id": 0, "prompts_1_tokens": [[1]], "prefix_cache_tokens_equal": True}  # fmt: skip
    plugin = {"plugin_1": ones, "plugin_4": ones, "plugin_16": ones, "plugin_ttft": ones, "plugin_1_tokens": [[1]]}
    bench.report(argparse.Namespace(model="m", batch=2, max_tokens=1, rounds=3), vllm, plugin, 1.0)
    line = next(text for text in capsys.readouterr().out.splitlines() if text.startswith("vLLM, prompts, 1 task "))
    assert "ratio 0.500" in line, line


def test_timing_ratios_are_medians_of_per_round_pairs():
    """One place for the benchmarks' ratio (five scripts had their own copy); unequal rounds are refused."""
    from softprompt_bench.timing_ratios import median_ratio, ratio_quartiles

    assert median_ratio([1.0, 4.0, 10.0], [2.0, 1.0, 20.0]) == 0.5  # the ratio of the medians would be 2.0
    assert ratio_quartiles([2.0], [1.0]) == (2.0, 2.0, 2.0)
    q1, median, q3 = ratio_quartiles([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5)
    assert (q1, median, q3) == (1.5, 3.0, 4.5)
    for numerators, denominators in (([1.0, 2.0], [1.0]), ([], [])):
        with pytest.raises(ValueError, match=f"got {len(numerators)} and {len(denominators)}"):
            median_ratio(numerators, denominators)


@pytest.mark.parametrize("script", ["bench_deep_prompt", "bench_mixture", "bench_prompt_methods", "bench_serving", "bench_shared_prefix"])
def test_every_benchmark_takes_its_ratios_from_timing_ratios(script):
    source = (REPO / "benchmarks" / f"{script}.py").read_text()
    assert "from softprompt_bench.timing_ratios import" in source
    own_ratios = [line for line in source.splitlines() if "zip(" in line and " / " in line]  # a per-round ratio of its own
    assert not own_ratios, own_ratios
