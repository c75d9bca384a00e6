"""The recipes on a tiny model: train, compare, 2-process data parallel, kill-and-resume, bad input."""

import contextlib
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import yaml

import testing_common as common
from softprompt_bench.recipe_config import RecipeConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--train_size", "32", "--eval_size", "16", "--batch_size", "4", "--max_length", "16",
            "--num_virtual_tokens", "4", "--num_frequent_tokens", "50", "--lr", "0.1"]  # fmt: skip


def recipe(script: str, *args, launcher=None, timeout=600, check=True):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, str(REPO / "recipes" / script), *map(str, args)]
    if launcher:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/accelerate" / launcher),
                   str(REPO / "recipes" / script), *map(str, args)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert result.returncode == 0 or not check, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def tool(script: str, *args, check=True):
    """A recipe run in this process, as `recipe` runs it in a new one: `main(argv)`, its prints as stdout, a
    SystemExit's message or an error's traceback as stderr and exit status 1 (2 for argparse). For the tools and
    plans (compare, project, misclassified, serving_rows, prompt_length_curve): each new interpreter spends ~6 s
    importing torch and transformers, and these tests call them dozens of times. Trainings stay processes of their
    own (plans run train.py as a subprocess; `recipe("train.py", ...)` too): they set threads, seeds and Accelerate's state.
    Each tool still runs once as a command (`recipe`) in the test that checks its output."""
    module = recipe_module(Path(script).stem)
    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            module.main([str(arg) for arg in args])
        except SystemExit as stop:
            returncode = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
            if not isinstance(stop.code, int) and stop.code is not None:
                print(stop.code, file=sys.stderr)
        except Exception:  # noqa: BLE001  (a process would exit 1 with the traceback on stderr)
            returncode = 1
            traceback.print_exc()
    result = subprocess.CompletedProcess([script, *map(str, args)], returncode, stdout.getvalue(), stderr.getvalue())
    assert result.returncode == 0 or not check, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def recipe_module(name: str):
    """A script of recipes/ imported as a module (they are scripts, not a package)."""
    if str(REPO / "recipes") not in sys.path:
        sys.path.insert(0, str(REPO / "recipes"))
    return importlib.import_module(name)


def tiny_args(output_dir, method="vocab_sampled", steps=6, **extra):
    args = ["--model", common.tiny_model_folder("llama"), "--method", method, "--steps", steps, "--output_dir", output_dir, *TINY_RUN]
    for key, value in extra.items():
        args += [f"--{key}", value]
    return args


@pytest.mark.parametrize("method", ["vocab_sampled", "prompt_tuning_random", "prompt_tuning_sample_vocab", "lora",
                                    "full_finetune", "zero_shot"])  # fmt: skip
def test_train_writes_results_config_and_adapter(method, tmp_path):
    extra = {"lora_target_modules": "q_proj,v_proj"} if method == "lora" else {}
    recipe("train.py", *tiny_args(tmp_path, method=method, eval_every=3, **extra))
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("metrics", "trainable_params", "wall_time_s", "time_per_step_s", "peak_memory_mb", "seed", "versions", "loss_curve"):
        assert key in results, key
    assert set(results["metrics"]) >= {"accuracy", "macro_f1"}
    assert yaml.safe_load((tmp_path / "resolved_config.yaml").read_text())["method"] == method
    has_adapter = method not in ("full_finetune", "zero_shot")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists() == has_adapter
    assert results["resumed_from_step"] is None
    if method == "zero_shot":  # found 2026-12-06: it recorded the config's 6 steps, which the report's header counted
        assert results["trainable_params"] == 0 and results["loss_curve"] == [] and results["steps"] == 0
    else:
        assert len(results["loss_curve"]) == 6 and results["trainable_params"] > 0 and results["steps"] == 6


@pytest.mark.parametrize("method,peft_type", [("deep_prompt", "DEEP_PROMPT_TUNING"), ("prefix_tuning", "PREFIX_TUNING"),
                                              ("cartridge", "CARTRIDGE")])  # fmt: skip
def test_key_value_methods_train_with_the_layers_keys_and_values(method, peft_type, tmp_path):
    """Issue #14's rows: each trains 2 x layers x P x kv heads x head dim values (tiny llama: 2, 4, 2, 8)."""
    recipe("train.py", *tiny_args(tmp_path, method=method, eval_split="test", init_text=" ".join(common.CORPUS[:2])))
    results = json.loads((tmp_path / "results.json").read_text())
    trained_tokens = 4 - 1 if method == "cartridge" else 4  # PEFT's CARTRIDGE keeps its first token frozen (num_frozen_tokens=1)
    assert results["trainable_params"] == 2 * 2 * trained_tokens * 2 * 8
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == peft_type
    assert yaml.safe_load((tmp_path / "resolved_config.yaml").read_text())["eval_split"] == "test"
    assert len(results["loss_curve"]) == 6


def test_eval_split_is_checked():
    with pytest.raises(ValueError, match="'dev'"):
        RecipeConfig(eval_split="dev")


def test_paired_difference_pairs_by_seed_with_a_t_interval():
    from softprompt_bench.plans import paired_difference

    baseline = {"method": "LoRA", "seeds": [0, 1, 2], "accuracies": [0.80, 0.82, 0.84]}
    row = {"method": "deep", "seeds": [2, 0, 1, 3], "accuracies": [0.86, 0.81, 0.84, 0.99]}  # seed 3: no pair, left out
    difference = paired_difference(row, baseline)
    assert difference["seeds"] == 3 and difference["mean"] == pytest.approx(0.05 / 3)  # +0.02, +0.01, +0.02
    half = 4.303 * 0.005773502691896258 / 3**0.5  # t(0.975, 2) x std of the differences / sqrt(3)
    assert (difference["low"], difference["high"]) == pytest.approx((0.05 / 3 - half, 0.05 / 3 + half))
    assert paired_difference({"method": "x", "seeds": [7], "accuracies": [0.5]}, baseline) is None
    one = paired_difference({"method": "x", "seeds": [0], "accuracies": [0.9]}, baseline)  # one pair: no interval
    assert one["mean"] == pytest.approx(0.1) and one["low"] is None and one["high"] is None
    json.loads(json.dumps(one), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


@pytest.mark.parametrize("pairs,quantile", [(12, 2.201), (16, 2.131), (21, 2.086), (30, 2.045), (41, 2.021), (121, 1.980)])
def test_the_paired_interval_uses_the_t_quantile_of_its_seeds(pairs, quantile):
    """Beyond 11 seeds the interval took 2.0 (9% too narrow at 12 seeds)."""
    from softprompt_bench.plans import paired_difference

    seeds = list(range(pairs))
    baseline = {"method": "b", "seeds": seeds, "accuracies": [0.5] * pairs}
    row = {"method": "r", "seeds": seeds, "accuracies": [0.5 + 0.01 * (seed % 2) for seed in seeds]}
    difference = paired_difference(row, baseline)
    import statistics

    diffs = [0.01 * (seed % 2) for seed in seeds]
    expected = quantile * statistics.stdev(diffs) / pairs**0.5
    assert difference["high"] - difference["mean"] == pytest.approx(expected, rel=2e-3)


def test_train_with_reparameterization_saves_a_collapsed_prompt(tmp_path):
    recipe("train.py", *tiny_args(tmp_path, steps=3, reparameterization="residual_mlp", reparameterization_hidden=8))
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {"prompt_embeddings", "reparameterization.raw_prompt"} <= set(tensors)


def test_train_with_text_init_and_seq_cls_encoder(tmp_path):
    recipe("train.py", *tiny_args(tmp_path / "text", method="prompt_tuning_text", init_text="a review"))
    recipe("train.py", "--model", common.tiny_model_folder("bert"), "--output_dir", tmp_path / "bert", "--steps", 3, *TINY_RUN)
    assert json.loads((tmp_path / "bert" / "results.json").read_text())["trainable_params"] > 4 * 32  # prompt + head


def test_head_lr_puts_the_seq_cls_head_in_its_own_group_and_results_carry_the_confusion(tmp_path):
    """head_lr: the classifier head PEFT trains beside the adapter (modules_to_save) at its own rate."""
    import peft
    from transformers import AutoModelForSequenceClassification

    support = importlib.import_module("softprompt_bench.recipe_support")
    model = peft.get_peft_model(AutoModelForSequenceClassification.from_pretrained(common.tiny_model_folder("bert"), num_labels=2),
                                peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))  # fmt: skip
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    config = RecipeConfig(method="lora", head_lr=0.5)
    rest, head = support._parameter_groups(model, config)
    head_ids = {id(p) for p in head["params"]}
    assert head["lr"] == 0.5 and "lr" not in rest  # the rest keeps the optimizer's lr
    assert {n for n, p in model.named_parameters() if id(p) in head_ids} == {n for n in trainable if "classifier" in n}
    assert len(rest["params"]) + len(head["params"]) == len(trainable)
    assert len(support._parameter_groups(model, RecipeConfig(method="lora"))) == 1  # no head_lr: one group
    causal = peft.get_peft_model(common.tiny_model("llama")[0], peft.LoraConfig(task_type="CAUSAL_LM", r=2))
    with pytest.raises(ValueError, match="head_lr=0.5 but method='lora'.*trains no classifier head"):
        support._parameter_groups(causal, config)
    for bad in (-1, 0, True, "fast"):
        with pytest.raises(ValueError, match=f"head_lr must be a positive learning rate.*got {bad!r}"):
            RecipeConfig(head_lr=bad)
    recipe("train.py", "--model", common.tiny_model_folder("bert"), "--method", "deep_prompt", "--output_dir", tmp_path,
           "--steps", 2, *TINY_RUN, "--head_lr", "0.01")  # fmt: skip
    result = json.loads((tmp_path / "results.json").read_text())
    confusion = result["metrics"]["confusion"]
    assert len(confusion) == 2 and sum(map(sum, confusion)) == 16  # every scored row, true class by predicted class
    assert result["metrics"]["accuracy"] == pytest.approx((confusion[0][0] + confusion[1][1]) / 16)


@pytest.mark.parametrize("method", ["deep_prompt", "lora"])
def test_modules_to_save_trains_those_base_modules_beside_the_head(method):
    import peft
    from transformers import AutoModelForSequenceClassification

    from softprompt_bench.methods import build_peft_config

    folder = common.tiny_model_folder("bert")
    config = RecipeConfig(method=method, modules_to_save=["pooler"], lora_target_modules=["query", "value"], num_virtual_tokens=4)
    model = peft.get_peft_model(AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2),
                                build_peft_config(config, "SEQ_CLS", folder, ["a", "b"]))  # fmt: skip
    copies = {name.split(".modules_to_save.")[0].split(".")[-1] for name, p in model.named_parameters() if p.requires_grad and ".modules_to_save." in name}
    assert copies == {"pooler", "classifier"}
    with pytest.raises(ValueError, match=r"modules_to_save=\['pooler'\] is read only by methods 'deep_prompt' and 'lora'; got method='vocab_sampled'"):
        RecipeConfig(method="vocab_sampled", modules_to_save=["pooler"])


def test_misclassified_lists_the_rows_a_run_got_wrong_and_checks_them_against_its_results(tmp_path):
    recipe("train.py", *tiny_args(tmp_path / "prompt", steps=2))
    recipe("train.py", *tiny_args(tmp_path / "lora", method="lora", steps=2))
    results = {name: json.loads((tmp_path / name / "results.json").read_text())["metrics"] for name in ("prompt", "lora")}
    wrong = {name: 16 - sum(m["confusion"][i][i] for i in range(len(m["confusion"]))) for name, m in results.items()}
    out = recipe("misclassified.py", "--run", tmp_path / "prompt").stdout  # as a command once; in-process after
    rows = [line for line in out.splitlines() if line.startswith("row ")]
    assert len(rows) == wrong["prompt"] and f"wrong of 16: {wrong['prompt']} (each" in out
    both = tool("misclassified.py", "--run", tmp_path / "prompt", "--other", tmp_path / "lora").stdout
    assert f"wrong of 16: {wrong['prompt']}, {wrong['lora']} (each" in both and " other=" in both
    config_file = tmp_path / "prompt" / "resolved_config.yaml"  # a full fine-tuning run keeps no weights to score
    original = config_file.read_text()
    config_file.write_text(original.replace("method: vocab_sampled", "method: full_finetune"))
    full = tool("misclassified.py", "--run", tmp_path / "prompt", check=False)
    assert full.returncode != 0 and "is a full_finetune run, which saves no weights" in full.stderr
    config_file.write_text(original)
    bad = tool("misclassified.py", "--run", tmp_path / "prompt", "--label", "neutral", check=False)
    assert bad.returncode != 0 and "--label 'neutral' is not a label of this task" in bad.stderr
    results_file = tmp_path / "prompt" / "results.json"  # a run whose adapter is not the one reported is refused
    record = json.loads(results_file.read_text())
    record["metrics"]["accuracy"] = (16 - wrong["prompt"] + (1 if wrong["prompt"] < 16 else -1)) / 16
    results_file.write_text(json.dumps(record))
    refused = tool("misclassified.py", "--run", tmp_path / "prompt", check=False)
    assert refused.returncode != 0 and "the adapter is not the one that was reported" in refused.stderr
    # serving_rows: the answers scored must be this run's rows (3 answers of 16, or another run's, were scored as they came)
    record["metrics"]["accuracy"] = results["prompt"]["accuracy"]
    results_file.write_text(json.dumps(record))
    recipe("serving_rows.py", "rows", "--run", tmp_path / "prompt", "--output", tmp_path / "rows.jsonl")  # as a command once
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({**row, "prediction": row["label"]}) + "\n" for row in rows))
    assert "accuracy through vLLM 1.0000" in tool("serving_rows.py", "score", "--run", tmp_path / "prompt", "--answers", answers).stdout
    answers.write_text("".join(json.dumps({**row, "prediction": row["label"]}) + "\n" for row in rows[:3]))
    short = tool("serving_rows.py", "score", "--run", tmp_path / "prompt", "--answers", answers, check=False)
    assert short.returncode != 0 and "holds 3 answers" in short.stderr and "scored 16 rows" in short.stderr, short.stderr[-1500:]
    answers.write_text("".join(json.dumps({**row, "label": 1 - row["label"], "prediction": 0}) + "\n" for row in rows))
    other = tool("serving_rows.py", "score", "--run", tmp_path / "prompt", "--answers", answers, check=False)
    assert other.returncode != 0 and "answer 0 of" in other.stderr and "is not row 0" in other.stderr, other.stderr[-1500:]
    # a run folder whose config is empty or missing is not a run (an empty one read as every default: another model)
    config_file.write_text("")
    for script in ("misclassified.py", "serving_rows.py"):
        empty = tool(script, *(["rows", "--output", tmp_path / "x.jsonl"] if script == "serving_rows.py" else []), "--run", tmp_path / "prompt",
                       check=False)  # fmt: skip
        assert empty.returncode != 0 and "is not a finished recipe run: resolved_config.yaml is empty" in empty.stderr, empty.stderr[-1500:]
    missing = tool("misclassified.py", "--run", tmp_path / "nowhere", check=False)
    assert missing.returncode != 0 and "resolved_config.yaml is missing" in missing.stderr


@pytest.mark.slow
@pytest.mark.ci
def test_two_processes_train_one_data_parallel_prompt(tmp_path):
    result = recipe("train.py", *tiny_args(tmp_path, steps=4), launcher="cpu_2proc.yaml")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["world_size"] == 2, result.stdout
    digests = results["rank_parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


@pytest.mark.slow
@pytest.mark.ci
def test_killed_run_resumes_to_the_same_prompt(tmp_path):
    from safetensors.torch import load_file

    full, killed = tmp_path / "full", tmp_path / "killed"
    recipe("train.py", *tiny_args(full, steps=12, checkpoint_every=2))
    command = [sys.executable, str(REPO / "recipes/train.py"), *map(str, tiny_args(killed, steps=12, checkpoint_every=2))]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["step"] >= 4):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    recipe("train.py", *tiny_args(killed, steps=12, checkpoint_every=2), "--resume")
    final = load_file(full / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    resumed = load_file(killed / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert (final - resumed).abs().max().item() <= 1e-6
    assert json.loads((killed / "results.json").read_text())["loss_curve"] == json.loads((full / "results.json").read_text())["loss_curve"]
    resumed_at = json.loads((killed / "results.json").read_text())["resumed_from_step"]  # found 2026-12-06: nothing said so
    assert resumed_at >= 4 and resumed_at % 2 == 0


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """An uninterrupted 2-process run of 40 steps, checkpointing every 2, for the resumes below to match."""
    folder = tmp_path_factory.mktemp("two_process") / "full"
    recipe("train.py", *tiny_args(folder, steps=40, checkpoint_every=2), launcher="cpu_2proc.yaml")
    return folder


def training_processes_of(output_dir) -> list[int]:
    """Live processes whose command line trains into `output_dir` (read from /proc: no procps needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            words = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            status = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] if words else "Z"
            if status != "Z" and any(a == b"--output_dir" and b == str(output_dir).encode() for a, b in zip(words, words[1:])):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("stop", [pytest.param("interrupt", marks=pytest.mark.ci), "kill"])
def test_a_stopped_two_process_run_resumes_to_the_same_prompt(stop, two_process_run, tmp_path):
    """A 2-process run stopped after a checkpoint, by Ctrl-C (SIGINT to the launcher's process group, which Accelerate's
    launcher passes to its workers) or by SIGKILL to the launcher and both workers (a machine's OOM killer or a lost
    node), resumes with 2 processes to the uninterrupted run's prompt and loss curve. (SIGKILL to the launcher alone
    leaves the workers training: torch's launcher starts each in a session of its own; a run into their folder is then
    refused while they live, as tested above.)"""
    from safetensors.torch import load_file

    killed = tmp_path / "killed"
    args = tiny_args(killed, steps=40, checkpoint_every=2)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/accelerate/cpu_2proc.yaml"),
               str(REPO / "recipes/train.py"), *map(str, args)]  # fmt: skip
    launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = killed / "checkpoint" / "state.json"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["step"] >= 4):
            time.sleep(0.05)
        if stop == "interrupt":
            os.killpg(launcher.pid, signal.SIGINT)
            launcher.wait(timeout=60)
        else:
            workers = [pid for pid in training_processes_of(killed) if pid != launcher.pid]
            assert len(workers) == 2, workers
            os.killpg(launcher.pid, signal.SIGKILL)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            launcher.wait()
        deadline = time.time() + 30
        while training_processes_of(killed) and time.time() < deadline:
            time.sleep(0.1)
        assert not training_processes_of(killed), f"workers still run after the {stop}"
    finally:  # whatever failed above, nothing of the run is left training
        for pid in ([launcher.pid] if launcher.poll() is None else []) + training_processes_of(killed):  # (a reaped pid may be reused)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.wait(timeout=10)
    assert not (killed / "results.json").exists(), "the run finished before it could be stopped"
    recipe("train.py", *args, "--resume", launcher="cpu_2proc.yaml")
    results, full = json.loads((killed / "results.json").read_text()), json.loads((two_process_run / "results.json").read_text())
    assert results["world_size"] == 2 and 4 <= results["resumed_from_step"] < 40
    assert results["loss_curve"] == full["loss_curve"] and results["metrics"] == full["metrics"]
    final = load_file(two_process_run / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    resumed = load_file(killed / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert (final - resumed).abs().max().item() <= 1e-6
    assert len(set(results["rank_parameter_digests"])) == 1


def test_resume_from_another_config_is_refused(tmp_path):
    recipe("train.py", *tiny_args(tmp_path, steps=2, checkpoint_every=2))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO / "recipes/train.py"), *map(str, tiny_args(tmp_path, steps=2, lr=0.5)), "--resume"],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert result.returncode != 0 and "was written by a run with another config" in result.stderr


def test_a_resume_with_another_eval_every_is_refused(tmp_path):
    """Found 2026-12-06: a resume with another eval_every was taken; results.json then gave the new eval_every beside a
    history evaluated on both schedules, and compare.py / project.py reused it as a run of the new one."""
    recipe("train.py", *tiny_args(tmp_path, steps=4, checkpoint_every=2, eval_every=2))
    before = snapshot(tmp_path)
    result = recipe("train.py", *tiny_args(tmp_path, steps=4, checkpoint_every=2, eval_every=3), "--resume", check=False)
    assert result.returncode != 0 and "evaluated at steps [2]" in result.stderr and "eval_every=3 evaluates at [3]" in result.stderr, result.stderr[-2000:]
    assert snapshot(tmp_path) == before
    recipe("train.py", *tiny_args(tmp_path, steps=4, checkpoint_every=2, eval_every=2), "--resume")  # the same schedule resumes


def test_a_resume_with_another_number_of_processes_is_refused(tmp_path):
    """Found 2026-12-06: a 2-process run resumed by one process was taken; the batches split another way from the
    checkpoint on, and results.json said world_size 1 for a run whose first steps ran on 2."""
    recipe("train.py", *tiny_args(tmp_path, steps=4, checkpoint_every=2))
    state_path = tmp_path / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["world_size"] == 1
    state_path.write_text(json.dumps({**state, "world_size": 2}))  # as a 2-process run writes it
    before = snapshot(tmp_path)
    result = recipe("train.py", *tiny_args(tmp_path, steps=4, checkpoint_every=2), "--resume", check=False)
    assert result.returncode != 0 and "written by 2 processes; this run has 1" in result.stderr, result.stderr[-2000:]
    assert snapshot(tmp_path) == before


def test_an_output_dir_that_is_a_file_is_refused_before_training(tmp_path):
    """Found 2026-12-06: an output_dir naming a file was refused by the save, after the whole run had trained."""
    (tmp_path / "taken").write_text("mine")
    result = recipe("train.py", *tiny_args(tmp_path / "taken", steps=2), check=False)
    assert result.returncode != 0 and "output_dir" in result.stderr and "is a file" in result.stderr, result.stderr[-2000:]
    assert "trainable parameters" not in result.stdout  # refused before the model loaded
    assert (tmp_path / "taken").read_text() == "mine"
    result = recipe("train.py", *tiny_args(tmp_path / "taken" / "run", steps=2), check=False)  # (2026-12-07: a folder below a file)
    assert result.returncode != 0 and "taken is a file; expected a folder" in result.stderr, result.stderr[-2000:]


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    """Found 2026-12-06: a killed launcher left its workers training; a resume (or any run) into their folder raced
    them, and whichever finished last wrote results.json and adapter/."""
    from softprompt_bench.run_lock import run_lock

    with run_lock(tmp_path / "run"):  # as a running training process holds it
        result = recipe("train.py", *tiny_args(tmp_path / "run", steps=2), check=False)
    assert result.returncode != 0 and f"is in use: another training process (pid {os.getpid()})" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run").exists()
    recipe("train.py", *tiny_args(tmp_path / "run", steps=2))  # released with the process that held it


def snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_refused_resume_names_the_key_and_touches_no_file(tmp_path):
    """Issue #12 (6): a refused resume overwrote resolved_config.yaml and named no key."""
    recipe("train.py", *tiny_args(tmp_path, steps=2, checkpoint_every=2))
    before = snapshot(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO / "recipes/train.py"), *map(str, tiny_args(tmp_path, steps=2, lr=0.5)), "--resume"],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert result.returncode != 0 and "lr: checkpoint 0.1 vs this run 0.5" in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("remove", ["checkpoint/state.json", "checkpoint"])
def test_resume_without_a_checkpoint_is_an_error_not_a_restart(tmp_path, remove):
    """Issue #12 (6): with the checkpoint (or its state.json) deleted, --resume retrained from step 0 and exited 0."""
    import shutil

    recipe("train.py", *tiny_args(tmp_path, steps=2, checkpoint_every=2))
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = snapshot(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO / "recipes/train.py"), *map(str, tiny_args(tmp_path, steps=2)), "--resume"],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert result.returncode != 0 and "holds no checkpoint (no state.json); there is nothing to resume" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_full_finetune_run_resumes(tmp_path):
    """The checkpoint recorded the fingerprint of the model as trained so far, which no fresh load matches."""
    recipe("train.py", *tiny_args(tmp_path, method="full_finetune", steps=2, checkpoint_every=2))
    recipe("train.py", *tiny_args(tmp_path, method="full_finetune", steps=2, checkpoint_every=2), "--resume")


def _local_task(path: Path, flipped: bool = False) -> str:
    labels = (1, 0) if not flipped else (0, 1)
    rows = [f"a great and moving film {i},{labels[0]}" if i % 2 else f"the worst film {i} a waste,{labels[1]}" for i in range(48)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return str(path)


def test_a_resume_or_a_reuse_after_the_data_changed_is_refused_naming_it(tmp_path):
    from softprompt_bench.plans import existing_result

    data, out = tmp_path / "data.csv", tmp_path / "run"
    args = tiny_args(out, steps=2, checkpoint_every=2, task=_local_task(data), label_words=" worst, great")  # (' 0', ' 1': one token here)
    recipe("train.py", *args)
    assert existing_result(load_config(None, list(map(str, args)))) is not None  # compare.py would reuse it
    _local_task(data, flipped=True)  # the same rows, labels swapped
    assert existing_result(load_config(None, list(map(str, args)))) is None  # ... not once its data changed
    before = snapshot(out)
    result = recipe("train.py", *args, "--resume", check=False)
    assert result.returncode != 0 and "data" in result.stderr and str(data) in result.stderr, result.stderr[-2000:]
    assert snapshot(out) == before


def test_a_resume_on_a_model_whose_other_weights_changed_is_refused(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(common.tiny_model_folder("llama"), model)
    args = tiny_args(tmp_path / "run", steps=2, checkpoint_every=2)
    args[args.index("--model") + 1] = str(model)
    recipe("train.py", *args)
    weights = load_file(model / "model.safetensors")
    name = next(key for key in weights if "q_proj" in key)
    save_file({**weights, name: weights[name] * 3}, model / "model.safetensors", metadata={"format": "pt"})  # embeddings unchanged
    result = recipe("train.py", *args, "--resume", check=False)
    assert result.returncode != 0 and "model" in result.stderr and "changed" in result.stderr, result.stderr[-2000:]


def test_a_diverged_run_stops_naming_the_step_and_saves_nothing(tmp_path, monkeypatch):
    import torch

    train = recipe_module("train")
    build_setup = train.support.build_setup

    def poisoned(config, accelerator):  # a prompt of NaN: the loss is NaN from the first step
        setup = build_setup(config, accelerator)
        with torch.no_grad():
            next(p for p in setup.model.parameters() if p.requires_grad).fill_(float("nan"))
        return setup

    monkeypatch.setattr(train.support, "build_setup", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 1 .*lr=0.1"):
        train.run(load_config(None, list(map(str, tiny_args(tmp_path, steps=3)))))
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "adapter").exists()


def _plugin_and_lora_plan(tmp_path, steps: int, train_size: int, eval_size: int) -> dict:
    """A two-method plan (plugin prompt, LoRA) over seeds 0 and 1 on the tiny Llama, reported in tmp_path/cmp."""
    return {
        "output_dir": str(tmp_path / "cmp"),
        "seeds": [0, 1],
        "base": {"model": common.tiny_model_folder("llama"), "steps": steps, "train_size": train_size, "eval_size": eval_size,
                 "batch_size": 4, "max_length": 16, "num_virtual_tokens": 4, "num_frequent_tokens": 50, "lr": 0.1,
                 "checkpoint_every": 0},
        "methods": [{"name": "plugin", "method": "vocab_sampled", "vocab_sampling": "uniform"},
                    {"name": "LoRA", "method": "lora", "lr": 0.01}],
    }  # fmt: skip


def test_compare_runs_methods_over_seeds_and_writes_table_json_plot(tmp_path):
    plan = dict(_plugin_and_lora_plan(tmp_path, steps=3, train_size=32, eval_size=16), baseline="LoRA")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    result = recipe("compare.py", "--config", tmp_path / "plan.yaml")  # as a command once; in-process after
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| plugin |" in table and "| LoRA |" in table and "±" in table
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]
    assert [r["seeds"] for r in rows] == [[0, 1], [0, 1]]
    assert rows[0]["paired_difference"]["baseline"] == "LoRA" and rows[0]["paired_difference"]["seeds"] == 2
    assert "paired difference to `LoRA`" in table and "| plugin | 0: " in table
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 10_000
    assert "table:" in result.stdout and "plot:" in result.stdout
    collected = tool("compare.py", "--config", tmp_path / "plan.yaml", "--collect")  # re-collects, trains nothing
    assert "| plugin |" in collected.stdout
    tool("compare.py", "--config", tmp_path / "plan.yaml", "--seeds", "0,1,2", "--method", "plugin")  # seed 2 of plugin only
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]
    assert [r["seeds"] for r in rows] == [[0, 1, 2], [0, 1]] and not (tmp_path / "cmp" / "LoRA" / "seed2").exists()
    unknown = tool("compare.py", "--config", tmp_path / "plan.yaml", "--method", "lora", check=False)
    assert unknown.returncode != 0 and "--method names ['lora']" in unknown.stderr and "['plugin', 'LoRA']" in unknown.stderr


def test_compare_starts_a_deep_prompt_from_the_same_seeds_shallow_prompt_after_it(tmp_path):
    """deep_init: prompt with `{seed}` in init_prompt: each deep run starts from its own seed's shallow run of the
    plan, which --jobs 2 finishes first (the four runs would otherwise start two at a time in plan order)."""
    plan = _plugin_and_lora_plan(tmp_path, steps=2, train_size=16, eval_size=8)
    shallow = str(tmp_path / "cmp" / "shallow" / "seed{seed}" / "adapter")
    plan["methods"] = [{"name": "deep from shallow", "method": "deep_prompt", "deep_init": "prompt", "init_prompt": shallow},
                       {"name": "shallow", "method": "vocab_sampled", "vocab_sampling": "uniform"}]  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    alone = tool("compare.py", "--config", tmp_path / "plan.yaml", "--method", "deep from shallow", check=False)
    assert alone.returncode != 0 and "which has no result and is not to be trained" in alone.stderr and not (tmp_path / "cmp").exists()
    tool("compare.py", "--config", tmp_path / "plan.yaml", "--jobs", "2")
    for seed in (0, 1):
        deep, source = (tmp_path / "cmp" / name / f"seed{seed}" for name in ("deep_from_shallow", "shallow"))
        adapter = json.loads((deep / "adapter" / "adapter_config.json").read_text())
        assert (adapter["peft_type"], adapter["deep_init"], adapter["init_prompt"]) == ("DEEP_PROMPT_TUNING", "prompt", str(source / "adapter"))
        assert (deep / "results.json").stat().st_mtime > max(path.stat().st_mtime for path in source.rglob("*"))
    # a finished run is reused only while the prompt it started from is unchanged: retraining a source retrains it
    before = (tmp_path / "cmp" / "deep_from_shallow" / "seed0" / "results.json").stat().st_mtime
    plan["methods"][1]["lr"] = 0.05  # the source row changed: it retrains to another prompt
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    tool("compare.py", "--config", tmp_path / "plan.yaml", "--jobs", "2", "--seeds", "0")
    assert (tmp_path / "cmp" / "deep_from_shallow" / "seed0" / "results.json").stat().st_mtime > before


def _from_prompt(tmp_path, name: str, source: str) -> RecipeConfig:
    return RecipeConfig(method="deep_prompt", deep_init="prompt", init_prompt=str(tmp_path / source / "adapter"),
                        output_dir=str(tmp_path / name))  # fmt: skip


def test_each_run_starts_after_the_run_of_the_list_whose_prompt_it_starts_from(tmp_path):
    from softprompt_bench.plans import run_sources

    configs = [_from_prompt(tmp_path, "b", "a"), RecipeConfig(output_dir=str(tmp_path / "a")), _from_prompt(tmp_path, "c", "b")]
    assert run_sources(configs) == [1, None, 0]
    (tmp_path / "elsewhere" / "adapter").mkdir(parents=True)
    assert run_sources([_from_prompt(tmp_path, "b", "elsewhere")]) == [None]  # a prompt trained outside the plan


@pytest.mark.parametrize("sources,message", [(("b", "a"), "starts a cycle"), (("a",), "inside the run's own output_dir"),
                                             (("typo",), "is no folder, no run of this plan and no Hub id")])  # fmt: skip
def test_runs_that_cannot_start_from_each_others_prompts_are_refused(tmp_path, sources, message):
    from softprompt_bench.plans import run_sources

    with pytest.raises(ValueError, match=message):
        run_sources([_from_prompt(tmp_path, name, source) for name, source in zip("ab", sources)])


def test_a_run_starting_from_a_run_that_is_neither_done_nor_to_be_trained_is_refused_before_anything_runs(tmp_path):
    from softprompt_bench.plans import run_all

    runs = [(RecipeConfig(output_dir=str(tmp_path / "a")), True), (_from_prompt(tmp_path, "b", "a"), False)]
    with pytest.raises(ValueError, match="which has no result and is not to be trained"):
        run_all(runs, REPO / "recipes/train.py")
    assert not (tmp_path / "b").exists()


def test_deep_init_prompt_needs_init_prompt_and_init_prompt_needs_it():
    with pytest.raises(ValueError, match="deep_init='prompt' needs init_prompt"):
        RecipeConfig(method="deep_prompt", deep_init="prompt")
    with pytest.raises(ValueError, match="init_prompt='x' is read only by method 'deep_prompt' with deep_init 'prompt'"):
        RecipeConfig(method="lora", init_prompt="x")


@pytest.mark.parametrize("settings,message", [
    ({"method": "lora", "reparameterization": "residual_mlp"}, r"reparameterization='residual_mlp' is read only by the plugin's methods"),
    ({"method": "prefix_tuning", "reparameterization": "residual_mlp"}, r"reparameterization='residual_mlp' is read only by"),
    ({"method": "vocab_sampled", "source_prompts": ["a"]}, r"source_prompts=\['a'\] is read only by method 'mixture'"),
    ({"method": "vocab_sampled", "source_adapter": "a"}, r"source_adapter='a' is read only by method 'projected'"),
    ({"method": "mixture", "projection": "p"}, r"projection='p' is read only by method 'projected'"),
    ({"method": "lora", "norm_matching": True}, r"norm_matching=True is read only by method 'vocab_sampled' and by 'deep_prompt' with deep_init 'vocab_sampled'"),
    ({"method": "deep_prompt", "norm_matching": True}, r"norm_matching=True is read only by .*got method='deep_prompt', deep_init='text'"),
])  # fmt: skip
def test_a_setting_the_runs_method_never_reads_is_refused(settings, message):
    """Found 2026-12-07 by a probe: a run kept settings its method never reads (residual_mlp with LoRA, source prompts
    of a vocab_sampled run) in its recorded config, as if they had been used; init_prompt, trainable_layers,
    modules_to_save and head_lr were refused so already."""
    with pytest.raises(ValueError, match=message):
        RecipeConfig(**settings)


def test_a_deep_prompt_run_started_from_sampled_rows_takes_norm_matching():
    """Found 2026-12-07 by a probe: `norm_matching` was dropped by the deep_prompt builder, so runs with true and false
    trained the same prompt, and the saved adapter's config said false where the run's results said true."""
    from softprompt_bench.methods import BUILDERS

    tokenizer = common.tiny_tokenizer_dir()
    built = [BUILDERS["deep_prompt"][0](RecipeConfig(method="deep_prompt", deep_init="vocab_sampled", vocab_sampling="top_frequent",
                                                 num_frequent_tokens=50, norm_matching=matched), "CAUSAL_LM", tokenizer, [" a", " b"], [])
             for matched in (True, False)]  # fmt: skip
    assert [config.norm_matching for config in built] == [True, False]


def test_a_deep_prompt_run_with_norm_matching_recorded_before_it_was_read_is_not_reused():
    """The review of that fix: such a run's digest was the same before and after, so compare.py would have reused a run
    that trained without norm matching as one with it. Its digest changed; other runs keep theirs."""
    matched = RecipeConfig(method="deep_prompt", deep_init="vocab_sampled", norm_matching=True)
    assert matched.training_digest() != "ecb8d9daf6d0159b"  # (the digest such a run recorded before)
    assert RecipeConfig(method="deep_prompt", deep_init="vocab_sampled").training_digest() == \
        RecipeConfig(method="deep_prompt", deep_init="vocab_sampled").training_digest()  # fmt: skip
    assert "norm_matching_read" not in RecipeConfig(method="vocab_sampled", norm_matching=True).training_config()


def test_init_prompt_seed_placeholder_becomes_the_runs_seed():
    config = RecipeConfig(method="deep_prompt", deep_init="prompt", init_prompt="runs/x/seed{seed}/adapter", seed=3)
    assert config.init_prompt == "runs/x/seed3/adapter"


def test_split_seed_redraws_the_rows_a_run_trains_and_scores_on():
    """split_seed re-draws an embedded task's split: another seed scores other rows, the same seed the same ones,
    and '{seed}' ties a plan's run of seed s to split s (deep_vs_lora_bbc_resplit.yaml)."""
    from softprompt_bench.recipe_support import evaluation_prompts

    def scored(**extra):
        config = RecipeConfig(model=common.tiny_model_folder("llama"), eval_split="test", eval_size=16, max_length=16, **extra)
        return evaluation_prompts(config)[2:]

    fixed, redrawn = scored(), scored(split_seed=1)
    assert redrawn != fixed and scored(split_seed=1) == redrawn and scored(split_seed=0) == fixed  # seed 0 drew the fixed split
    assert RecipeConfig(split_seed="{seed}", seed=4).split_seed == 4
    assert load_config(None, ["--split_seed", "{seed}", "--seed", "2"]).split_seed == 2
    assert load_config(None, ["--split_seed", "3"]).split_seed == 3 and load_config(None, ["--split_seed", "none"]).split_seed is None
    assert RecipeConfig(split_seed="{seed}", seed=4).training_digest() != RecipeConfig(seed=4).training_digest()


@pytest.mark.parametrize("value", ["x", 1.5, True])
def test_a_bad_split_seed_is_named(value):
    with pytest.raises(ValueError, match=f"split_seed must be None.*got {value!r}"):
        RecipeConfig(split_seed=value)


def test_a_bad_split_seed_on_the_command_line_is_named():
    with pytest.raises(ValueError, match="--split_seed expects an integer, got 'x'"):
        load_config(None, ["--split_seed", "x"])


def test_split_seed_is_refused_for_data_that_brings_its_own_splits(tmp_path):
    with pytest.raises(ValueError, match=r"split_seed=2 re-draws the splits of an embedded task .* task='.*data.csv' is not one"):
        RecipeConfig(task=str(tmp_path / "data.csv"), split_seed=2)


def test_runs_made_before_later_keys_existed_keep_their_digest():
    """Keys added later (task_type, eval_split, deep_init, init_prompt) leave a config that does not set them with the
    digest it had before they existed: finished runs stay reusable (the value is the digest at 5c5b84a^, before
    eval_split, deep_init and init_prompt existed)."""
    assert RecipeConfig(method="vocab_sampled", output_dir="anywhere").training_digest() == "09ce3e7f21c4c535"


def test_compare_jobs_runs_trainings_at_once_with_one_thread_each(tmp_path):
    plan = _plugin_and_lora_plan(tmp_path, steps=2, train_size=16, eval_size=8)
    plan["methods"].insert(0, {"name": "zero-shot", "method": "zero_shot"})
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    tool("compare.py", "--config", tmp_path / "plan.yaml", "--jobs", "2")
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]
    assert [(r["method"], r["seeds"]) for r in rows] == [("zero-shot", [0, 1]), ("plugin", [0, 1]), ("LoRA", [0, 1])]  # plan order kept
    for run in (tmp_path / "cmp").glob("*/seed*/results.json"):
        assert json.loads(run.read_text())["torch_threads"] == 1
    # the 4 trainings start before the zero-shot runs: a zero-shot run starts when a worker frees after the 4th
    # training started, i.e. after 3 trainings finished
    trained = sorted(run.stat().st_mtime for name in ("plugin", "LoRA") for run in (tmp_path / "cmp" / name).glob("seed*/results.json"))
    assert len(trained) == 4 and all(run.stat().st_mtime > trained[2] for run in (tmp_path / "cmp" / "zero-shot").glob("seed*/results.json"))
    refused = tool("compare.py", "--config", tmp_path / "plan.yaml", "--jobs", "0", check=False)
    assert refused.returncode != 0 and "--jobs 0: expected a whole number >= 1" in refused.stderr
    broken = dict(plan, output_dir=str(tmp_path / "broken"), methods=[{"name": "bad", "method": "lora", "lora_target_modules": ["nope"]}] + plan["methods"])
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    failed = tool("compare.py", "--config", tmp_path / "broken.yaml", "--jobs", "2", check=False)
    assert failed.returncode != 0 and not (tmp_path / "broken" / "comparison.md").exists()


@pytest.mark.slow  # five trainings (~30 s): the fast suite draws the curve from records (test_prompt_length_curve_draws_*)
def test_prompt_length_curve_reads_a_length_plan(tmp_path):
    plan = {
        "output_dir": str(tmp_path / "lengths"),
        "seeds": [0],
        "base": {"model": common.tiny_model_folder("llama"), "steps": 2, "train_size": 16, "eval_size": 8, "batch_size": 4,
                 "max_length": 16, "num_frequent_tokens": 50, "lr": 0.1, "checkpoint_every": 0, "num_virtual_tokens": 3},
        "methods": [{"name": "P1", "method": "vocab_sampled", "vocab_sampling": "uniform", "num_virtual_tokens": 1},
                    {"name": "P3", "method": "vocab_sampled", "vocab_sampling": "uniform"},
                    {"name": "LoRA", "method": "lora", "lr": 0.01}],
    }  # fmt: skip
    first = dict(plan, methods=plan["methods"][1:])  # P3 and LoRA, reported in output_dir
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(first))
    tool("compare.py", "--config", tmp_path / "first.yaml")
    reused = tmp_path / "lengths" / "P3" / "seed0" / "results.json"
    stamp = reused.stat().st_mtime_ns
    plan["report_dir"] = str(tmp_path / "curve")  # reuses the runs above, reports elsewhere
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    tool("compare.py", "--config", tmp_path / "plan.yaml")
    assert reused.stat().st_mtime_ns == stamp  # collected, not re-run
    assert "| P1 |" not in (tmp_path / "lengths" / "comparison.md").read_text()  # first report untouched
    result = recipe("prompt_length_curve.py", "--comparison", tmp_path / "curve" / "comparison.json")
    lines = (tmp_path / "curve" / "prompt_length.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["1", "3", "LoRA"]
    assert lines[2].split("|")[2].strip() == "32" and lines[3].split("|")[2].strip() == "96"  # P x width 32
    assert (tmp_path / "curve" / "prompt_length.png").stat().st_size > 10_000 and "plot:" in result.stdout


def test_prompt_length_curve_takes_the_default_length_and_keeps_prompt_methods_apart():
    """A row relying on the default prompt length (20) dropped out of the table and plot, and a deep_prompt row was
    drawn as a point of the shallow prompt's curve."""
    curve = recipe_module("prompt_length_curve")

    def row(name):
        return {"method": name, "trainable_params": 1, "accuracy_mean": 0.5, "accuracy_std": 0.0, "time_per_step_s": 1.0}

    comparison = {"plan": {"base": {"method": "vocab_sampled"},
                           "methods": [{"name": "P5", "num_virtual_tokens": 5}, {"name": "default P"},
                                       {"name": "deep", "method": "deep_prompt", "num_virtual_tokens": 5}, {"name": "LoRA", "method": "lora"}]},
                  "rows": [row("P5"), row("default P"), row("deep"), row("LoRA")]}  # fmt: skip
    points, references = curve.curve_points(comparison)
    assert [(p["recipe_method"], p["num_virtual_tokens"]) for p in points] == [("deep_prompt", 5), ("vocab_sampled", 5), ("vocab_sampled", 20)]
    assert [r["method"] for r in references] == ["LoRA"]


def test_prompt_length_curve_draws_one_curve_per_setting():
    """Found 2026-12-06: two settings of one method (uniform and class_labels starts) were one zigzag curve, and the
    table could not tell their rows apart."""
    curve = recipe_module("prompt_length_curve")

    def row(name, accuracy):
        return {"method": name, "trainable_params": 1, "accuracy_mean": accuracy, "accuracy_std": 0.0, "time_per_step_s": 1.0}

    comparison = {"plan": {"base": {"method": "vocab_sampled"},
                           "methods": [{"name": "u1", "num_virtual_tokens": 1, "vocab_sampling": "uniform"},
                                       {"name": "u5", "num_virtual_tokens": 5, "vocab_sampling": "uniform"},
                                       {"name": "c1", "num_virtual_tokens": 1, "vocab_sampling": "class_labels"},
                                       {"name": "c5", "num_virtual_tokens": 5, "vocab_sampling": "class_labels"},
                                       {"name": "d5", "num_virtual_tokens": 5, "method": "deep_prompt"}]},
                  "rows": [row("u1", 0.8), row("c1", 0.5), row("u5", 0.55), row("c5", 0.85), row("d5", 0.7)]}  # fmt: skip
    points, _ = curve.curve_points(comparison)
    assert [(p["curve"], p["num_virtual_tokens"]) for p in points] == [
        ("deep_prompt", 5), ("vocab_sampled (vocab_sampling=class_labels)", 1), ("vocab_sampled (vocab_sampling=class_labels)", 5),
        ("vocab_sampled (vocab_sampling=uniform)", 1), ("vocab_sampled (vocab_sampling=uniform)", 5)]  # fmt: skip


def test_prompt_length_curve_names_the_split_it_scored(tmp_path, monkeypatch):
    """The curve's table and plot said "validation accuracy" for a plan scored on the test split (the deep
    prompt-length plot of docs/deep_prompts_results.md)."""
    import matplotlib.figure

    curve = recipe_module("prompt_length_curve")
    row = {"method": "P5", "trainable_params": 1, "accuracy_mean": 0.5, "accuracy_std": 0.0, "time_per_step_s": 1.0}
    labels = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *a, **k: labels.append(figure.axes[0].get_ylabel()))
    for split, plan_base in (("test", {"eval_split": "test"}), ("validation", {})):
        comparison = {"plan": {"base": plan_base, "methods": [{"name": "P5", "num_virtual_tokens": 5}]}, "rows": [row]}
        (tmp_path / "comparison.json").write_text(json.dumps(comparison))
        curve.main(["--comparison", str(tmp_path / "comparison.json")])
        assert (tmp_path / "prompt_length.md").read_text().startswith(f"| prompt length | trainable params | {split} accuracy")
        assert labels.pop() == f"{split} accuracy (%)"


def test_a_prompt_length_table_from_a_partial_comparison_says_so(tmp_path):
    """Found 2026-12-07 by a probe: a comparison missing a seed gave a curve row of one seed with std 0 and no word."""
    curve = recipe_module("prompt_length_curve")
    rows = [{"method": "P4", "trainable_params": 1, "accuracy_mean": 0.5, "accuracy_std": 0.0, "time_per_step_s": 1.0, "seeds": [0]},
            {"method": "P8", "trainable_params": 2, "accuracy_mean": 0.6, "accuracy_std": 0.1, "time_per_step_s": 1.0, "seeds": [0, 1]}]
    comparison = {"plan": {"base": {}, "methods": [{"name": "P4", "num_virtual_tokens": 4}, {"name": "P8", "num_virtual_tokens": 8}]},
                  "rows": rows, "missing": {"P4": [1]}}  # fmt: skip
    (tmp_path / "comparison.json").write_text(json.dumps(comparison))
    curve.main(["--comparison", str(tmp_path / "comparison.json")])
    table = (tmp_path / "prompt_length.md").read_text()
    assert "| 4 | 1 | 50.0 ± 0.0 | 1.00 | vocab_sampled | 0 |" in table and "| 0, 1 |" in table
    assert "No result for: P4 (seeds 1)" in table


# ------------------------------------------------------------------------------ bad input
def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"method='prefix' is unknown"):
        RecipeConfig(method="prefix")


def test_train_help_lists_every_config_key():
    """Found 2026-12-06: --help listed --config and --resume only, though RecipeConfig's field docs are written for it."""
    import dataclasses

    from softprompt_bench.recipe_config import RecipeConfig

    text = recipe("train.py", "--help").stdout
    for item in dataclasses.fields(RecipeConfig):
        assert f"--{item.name} (" in text, item.name
    assert "--num_virtual_tokens (20): Prompt length for prompt methods." in text


def test_unknown_config_key_is_refused_in_yaml_and_cli(tmp_path):
    (tmp_path / "c.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['learning_rate'\]"):
        load_config(str(tmp_path / "c.yaml"))
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['stpes'\]"):
        load_config(None, ["--stpes", "3"])


def test_cli_values_are_typed_and_checked():
    config = load_config(None, ["--steps", "7", "--lr=0.5", "--norm_matching", "true", "--lora_target_modules", "q,k"])
    assert (config.steps, config.lr, config.norm_matching, config.lora_target_modules) == (7, 0.5, True, ["q", "k"])
    with pytest.raises(ValueError, match=r"--steps expects an integer, got 'many'"):
        load_config(None, ["--steps", "many"])
    optional = load_config(None, ["--method", "deep_prompt", "--trainable_layers", "3", "--head_lr", "1e-3"])
    assert (optional.trainable_layers, optional.head_lr) == (3, 1e-3)  # optional numbers typed too
    assert load_config(None, ["--head_lr", "none"]).head_lr is None
    with pytest.raises(ValueError, match=r"--head_lr expects a number, got 'fast'"):
        load_config(None, ["--head_lr", "fast"])


@pytest.mark.parametrize("key,value,message", [
    ("lr", float("inf"), "lr must be a finite number > 0"), ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", True, "lr must be a finite number > 0"), ("weight_decay", float("nan"), "weight_decay must be a finite number >= 0"),
    ("steps", True, "steps must be a non-negative integer"), ("batch_size", True, "batch_size must be a positive integer"),
    ("checkpoint_every", 1.5, "checkpoint_every must be a non-negative integer"), ("eval_every", -1, "eval_every must be a non-negative integer"),
    ("warmup_steps", -2, "warmup_steps must be a non-negative integer"), ("seed", -1, r"seed must be an integer in 0..2\*\*32 - 1"),
    ("seed", 2**32, r"seed must be an integer in 0..2\*\*32 - 1"), ("seed", 1.5, r"seed must be an integer in 0..2\*\*32 - 1"),
    ("norm_matching", "yes", "norm_matching must be True or False"),
])  # fmt: skip
def test_bad_numbers_are_named(key, value, message):
    with pytest.raises(ValueError, match=f"{message}, got {re.escape(repr(value))}"):
        RecipeConfig(**{key: value})


@pytest.mark.parametrize("key,value,message", [
    ("label_words", 5, "label_words must be None or a list of strings"), ("label_words", [" good", 3], "label_words must be None or a list of strings"),
    ("template", 5, r"template must be None or a text holding \{text\}"), ("template", "Review:", r"template must be None or a text holding \{text\}"),
    # found 2026-12-06: other fields or a lone brace passed here, then failed in str.format after the model loaded
    ("template", "Review: {text} ({label}):", r"template must be None or a text holding \{text\}"),
    ("template", "Review {text} }", r"template must be None or a text holding \{text\}"),
    ("lora_target_modules", "q_proj", "lora_target_modules must be a list of strings"),
    ("source_prompts", [1], "source_prompts must be a list of strings"),
])  # fmt: skip
def test_bad_texts_and_lists_are_named(key, value, message):
    with pytest.raises(ValueError, match=f"{message}.*, got {re.escape(repr(value))}"):
        RecipeConfig(**{key: value})


@pytest.mark.parametrize("key,value,message", [
    # found 2026-12-06: each failed later with a raw TypeError naming no key (after the model loaded, for init_text)
    ("model", None, "model must be a non-empty text"), ("model", 5, "model must be a non-empty text"),
    ("output_dir", None, "output_dir must be a non-empty text"), ("task", ["a", "b"], "task must be a non-empty text"),
    ("init_text", 5, "init_text must be a non-empty text"), ("output_dir", "", "output_dir must be a non-empty text"),
    ("source_adapter", 3, "source_adapter must be None or a non-empty text"), ("method", ["lora"], "method must be a non-empty text"),
    ("label_words", [], r"label_words must be None or a list of strings \(one per label\)"),
    ("head_lr", float("nan"), "head_lr must be a positive learning rate"), ("head_lr", float("inf"), "head_lr must be a positive learning rate"),
    ("mixing", "one_hot", r"mixing='one_hot': the recipes' mixture trains mixing 'task' or 'attention'"),
])  # fmt: skip
def test_texts_of_the_wrong_type_empty_label_words_and_a_non_finite_head_lr_are_named(key, value, message):
    with pytest.raises(ValueError, match=f"{message}.*, got {re.escape(repr(value))}"):
        RecipeConfig(**{key: value})


def test_comma_lists_are_stripped_and_none_unsets_a_text_on_the_command_line(tmp_path):
    """Found 2026-12-06: --lora_target_modules "q_proj, v_proj" targeted ' v_proj', which matched nothing (LoRA on
    q_proj alone, without a word); --reparameterization none was refused, so a YAML value could not be unset."""
    config = load_config(None, ["--method", "lora", "--lora_target_modules", "q_proj, v_proj", "--modules_to_save", " pooler "])
    assert config.lora_target_modules == ["q_proj", "v_proj"] and config.modules_to_save == ["pooler"]
    assert load_config(None, ["--label_words", " yes, no"]).label_words == [" yes", " no"]  # a verbaliser's spaces count
    with pytest.raises(ValueError, match=r"lora_target_modules holds an empty entry"):
        load_config(None, ["--lora_target_modules", "q_proj,,v_proj"])
    (tmp_path / "c.yaml").write_text("method: deep_prompt\nreparameterization: residual_mlp\n")
    assert load_config(str(tmp_path / "c.yaml"), ["--reparameterization", "none"]).reparameterization is None


def test_a_key_given_twice_is_refused_in_yaml_and_plans(tmp_path):
    """Found 2026-12-06: the last of two equal keys in a YAML mapping won without a word (configs and plans)."""
    from softprompt_bench.plans import load_plan

    (tmp_path / "c.yaml").write_text("steps: 5\nlr: 0.1\nsteps: 50\n")
    with pytest.raises(ValueError, match=r"c.yaml.*key 'steps' is given twice \(lines 1 and 3\)"):
        load_config(str(tmp_path / "c.yaml"))
    assert load_config(None, ["--steps", "3", "--steps", "5"]).steps == 5  # the command line's last one wins, as with argparse
    (tmp_path / "plan.yaml").write_text("output_dir: out\nmethods: [{name: a, steps: 3, steps: 9}]\n")
    with pytest.raises(ValueError, match=r"plan.yaml.*key 'steps' is given twice"):
        load_plan(str(tmp_path / "plan.yaml"))
    # merge keys share settings, and a key beside one overrides the merged value (the review caught the first version
    # failing on `<<`)
    (tmp_path / "merged.yaml").write_text("output_dir: out\nbase: &shared {lr: 0.5, steps: 3}\nmethods: [{name: a, <<: *shared, steps: 9}]\n")
    plan, _ = load_plan(str(tmp_path / "merged.yaml"))
    assert plan["methods"][0] == {"name": "a", "lr": 0.5, "steps": 9}


def test_a_plans_numbers_are_typed_as_on_the_command_line(tmp_path):
    from softprompt_bench.plans import load_plan, run_config

    (tmp_path / "plan.yaml").write_text("output_dir: out\nbase: {lr: 1e-3}\nmethods: [{name: a, weight_decay: 1e-2}]\n")
    plan, seeds = load_plan(str(tmp_path / "plan.yaml"))  # YAML reads 1e-3 as a string
    config = run_config(plan, plan["methods"][0], seeds[0])
    assert (config.lr, config.weight_decay) == (1e-3, 1e-2)


@pytest.mark.parametrize("plan,seeds,message", [
    ("methods: [{name: a}, {name: a}]", None, r"method names must be distinct: 'a' twice"),
    ("methods: [{name: 'plugin a'}, {name: plugin_a}]", None, r"'plugin a' and 'plugin_a' .* the same folder 'plugin_a'"),
    ("methods: [{name: a}]\nseeds: [0, 0]", None, r"seeds must be distinct, got \[0, 0\]"),
    ("methods: [{name: a}]", "0,0", r"seeds must be distinct, got \[0, 0\]"),
    ("methods: [{name: a}]", "0,x", r"--seeds must be comma-separated integers, got '0,x'"),
    ("methods: [{name: '.'}, {name: b}]", None, r"method name '\.' .*names no folder of its own"),
    ("methods: [{name: '_'}, {name: b}]", None, r"method name '_' .*names no folder of its own"),
    ("methods: [{name: '..'}, {name: b}]", None, r"method name '\.\.' .*names no folder of its own"),
    ("methods: [{name: 1}]", None, r"method names must be non-empty strings, got 1"),
    ("methods: [{lr: 0.1}]", None, r"method \{'lr': 0.1\} .*has no name"),
    ("methods: {a: {lr: 0.1}}", None, r"methods in .* must be a non-empty list"),
    ("base: {lr: 0.1}", None, r"methods in .* must be a non-empty list"),
    ("methods: [{name: a, seed: 5}]", None, r"method 'a' sets seed, which the plan sets"),
    ("methods: [{name: a, output_dir: x}]", None, r"method 'a' sets output_dir, which the plan sets"),
    ("methods: [{name: a}]\nseeds: 3", None, r"seeds must be a list of integers, got 3"),
    # found 2026-12-07 by a probe: a base's seed and output_dir were overwritten by the plan's without a word
    ("methods: [{name: a}]\nbase: {seed: 5}", None, r"base sets seed, which the plan sets \(seeds: and output_dir:\)"),
    ("methods: [{name: a}]\nbase: {output_dir: x}", None, r"base sets output_dir, which the plan sets"),
    # found 2026-12-06: a raw TypeError, and a string's letters read as keys
    ("methods: [{name: a}]\nbase: null", None, r"base in .* must be a mapping of config keys .*, got None"),
    ("methods: [{name: a}]\nbase: steps", None, r"base in .* must be a mapping of config keys .*, got 'steps'"),
    ("methods: [{name: a}]\nreport_dir: 5", None, r"report_dir in .* must be a folder name .*, got 5"),
])  # fmt: skip
def test_a_plan_whose_runs_would_overwrite_or_double_count_each_other_is_refused(tmp_path, plan, seeds, message):
    from softprompt_bench.plans import load_plan

    (tmp_path / "plan.yaml").write_text(f"output_dir: out\n{plan}\n")
    with pytest.raises(ValueError, match=message):
        load_plan(str(tmp_path / "plan.yaml"), seeds)


@pytest.mark.parametrize("key", ["output_dir", "report_dir"])
def test_a_plan_folder_that_a_file_takes_is_refused_before_any_run(tmp_path, key):
    """Found 2026-12-07 by a probe: a plan's report_dir that was a file failed with a bare FileExistsError after every
    run had trained, an output_dir below a file with NotADirectoryError inside each run."""
    from softprompt_bench.plans import load_plan

    (tmp_path / "afile").write_text("mine")
    folders = {"output_dir": "out", key: str(tmp_path / "afile" / "below" if key == "output_dir" else tmp_path / "afile")}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({**folders, "methods": [{"name": "A"}]}))
    with pytest.raises(ValueError, match=rf"{key} in .*plan.yaml=.*afile.*: .*afile is a file; expected a folder"):
        load_plan(str(tmp_path / "plan.yaml"))
    assert (tmp_path / "afile").read_text() == "mine"


def test_unknown_model_alias_is_named(tmp_path):
    from softprompt_bench.recipe_support import resolve_model_folder

    with pytest.raises(ValueError, match=r"model='smollm3' is neither a known alias"):
        resolve_model_folder("smollm3")
    # found 2026-12-06: a missing folder was taken for a Hub id ("Repo id must be in the form ...")
    for missing in (str(tmp_path / "no_such_model"), "./no_such_model", "../a/b"):
        with pytest.raises(ValueError, match=f"model={re.escape(repr(missing))} is no folder here"):
            resolve_model_folder(missing)
    home = os.path.expanduser("~")
    if os.path.isdir(common.tiny_model_folder("llama")) and common.tiny_model_folder("llama").startswith(home + os.sep):
        assert resolve_model_folder("~" + common.tiny_model_folder("llama")[len(home) :]) == common.tiny_model_folder("llama")


def test_missing_columns_and_empty_label_words_are_named(tmp_path):
    from softprompt_bench.classification import label_token_ids
    from softprompt_bench.data import load_task

    path = tmp_path / "data.jsonl"
    path.write_text('{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n' * 10)
    with pytest.raises(ValueError, match="text"):
        load_task(str(path))
    with pytest.raises(ValueError, match=r"label word '' tokenizes to no tokens"):
        label_token_ids(common.tiny_tokenizer(), [" positive", ""])
    # found 2026-12-06: two labels with one word ran to the end, every row scored as the first label
    with pytest.raises(ValueError, match=r"label words 0 and 1 \(' positive' and ' positive'\) tokenize to the same tokens"):
        label_token_ids(common.tiny_tokenizer(), [" positive", " positive"])


def test_an_empty_split_is_refused_before_training_naming_it(tmp_path):
    """Three rows leave 10% validation / test empty: the run trained, then failed in compute_metrics."""
    data = tmp_path / "three.csv"
    data.write_text("text,label\nthis is good,1\nthis is bad,0\nfine,1\n")  # (datasets 4.7 fails casting string labels here)
    out = tmp_path / "run"
    result = recipe("train.py", *tiny_args(out, steps=2, task=data), check=False)
    assert result.returncode != 0
    assert "Split 'validation'" in result.stderr and "no rows" in result.stderr and str(data) in result.stderr, result.stderr[-2000:]
    assert "step 1" not in result.stdout + result.stderr and not out.exists()


@pytest.mark.slow  # ten trainings (~80 s): the fast suite checks the summary (test_project_summary_*) and the projection itself
def test_project_recipe_writes_the_transfer_table(tmp_path):
    import peft
    from transformers import AutoModelForCausalLM

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    source_dir = common.tiny_model_folder("gpt2")
    source = AutoModelForCausalLM.from_pretrained(source_dir)
    adapter = tmp_path / "source_adapter"
    peft.get_peft_model(source, VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(adapter)
    plan = {
        "source_model": source_dir, "target_model": common.tiny_model_folder("llama"), "source_adapter": str(adapter),
        "method": "lstsq", "output_dir": str(tmp_path / "out"), "seeds": [0, 1],
        # no task: the recipe's default (the summary crashed on plan['target']['task'] after every run had trained)
        "target": {"num_virtual_tokens": 4, "steps": 4, "eval_every": 2, "batch_size": 4,
                   "train_size": 32, "eval_size": 16, "max_length": 16, "num_frequent_tokens": 50, "lr": 0.1},
    }  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    recipe("project.py", "--config", tmp_path / "plan.yaml")  # as a command once; in-process after
    table = (tmp_path / "out" / "projection_results.md").read_text()
    for row in ("no prompt", "random prompt", "projected prompt (zero-shot)", "cold start", "warm start", "task `movie_sentiment`",
                "4 steps."):  # (the runs' steps; found 2026-12-06: a plan leaving steps to the default read "None steps")
        assert row in table, row
    summary = json.loads((tmp_path / "out" / "projection_results.json").read_text())
    assert len(summary["warm_steps_ratio_per_seed"]) == 2 and summary["projection"]["num_anchors"] > 32
    assert (tmp_path / "out" / "projection_lstsq_none" / "projection.safetensors").exists()
    # refused before anything runs: repeated seeds (counted twice), a plan without a key, a projection of other models
    result = tool("project.py", "--config", tmp_path / "plan.yaml", "--seeds", "0,0", check=False)
    assert result.returncode != 0 and "seeds must be distinct, got [0, 0]" in result.stderr, result.stderr[-1500:]
    (tmp_path / "short.yaml").write_text(yaml.safe_dump({k: v for k, v in plan.items() if k != "target"}))
    result = tool("project.py", "--config", tmp_path / "short.yaml", check=False)
    assert result.returncode != 0 and "lacks ['target']" in result.stderr, result.stderr[-1500:]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**plan, "source_model": common.tiny_model_folder("llama")}))
    result = tool("project.py", "--config", tmp_path / "other.yaml", check=False)
    assert result.returncode != 0 and "was fitted for" in result.stderr and "use another output_dir" in result.stderr, result.stderr[-1500:]


def test_a_projection_fitted_for_other_weights_of_the_plans_models_is_fitted_again(tmp_path, capsys):
    """Found 2026-12-07 by a probe: project.py reused its projection after the target model at the same path had new
    weights (it compared the models' names only), and the projected runs then failed in their processes."""
    project = recipe_module("project")
    target = tmp_path / "target"
    common.tiny_model("llama")[0].save_pretrained(target)
    common.tiny_tokenizer().save_pretrained(target)
    plan = {"source_model": common.tiny_model_folder("gpt2"), "target_model": str(target)}
    folder, first = project.fitted_projection(plan, tmp_path / "out")
    assert project.fitted_projection(plan, tmp_path / "out")[1] == first and "fitting it again" not in capsys.readouterr().out
    common.tiny_model("llama", seed=1)[0].save_pretrained(target)  # other weights at the same path
    _, again = project.fitted_projection(plan, tmp_path / "out")
    assert "was fitted for other weights of" in capsys.readouterr().out
    assert again["target_fingerprint"] != first["target_fingerprint"] and again["source_fingerprint"] == first["source_fingerprint"]


def test_project_summary_counts_steps_from_the_projected_prompt_and_the_cold_starts_first_reach():
    project = recipe_module("project")

    def run(final, history=(), steps=24):
        return {"metrics": {"accuracy": final}, "steps": steps, "eval_history": [{"step": s, "accuracy": a} for s, a in history]}

    records = {
        "no prompt": [run(0.6), run(0.6)],
        "random prompt": [run(0.5), run(0.5)],
        "projected prompt (zero-shot)": [run(0.82), run(0.7)],
        # seed 0: cold first reaches its final 0.8 at step 8; seed 1: at step 24
        "trained on target (cold start)": [run(0.8, [(4, 0.7), (8, 0.8), (12, 0.75)]), run(0.8, [(4, 0.6), (8, 0.7)])],
        # seed 0: the projected prompt already beats it (step 0); seed 1: the warm start reaches it at step 8
        "projected + trained (warm start)": [run(0.7, [(4, 0.6)]), run(0.85, [(4, 0.75), (8, 0.81)])],
    }
    summary = project.summarise(records, {"method": "lstsq"})
    assert summary["warm_steps_ratio_per_seed"] == [0.0, 8 / 24]
    assert abs(summary["recovered_gain"] - (0.76 - 0.6) / (0.8 - 0.6)) < 1e-9
    records["no prompt"] = [run(0.9), run(0.9)]  # the trained prompt does not beat no prompt: no ratio
    assert project.summarise(records, {"method": "lstsq"})["recovered_gain"] is None



def test_the_projection_table_names_the_split_and_rows_it_scored(tmp_path):
    """Found 2026-12-07 by a probe: projection_results.md said neither the split nor the rows scored (a test-split
    plan read as a bare 'accuracy')."""
    project = recipe_module("project")

    def run(final):
        return {"metrics": {"accuracy": final, "confusion": [[500, 28], [0, 528]]}, "steps": 4, "eval_history": [],
                "config": {"eval_split": "test"}}  # fmt: skip

    names = ["no prompt", "random prompt", "projected prompt (zero-shot)", "trained on target (cold start)", "projected + trained (warm start)"]
    info = {"method": "lstsq", "row_norm_mode": None, "num_anchors": 40, "fit_seconds": 0.1, "quality": {"mean_cosine": 0.5, "top1": 0.1, "top10": 0.2}}
    summary = project.summarise({name: [run(0.5 + 0.01 * i)] for i, name in enumerate(names)}, info)
    project.write_markdown(summary, {"source_model": "a", "target_model": "b"}, [0], tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "test split (1,056 rows)" in text and "| target model with | test accuracy (mean ± std) |" in text


@pytest.mark.parametrize("name,expected", [("gpt2", "CAUSAL_LM"), ("llama", "CAUSAL_LM"), ("bert", "SEQ_CLS")])
def test_a_saved_models_architecture_decides_causal_or_seq_cls(name, expected):
    from softprompt_bench.recipe_support import model_task_type

    assert model_task_type(common.tiny_model_folder(name)) == expected  # GPT2LMHeadModel is causal too


def test_an_encoder_decoder_or_an_unknown_architecture_is_named(tmp_path):
    from transformers import AutoConfig

    from softprompt_bench.recipe_support import model_task_type

    with pytest.raises(ValueError, match="encoder-decoder"):
        model_task_type(common.tiny_model_folder("t5"))
    config = AutoConfig.from_pretrained(common.tiny_model_folder("gpt2"))
    config.architectures = ["GPT2DoubleHeadsModelOfTheFuture"]
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="GPT2DoubleHeadsModelOfTheFuture.*task_type"):
        model_task_type(str(tmp_path))
    assert model_task_type(str(tmp_path), "CAUSAL_LM") == "CAUSAL_LM"


def test_scoring_shows_progress(tmp_path):
    result = recipe("train.py", *tiny_args(tmp_path, steps=1))
    assert "scoring" in result.stderr


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_loads(path):
    """A config in recipes/configs that does not load costs a newcomer a failed run: every compare plan builds
    each of its runs' configs (option values checked), every projection plan passes project.py's check, every
    other file is a train.py config."""
    from softprompt_bench.plans import load_plan, run_config

    raw = yaml.safe_load(path.read_text())
    if "methods" in raw:
        plan, seeds = load_plan(str(path))
        configs = [run_config(plan, method, seed) for method in plan["methods"] for seed in seeds]
        assert len({config.output_dir for config in configs}) == len(configs), "two runs of the plan share a folder"
    elif "source_model" in raw:
        recipe_module("project").check_plan(raw, str(path))
    else:
        assert isinstance(load_config(str(path)), RecipeConfig)


@pytest.mark.parametrize("target,message", [
    ({"stepz": 4}, r"Unknown config key\(s\) \['stepz'\] in target of plan.yaml"),
    ({"checkpoint_every": 5}, r"target of plan.yaml sets \['checkpoint_every'\], which project.py sets itself"),
    ({"model": "x", "seed": 3}, r"sets \['model', 'seed'\], which project.py sets itself"),
    # found 2026-12-07 by a probe: "" wrote everything into the working directory, other types failed with bare errors
    ({"output_dir": ""}, r"output_dir in plan.yaml must be a folder name, got ''"),
    ({"output_dir": 5}, r"output_dir in plan.yaml must be a folder name, got 5"),
    ({"source_model": None}, r"source_model in plan.yaml must be a model alias or folder, got None"),
    ({"target_model": 12}, r"target_model in plan.yaml must be a model alias or folder, got 12"),
])  # fmt: skip
def test_a_projection_plans_target_settings_are_checked_before_anything_runs(target, message):
    """Found 2026-12-06: an unknown target key raised a bare KeyError, and a key project.py sets itself a TypeError,
    both after the projection had been fitted and saved; seed and output_dir were silently overridden."""
    keys = ("source_model", "target_model", "output_dir")
    plan = {"source_model": "a", "target_model": "b", "source_adapter": "c", "output_dir": "d",
            "target": {key: value for key, value in target.items() if key not in keys}, **{key: target[key] for key in keys if key in target}}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        recipe_module("project").check_plan(plan, "plan.yaml")


@pytest.mark.parametrize("method,reads", [("mixture", "source_prompts"), ("deep_prompt", "init_prompt")])
def test_a_resume_or_a_reuse_after_a_prompt_it_reads_changed_is_refused_naming_it(tmp_path, method, reads):
    """Found 2026-12-05: the prompts a run reads (a mixture's bank, a deep prompt's start) were not among the digests a
    checkpoint and a result record: after one changed, a resume mixed two runs and compare.py reused the result."""
    from safetensors.torch import load_file, save_file

    from softprompt_bench.plans import existing_result

    source = tmp_path / "source"
    recipe("train.py", *tiny_args(source, steps=2))
    extra = {"source_prompts": source / "adapter"} if method == "mixture" else {"deep_init": "prompt", "init_prompt": source / "adapter"}
    args = tiny_args(tmp_path / "run", method=method, steps=2, checkpoint_every=2, **extra)
    recipe("train.py", *args)
    assert existing_result(load_config(None, list(map(str, args)))) is not None  # compare.py would reuse it
    weights = source / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({name: tensor + 0.5 for name, tensor in tensors.items()}, weights, metadata={"format": "pt"})  # another prompt
    assert existing_result(load_config(None, list(map(str, args)))) is None  # ... not once the prompt it read changed
    before = snapshot(tmp_path / "run")
    result = recipe("train.py", *args, "--resume", check=False)
    assert result.returncode != 0 and reads in result.stderr and str(source / "adapter") in result.stderr, result.stderr[-2000:]
    assert snapshot(tmp_path / "run") == before


def test_a_finished_run_whose_adapter_is_gone_is_not_reused(tmp_path):
    """Found 2026-12-05: compare.py reused (and --collect reported) a run whose adapter/ had been deleted."""
    import shutil

    from softprompt_bench.plans import existing_result

    args = tiny_args(tmp_path / "run", steps=2)
    recipe("train.py", *args)
    assert existing_result(load_config(None, list(map(str, args)))) is not None
    shutil.rmtree(tmp_path / "run" / "adapter")
    assert existing_result(load_config(None, list(map(str, args)))) is None


@pytest.mark.parametrize("content", ['{"config": {"method": "zero', '{"metrics": {"accuracy": 0.5}}', "[]",
                                     '{"config": {"old_key": 1}, "metrics": {}}'])  # fmt: skip
def test_an_unreadable_results_file_is_no_finished_run(tmp_path, content, capsys):
    """A truncated, partial or outdated results.json crashed compare.py (JSONDecodeError, KeyError, ...), even when it
    would train the run again."""
    from softprompt_bench.plans import existing_result

    config = RecipeConfig(output_dir=str(tmp_path))
    (tmp_path / "results.json").write_text(content)
    assert existing_result(config) is None
    assert "results.json" in capsys.readouterr().err


def test_a_run_evaluated_less_often_than_asked_is_not_reused(tmp_path):
    """project.py reads a run's evaluation history: a run reused from eval_every 0 had none (warm-start ratio 0.17
    instead of 1.0 in the probe)."""
    from softprompt_bench.plans import existing_result

    done = RecipeConfig(output_dir=str(tmp_path), eval_every=0)
    (tmp_path / "results.json").write_text(json.dumps({"config": done.to_dict(), "metrics": {"accuracy": 0.5}, "eval_history": []}))
    assert existing_result(done) is not None
    assert existing_result(RecipeConfig(output_dir=str(tmp_path), eval_every=4)) is None


def test_a_batch_larger_than_the_training_rows_is_refused(tmp_path):
    """It trained on 6-row batches and recorded batch_size 16."""
    result = recipe("train.py", *tiny_args(tmp_path, steps=2), "--train_size", "6", "--batch_size", "16", check=False)
    assert result.returncode != 0 and "batch_size=16 but the training split gives 6 rows" in result.stderr, result.stderr[-2000:]


def test_the_report_header_says_what_the_runs_did_and_names_missing_runs(tmp_path):
    """The header showed the base's steps and eval_size (a method at 400 steps read as 100), and a method with no
    result in a --collect call (the baseline too) vanished without a word."""
    from softprompt_bench.plans import summarise

    compare = recipe_module("compare")

    def record(seed, steps, scored):
        return {"seed": seed, "steps": steps, "trainable_params": 10, "time_per_step_s": 1.0, "peak_memory_mb": 1.0, "loss_curve": [],
                "metrics": {"accuracy": 0.5, "macro_f1": 0.5, "confusion": [[scored, 0], [0, 0]]}}  # fmt: skip

    plan = {"output_dir": "o", "base": {"steps": 100, "eval_size": 8}, "baseline": "gone",
            "methods": [{"name": "a"}, {"name": "b", "steps": 400}, {"name": "gone"}]}  # fmt: skip
    rows = [summarise("a", [record(0, 100, 4), record(1, 100, 4)]), summarise("b", [record(0, 400, 4)])]
    compare.write_markdown(rows, plan, tmp_path / "c.md", 1.0, None, missing={"b": [1], "gone": [0, 1]})
    header = (tmp_path / "c.md").read_text()
    assert "a: 100, b: 400 steps" in header and "4 validation examples" in header
    assert "No result for: b (seeds 1), gone (seeds 0, 1)" in header and "baseline `gone` has no result" in header
    zero_shot = summarise("z", [record(0, 0, 4)])  # the main job's report listed 'zero-shot: 0' before every method's 60
    compare.write_markdown([zero_shot, rows[0]], plan, tmp_path / "z.md", 1.0)
    assert ", 100 steps (z: none), batch" in (tmp_path / "z.md").read_text()


def test_runs_whose_eval_size_passes_the_splits_end_pair_on_the_rows_they_scored():
    """Found 2026-12-07 by a probe: runs of eval_size 2000 and 5000 on a 1,056-row split scored the same rows (the whole
    split), but the report said "scored other rows than the baseline" and left their paired difference out."""
    from softprompt_bench.plans import paired_difference, summarise

    def record(seed, accuracy, eval_size, scored):
        config = {"task": "t", "eval_split": "test", "split_seed": None, "eval_size": eval_size, "text_column": "text", "label_column": "label"}
        return {"seed": seed, "steps": 2, "trainable_params": 10, "time_per_step_s": 1.0, "peak_memory_mb": 1.0, "loss_curve": [],
                "model": "llama", "batch_size": 4, "config": config,
                "metrics": {"accuracy": accuracy, "macro_f1": accuracy, "confusion": [[scored - 6, 6], [0, 0]]}}  # fmt: skip

    base = summarise("A", [record(0, 0.5, 5000, 1056), record(1, 0.6, 5000, 1056)])
    capped = summarise("B", [record(0, 0.7, 2000, 1056), record(1, 0.7, 2000, 1056)])
    fewer = summarise("C", [record(0, 0.7, 500, 500), record(1, 0.7, 500, 500)])
    assert paired_difference(capped, base)["seeds"] == 2 and paired_difference(capped, base)["mean"] == pytest.approx(0.15)
    assert paired_difference(fewer, base)["other_rows"] == 2 and paired_difference(fewer, base)["mean"] is None


def test_a_failed_run_of_a_plan_is_named(tmp_path):
    """Found 2026-12-07 by a probe: a run that failed in its process ended compare.py / project.py with a bare
    CalledProcessError naming a temporary config already deleted, not the method, seed or folder."""
    from softprompt_bench.plans import train_in_subprocess
    from softprompt_bench.recipe_config import RecipeConfig

    failing = tmp_path / "train.py"
    failing.write_text("import sys\nsys.exit(3)\n")
    config = RecipeConfig(method="lora", seed=4, output_dir=str(tmp_path / "run"))
    with pytest.raises(SystemExit, match=r"The run of method 'lora', seed 4 \(.*run\) failed with exit status 3"):
        train_in_subprocess(config, failing)


def test_the_report_names_each_methods_model_batch_and_split_and_pairs_only_the_same_rows(tmp_path):
    """Found 2026-12-06: the header, the plot's axis and the paired differences took the plan's base model, batch and
    split for every method: a method on another model and the test split read as the base's, paired with its
    validation-split baseline (+33.3 without a word)."""
    from softprompt_bench.plans import paired_difference, summarise

    compare = recipe_module("compare")

    def record(seed, accuracy, **config):
        config = {"task": "t", "eval_split": "validation", "split_seed": None, "eval_size": 8, "text_column": "text",
                  "label_column": "label", **config}  # fmt: skip
        return {"seed": seed, "steps": 2, "trainable_params": 10, "time_per_step_s": 1.0, "peak_memory_mb": 1.0, "loss_curve": [],
                "model": config.pop("model", "llama"), "batch_size": config.pop("batch_size", 4), "config": config,
                "metrics": {"accuracy": accuracy, "macro_f1": accuracy, "confusion": [[config["eval_size"], 0], [0, 0]]}}  # fmt: skip

    base = summarise("A", [record(0, 0.5), record(1, 0.6)])
    other = summarise("B", [record(0, 0.9, model="gpt2", batch_size=2, eval_split="test"), record(1, 0.9, model="gpt2", batch_size=2,
                                                                                              eval_split="test")])  # fmt: skip
    same = summarise("C", [record(0, 0.7), record(1, 0.6, eval_size=16)])
    other["paired_difference"], same["paired_difference"] = paired_difference(other, base), paired_difference(same, base)
    assert other["paired_difference"]["mean"] is None and other["paired_difference"]["other_rows"] == 2
    assert same["paired_difference"]["seeds"] == 1 and same["paired_difference"]["other_rows"] == 1
    assert same["paired_difference"]["mean"] == pytest.approx(0.2)
    plan = {"output_dir": "o", "base": {"model": "llama", "batch_size": 4}, "baseline": "A", "methods": [{"name": n} for n in "ABC"]}
    compare.write_markdown([base, other, same], plan, tmp_path / "c.md", 1.0, base)
    text = (tmp_path / "c.md").read_text()
    assert "Model A: llama, B: gpt2, C: llama," in text and "batch A: 4, B: 2, C: 4," in text
    assert "A: validation, B: test, C: validation examples" in text
    assert "| B | 0: 90.0, 1: 90.0 | - (scored other rows than the baseline) | - |" in text
    assert "(1 seeds, 1 on other rows left out)" in text
    from softprompt_bench.plans import split_label

    assert split_label([base, other]) == "test/validation" and split_label([base, same]) == "validation"


def test_report_files_are_written_all_or_nothing(tmp_path, commit_events):
    """Found 2026-12-06: comparison.md / .json / .png, projection_results.* and prompt_length.* were written in place,
    so a recipe killed while writing left half a report; each is now a temporary file renamed over the old one."""
    from softprompt_bench import reports

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports.write_text(tmp_path / "a.md", "x")
    reports.write_json(tmp_path / "a.json", {"a": 1})
    reports.save_figure(plt.figure(), tmp_path / "a.png")
    replaced = [Path(args[1]).name for args in commit_events if args[0] == "replace"]
    assert replaced == ["a.md", "a.json", "a.png"]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and json.loads((tmp_path / "a.json").read_text()) == {"a": 1}
    for script in ("compare", "project", "prompt_length_curve"):  # every report of the recipes goes through them
        text = (REPO / "recipes" / f"{script}.py").read_text()
        assert not re.search(r"(?<!reports)\.write_text\(|\.savefig\(", text), script


def test_a_plans_run_killed_part_way_continues_from_its_checkpoint_and_another_configs_does_not(tmp_path):
    """Found 2026-12-07: compare.py started a run killed part-way again from step 0 (only `train.py --resume` continued
    it). A plan's run now continues its own checkpoint; a checkpoint of another config is not taken, and the run says so."""
    import shutil

    from safetensors.torch import load_file

    plan = _plugin_and_lora_plan(tmp_path, steps=6, train_size=32, eval_size=16)
    plan.update(seeds=[0], methods=plan["methods"][:1])
    plan["base"]["checkpoint_every"] = 2
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    tool("compare.py", "--config", tmp_path / "plan.yaml")
    run = tmp_path / "cmp" / "plugin" / "seed0"
    first = json.loads((run / "results.json").read_text())
    prompt = load_file(run / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert first["resumed_from_step"] is None
    (run / "results.json").unlink()  # as a kill after the last checkpoint leaves it
    shutil.rmtree(run / "adapter")
    tool("compare.py", "--config", tmp_path / "plan.yaml")
    resumed = json.loads((run / "results.json").read_text())
    assert resumed["resumed_from_step"] == 6 and resumed["metrics"] == first["metrics"] and resumed["loss_curve"] == first["loss_curve"]
    assert (load_file(run / "adapter" / "adapter_model.safetensors")["prompt_embeddings"] == prompt).all()
    assert "Resumed from a checkpoint (method: seeds) {'plugin': [0]}" in (tmp_path / "cmp" / "comparison.md").read_text()
    (run / "results.json").unlink()
    started = recipe("train.py", *tiny_args(run, steps=6, checkpoint_every=2, lr=0.05), "--resume-if-any")  # another config
    assert "--resume-if-any: not resuming" in started.stdout and "another config" in started.stdout, started.stdout[-2000:]
    assert json.loads((run / "results.json").read_text())["resumed_from_step"] is None
