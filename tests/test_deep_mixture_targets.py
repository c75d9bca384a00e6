"""The target prompts of a mixture of deep prompts, trained like a deep prompt: `reparameterization=
"layer_scaled"` (each layer's keys and values moved relative to their starting size) and `trainable_layers=k`
(only the last k layers' target prompts train; the mixing weights still learn from every layer). Saved
whole, loaded, resumed; refused, naming the value, where the bank holds input-row prompts."""

import peft
import pytest
import torch
from safetensors.torch import load_file

import testing_common as common
from peft_softprompt_ext import MixturePromptTuningConfig
from test_deep_prompt import P, self_attention_layout
from test_deep_prompt_trainable_layers import _attention_outputs_needing_grad

TASKS = torch.tensor([0, 1, 1])


def deep_mixture(model_name: str = "llama", **kwargs):
    base, task_type = common.tiny_model(model_name)
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=list(common.deep_bank_folders(model_name)),
                                       num_tasks=2, mixing="task", **kwargs)  # fmt: skip
    return peft.get_peft_model(base, config)


def _batch(model_name: str = "llama") -> dict:
    return {**common.batch_for(model_name), "task_ids": TASKS}


def _targets(model) -> torch.Tensor:
    """The target prompts as saved: [tasks, P, F], every layer's columns."""
    return model.prompt_encoder["default"].adapter_state_dict()["target_prompts"].clone()


def _frozen_columns(model, trainable_layers: int) -> int:
    layers, kv_heads, head_dim = self_attention_layout(common.innermost(model))
    return (layers - trainable_layers) * 2 * kv_heads * head_dim


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_only_the_last_layers_target_prompts_train_and_the_weights_learn_from_every_layer(model_name):
    model = deep_mixture(model_name, trainable_layers=1)
    layers, kv_heads, head_dim = self_attention_layout(common.innermost(model))
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == 2 * P * 1 * 2 * kv_heads * head_dim + 2 * 3  # two tasks' last-layer targets + task logits [2, K + 1]
    batch = _batch(model_name)
    # the mixing weights shape every layer's prompt, so every layer runs backward (their whole gradient:
    # the conformance matrix checks it against transformers' own cache)
    assert _attention_outputs_needing_grad(model, batch) == [True] * layers
    encoder = model.prompt_encoder["default"]
    before, logits_before = _targets(model), encoder.task_logits.detach().clone()
    torch.testing.assert_close(before, encoder.bank.mean(0, keepdim=True).expand(2, -1, -1))  # the warm start
    common.train_steps(model, batch, steps=2)
    after, frozen = _targets(model), _frozen_columns(model, 1)
    assert after.shape == before.shape == (2, P, layers * 2 * kv_heads * head_dim)
    assert torch.equal(after[..., :frozen], before[..., :frozen])
    assert not torch.equal(after[..., frozen:], before[..., frozen:])
    assert not torch.equal(encoder.task_logits.detach(), logits_before)


def test_frozen_columns_stay_fixed_under_weight_decay():
    model = deep_mixture(trainable_layers=1)
    before, frozen = _targets(model), _frozen_columns(model, 1)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        model(**_batch()).loss.backward()
        optimizer.step()
    assert torch.equal(_targets(model)[..., :frozen], before[..., :frozen])  # a buffer: no optimizer touches it


def test_layer_scaled_targets_start_at_the_bank_mean_and_move_each_layer_relative_to_its_size():
    model = deep_mixture(reparameterization="layer_scaled")
    encoder = model.prompt_encoder["default"]
    mean = encoder.bank.mean(0)
    torch.testing.assert_close(encoder.targets()[0], mean)  # raw x scale is the warm start
    for (name, width), start in zip(encoder.reparameterization.parts, _part_starts(encoder.reparameterization.parts)):
        part = mean[:, start : start + width]
        torch.testing.assert_close(encoder.reparameterization.scale[start], part.pow(2).mean().sqrt(), msg=name)
    # one step of Adam moves each raw entry by ~lr: the used prompt moves by ~lr x each part's own size
    before = encoder.targets().detach().clone()
    model.train()
    optimizer = torch.optim.Adam([encoder.target_prompts], lr=1e-3)
    model(**_batch()).loss.backward()
    optimizer.step()
    moved = (encoder.targets().detach() - before).abs()
    for (name, width), start in zip(encoder.reparameterization.parts, _part_starts(encoder.reparameterization.parts)):
        part_moved, scale = moved[..., start : start + width].max(), encoder.reparameterization.scale[start]
        assert part_moved <= 1.01e-3 * scale and part_moved > 0, name


def _part_starts(parts) -> list[int]:
    starts, start = [], 0
    for _, width in parts:
        starts.append(start)
        start += width
    return starts


def test_saved_whole_loaded_and_resumed_with_the_lower_layers_still_fixed(tmp_path):
    model = deep_mixture(reparameterization="layer_scaled", trainable_layers=1)
    start = _targets(model)
    common.train_steps(model, _batch(), steps=2, lr=0.01)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert {"bank", "target_prompts", "task_logits", "reparameterization.scale"} <= set(saved)
    assert saved["target_prompts"].shape == start.shape
    batch = {**common.inference_batch("llama"), "task_ids": TASKS}
    expected = common.forward_logits(model, batch)
    served = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path)
    torch.testing.assert_close(common.forward_logits(served, batch), expected)
    resumed = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path, is_trainable=True)
    assert resumed.get_nb_trainable_parameters()[0] == model.get_nb_trainable_parameters()[0]
    torch.testing.assert_close(resumed.prompt_encoder["default"].reparameterization.scale,
                               model.prompt_encoder["default"].reparameterization.scale)  # fmt: skip
    torch.testing.assert_close(common.forward_logits(resumed, batch), expected)
    losses_resumed = common.train_steps(resumed, _batch(), steps=2, lr=0.01)
    losses_original = common.train_steps(model, _batch(), steps=2, lr=0.01)
    assert losses_resumed == pytest.approx(losses_original, rel=1e-5)
    frozen = _frozen_columns(model, 1)
    assert torch.equal(_targets(resumed)[..., :frozen], start[..., :frozen])


def test_each_tasks_plain_peft_copy_holds_its_prompt_as_used(tmp_path):
    model = deep_mixture(reparameterization="layer_scaled", trainable_layers=1)
    common.train_steps(model, _batch(), steps=2, lr=0.01)
    model.save_pretrained(tmp_path)
    batch = {k: v[:1] for k, v in common.inference_batch("llama").items()}
    for task in (0, 1):
        expected = common.forward_logits(model, {**batch, "task_ids": torch.tensor([task])})
        copy = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path / "vanilla" / f"task_{task}")
        assert copy.peft_config["default"].peft_type == peft.PeftType.PREFIX_TUNING
        torch.testing.assert_close(common.forward_logits(copy, batch), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ bad input: a clear error naming the value
def test_layer_options_on_a_bank_of_input_row_prompts_are_refused_by_name():
    base, _ = common.tiny_model("llama")
    bank = list(common.bank_folders("llama"))
    for kwargs, named in [({"reparameterization": "layer_scaled"}, r"reparameterization='layer_scaled'"),
                          ({"trainable_layers": 1}, r"trainable_layers=1")]:  # fmt: skip
        config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=bank, num_tasks=2, mixing="task", **kwargs)
        with pytest.raises(ValueError, match=named + r" act on a deep prompt's per-layer keys and values, but this mixture's bank holds input-row prompts"):
            peft.get_peft_model(common.tiny_model("llama")[0], config)


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "2"])
def test_trainable_layers_that_are_not_a_positive_count_are_refused_by_value(value):
    with pytest.raises(ValueError, match=rf"trainable_layers must be None .* got {value!r}"):
        MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=["x"], num_tasks=1, trainable_layers=value)


def test_more_trainable_layers_than_the_model_has_is_refused_with_both_counts():
    with pytest.raises(ValueError, match=r"trainable_layers=3, but this model has 2 self-attention layers: give 1\.\.2"):
        deep_mixture(trainable_layers=3)


def test_trainable_layers_with_a_residual_mlp_or_one_hot_mixing_is_refused():
    with pytest.raises(ValueError, match=r"trainable_layers=1 .*reparameterization='residual_mlp' shares one MLP"):
        MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=["x"], num_tasks=1,
                                  trainable_layers=1, reparameterization="residual_mlp")  # fmt: skip
    with pytest.raises(ValueError, match=r"mixing='one_hot' trains nothing, so trainable_layers must be None; got 1"):
        MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=["x", "y"], num_tasks=2,
                                  mixing="one_hot", trainable_layers=1)  # fmt: skip


def test_a_recipe_mixture_of_deep_prompts_takes_trainable_layers_and_layer_scaled():
    from softprompt_bench.methods import build_peft_config
    from softprompt_bench.recipe_config import RecipeConfig

    recipe = RecipeConfig(method="mixture", source_prompts=list(common.deep_bank_folders("llama")), mixing="task",
                          num_virtual_tokens=P, trainable_layers=1, reparameterization="layer_scaled")  # fmt: skip
    config = build_peft_config(recipe, "CAUSAL_LM", common.tiny_tokenizer_dir(), [" a", " b"])
    assert (config.trainable_layers, config.reparameterization.value) == (1, "layer_scaled")
    model = peft.get_peft_model(common.tiny_model("llama")[0], config)
    assert model.prompt_encoder["default"].frozen_width == _frozen_columns(model, 1)
