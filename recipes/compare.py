"""Compare methods at a matched budget (same model, data, steps, batch, evaluation) over seeds.

    accelerate launch --config_file recipes/accelerate/cpu_1proc.yaml recipes/compare.py \
        --config recipes/configs/compare_default.yaml [--seeds 0,1,2] [--collect]

The YAML holds `base:` (RecipeConfig keys shared by every run), `methods:` (a list; each has a
`name` and the RecipeConfig keys that differ), `seeds:` and `output_dir:`. Each run goes to
`<output_dir>/<method name>/seed<k>/`; a run whose results.json already exists with the same
config is collected, not re-run (`--collect` never trains). Writes `comparison.md`,
`comparison.json` and `comparison.png` (accuracy vs trainable parameters on a log axis, and the
loss curves) into `report_dir` (default: `output_dir`), so a second plan can reuse another
plan's runs (same `output_dir` and method names) without overwriting its report.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402  (recipes/train.py: one run)

from peft_softprompt_ext.recipe_config import RecipeConfig, check_keys  # noqa: E402

COMPARE_KEYS = {"base", "methods", "seeds", "output_dir", "report_dir"}


def load_plan(path: str, seeds_override: str | None):
    with open(path, encoding="utf-8") as handle:
        plan = yaml.safe_load(handle)
    unknown = set(plan) - COMPARE_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {path}; expected {sorted(COMPARE_KEYS)}.")
    check_keys(plan.get("base", {}), f"{path} base")
    for method in plan["methods"]:
        check_keys({k for k in method if k != "name"}, f"{path} method {method.get('name')!r}")
    seeds = [int(s) for s in seeds_override.split(",")] if seeds_override else plan.get("seeds", [0])
    return plan, seeds


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def run_config(plan, method: dict, seed: int) -> RecipeConfig:
    values = {**plan.get("base", {}), **{k: v for k, v in method.items() if k != "name"}, "seed": seed}
    values["output_dir"] = str(Path(plan["output_dir"]) / slug(method["name"]) / f"seed{seed}")
    return RecipeConfig(**values)


def existing_result(config: RecipeConfig):
    path = Path(config.output_dir) / "results.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if RecipeConfig(**record["config"]).training_digest() == config.training_digest() else None


def summarise(name: str, records: list[dict]) -> dict:
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
        "accuracies": accuracies,
        "loss_curves": [r["loss_curve"] for r in records],
    }


def write_markdown(rows: list[dict], plan, path: Path, wall_seconds: float) -> None:
    base = plan.get("base", {})
    task = "per method" if any("task" in method for method in plan["methods"]) else base.get("task", "movie_sentiment")
    lines = [
        f"Model `{base.get('model', 'smollm2-135m')}`, task `{task}`, "
        f"{base.get('steps', 100)} steps, batch {base.get('batch_size', 8)}, {base.get('eval_size', 500)} validation examples. "
        f"Wall time {wall_seconds / 60:.1f} min.",
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
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        if row["trainable_params"]:
            left.errorbar(row["trainable_params"], 100 * row["accuracy_mean"], yerr=100 * row["accuracy_std"], fmt="o", capsize=3, label=row["method"])
        else:
            left.axhline(100 * row["accuracy_mean"], linestyle=":", color="gray", label=f"{row['method']} (0 params)")
        for index, curve in enumerate(row["loss_curves"]):
            if curve:
                steps, losses = zip(*curve)
                right.plot(steps, losses, alpha=0.8, label=row["method"] if index == 0 else None)
    left.set(xscale="log", xlabel="trainable parameters (log)", ylabel="validation accuracy (%)", title="accuracy vs size")
    right.set(xlabel="step", ylabel="training loss", title="loss curves", yscale="log")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", help="comma-separated, overrides the file's seeds")
    parser.add_argument("--collect", action="store_true", help="only collect existing runs, never train")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    plan, seeds = load_plan(args.config, args.seeds)
    output_dir = Path(plan.get("report_dir") or plan["output_dir"])
    rows = []
    for method in plan["methods"]:
        records = []
        for seed in seeds:
            config = run_config(plan, method, seed)
            record = existing_result(config)
            if record is None and not args.collect:
                record = train.run(config)
            if record is not None:
                records.append(record)
        if records:
            rows.append(summarise(method["name"], records))
    if not rows:
        raise SystemExit(f"No results to compare under {output_dir}.")
    from accelerate import PartialState

    if PartialState().is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "comparison.json").write_text(json.dumps({"plan": plan, "seeds": seeds, "rows": rows}, indent=2))
        write_markdown(rows, plan, output_dir / "comparison.md", time.perf_counter() - began)
        write_plot(rows, output_dir / "comparison.png")
        print((output_dir / "comparison.md").read_text())
        print(f"table: {output_dir / 'comparison.md'}\nplot:  {output_dir / 'comparison.png'}\ndata:  {output_dir / 'comparison.json'}")


if __name__ == "__main__":
    main()
