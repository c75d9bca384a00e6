"""Accuracy and training-step time against prompt length, from one `compare.py` run.

    python recipes/prompt_length_curve.py --comparison runs/prompt_length_movie/comparison.json

The compare plan's methods that set `num_virtual_tokens` (e.g. recipes/configs/prompt_length_movie.yaml:
the same plugin configuration at 1, 5, 10, 20, 50 virtual tokens) become the curve; a LoRA row,
if present, is drawn as a reference line. Writes `prompt_length.md` and `prompt_length.png`
next to the comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

from softprompt_bench import reports  # noqa: E402
from softprompt_bench.plans import missing_runs, plan_split, split_label  # noqa: E402
from softprompt_bench.recipe_config import RecipeConfig  # noqa: E402

REFERENCE_METHODS = ("lora", "full_finetune", "zero_shot")  # no prompt length: drawn as reference lines


def curve_points(comparison: dict) -> tuple[list[dict], list[dict]]:
    """(prompt rows sorted by curve then length, with `num_virtual_tokens`, `recipe_method` and `curve` added,
    reference rows without a length). A curve is one setting apart from its length: the recipe method, and the
    settings that tell it from the method's other curves (e.g. "vocab_sampled (vocab_sampling=uniform)"); a setting
    that changes with the length (another lr per length) makes each length its own curve. A length or method the plan
    leaves unset is the recipe's default."""
    plan, defaults = comparison["plan"], RecipeConfig()
    base = plan.get("base", {})
    settings = {method["name"]: {**base, **method} for method in plan["methods"]}
    points, references = [], []
    for row in comparison["rows"]:
        setting = settings.get(row["method"], base)
        recipe_method = setting.get("method", defaults.method)
        if recipe_method in REFERENCE_METHODS:
            references.append(row)
        else:
            shape = {k: v for k, v in setting.items() if k not in ("name", "num_virtual_tokens", "method")}
            points.append(dict(row, num_virtual_tokens=int(setting.get("num_virtual_tokens", defaults.num_virtual_tokens)),
                               recipe_method=recipe_method, curve=(recipe_method, shape)))  # fmt: skip
    if not points:
        raise ValueError("No prompt-method rows in this comparison; expected a prompt-length plan.")
    curves = [point["curve"] for point in points]
    for point in points:
        point["curve"] = _curve_label(point["curve"], curves)
    return sorted(points, key=lambda row: (row["curve"], row["num_virtual_tokens"])), references


def _curve_label(curve: tuple, curves: list[tuple]) -> str:
    """The recipe method, plus the settings in which its other curves differ."""
    method, shape = curve
    others = [other for name, other in curves if name == method and other != shape]
    differing = sorted({key for other in others for key in set(shape) | set(other) if shape.get(key) != other.get(key)})
    return method + (" (" + ", ".join(f"{key}={shape.get(key)}" for key in differing) + ")" if differing else "")


def write_markdown(points, references, path: Path, split: str, missing: dict | None = None) -> None:
    """The table; each row says its seeds, and `missing` (comparison.json's: method -> seeds without a result) is
    listed under it (found 2026-12-07: a row of one seed of two read as a mean with std 0, the gap unsaid)."""
    lines = [f"| prompt length | trainable params | {split} accuracy (mean ± std) | time/step (s) | method | seeds |",
             "|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for row in points + references:
        length = row.get("num_virtual_tokens", row["method"])
        step = f"{row['time_per_step_s']:.2f}" if row["time_per_step_s"] else "-"
        seeds = ", ".join(map(str, row["seeds"])) if row.get("seeds") else "-"
        lines.append(f"| {length} | {row['trainable_params']:,} | {100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f} "
                     f"| {step} | {row.get('curve', row['method'])} | {seeds} |")  # fmt: skip
    if missing:
        lines += ["", missing_runs(missing) + ": those rows are means over the seeds listed."]
    reports.write_text(path, "\n".join(lines) + "\n")


def write_plot(points, references, path: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label in dict.fromkeys(row["curve"] for row in points):  # one curve per setting
        curve = [row for row in points if row["curve"] == label]
        lengths = [row["num_virtual_tokens"] for row in curve]
        left.errorbar(lengths, [100 * r["accuracy_mean"] for r in curve], yerr=[100 * r["accuracy_std"] for r in curve],
                      marker="o", capsize=3, label=label)  # fmt: skip
        right.plot(lengths, [r["time_per_step_s"] or float("nan") for r in curve], marker="o", label=label)
    for row in references:
        left.axhline(100 * row["accuracy_mean"], linestyle="--", color="gray", label=row["method"])
        if row["time_per_step_s"]:
            right.axhline(row["time_per_step_s"], linestyle="--", color="gray", label=row["method"])
    left.set(xscale="log", xlabel="virtual tokens (log)", ylabel=f"{split} accuracy (%)", title="accuracy vs prompt length")
    right.set(xscale="log", xlabel="virtual tokens (log)", ylabel="seconds per training step", title="step time vs prompt length")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    reports.save_figure(figure, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparison", required=True, help="comparison.json written by recipes/compare.py")
    args = parser.parse_args(argv)
    path = Path(args.comparison)
    comparison = json.loads(path.read_text())
    points, references = curve_points(comparison)
    split = split_label(comparison["rows"], plan_split(comparison["plan"]))
    write_markdown(points, references, path.parent / "prompt_length.md", split, comparison.get("missing"))
    write_plot(points, references, path.parent / "prompt_length.png", split)
    print((path.parent / "prompt_length.md").read_text())
    print(f"table: {path.parent / 'prompt_length.md'}\nplot:  {path.parent / 'prompt_length.png'}")


if __name__ == "__main__":
    main()
