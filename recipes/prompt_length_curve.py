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
from pathlib import Path


def curve_points(comparison: dict) -> tuple[list[dict], list[dict]]:
    """(prompt rows sorted by length with `num_virtual_tokens` added, reference rows without a length)."""
    plan = comparison["plan"]
    base_length = plan.get("base", {}).get("num_virtual_tokens")
    lengths = {method["name"]: method.get("num_virtual_tokens", base_length) for method in plan["methods"]}
    methods = {method["name"]: method.get("method", plan.get("base", {}).get("method")) for method in plan["methods"]}
    points, references = [], []
    for row in comparison["rows"]:
        if methods.get(row["method"]) in ("lora", "full_finetune", "zero_shot"):
            references.append(row)
        elif lengths.get(row["method"]) is not None:
            points.append(dict(row, num_virtual_tokens=int(lengths[row["method"]])))
    if not points:
        raise ValueError("No prompt-method rows with num_virtual_tokens in this comparison; expected a prompt-length plan.")
    return sorted(points, key=lambda row: row["num_virtual_tokens"]), references


def write_markdown(points, references, path: Path) -> None:
    lines = ["| prompt length | trainable params | accuracy (mean ± std) | time/step (s) |", "|---:|---:|---:|---:|"]
    for row in points + references:
        length = row.get("num_virtual_tokens", row["method"])
        step = f"{row['time_per_step_s']:.2f}" if row["time_per_step_s"] else "-"
        lines.append(f"| {length} | {row['trainable_params']:,} | {100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f} | {step} |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(points, references, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [row["num_virtual_tokens"] for row in points]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.errorbar(lengths, [100 * r["accuracy_mean"] for r in points], yerr=[100 * r["accuracy_std"] for r in points],
                  marker="o", capsize=3, label="soft prompt")  # fmt: skip
    right.plot(lengths, [r["time_per_step_s"] or float("nan") for r in points], marker="o", label="soft prompt")
    for row in references:
        left.axhline(100 * row["accuracy_mean"], linestyle="--", color="gray", label=row["method"])
        if row["time_per_step_s"]:
            right.axhline(row["time_per_step_s"], linestyle="--", color="gray", label=row["method"])
    left.set(xscale="log", xlabel="virtual tokens (log)", ylabel="validation accuracy (%)", title="accuracy vs prompt length")
    right.set(xscale="log", xlabel="virtual tokens (log)", ylabel="seconds per training step", title="step time vs prompt length")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparison", required=True, help="comparison.json written by recipes/compare.py")
    args = parser.parse_args(argv)
    path = Path(args.comparison)
    points, references = curve_points(json.loads(path.read_text()))
    write_markdown(points, references, path.parent / "prompt_length.md")
    write_plot(points, references, path.parent / "prompt_length.png")
    print((path.parent / "prompt_length.md").read_text())
    print(f"table: {path.parent / 'prompt_length.md'}\nplot:  {path.parent / 'prompt_length.png'}")


if __name__ == "__main__":
    main()
