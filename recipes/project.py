"""Move a trained prompt from model A to model B and measure what it keeps.

    python recipes/project.py --launcher recipes/accelerate/cpu_1proc.yaml \
        --config recipes/configs/project_smollm2_to_gemma.yaml [--seeds 0,1,2]

Story: fit (or load) a projection A -> B on shared vocabulary tokens; then, on model B and the
task, evaluate with no prompt, a random prompt, the projected prompt (zero-shot), a prompt trained
on B from a cold start, and the projected prompt trained further (warm start), over seeds.
Writes `projection/` and `projection_results.md` / `.json` into `output_dir`: accuracies, the
share of the trained prompt's gain the projected prompt recovers, and the steps the warm start
needs to reach the cold start's final accuracy.

YAML keys: `source_model`, `target_model`, `source_adapter`, `method` (lstsq/procrustes),
`row_norm` (none/target_tokens: rescale projected rows to B's token norm), `output_dir`, `seeds`,
and `target:` (RecipeConfig keys for the runs on model B: task, steps, eval_every, ...).
Each (method, row_norm) gets its own projection folder, so changing them re-runs the projected
runs while the no-prompt, random and cold-start runs are collected, not repeated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

from peft_softprompt_ext import PromptProjection, base_model_fingerprint, fingerprint_differences, fit_projection  # noqa: E402
from peft_softprompt_ext import ProjectionFit, RowNorm  # noqa: E402
from softprompt_bench import reports  # noqa: E402
from softprompt_bench.plans import resolve_seeds, rows_scored, run_all, run_config  # noqa: E402
from softprompt_bench.recipe_config import check_folder, check_keys, read_yaml  # noqa: E402
from softprompt_bench.recipe_support import resolve_model_folder  # noqa: E402

TRAIN = Path(__file__).with_name("train.py")  # each run is its own train.py process (recipes never import each other)

PLAN_KEYS = {"source_model", "target_model", "source_adapter", "method", "row_norm", "output_dir", "seeds", "target"}
REQUIRED_KEYS = {"source_model", "target_model", "source_adapter", "output_dir", "target"}
# RecipeConfig keys every run of the plan gets from project.py (runs_plan, run_config), not from `target:`
SET_BY_THE_PLAN = {"model", "checkpoint_every", "seed", "output_dir", "method", "source_adapter", "projection", "vocab_sampling"}


def check_plan(plan: dict, path: str) -> None:
    """Unknown or missing keys and bad option values fail here, before any model is loaded."""
    if not isinstance(plan, dict):
        raise ValueError(f"{path} must hold a mapping of plan keys, got {type(plan).__name__}.")
    unknown = set(plan) - PLAN_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {path}; expected {sorted(PLAN_KEYS)}.")
    missing = sorted(REQUIRED_KEYS - set(plan))
    if missing:
        raise ValueError(f"{path} lacks {missing}: a plan names {sorted(REQUIRED_KEYS)} (and optionally {sorted(PLAN_KEYS - REQUIRED_KEYS)}).")
    if not isinstance(plan["target"], dict):
        raise ValueError(f"target in {path} must be a mapping of recipe settings (task, steps, ...), got {plan['target']!r}.")
    check_keys(plan["target"], f"target of {path}")
    # (found 2026-12-07 by a probe: output_dir "" wrote into the working directory, other types failed with bare errors)
    if not (isinstance(plan["output_dir"], str) and plan["output_dir"]):
        raise ValueError(f"output_dir in {path} must be a folder name, got {plan['output_dir']!r}.")
    for key, what in (("source_model", "a model alias or folder"), ("target_model", "a model alias or folder"),
                      ("source_adapter", "an adapter folder or Hub id")):  # fmt: skip
        if not (isinstance(plan[key], str) and plan[key]):
            raise ValueError(f"{key} in {path} must be {what}, got {plan[key]!r}.")
    check_folder(plan["output_dir"], f"output_dir in {path}")
    own = sorted(set(plan["target"]) & SET_BY_THE_PLAN)
    if own:
        raise ValueError(f"target of {path} sets {own}, which project.py sets itself (model: target_model; the method and its "
                         "prompt per row, the cold start from class_labels; seed: seeds; output_dir: the plan's; no checkpoints): leave them out.")  # fmt: skip
    for key, allowed, default in (("method", [m.value for m in ProjectionFit], "lstsq"), ("row_norm", [r.value for r in RowNorm], "none")):
        if plan.get(key, default) not in allowed:
            raise ValueError(f"{key}={plan[key]!r} in {path} is not one of {list(allowed)}.")


def fitted_projection(plan, output_dir: Path) -> tuple[str, dict]:
    """Fit the projection once (reused when it exists); returns its folder and fit info."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    method, row_norm = plan.get("method", "lstsq"), plan.get("row_norm", "none")
    folder = output_dir / f"projection_{method}_{row_norm}"
    models = [plan["source_model"], plan["target_model"]]
    source_dir, target_dir = resolve_model_folder(plan["source_model"]), resolve_model_folder(plan["target_model"])
    source = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32)
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32)
    if (folder / "projection_config.json").is_file():
        info = PromptProjection.from_pretrained(folder).info
        fitted_for = info.get("plan_models", models)  # projections fitted before this record: taken as they were
        if fitted_for != models:
            raise ValueError(f"{folder} was fitted for {fitted_for[0]!r} -> {fitted_for[1]!r}, but this plan maps {models[0]!r} -> "
                             f"{models[1]!r}: use another output_dir, or delete that folder to fit again.")  # fmt: skip
        changed = [name for name, model, key in ((models[0], source, "source_fingerprint"), (models[1], target, "target_fingerprint"))
                   if fingerprint_differences(info.get(key) or {}, base_model_fingerprint(model))]  # fmt: skip
        if not changed:
            return str(folder), info
        # (found 2026-12-07: reused after a model's weights changed, its projected runs then failed in their processes)
        print(f"{folder} was fitted for other weights of {changed}: fitting it again")
    began = time.perf_counter()
    projection = fit_projection(source, AutoTokenizer.from_pretrained(source_dir), target, AutoTokenizer.from_pretrained(target_dir),
                                method=method, row_norm=row_norm)  # fmt: skip
    print(f"fitted {method} projection (row_norm={row_norm}) in {time.perf_counter() - began:.1f} s: {projection.info['quality']}")
    projection.info["plan_models"] = models  # what a later run of this plan checks before reusing it
    projection.save_pretrained(folder)
    return str(folder), projection.info


def runs_plan(plan, projection_dir: str) -> dict:
    # the cold start is a class-label init (as when these results were first measured)
    target = dict({"vocab_sampling": "class_labels"}, **plan["target"], model=plan["target_model"], checkpoint_every=0)
    evaluate_only = {"steps": 0, "eval_every": 0}
    projected = {"method": "projected", "source_adapter": plan["source_adapter"], "projection": projection_dir}
    return {
        "output_dir": str(Path(plan["output_dir"]) / "runs"),
        "base": target,
        "methods": [
            {"name": "no prompt", "method": "zero_shot", **evaluate_only},
            {"name": "random prompt", "method": "prompt_tuning_random", **evaluate_only},
            {"name": "projected prompt (zero-shot)", **projected, **evaluate_only},
            {"name": "trained on target (cold start)", "method": "vocab_sampled", "vocab_sampling": "class_labels"},
            {"name": "projected + trained (warm start)", **projected},
        ],
    }


def steps_to_reach(record: dict, goal: float, start: dict | None = None) -> int | None:
    """First evaluated step at which `record`'s run reached `goal` accuracy; `start` is the
    evaluation of its initial prompt (step 0), if there is one."""
    curve = [(0, start["metrics"]["accuracy"])] if start is not None else []
    curve += [(e["step"], e["accuracy"]) for e in record["eval_history"]] + [(record["steps"], record["metrics"]["accuracy"])]
    return next((step for step, accuracy in curve if accuracy >= goal), None)


def summarise(records: dict[str, list[dict]], info: dict) -> dict:
    mean = {name: statistics.mean(r["metrics"]["accuracy"] for r in runs) for name, runs in records.items()}
    none, projected, trained = mean["no prompt"], mean["projected prompt (zero-shot)"], mean["trained on target (cold start)"]
    ratios = []
    per_seed = zip(records["trained on target (cold start)"], records["projected + trained (warm start)"], records["projected prompt (zero-shot)"])
    for cold, warm, projected_start in per_seed:
        goal = cold["metrics"]["accuracy"]
        # the cold start's own steps to first reach its final accuracy (its init is not evaluated: count from step 1)
        cold_steps = max(steps_to_reach(cold, goal), 1)
        reached = steps_to_reach(warm, goal, start=projected_start)  # step 0 = the projected prompt itself
        ratios.append(None if reached is None else reached / cold_steps)
    return {
        "task": records["no prompt"][0].get("task"),  # as the runs resolved it (the plan may leave it to the default)
        "split": (records["no prompt"][0].get("config") or {}).get("eval_split"),  # (found 2026-12-07: the table named neither)
        "scored_rows": rows_scored(records["no prompt"][0]),
        "steps": records["trained on target (cold start)"][0].get("steps"),  # (a plan may leave them to the default)
        "accuracy_mean": mean,
        "accuracy_std": {n: statistics.stdev([r["metrics"]["accuracy"] for r in runs]) if len(runs) > 1 else 0.0 for n, runs in records.items()},
        # undefined unless the trained prompt beats no prompt (a ratio over a loss means nothing)
        "recovered_gain": (projected - none) / (trained - none) if trained > none else None,
        "warm_steps_ratio_per_seed": ratios,
        "projection": {k: info.get(k) for k in ("method", "row_norm_mode", "num_anchors", "quality", "fit_seconds")},
    }


def write_markdown(summary: dict, plan, seeds, path: Path) -> None:
    quality = summary["projection"]["quality"]
    split = summary.get("split") or "validation"
    scored = f" ({summary['scored_rows']:,} rows)" if summary.get("scored_rows") else ""
    lines = [f"`{plan['source_model']}` -> `{plan['target_model']}`, task `{summary['task']}`, {split} split{scored}, seeds {seeds}, "
             f"{summary['steps']} steps. Projection `{summary['projection']['method']}` "
             f"(row_norm `{summary['projection']['row_norm_mode'] or 'none'}`) on "
             f"{summary['projection']['num_anchors']:,} shared tokens, fit {summary['projection']['fit_seconds']:.1f} s; "
             f"held-out mean cosine {quality['mean_cosine']:.3f}, top-1 {quality['top1']:.3f}, top-10 {quality['top10']:.3f}.",
             "", f"| target model with | {split} accuracy (mean ± std) |", "|---|---:|"]  # fmt: skip
    for name, value in summary["accuracy_mean"].items():
        lines.append(f"| {name} | {100 * value:.1f} ± {100 * summary['accuracy_std'][name]:.1f} |")
    gain = summary["recovered_gain"]
    gain_text = "n/a (the trained prompt does not beat no prompt)" if gain is None else f"{100 * gain:.0f}%"
    lines += ["", f"Projected prompt recovers {gain_text} of the trained prompt's gain over no prompt (goal >= 50%).",
              f"Warm start steps to reach the cold start's final accuracy, as a fraction of the steps the cold start took to first reach it "
              f"(step 0 = the projected prompt), per seed: "
              f"{summary['warm_steps_ratio_per_seed']} (goal <= 0.5; None = not reached)."]  # fmt: skip
    reports.write_text(path, "\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds")
    parser.add_argument("--launcher", help="accelerate config each train.py run is launched with (default: one plain process)")
    args = parser.parse_args(argv)
    plan = read_yaml(args.config)
    check_plan(plan, args.config)
    seeds = resolve_seeds(args.seeds, plan.get("seeds", [0, 1, 2]))
    output_dir = Path(plan["output_dir"])
    projection_dir, info = fitted_projection(plan, output_dir)
    runs = runs_plan(plan, projection_dir)
    names = [method["name"] for method in runs["methods"] for _ in seeds]
    found = run_all([(run_config(runs, method, seed), False) for method in runs["methods"] for seed in seeds], TRAIN, args.launcher)
    records = {method["name"]: [record for name, record in zip(names, found) if name == method["name"]] for method in runs["methods"]}
    summary = summarise(records, info)
    reports.write_json(output_dir / "projection_results.json", {"plan": plan, "seeds": seeds, **summary})
    write_markdown(summary, plan, seeds, output_dir / "projection_results.md")
    print((output_dir / "projection_results.md").read_text())


if __name__ == "__main__":
    main()
