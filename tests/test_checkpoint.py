"""A resume that never lies (peft_softprompt_ext/checkpoint.py): every way a checkpoint can be missing,
partial, edited or foreign is refused before anything is loaded, naming what is wrong."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import testing_common as common
from peft_softprompt_ext import base_model_fingerprint
from softprompt_bench.checkpoint import STATE_NAME, TENSORS_NAME, load_checkpoint, save_checkpoint

CONFIG = {"method": "vocab_sampled", "lr": 0.1, "steps": 10, "seed": 0}


def training_state(seed=0):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform", seed=seed)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return peft_model, optimizer, scheduler


@pytest.fixture
def checkpoint(tmp_path):
    peft_model, optimizer, scheduler = training_state()
    history = {"loss": [], "eval": [], "step_seconds": []}
    for step in range(2):
        loss = peft_model(**common.batch_for("gpt2")).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        history["loss"].append([step + 1, loss.item()])
    save_checkpoint(tmp_path / "checkpoint", peft_model, optimizer, scheduler, 2, CONFIG, history, base_model_fingerprint(peft_model))
    return tmp_path / "checkpoint", peft_model


def resume(folder, config=CONFIG, steps=10, base_seed=0):
    peft_model, optimizer, scheduler = training_state()
    base = base_model_fingerprint(common.tiny_model("gpt2", seed=base_seed)[0])
    return load_checkpoint(folder, peft_model, optimizer, scheduler, config, steps, base), peft_model, optimizer


def edit_state(folder, change):
    path = folder / STATE_NAME
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def edit_tensors(folder, change):
    tensors = load_file(folder / TENSORS_NAME)
    change(tensors)
    save_file(tensors, folder / TENSORS_NAME)


def test_a_good_checkpoint_restores_prompt_and_optimizer(checkpoint):
    folder, trained = checkpoint
    (step, history), resumed, optimizer = resume(folder)
    assert step == 2 and len(history["loss"]) == 2
    torch.testing.assert_close(resumed.prompt_encoder["default"].embedding.weight, trained.prompt_encoder["default"].embedding.weight)
    assert all("exp_avg" in state for state in optimizer.state.values())


def test_a_missing_state_or_folder_is_an_error_not_a_restart(checkpoint):
    folder, _ = checkpoint
    os.remove(folder / STATE_NAME)
    with pytest.raises(FileNotFoundError, match="has no state.json: there is nothing to resume from"):
        resume(folder)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        resume(folder.parent / "absent")


@pytest.mark.parametrize("edit,message", [
    (lambda t: [t.pop(k) for k in [k for k in t if k.startswith("optimizer.") and k.endswith("exp_avg_sq")]], r"lacks optimizer state"),
    (lambda t: t.__setitem__("param.prompt_encoder.default.embedding.weight", torch.full((5, 32), float("nan"))), r"NaN or infinite"),
    (lambda t: t.__setitem__("param.prompt_encoder.default.embedding.weight", torch.zeros(6, 32)), r"parameter .* is \(6, 32\)"),
])  # fmt: skip
def test_edited_tensors_are_refused(checkpoint, edit, message):
    folder, _ = checkpoint
    edit_tensors(folder, edit)
    with pytest.raises(ValueError, match=message):
        resume(folder)


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.__setitem__("step", 999), r"step=999; expected an integer in 1..10"),
    (lambda s: s.__setitem__("step", -5), r"step=-5; expected an integer in 1..10"),
    (lambda s: s.__setitem__("step", 1), r"loss curve of 2 steps for step=1"),
    (lambda s: s.pop("optimizer_tensors"), r"lacks \['optimizer_tensors'\]"),
    (lambda s: s.__setitem__("scheduler", None), r"lacks the learning-rate scheduler's state"),
    (lambda s: s["config"].__setitem__("lr", 0.5), r"another config \(lr: checkpoint 0.5 vs this run 0.1\)"),
])  # fmt: skip
def test_edited_state_is_refused_naming_what(checkpoint, edit, message):
    folder, _ = checkpoint
    edit_state(folder, edit)
    with pytest.raises(ValueError, match=message):
        resume(folder)


def test_state_that_is_not_json_names_the_file(checkpoint):
    folder, _ = checkpoint
    (folder / STATE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=r"Checkpoint state '.*state.json' is not valid JSON"):
        resume(folder)
    (folder / STATE_NAME).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must hold a JSON object of fields, got a JSON list"):
        resume(folder)


def test_another_config_names_every_differing_key(checkpoint):
    folder, _ = checkpoint
    with pytest.raises(ValueError, match=r"lr: checkpoint 0.1 vs this run 0.2; seed: checkpoint 0 vs this run 1"):
        resume(folder, config={**CONFIG, "lr": 0.2, "seed": 1})


def test_a_base_model_whose_weights_changed_is_refused(checkpoint):
    folder, _ = checkpoint
    with pytest.raises(ValueError, match=r"trained on another base model \(embedding_digest"):
        resume(folder, base_seed=3)


def test_refusals_load_nothing(checkpoint):
    folder, _ = checkpoint
    edit_state(folder, lambda s: s.__setitem__("step", 999))
    peft_model, optimizer, scheduler = training_state()
    before = peft_model.prompt_encoder["default"].embedding.weight.detach().clone()
    with pytest.raises(ValueError):
        load_checkpoint(folder, peft_model, optimizer, scheduler, CONFIG, 10, base_model_fingerprint(peft_model))
    torch.testing.assert_close(peft_model.prompt_encoder["default"].embedding.weight, before, rtol=0, atol=0)
    assert not optimizer.state
