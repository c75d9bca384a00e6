"""recipes/misclassified.py and recipes/serving_rows.py refuse what they cannot do, naming it.

Found by probing: `misclassified.py --other` paired two runs scored on other rows (validation vs test) row by
row because their first labels matched; a SEQ_CLS run ended in a traceback about "prompts to serve";
`serving_rows.py rows` wrote rows for a full_finetune run (no adapter to serve), failed with a bare
FileNotFoundError on a new output folder and wrote with a plain `open`; `score` gave a bare FileNotFoundError
for missing answers and a JSONDecodeError naming neither file nor line. The scripts run in-process here.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

import testing_common as common
from softprompt_bench.recipe_config import RecipeConfig

REPO = Path(__file__).resolve().parents[1]


def recipe_main(script: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{script}", REPO / "recipes" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def zero_shot_run(folder: Path, eval_split: str) -> Path:
    """A real zero-shot run of the tiny Llama on 8 tweet_sentiment rows of `eval_split` (train.py, in-process)."""
    recipe_main("train")(["--model", common.tiny_model_folder("llama"), "--method", "zero_shot", "--task", "tweet_sentiment",
                          "--eval_split", eval_split, "--eval_size", "8", "--train_size", "8", "--steps", "0", "--batch_size", "4",
                          "--max_length", "16", "--output_dir", str(folder)])  # fmt: skip
    return folder


def written_run(folder: Path, **config) -> Path:
    """A run folder written by hand (resolved_config.yaml, results.json): for refusals that come before any scoring."""
    folder.mkdir(parents=True)
    values = RecipeConfig(eval_size=8, max_length=16, output_dir=str(folder), **config).to_dict()
    (folder / "resolved_config.yaml").write_text(yaml.safe_dump(values))
    (folder / "results.json").write_text(json.dumps({"metrics": {"accuracy": 0.5}, "config": values}))
    return folder


def test_misclassified_refuses_another_run_scored_on_other_rows(tmp_path):
    validation, test = zero_shot_run(tmp_path / "validation", "validation"), zero_shot_run(tmp_path / "test", "test")
    with pytest.raises(SystemExit, match=r"misclassified: .*test scored other rows than .*validation: eval_split "
                                         r"'test' vs 'validation'"):  # fmt: skip
        recipe_main("misclassified")(["--run", str(validation), "--other", str(test)])


def test_misclassified_pairs_runs_that_scored_the_same_rows(tmp_path, capsys):
    """Found 2026-12-07 by a probe: runs whose eval_size passes the split's end (each scored the whole split) were
    refused as scored on other rows, as was a run of split_seed 0 (the fixed split) beside one of the fixed split: the
    rule a plan's paired differences use reads the rows a run scored, which misclassified.py did not give it."""
    def run(folder, *extra):
        recipe_main("train")(["--model", common.tiny_model_folder("llama"), "--method", "zero_shot", "--task", "tweet_sentiment",
                              "--train_size", "8", "--steps", "0", "--batch_size", "4", "--max_length", "8", "--output_dir",
                              str(folder), *extra])  # fmt: skip
        return str(folder)

    whole, wholer = run(tmp_path / "a", "--eval_size", "10000"), run(tmp_path / "b", "--eval_size", "20000")
    recipe_main("misclassified")(["--run", whole, "--other", wholer])
    fixed, seed_zero = run(tmp_path / "c", "--eval_size", "8"), run(tmp_path / "d", "--eval_size", "8", "--split_seed", "0")
    recipe_main("misclassified")(["--run", fixed, "--other", seed_zero])
    assert "misclassified" not in capsys.readouterr().err


def test_misclassified_names_a_seq_cls_run_it_cannot_list(tmp_path):
    run = written_run(tmp_path / "bert", method="lora", model=common.tiny_model_folder("bert"))
    with pytest.raises(SystemExit, match=r"misclassified: .*bert is a SEQ_CLS run .*lists rank-classified \(CAUSAL_LM\) runs only"):
        recipe_main("misclassified")(["--run", str(run)])


def test_serving_rows_refuses_a_full_finetune_run(tmp_path):
    run = written_run(tmp_path / "full", method="full_finetune", model=common.tiny_model_folder("llama"))
    with pytest.raises(SystemExit, match=r"serving_rows: .*full is a full_finetune run, which saves no weights"):
        recipe_main("serving_rows")(["rows", "--run", str(run), "--output", str(tmp_path / "rows.jsonl")])
    assert not (tmp_path / "rows.jsonl").exists()


def test_serving_rows_writes_rows_all_or_nothing_into_a_new_folder(tmp_path, commit_events):
    run = written_run(tmp_path / "prompt", method="zero_shot", model=common.tiny_model_folder("llama"))
    output = tmp_path / "new" / "folder" / "rows.jsonl"
    recipe_main("serving_rows")(["rows", "--run", str(run), "--output", str(output)])
    assert len(output.read_text().splitlines()) == 8
    assert ("replace", os.path.realpath(output)) in [event[:2] for event in commit_events]  # a temporary file renamed into place


def test_serving_rows_names_an_output_it_cannot_write(tmp_path):
    run = written_run(tmp_path / "prompt", method="zero_shot", model=common.tiny_model_folder("llama"))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match=r"serving_rows: cannot write --output .*a_file/rows.jsonl"):
        recipe_main("serving_rows")(["rows", "--run", str(run), "--output", str(tmp_path / "a_file" / "rows.jsonl")])


@pytest.mark.parametrize("answers,message", [
    (None, r"serving_rows: --answers .*answers.jsonl is not a file"),
    ('{"label": 1}\n{"label": \n', r"serving_rows: line 2 of .*answers.jsonl is not a JSON object"),
    ('{"label": 1}\n[1, 2]\n', r"serving_rows: line 2 of .*answers.jsonl is not a JSON object"),
])  # fmt: skip
def test_serving_rows_names_answers_it_cannot_read(answers, message, tmp_path):
    run = written_run(tmp_path / "prompt", method="zero_shot", model=common.tiny_model_folder("llama"))
    if answers is not None:
        (tmp_path / "answers.jsonl").write_text(answers)
    with pytest.raises(SystemExit, match=message):
        recipe_main("serving_rows")(["score", "--run", str(run), "--answers", str(tmp_path / "answers.jsonl")])


def test_serving_rows_names_an_unfinished_run_without_a_traceback(tmp_path):
    (tmp_path / "half").mkdir()  # found 2026-12-06 (a review): load_run's ValueError came out as a traceback
    with pytest.raises(SystemExit, match=r"serving_rows: .*half is not a finished recipe run: resolved_config.yaml is missing"):
        recipe_main("serving_rows")(["rows", "--run", str(tmp_path / "half"), "--output", str(tmp_path / "rows.jsonl")])
