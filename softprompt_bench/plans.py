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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

from .recipe_config import FIELDS, RecipeConfig, check_folder, check_keys, config_from_values, read_yaml
from .run_inputs import input_changes, run_inputs

COMPARE_KEYS = {"base", "methods", "seeds", "output_dir", "report_dir", "baseline"}
DEFAULT_SPLIT = FIELDS["eval_split"].default  # what a run scores when nothing names its split


def load_plan(path: str, seeds_override: str | None = None, default_seeds=(0,)) -> tuple[dict, list[int]]:
    """A compare plan (YAML: base, methods, seeds, output_dir, report_dir) with every key checked."""
    plan = read_yaml(path)
    if not isinstance(plan, dict):
        raise ValueError(f"{path} must hold a mapping of plan keys, got {type(plan).__name__}.")
    unknown = set(plan) - COMPARE_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {path}; expected {sorted(COMPARE_KEYS)}.")
    if not isinstance(plan.get("output_dir"), str) or not plan["output_dir"]:
        raise ValueError(f"{path} needs output_dir: the folder its runs go to, got {plan.get('output_dir')!r}.")
    if not isinstance(plan.get("base", {}), dict):
        raise ValueError(f"base in {path} must be a mapping of config keys (shared by every method), got {plan['base']!r:.200}.")
    if "report_dir" in plan and not (isinstance(plan["report_dir"], str) and plan["report_dir"]):
        raise ValueError(f"report_dir in {path} must be a folder name (where the report goes), got {plan['report_dir']!r:.200}.")
    for key in ("output_dir", "report_dir"):
        if key in plan:
            check_folder(plan[key], f"{key} in {path}")
    check_keys(plan.get("base", {}), f"{path} base")
    for key in ("seed", "output_dir"):  # (found 2026-12-07 by a probe: a base's were overwritten without a word)
        if key in plan.get("base", {}):
            raise ValueError(f"{path} base sets {key}, which the plan sets (seeds: and output_dir:).")
    methods = plan.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(method, dict) for method in methods):
        raise ValueError(f"methods in {path} must be a non-empty list of mappings (each a name and its keys), got {methods!r:.200}.")
    for method in methods:
        if "name" not in method:
            raise ValueError(f"method {method!r:.200} in {path} has no name.")
        check_keys({k for k in method if k != "name"}, f"{path} method {method.get('name')!r}")
        for key in ("seed", "output_dir"):
            if key in method:
                raise ValueError(f"method {method['name']!r} sets {key}, which the plan sets (seeds: and output_dir:).")
    names = [method.get("name") for method in methods]
    _check_run_folders(names, path)
    if "baseline" in plan and plan["baseline"] not in names:
        raise ValueError(f"baseline {plan['baseline']!r} in {path} is not one of the methods {names}.")
    return plan, resolve_seeds(seeds_override, plan.get("seeds", default_seeds))


def resolve_seeds(seeds_override: str | None, plan_seeds) -> list[int]:
    """`--seeds 0,1,2` if given, else the plan's seeds; distinct (one run counted twice would shrink the spread and
    the interval)."""
    if seeds_override:
        try:
            seeds = [int(seed) for seed in seeds_override.split(",")]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {seeds_override!r}.") from None
    elif isinstance(plan_seeds, (list, tuple)) and plan_seeds and all(isinstance(seed, int) and not isinstance(seed, bool) for seed in plan_seeds):
        seeds = list(plan_seeds)
    else:
        raise ValueError(f"seeds must be a list of integers, got {plan_seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}.")
    return seeds


def _check_run_folders(names: list, path: str) -> None:
    """Each method's runs get their own folder: distinct names, and no two names that `slug` makes one folder."""
    folders: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"method names must be non-empty strings, got {name!r} in {path}.")
        if slug(name) in ("", ".", ".."):
            raise ValueError(f"method name {name!r} in {path} names no folder of its own (its runs would go to the plan's "
                             "output_dir itself or above it): use letters or digits.")  # fmt: skip
        if name in folders.values():
            raise ValueError(f"method names must be distinct: {name!r} twice in {path}.")
        other = folders.get(slug(str(name)))
        if other is not None:
            raise ValueError(f"methods {other!r} and {name!r} in {path} would write the same folder {slug(str(name))!r}: "
                             "rename one (letters, digits, '.', '_' and '-' are kept; runs of other characters become '_').")  # fmt: skip
        folders[slug(str(name))] = name


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def run_config(plan, method: dict, seed: int) -> RecipeConfig:
    """The config of one run of a plan: base keys, the method's keys, the seed, its own output folder."""
    values = {**plan.get("base", {}), **{k: v for k, v in method.items() if k != "name"}, "seed": seed}
    values["output_dir"] = str(Path(plan["output_dir"]) / slug(method["name"]) / f"seed{seed}")
    return config_from_values(values)


class PlanError(ValueError):
    """Runs of a plan that cannot start from each other's prompts (named before any run starts)."""


def run_sources(configs: list[RecipeConfig]) -> list[int | None]:
    """For each run, the run of the same list whose output its `init_prompt` lies in (None: it starts from no
    run of the list). Refused: a run starting from its own output, runs starting from each other in a cycle, and
    an `init_prompt` that is no run of the list, no folder and no Hub id (`name` or `namespace/name`)."""
    folders = [Path(config.output_dir).resolve() for config in configs]
    sources: list[int | None] = []
    for index, config in enumerate(configs):
        init = config.init_prompt
        if not init:
            sources.append(None)
            continue
        path = Path(init).resolve()
        found = next((other for other, folder in enumerate(folders) if path == folder or folder in path.parents), None)
        if found == index:
            raise PlanError(f"init_prompt {init!r} lies inside the run's own output_dir {config.output_dir!r}.")
        if found is None and not Path(init).exists() and (init.count("/") > 1 or init.startswith((".", "/"))):
            raise PlanError(f"init_prompt {init!r} of {config.output_dir!r} is no folder, no run of this plan and no Hub id.")
        sources.append(found)
    for index in range(len(configs)):
        seen, current = {index}, sources[index]
        while current is not None:
            if current in seen:
                raise PlanError(f"init_prompt of {configs[index].output_dir!r} starts a cycle of runs that start from each other.")
            seen.add(current)
            current = sources[current]
    return sources


def run_all(runs: list[tuple[RecipeConfig, bool]], train_script, launcher: str | None = None, jobs: int = 1) -> list[dict | None]:
    """`run_or_collect` for every (config, collect_only), `jobs` at a time; records in the given order.

    A run starting from another run's prompt (`run_sources`) starts once that run has finished; a missing source
    that would not be trained is refused before anything runs. Among the runs ready to start, trainings go first
    and zero-shot runs (scoring only, the shortest) fill the last slots, so that two workers finish together.
    A failed run stops the list; the runs already started finish."""
    configs = [config for config, _ in runs]
    sources = run_sources(configs)
    for index, (config, collect_only) in enumerate(runs):
        source = sources[index]
        if source is not None and runs[source][1] and existing_result(configs[source]) is None and not collect_only:
            raise PlanError(f"{config.output_dir!r} starts from {config.init_prompt!r}, the output of run {configs[source].output_dir!r}, "
                             "which has no result and is not to be trained: train it too (compare.py: --method with its name).")  # fmt: skip
    pending = sorted(range(len(runs)), key=lambda index: configs[index].method == "zero_shot")
    records: list[dict | None] = [None] * len(runs)
    finished: set[int] = set()
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each worker waits on its own train.py process
        running = {}
        try:
            while pending or running:
                ready = [index for index in pending if sources[index] is None or sources[index] in finished]
                for index in ready[: jobs - len(running)]:
                    pending.remove(index)
                    running[pool.submit(run_or_collect, configs[index], train_script, launcher, collect_only=runs[index][1])] = index
                if not running:  # cannot happen: run_sources refuses cycles and sources outside the list
                    raise RuntimeError(f"no run can start: {[configs[index].output_dir for index in pending]}")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    records[index] = future.result()
                    finished.add(index)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return records


def existing_result(config: RecipeConfig) -> dict | None:
    """The results.json of a finished run with this very config (same training digest) that started from the same
    prompt (same `init_prompt_digest`, for deep_init='prompt'), read the same model, data and prompt files
    (`run_inputs`) and still has the adapter it saved, else None."""
    path = Path(config.output_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        recorded_config = RecipeConfig(**record["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # truncated, partial, or of an older recipe
        print(f"{path} is unreadable ({type(error).__name__}: {str(error)[:200]}): taken as no finished run.", file=sys.stderr)
        return None
    if record.get("adapter") and not (path.parent / "adapter" / "adapter_model.safetensors").is_file():
        return None  # the adapter was deleted since: train again
    same = recorded_config.training_digest() == config.training_digest()
    if not same or record.get("init_prompt_digest") != config.init_prompt_digest():
        return None
    if config.eval_every and recorded_config.eval_every != config.eval_every:
        return None  # its evaluation history (project.py reads it) is not the one asked for
    recorded = record.get("inputs_digest")  # None: a run made before the digests, taken as it was
    return record if recorded is None or not input_changes(recorded, run_inputs(config), config) else None


def train_in_subprocess(config: RecipeConfig, train_script: str | os.PathLike, launcher: str | None = None) -> dict:
    """Run `train_script` (recipes/train.py) on `config` as its own process; returns its results.json. A checkpoint of
    this run in its folder (a run killed part-way) is continued (`--resume-if-any`).

    `launcher`: an accelerate config file (e.g. recipes/accelerate/cpu_2proc.yaml) to launch it with.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
    # a run killed part-way continues from its checkpoint (found 2026-12-07: it started again from step 0)
    command = [sys.executable, os.fspath(train_script), "--config", handle.name, "--resume-if-any"]
    if launcher:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.fspath(launcher), *command[1:]]
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as error:  # (found 2026-12-07: a bare traceback naming a deleted temp config)
        raise SystemExit(f"The run of method {config.method!r}, seed {config.seed} ({config.output_dir}) failed with exit "
                         f"status {error.returncode}: its error is above. Fix it, then run the plan again (finished runs "
                         "are reused).") from None  # fmt: skip
    finally:
        os.remove(handle.name)
    return json.loads((Path(config.output_dir) / "results.json").read_text())


def run_or_collect(config: RecipeConfig, train_script, launcher: str | None = None, collect_only: bool = False) -> dict | None:
    """A finished run's record, else (unless `collect_only`) a new run's."""
    record = existing_result(config)
    if record is None and not collect_only:
        record = train_in_subprocess(config, train_script, launcher)
    return record


# Two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond, `t95` expands around the normal's.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}  # fmt: skip


def t95(degrees: int) -> float:
    """The two-sided 95% Student t quantile (Cornish-Fisher expansion past the table: within 1e-4 there)."""
    if degrees in _T95:
        return _T95[degrees]
    z, v = 1.959964, degrees
    return z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2) + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)


# The settings that choose which rows a run scores: a paired difference compares two runs of a seed only on the same rows.
SCORED_ROWS_KEYS = ("task", "eval_split", "split_seed", "eval_size", "text_column", "label_column")


def scored_rows(record: dict) -> str | None:
    """What identifies the rows a run scored (None for a record without its config): `eval_size` as the rows it scored
    where its confusion matrix counts them (an eval_size past the split's end scores the whole split: found 2026-12-07,
    runs of eval_size 2000 and 5000 on a 1,056-row split were reported as scored on other rows, their difference left out)."""
    config = record.get("config")
    if not isinstance(config, dict):
        return None
    rows = {key: config.get(key, DEFAULT_SPLIT if key == "eval_split" else None) for key in SCORED_ROWS_KEYS}
    if rows["split_seed"] == 0:  # split seed 0 draws the fixed split (found 2026-12-07 by a probe: taken for other rows)
        rows["split_seed"] = None
    scored = rows_scored(record)
    if scored is not None:
        rows["eval_size"] = scored
    return json.dumps(rows, sort_keys=True)


def rows_scored(record: dict) -> int | None:
    """How many rows a run scored: its confusion matrix's total (None for a record without one)."""
    confusion = (record.get("metrics") or {}).get("confusion")
    if not (isinstance(confusion, list) and all(isinstance(line, list) for line in confusion)):
        return None
    return int(sum(sum(line) for line in confusion))


def missing_runs(missing: dict[str, list[int]]) -> str:
    """A report's line for the runs without a result (method -> seeds)."""
    return "No result for: " + ", ".join(f"{name} (seeds {', '.join(map(str, seeds))})" for name, seeds in missing.items())


def paired_difference(row: dict, baseline: dict) -> dict | None:
    """`row`'s accuracy minus `baseline`'s on the seeds both ran (paired by seed) on the same rows: mean and 95% t
    interval; `other_rows` counts the seeds both ran on other rows (another split, task or eval size), left out."""
    rows_of = lambda summary: summary.get("scored_rows") or [None] * len(summary["seeds"])  # noqa: E731
    by_seed = {seed: (accuracy, rows) for seed, accuracy, rows in zip(baseline["seeds"], baseline["accuracies"], rows_of(baseline))}
    diffs, other_rows = [], 0
    for seed, accuracy, rows in zip(row["seeds"], row["accuracies"], rows_of(row)):
        if seed in by_seed:
            if None not in (rows, by_seed[seed][1]) and rows != by_seed[seed][1]:
                other_rows += 1
            else:
                diffs.append(accuracy - by_seed[seed][0])
    if not diffs:
        return {"baseline": baseline["method"], "seeds": 0, "mean": None, "low": None, "high": None, "other_rows": other_rows} \
            if other_rows else None  # fmt: skip
    mean = statistics.mean(diffs)
    if len(diffs) < 2:  # one pair: no spread, no interval
        return {"baseline": baseline["method"], "seeds": 1, "mean": mean, "low": None, "high": None, "other_rows": other_rows}
    half = t95(len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"baseline": baseline["method"], "seeds": len(diffs), "mean": mean, "low": mean - half, "high": mean + half,
            "other_rows": other_rows}  # fmt: skip


def plan_split(plan: dict) -> str:
    """The split a plan's base scores (its methods may set their own)."""
    return plan.get("base", {}).get("eval_split", DEFAULT_SPLIT)


def split_label(rows: list[dict], default: str = DEFAULT_SPLIT) -> str:
    """The split(s) a report's rows scored, for a plot's axis and a table's header ("test/validation" where methods
    differ); `default` for rows summarised before the split was recorded (the plan's, `plan_split`)."""
    return "/".join(sorted({split for row in rows for split in row.get("eval_split") or [default]}))


def summarise(name: str, records: list[dict]) -> dict:
    """Mean and spread over seeds of one method's runs (accuracy, macro-F1, step time, memory)."""
    accuracies = [r["metrics"]["accuracy"] for r in records]
    f1s = [r["metrics"]["macro_f1"] for r in records]
    steps = [r["time_per_step_s"] for r in records if r["time_per_step_s"]]
    return {
        "method": name,
        "seeds": [r["seed"] for r in records],
        "steps": sorted({r["steps"] for r in records if r.get("steps") is not None}),
        "scored": sorted({sum(map(sum, r["metrics"]["confusion"])) for r in records if r["metrics"].get("confusion")}),
        "scored_rows": [scored_rows(r) for r in records],
        "model": sorted({r["model"] for r in records if r.get("model") is not None}),
        "batch_size": sorted({r["batch_size"] for r in records if r.get("batch_size") is not None}),
        "eval_split": sorted({r["config"].get("eval_split", DEFAULT_SPLIT) for r in records if isinstance(r.get("config"), dict)}),
        "trainable_params": records[0]["trainable_params"],
        "accuracy_mean": statistics.mean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "macro_f1_mean": statistics.mean(f1s),
        "time_per_step_s": statistics.median(steps) if steps else None,
        "peak_memory_mb": max(r["peak_memory_mb"] for r in records),
        "run_seconds": sum(r.get("wall_time_s") or 0 for r in records),
        "resumed_seeds": [r["seed"] for r in records if r.get("resumed_from_step")],  # their memory and wall time: the resume's
        "accuracies": accuracies,
        "loss_curves": [r["loss_curve"] for r in records],
    }
