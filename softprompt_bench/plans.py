"""Plans of several runs (compare.py, project.py): read a plan, name each run, reuse finished runs,
launch the others as `recipes/train.py` processes, and summarise runs over seeds.

Recipes never import each other: a plan runs `train.py` as its own process (`train_in_subprocess`),
exactly as a user would, and reads the `results.json` it writes.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .recipe_config import RecipeConfig, check_keys

COMPARE_KEYS = {"base", "methods", "seeds", "output_dir", "report_dir", "baseline"}


def load_plan(path: str, seeds_override: str | None = None, default_seeds=(0,)) -> tuple[dict, list[int]]:
    """A compare plan (YAML: base, methods, seeds, output_dir, report_dir) with every key checked."""
    with open(path, encoding="utf-8") as handle:
        plan = yaml.safe_load(handle)
    if not isinstance(plan, dict):
        raise ValueError(f"{path} must hold a mapping of plan keys, got {type(plan).__name__}.")
    unknown = set(plan) - COMPARE_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {path}; expected {sorted(COMPARE_KEYS)}.")
    check_keys(plan.get("base", {}), f"{path} base")
    for method in plan["methods"]:
        check_keys({k for k in method if k != "name"}, f"{path} method {method.get('name')!r}")
    names = [method.get("name") for method in plan["methods"]]
    if "baseline" in plan and plan["baseline"] not in names:
        raise ValueError(f"baseline {plan['baseline']!r} in {path} is not one of the methods {names}.")
    seeds = [int(s) for s in seeds_override.split(",")] if seeds_override else list(plan.get("seeds", default_seeds))
    return plan, seeds


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def run_config(plan, method: dict, seed: int) -> RecipeConfig:
    """The config of one run of a plan: base keys, the method's keys, the seed, its own output folder."""
    values = {**plan.get("base", {}), **{k: v for k, v in method.items() if k != "name"}, "seed": seed}
    values["output_dir"] = str(Path(plan["output_dir"]) / slug(method["name"]) / f"seed{seed}")
    return RecipeConfig(**values)


def start_waves(configs: list[RecipeConfig]) -> list[int]:
    """Each run's wave: 0, or one more than the wave of the run of the same plan whose output its
    `init_prompt` starts from (that run must finish first). A run starting from its own output is refused."""
    folders = [Path(config.output_dir).resolve() for config in configs]

    def source(index: int) -> int | None:
        init = configs[index].init_prompt if configs[index].deep_init == "prompt" else None
        if not init:
            return None
        path = Path(init).resolve()
        found = next((other for other, folder in enumerate(folders) if path == folder or folder in path.parents), None)
        if found == index:
            raise ValueError(f"init_prompt {init!r} lies inside the run's own output_dir {configs[index].output_dir!r}.")
        return found

    waves: dict[int, int] = {}

    def wave(index: int, seen: tuple = ()) -> int:
        if index in seen:
            raise ValueError(f"init_prompt of {configs[index].output_dir!r} starts a cycle of runs that start from each other.")
        if index not in waves:
            found = source(index)
            waves[index] = 0 if found is None else 1 + wave(found, (*seen, index))
        return waves[index]

    return [wave(index) for index in range(len(configs))]


def existing_result(config: RecipeConfig) -> dict | None:
    """The results.json of a finished run with this very config (same training digest), else None."""
    path = Path(config.output_dir) / "results.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if RecipeConfig(**record["config"]).training_digest() == config.training_digest() else None


def train_in_subprocess(config: RecipeConfig, train_script: str | os.PathLike, launcher: str | None = None) -> dict:
    """Run `train_script` (recipes/train.py) on `config` as its own process; returns its results.json.

    `launcher`: an accelerate config file (e.g. recipes/accelerate/cpu_2proc.yaml) to launch it with.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
    command = [sys.executable, os.fspath(train_script), "--config", handle.name]
    if launcher:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.fspath(launcher), *command[1:]]
    try:
        subprocess.run(command, check=True)
    finally:
        os.remove(handle.name)
    return json.loads((Path(config.output_dir) / "results.json").read_text())


def run_or_collect(config: RecipeConfig, train_script, launcher: str | None = None, collect_only: bool = False) -> dict | None:
    """A finished run's record, else (unless `collect_only`) a new run's."""
    record = existing_result(config)
    if record is None and not collect_only:
        record = train_in_subprocess(config, train_script, launcher)
    return record


# Two-sided 95% Student t quantiles by degrees of freedom (1..10); beyond 10 seeds, 2.0 is within 2%.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def paired_difference(row: dict, baseline: dict) -> dict | None:
    """`row`'s accuracy minus `baseline`'s on the seeds both ran (paired by seed): mean and 95% t interval."""
    by_seed = dict(zip(baseline["seeds"], baseline["accuracies"]))
    diffs = [accuracy - by_seed[seed] for seed, accuracy in zip(row["seeds"], row["accuracies"]) if seed in by_seed]
    if not diffs:
        return None
    mean = statistics.mean(diffs)
    half = _T95.get(len(diffs) - 1, 2.0) * statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {"baseline": baseline["method"], "seeds": len(diffs), "mean": mean, "low": mean - half, "high": mean + half}


def summarise(name: str, records: list[dict]) -> dict:
    """Mean and spread over seeds of one method's runs (accuracy, macro-F1, step time, memory)."""
    accuracies = [r["metrics"]["accuracy"] for r in records]
    f1s = [r["metrics"]["macro_f1"] for r in records]
    steps = [r["time_per_step_s"] for r in records if r["time_per_step_s"]]
    return {
        "method": name,
        "seeds": [r["seed"] for r in records],
        "trainable_params": records[0]["trainable_params"],
        "accuracy_mean": statistics.mean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "macro_f1_mean": statistics.mean(f1s),
        "time_per_step_s": statistics.median(steps) if steps else None,
        "peak_memory_mb": max(r["peak_memory_mb"] for r in records),
        "run_seconds": sum(r.get("wall_time_s") or 0 for r in records),
        "accuracies": accuracies,
        "loss_curves": [r["loss_curve"] for r in records],
    }
