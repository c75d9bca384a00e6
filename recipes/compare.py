"""Compare methods at a matched budget (same model, data, steps, batch, evaluation) over seeds.

    python recipes/compare.py --launcher recipes/accelerate/cpu_1proc.yaml \
        --config recipes/configs/compare_default.yaml [--seeds 0,1,2] [--collect] [--method NAME ...] [--jobs 2]

The YAML holds `base:` (RecipeConfig keys shared by every run), `methods:` (a list; each has a
`name` and the RecipeConfig keys that differ), `seeds:`, `output_dir:` and optionally `baseline:`
(a method name: the report adds per-seed accuracies and each method's paired difference to it). Each run goes to
`<output_dir>/<method name>/seed<k>/`; a run whose results.json already exists with the same
config is collected, not re-run, and one killed part-way continues from its last checkpoint (`--collect` never trains; `--method NAME`, repeatable, trains only
the methods named and collects the others; `--jobs N` runs N trainings at once, each with one
thread: on 2 cores two one-thread runs finish sooner than one two-thread run after another, and
step times then compare methods within one report only). Writes `comparison.md`,
`comparison.json` and `comparison.png` (accuracy vs trainable parameters on a log axis, and the
loss curves) into `report_dir` (default: `output_dir`), so a second plan can reuse another
plan's runs (same `output_dir` and method names) without overwriting its report. A deep prompt
started from a shallow prompt of the same plan (`deep_init: prompt`, `init_prompt:
<output_dir>/<slug of its name>/seed{seed}/adapter`) trains after that run, from the same seed's prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

from softprompt_bench import reports  # noqa: E402
from softprompt_bench.plans import PlanError, load_plan, missing_runs, paired_difference, plan_split, run_all, run_config, split_label, summarise  # noqa: E402

TRAIN = Path(__file__).with_name("train.py")  # each run is its own train.py process (recipes never import each other)

def _as_run(rows: list[dict], key: str, unit: str, default=None, quote: bool = False) -> str:
    """What the runs did (`key`: steps, scored, model, batch_size, eval_split), one value for all, else per method;
    `default` for runs whose records do not say (made before the key was recorded)."""
    values = {row["method"]: row.get(key) or ([default] if default is not None else []) for row in rows}
    distinct = {value for found in values.values() for value in found}
    if len(distinct) == 1:
        return f"`{distinct.pop()}` {unit}" if quote else f"{distinct.pop()} {unit}"
    return ", ".join(f"{name}: {'/'.join(map(str, found)) or '?'}" for name, found in values.items()) + f" {unit}"


def _steps_text(rows: list[dict]) -> str:
    """The runs' steps; methods that trained none (zero-shot) are named apart, not listed as '0' beside every other."""
    untrained = [row["method"] for row in rows if row.get("steps") == [0]]
    trained = [row for row in rows if row.get("steps") != [0]]
    if not untrained or not trained:
        return _as_run(rows, "steps", "steps")
    return f"{_as_run(trained, 'steps', 'steps')} ({', '.join(untrained)}: none)"


def write_markdown(rows: list[dict], plan, path: Path, wall_seconds: float, baseline: dict | None = None,
                   missing: dict[str, list[int]] | None = None) -> None:  # fmt: skip
    """The report; `missing`: method -> seeds without a result (not trained in this call: --collect / --method)."""
    base = plan.get("base", {})
    task = "per method" if any("task" in method for method in plan["methods"]) else base.get("task", "movie_sentiment")
    lines = [
        f"Model {_as_run(rows, 'model', '', base.get('model', 'smollm2-135m'), quote=True).strip()}, task `{task}`, "
        f"{_steps_text(rows)}, batch {_as_run(rows, 'batch_size', '', base.get('batch_size', 8)).strip()}, "
        f"{_as_run(rows, 'scored', '')}{_as_run(rows, 'eval_split', 'examples', plan_split(plan))}. "
        f"Wall time of this call {wall_seconds / 60:.1f} min; the runs' own, summed: "
        f"{sum(row.get('run_seconds', 0) for row in rows) / 60:.1f} min.",
        "",
        "| method | trainable params | accuracy (mean ± std) | macro-F1 | seeds | time/step (s) | peak memory (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        step = f"{row['time_per_step_s']:.2f}" if row["time_per_step_s"] else "-"
        lines.append(
            f"| {row['method']} | {row['trainable_params']:,} | {100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f} "
            f"| {100 * row['macro_f1_mean']:.1f} | {len(row['seeds'])} | {step} | {row['peak_memory_mb']:.0f} |"
        )
    resumed = {row["method"]: row["resumed_seeds"] for row in rows if row.get("resumed_seeds")}
    if resumed:  # (found 2026-12-07 by a review: shown as whole runs' figures)
        lines += ["", f"Resumed from a checkpoint (method: seeds) {resumed}: their peak memory and wall time are the resumed "
                      "process's alone."]  # fmt: skip
    if missing:
        lines += ["", missing_runs(missing) + " (not trained in this call: --collect, or --method without them; or their runs no longer match the plan)."]  # fmt: skip
        if plan.get("baseline") is not None and baseline is None:
            lines.append(f"The baseline `{plan['baseline']}` has no result: no paired differences.")
    if baseline is not None:
        lines += ["", f"Per seed, and the paired difference to `{baseline['method']}` (accuracy points, same seeds; 95% t interval):", "",
                  "| method | accuracy per seed | paired difference | 95% interval |", "|---|---|---:|---|"]  # fmt: skip
        for row in rows:
            per_seed = ", ".join(f"{seed}: {100 * accuracy:.1f}" for seed, accuracy in zip(row["seeds"], row["accuracies"]))
            difference = row.get("paired_difference")
            if row is baseline or difference is None:
                lines.append(f"| {row['method']} | {per_seed} | - | - |")
            elif difference["mean"] is None:
                lines.append(f"| {row['method']} | {per_seed} | - (scored other rows than the baseline) | - |")
            else:
                interval = "n/a (one seed)" if difference["low"] is None else f"[{100 * difference['low']:+.1f}, {100 * difference['high']:+.1f}]"
                other = f", {difference['other_rows']} on other rows left out" if difference.get("other_rows") else ""
                lines.append(f"| {row['method']} | {per_seed} | {100 * difference['mean']:+.1f} ({difference['seeds']} seeds{other}) | {interval} |")
    reports.write_text(path, "\n".join(lines) + "\n")


def write_plot(rows: list[dict], path: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, row in enumerate(rows):
        color = f"C{index % 10}"  # one colour per method, its seeds' loss curves included
        label = textwrap.fill(row["method"], 70)  # a long method name wraps instead of squeezing the axes
        if row["trainable_params"]:
            left.errorbar(row["trainable_params"], 100 * row["accuracy_mean"], yerr=100 * row["accuracy_std"], fmt="o", capsize=3,
                          label=label, color=color)  # fmt: skip
        else:
            left.axhline(100 * row["accuracy_mean"], linestyle=":", color="gray", label=f"{label} (0 params)")
        for seed_index, curve in enumerate(row["loss_curves"]):
            if curve:
                steps, losses = zip(*curve)
                right.plot(steps, losses, alpha=0.6, color=color, label=label if seed_index == 0 else None)
    left.set(xscale="log", xlabel="trainable parameters (log)", ylabel=f"{split} accuracy (%)", title="accuracy vs size")
    right.set(xlabel="step", ylabel="training loss", title="loss curves", yscale="log")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    reports.save_figure(figure, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", help="comma-separated, overrides the file's seeds")
    parser.add_argument("--collect", action="store_true", help="only collect existing runs, never train")
    parser.add_argument("--method", action="append", dest="methods", metavar="NAME",
                        help="train only this method (repeatable; names may hold commas); the others' existing runs are collected")
    parser.add_argument("--launcher", help="accelerate config each train.py run is launched with (default: one plain process)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once, each with one thread (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: expected a whole number >= 1.")
    if args.jobs > 1:  # each training gets one thread (its process inherits this environment)
        os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    began = time.perf_counter()
    plan, seeds = load_plan(args.config, args.seeds)
    output_dir = Path(plan.get("report_dir") or plan["output_dir"])
    names = [method["name"] for method in plan["methods"]]
    to_train = names if args.methods is None else args.methods
    unknown = [name for name in to_train if name not in names]
    if unknown:
        raise SystemExit(f"--method names {unknown}, which {args.config} does not have; its methods are {names}.")
    runs = [(method["name"], run_config(plan, method, seed), args.collect or method["name"] not in to_train)
            for method in plan["methods"] for seed in seeds]  # fmt: skip
    try:
        records = run_all([(config, collect_only) for _, config, collect_only in runs], TRAIN, args.launcher, args.jobs)
    except PlanError as error:  # runs that cannot start from each other's prompts, named before any run
        raise SystemExit(f"{args.config}: {error}") from None
    rows, missing = [], {}
    for name in names:
        found = [record for (run_name, _, _), record in zip(runs, records) if run_name == name and record is not None]
        if found:
            rows.append(summarise(name, found))
        lacking = [config.seed for (run_name, config, _), record in zip(runs, records) if run_name == name and record is None]
        if lacking:
            missing[name] = lacking
    if missing:
        print(f"compare.py: no result for {missing} (method: seeds)", file=sys.stderr)
    if not rows:
        raise SystemExit(f"No results to compare under {output_dir}.")
    baseline = next((row for row in rows if row["method"] == plan.get("baseline")), None)
    for row in rows:
        if baseline is not None and row is not baseline:
            row["paired_difference"] = paired_difference(row, baseline)
    output_dir.mkdir(parents=True, exist_ok=True)
    reports.write_json(output_dir / "comparison.json", {"plan": plan, "seeds": seeds, "rows": rows, "missing": missing})
    write_markdown(rows, plan, output_dir / "comparison.md", time.perf_counter() - began, baseline, missing)
    write_plot(rows, output_dir / "comparison.png", split_label(rows, plan_split(plan)))
    print((output_dir / "comparison.md").read_text())
    print(f"table: {output_dir / 'comparison.md'}\nplot:  {output_dir / 'comparison.png'}\ndata:  {output_dir / 'comparison.json'}")


if __name__ == "__main__":
    main()
