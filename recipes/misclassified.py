"""The rows a recipe run gets wrong (causal LMs: rank classification), optionally beside a second run's answers.

    .venv/bin/python recipes/misclassified.py --run runs/deep_vs_lora_bbc/<deep row>/seed2 \\
        [--other runs/deep_vs_lora_bbc/<LoRA row>/seed2] [--label entertainment]

Each run's saved adapter is scored again on the rows it was scored on (its eval split, template, truncation);
the count of wrong rows is checked against the run's results.json, so the listing is of the run that was
reported. With --other (a run scored on the same rows: same task, eval split, split seed, eval size and columns),
a row is listed when either run is wrong, with both predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

import peft_softprompt_ext  # noqa: E402,F401  (registers the plugin methods a saved adapter may use)
from softprompt_bench import classification  # noqa: E402
from softprompt_bench.benchmark_args import count  # noqa: E402
from softprompt_bench.embedded_models import resolve_model_folder  # noqa: E402
from softprompt_bench.plans import scored_rows  # noqa: E402
from softprompt_bench.recipe_config import load_run, refuse_a_run_without_weights  # noqa: E402
from softprompt_bench.recipe_support import evaluation_prompts, model_task_type  # noqa: E402


def listable_run(run: Path):
    """(config, recorded accuracy) of `run`, refused unless its saved weights rank-classify its rows again."""
    config, recorded = load_run(run)
    refuse_a_run_without_weights(run, config, "misclassified")
    if model_task_type(resolve_model_folder(config.model), config.task_type) != "CAUSAL_LM":
        raise SystemExit(f"misclassified: {run} is a SEQ_CLS run (model={config.model!r} scores with a classifier head, "
                         "not label words): misclassified.py lists rank-classified (CAUSAL_LM) runs only.")  # fmt: skip
    return config, recorded


def check_same_rows(run: Path, config, other: Path, other_config) -> None:
    """Refuse `other` unless it scored the rows `run` did (the rule a plan's paired differences use)."""
    records = [{"config": c.to_dict(), "metrics": json.loads((folder / "results.json").read_text(encoding="utf-8")).get("metrics")}
               for folder, c in ((run, config), (other, other_config))]  # (the rows each scored: found 2026-12-07 by a probe)
    mine, theirs = (json.loads(scored_rows(record)) for record in records)
    differences = [f"{key} {theirs[key]!r} vs {mine[key]!r}" for key in mine if theirs[key] != mine[key]]
    if differences:
        raise SystemExit(f"misclassified: {other} scored other rows than {run}: {', '.join(differences)}; --other needs a run "
                         f"scored on the same rows (same {', '.join(mine)}).")  # fmt: skip


def predictions(run: Path, config, recorded: float) -> tuple[list[str], list[int], list[int], list[list[int]], object]:
    """(label words, labels, predictions, prompt ids, tokenizer) of `run`'s scored rows, from its saved adapter."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, words, prompts, labels = evaluation_prompts(config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if config.method != "zero_shot":  # every other method left here saved its PEFT adapter
        model = peft.PeftModel.from_pretrained(model, str(run / "adapter"))
    label_ids = classification.label_token_ids(tokenizer, words)
    with torch.no_grad():
        predicted = classification.rank_classify(model.eval(), prompts, label_ids, classification.pad_token_id(tokenizer))
    wrong = sum(p != t for p, t in zip(predicted, labels))
    if abs((len(labels) - wrong) / len(labels) - recorded) > 1e-9:
        raise SystemExit(f"misclassified: {run} now scores {(len(labels) - wrong) / len(labels):.4f}, its results.json "
                         f"{recorded:.4f}: the adapter is not the one that was reported.")  # fmt: skip
    return list(words), list(labels), predicted, prompts, tokenizer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a recipe run's output_dir (adapter/, resolved_config.yaml, results.json)")
    parser.add_argument("--other", type=Path, help="a second run on the same rows: its prediction is shown beside")
    parser.add_argument("--label", help="only rows whose true label word is this (e.g. entertainment)")
    parser.add_argument("--chars", type=count(), default=150, help="characters of each row's text shown")
    args = parser.parse_args(argv)
    config, recorded = listable_run(args.run)
    if args.other is not None:  # checked before scoring either run
        other_config, other_recorded = listable_run(args.other)
        check_same_rows(args.run, config, args.other, other_config)
    words, labels, first, prompts, tokenizer = predictions(args.run, config, recorded)
    names = [word.strip() for word in words]
    if args.label is not None and args.label.strip() not in names:
        raise SystemExit(f"misclassified: --label {args.label!r} is not a label of this task; expected one of {names}.")
    second = None
    if args.other is not None:
        other_words, other_labels, second, _, _ = predictions(args.other, other_config, other_recorded)
        if (other_words, other_labels) != (words, labels):  # same rows, other label words (config.label_words)
            raise SystemExit(f"misclassified: {args.other} was scored with other label words or labels than {args.run}: "
                             f"{other_words} vs {words}.")  # fmt: skip
    listed = 0
    for index, (truth, mine) in enumerate(zip(labels, first)):
        theirs = second[index] if second is not None else truth
        if (mine == truth and theirs == truth) or (args.label is not None and names[truth] != args.label.strip()):
            continue
        listed += 1
        beside = f" other={names[theirs]}" if second is not None else ""
        text = tokenizer.decode(prompts[index], skip_special_tokens=True)[: args.chars]
        print(f"row {index}: true={names[truth]} run={names[mine]}{beside} | {text!r}")
    runs = [first] + ([second] if second is not None else [])
    wrong = [sum(p != t for p, t in zip(predicted, labels)) for predicted in runs]
    print(f"misclassified: {listed} rows listed; wrong of {len(labels)}: " + ", ".join(map(str, wrong))
          + " (each equal to its results.json)")  # fmt: skip


if __name__ == "__main__":
    main()
