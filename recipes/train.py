"""Train one method on one classification task with a frozen base model, then evaluate and save.

    accelerate launch --config_file recipes/accelerate/cpu_1proc.yaml recipes/train.py \
        --config recipes/configs/smollm2_movie_vocab_sampled.yaml [--key value ...] [--resume]

Methods: this plugin's `vocab_sampled`, vanilla PEFT prompt tuning (`prompt_tuning_random`,
`prompt_tuning_sample_vocab`, `prompt_tuning_text`), `lora`, `full_finetune`, `zero_shot`.
A causal LM classifies by rank over label words; an encoder (minilm-l6) as SEQ_CLS.
Each run writes to `output_dir`: `adapter/`, `resolved_config.yaml`, `results.json`, and
`checkpoint/` (trainable state only) which `--resume` continues from after a kill (`--resume-if-any`, which
compare.py passes: continue it where it is this run's, else start from step 0, saying why).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from peft_softprompt_ext import base_model_fingerprint  # noqa: E402  (importing the plugin registers its methods)
from softprompt_bench import recipe_support as support  # noqa: E402
from softprompt_bench.checkpoint import CheckpointRefused, check_resumable, load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from softprompt_bench.peak_memory import peak_memory_mb, reset_peak_memory  # noqa: E402
from softprompt_bench.recipe_config import check_folder, load_config, options_help  # noqa: E402
from softprompt_bench.run_inputs import input_changes, run_inputs  # noqa: E402
from softprompt_bench.run_lock import run_lock  # noqa: E402


def evaluates_at(config, step: int) -> bool:
    """Whether the loop evaluates after optimizer step `step` (1-based): every eval_every steps, the last step aside
    (the final evaluation follows it)."""
    return bool(config.eval_every) and step % config.eval_every == 0 and step < config.steps


def train(accelerator, setup, config, resume: bool | str, inputs: dict) -> tuple[dict, int]:
    """The training loop: deterministic batches, one optimizer step each, periodic eval/checkpoint.
    Returns the history and the step it started from (a resume's checkpoint step, at least 1; else 0). `resume`:
    "if_any" starts from step 0 where the checkpoint is refused before anything of it is restored (`CheckpointRefused`)."""
    model, optimizer, scheduler = setup.model, setup.optimizer, setup.scheduler
    checkpoint_dir = Path(config.output_dir) / "checkpoint"
    history = {"loss": [], "eval": [], "step_seconds": []}
    start_step = 0
    # taken before any step (full_finetune trains the base model itself) and before a resume's weights go in
    base_fingerprint = base_model_fingerprint(_frozen_base(accelerator.unwrap_model(model)))
    if resume:
        try:
            start_step, history = load_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                                  config.training_config(), config.steps, base_fingerprint)  # fmt: skip
            accelerator.print(f"resumed from {checkpoint_dir} at step {start_step}")
        except CheckpointRefused as why:  # (nothing of it restored; e.g. the base model's check: a Hub model has no file digest)
            if resume != "if_any":
                raise
            accelerator.print(f"--resume-if-any: not resuming {checkpoint_dir}, starting from step 0: {why}")
    progress = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps,
                    disable=not accelerator.is_main_process, desc=config.method)  # fmt: skip
    model.train()
    for step in progress:
        began = time.perf_counter()
        batch = support.batch_for_step(setup, config, step, accelerator)
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
        if not math.isfinite(mean_loss):  # every process sees the same reduced loss: all stop here
            rates = f"lr={config.lr}" + (f", head_lr={config.head_lr}" if config.head_lr is not None else "")
            raise FloatingPointError(f"loss is {mean_loss} at step {step + 1} ({rates}): training diverged. No result or adapter "
                                     f"is saved (an earlier run's in {config.output_dir} stays as it was); try a lower rate.")  # fmt: skip
        history["step_seconds"].append(time.perf_counter() - began)
        history["loss"].append([step + 1, mean_loss])
        progress.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if evaluates_at(config, step + 1):
            metrics = support.evaluate(accelerator, setup, config)
            history["eval"].append({"step": step + 1, **metrics})
            accelerator.print(f"step {step + 1}: loss {mean_loss:.4f} accuracy {metrics['accuracy']:.4f} macro_f1 {metrics['macro_f1']:.4f}")
            model.train()
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler, step + 1,
                            config.training_config(), history, base_fingerprint, inputs, accelerator.num_processes)  # fmt: skip
        accelerator.wait_for_everyone()
    return history, start_step


def _frozen_base(model):
    """The frozen base model of a PEFT model (what a checkpoint's fingerprint describes), else the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_resume_before_anything(config, inputs: dict, world_size: int) -> None:
    """--resume: the checkpoint must exist and belong to this config, these inputs and this number of processes (each
    takes its share of a batch); checked before any file is written."""
    folder = Path(config.output_dir) / "checkpoint"
    if not (folder / "state.json").is_file():
        raise SystemExit(f"--resume: {folder} holds no checkpoint (no state.json); there is nothing to resume. Run "
                         "without --resume to start from step 0.")  # fmt: skip
    state, _ = read_checkpoint(folder)
    check_resumable(state, config.training_config(), config.steps, where=str(folder),
                    input_changes=lambda saved: input_changes(saved, inputs, config))  # fmt: skip
    written_by = state.get("world_size")  # (None: a checkpoint made before it was recorded)
    if written_by is not None and written_by != world_size:
        raise SystemExit(f"--resume: the checkpoint in {folder} was written by {written_by} processes; this run has {world_size}. "
                         f"Launch it with {written_by} (the launcher config it started with): each process takes its share "
                         "of a batch, so another count does not continue the same run.")  # fmt: skip
    evaluated = [entry.get("step") for entry in state["history"].get("eval", [])]
    expected = [step for step in range(1, state["step"] + 1) if evaluates_at(config, step)]
    if evaluated != expected:  # results.json records one eval_every for the whole history
        raise SystemExit(f"--resume: the run in {folder} evaluated at steps {evaluated}, but eval_every={config.eval_every} evaluates at "
                         f"{expected} up to its step {state['step']}: resume with the eval_every it was started with.")  # fmt: skip


def resumable(config, inputs: dict, world_size: int, say) -> bool:
    """--resume-if-any: whether output_dir/checkpoint holds this run's checkpoint (config, inputs, number of processes,
    evaluation schedule: every check of --resume); where it holds another's, `say` why the run starts from step 0."""
    if not (Path(config.output_dir) / "checkpoint" / "state.json").is_file():
        return False
    try:
        check_resume_before_anything(config, inputs, world_size)
    except (SystemExit, ValueError, FileNotFoundError) as why:  # (a foreign, edited or partial checkpoint)
        say(f"--resume-if-any: not resuming {Path(config.output_dir) / 'checkpoint'}, starting from step 0: {why}")
        return False
    return True


def results_record(accelerator, setup, config, history, metrics, wall_seconds, inputs: dict, started_from: str | None,
                   resumed_from_step: int | None = None) -> dict:  # fmt: skip
    step_seconds = history["step_seconds"]
    return {
        "method": config.method,
        "model": config.model,
        "task": config.task,
        "seed": config.seed,
        "metrics": metrics,
        "trainable_params": setup.trainable_params,
        "total_params": setup.total_params,
        "steps": config.steps if config.method != "zero_shot" else 0,  # (zero-shot trains nothing)
        "batch_size": config.batch_size,
        # a resumed run: the step its checkpoint held; wall time and peak memory are then this process's alone
        "resumed_from_step": resumed_from_step,
        "wall_time_s": wall_seconds,
        "time_per_step_s": statistics.median(step_seconds) if step_seconds else None,
        "peak_memory_mb": peak_memory_mb(),
        "world_size": accelerator.num_processes,
        # one digest of the trainable parameters per process: data parallelism kept them identical
        "rank_parameter_digests": support.rank_parameter_digests(accelerator, setup.model),
        "loss_curve": history["loss"],
        "eval_history": history["eval"],
        "config": config.to_dict(),
        "init_prompt_digest": started_from,  # the prompt it started from (deep_init='prompt'), as the run began
        "inputs_digest": inputs,  # its model and data files (compare.py reuses the run only while they are the same)
        "versions": support.library_versions(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }


def run(config, resume: bool | str = False) -> dict:
    """setup -> train -> evaluate -> save, holding the run folder's lock; returns the results record.
    `resume`: True (--resume: the checkpoint must be this run's) or "if_any" (--resume-if-any)."""
    began = time.perf_counter()
    reset_peak_memory()
    output_dir = Path(config.output_dir)
    try:  # else found by the save, after the whole run
        check_folder(output_dir, "output_dir")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    # cpu=True on a machine without CUDA: with the 2-process launcher config this turns two
    # independent world-size-1 jobs into one gloo data-parallel group (a silent trap otherwise).
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    with run_lock(output_dir, accelerator.is_main_process):
        return _run(accelerator, config, resume, began)


def _run(accelerator, config, resume: bool, began: float) -> dict:
    output_dir = Path(config.output_dir)
    inputs, started_from = run_inputs(config), config.init_prompt_digest()  # before training: what the run reads, as it started
    if resume == "if_any":
        resume = "if_any" if resumable(config, inputs, accelerator.num_processes, accelerator.print) else False
    elif resume:
        check_resume_before_anything(config, inputs, accelerator.num_processes)  # a refused resume leaves every file as it was
    setup = support.build_setup(config, accelerator)
    accelerator.print(f"{config.method} on {config.model} / {config.task}: {setup.trainable_params:,} trainable parameters, "
                      f"{accelerator.num_processes} process(es)")  # fmt: skip
    history, start_step = train(accelerator, setup, config, resume, inputs) if config.method != "zero_shot" else \
        ({"loss": [], "eval": [], "step_seconds": []}, 0)  # fmt: skip
    metrics = support.evaluate(accelerator, setup, config)
    accelerator.print(f"final: accuracy {metrics['accuracy']:.4f} macro_f1 {metrics['macro_f1']:.4f}")
    record = results_record(accelerator, setup, config, history, metrics, time.perf_counter() - began, inputs, started_from,
                            start_step or None)  # fmt: skip
    if accelerator.is_main_process:
        support.save_run(accelerator, setup, config, record)
        accelerator.print(f"saved to {output_dir}")
    accelerator.wait_for_everyone()
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=options_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", help="YAML file of RecipeConfig keys (see recipes/configs/)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint (it must be this run's)")
    resume.add_argument("--resume-if-any", action="store_true",
                        help="continue from output_dir/checkpoint where it is this run's, else start from step 0 saying why")
    args, overrides = parser.parse_known_args(argv)
    run(load_config(args.config, overrides), resume="if_any" if args.resume_if_any else args.resume)


if __name__ == "__main__":
    main()
