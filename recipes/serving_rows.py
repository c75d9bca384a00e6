"""A recipe run's evaluation rows as serving requests, and the served answers scored against the run.

    # 1. the rows the run scored (its eval split, template, truncation), as serve_vllm.py input
    .venv/bin/python recipes/serving_rows.py rows --run runs/compare_default/vocab_sampled_top_frequent_plugin/seed0 \\
        --task movie --output movie_rows.jsonl
    # 2. score them on vLLM (serving venv), the run's adapter under the name given in 1.
    .venv-vllm/bin/python recipes/serve_vllm.py generate --model $(.venv/bin/python -m softprompt_bench.embedded_models smollm2-135m) \\
        --adapter movie=runs/compare_default/vocab_sampled_top_frequent_plugin/seed0/adapter \\
        --input movie_rows.jsonl --output movie_answers.jsonl
    # 3. accuracy through vLLM next to the run's own (results.json); the answers must be the run's rows
    .venv/bin/python recipes/serving_rows.py score --run runs/compare_default/vocab_sampled_top_frequent_plugin/seed0 \\
        --answers movie_answers.jsonl

Rows carry the recipe's token ids (`prompt_ids`: template + text cut to max_length), so vLLM sees
exactly the tokens the run was scored on. A full_finetune run saves no adapter to serve: `rows` refuses it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench, from a checkout

from softprompt_bench import reports  # noqa: E402
from softprompt_bench.recipe_config import load_run, refuse_a_run_without_weights  # noqa: E402
from softprompt_bench.recipe_support import evaluation_prompts  # noqa: E402


def write_rows(run: Path, task: str, output: str) -> None:
    """The rows `run` scored, as serve_vllm.py requests, written to `output` all or nothing."""
    config, _ = load_run(run)
    refuse_a_run_without_weights(run, config, "serving_rows")
    _, words, prompts, labels = evaluation_prompts(config)
    lines = [json.dumps({"task": task, "token_ids": ids, "choices": words, "label": label}) + "\n" for ids, label in zip(prompts, labels)]
    try:
        reports.write_text(Path(output), "".join(lines))
    except OSError as error:
        raise SystemExit(f"serving_rows: cannot write --output {output}: {error.strerror or error}; expected a file path whose "
                         "folder exists or can be created.") from None  # fmt: skip
    print(f"serving_rows: {len(prompts)} rows of {config.task} ({config.eval_split}) -> {output}")


def read_answers(answers: str) -> list[dict]:
    """serve_vllm.py's output rows: one JSON object a line (blank lines skipped)."""
    path = Path(answers)
    if not path.is_file():
        raise SystemExit(f"serving_rows: --answers {answers} is not a file; expected serve_vllm.py's output JSONL.")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            reason = None if isinstance(row, dict) else f"a JSON {type(row).__name__}"
        except json.JSONDecodeError as error:
            reason = f"{error.msg} at column {error.colno}"
        if reason:
            raise SystemExit(f"serving_rows: line {number} of {answers} is not a JSON object ({reason}); expected one "
                             "serve_vllm.py answer per line.")  # fmt: skip
        rows.append(row)
    return rows


def score(run: Path, answers: str) -> None:
    """Accuracy of the served answers, which must be this run's rows in order (token ids and labels checked)."""
    rows = read_answers(answers)
    config, recorded = load_run(run)
    _, _, prompts, labels = evaluation_prompts(config)
    if len(rows) != len(prompts):
        raise SystemExit(f"serving_rows: {answers} holds {len(rows)} answers; {run} scored {len(prompts)} rows (write them "
                         "with `serving_rows.py rows` and serve all of them).")  # fmt: skip
    for index, (row, ids, label) in enumerate(zip(rows, prompts, labels)):
        if "prediction" not in row or row.get("token_ids") != ids or row.get("label") != label:
            raise SystemExit(f"serving_rows: answer {index} of {answers} is not row {index} of {run} (its token ids, label or "
                             "prediction differ or are missing): score the answers to this run's own rows.")  # fmt: skip
    accuracy = sum(row["prediction"] == row["label"] for row in rows) / len(rows)
    print(f"serving_rows: {len(rows)} rows; accuracy through vLLM {accuracy:.4f}, the run's own {recorded:.4f}, "
          f"difference {accuracy - recorded:+.4f}")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["rows", "score"])
    parser.add_argument("--run", required=True, type=Path, help="a recipe run's output_dir (resolved_config.yaml, results.json)")
    parser.add_argument("--task", default="default", help="rows: the task name the adapter is served under")
    parser.add_argument("--output", help="rows: the JSONL to write")
    parser.add_argument("--answers", help="score: serve_vllm.py's output JSONL")
    args = parser.parse_args(argv)
    try:
        if args.mode == "rows":
            write_rows(args.run, args.task, args.output or parser.error("rows needs --output"))
        else:
            score(args.run, args.answers or parser.error("score needs --answers"))
    except ValueError as error:  # an unfinished run, a model that does not rank-classify: named, without a traceback
        raise SystemExit(f"serving_rows: {error}") from None


if __name__ == "__main__":
    main()
