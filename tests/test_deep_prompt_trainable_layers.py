"""Deep prompts that train only the last k self-attention layers (`trainable_layers`, issue #14's step-time
goal): the trainable-value count, the other layers' keys/values left exactly as they started, backward
stopping above them, the whole prompt saved / loaded / resumed, and the refusals naming the bad value."""

import peft
import pytest
import torch

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig
from test_deep_prompt import MODELS, P, deep_model, self_attention_layout


def _prompt(model) -> torch.Tensor:
    return model.prompt_encoder["default"].adapter_state_dict()["prompt_embeddings"].clone()


def _frozen_columns(model, trainable_layers: int) -> int:
    layers, kv_heads, head_dim = self_attention_layout(common.innermost(model))
    return (layers - trainable_layers) * 2 * kv_heads * head_dim


def _attention_outputs_needing_grad(model, batch) -> list[bool]:
    """Per self-attention layer (running order): whether its output in a training forward needs a gradient."""
    encoder = model.prompt_encoder["default"]
    modules = [common.innermost(model).get_submodule(slot.name) for slot in encoder.slots]
    seen = {}

    def hook(module, args, output):
        seen[id(module)] = (output[0] if isinstance(output, tuple) else output).requires_grad

    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        model.train()
        model(**batch).loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return [seen[id(module)] for module in modules]


@pytest.mark.parametrize("model_name", MODELS)
def test_only_the_last_layers_keys_and_values_train_and_backward_stops_above_the_others(model_name):
    model = deep_model(model_name, trainable_layers=1)
    layers, kv_heads, head_dim = self_attention_layout(common.innermost(model))
    head = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save" in n and p.requires_grad)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable - head == 2 * 1 * P * kv_heads * head_dim  # the formula with the trained layers only
    batch = common.batch_for(model_name)
    assert _attention_outputs_needing_grad(model, batch) == [False] * (layers - 1) + [True]
    before = _prompt(model)
    common.train_steps(model, batch, steps=2)
    after, frozen = _prompt(model), _frozen_columns(model, 1)
    assert after.shape == before.shape == (P, layers * 2 * kv_heads * head_dim)  # saved as a whole deep prompt
    assert torch.equal(after[:, :frozen], before[:, :frozen])
    assert not torch.equal(after[:, frozen:], before[:, frozen:])


def test_every_layer_trains_by_default():
    model = deep_model("llama")
    assert model.prompt_encoder["default"].frozen_slots == 0
    assert _attention_outputs_needing_grad(model, common.batch_for("llama")) == [True, True]


def test_saved_loaded_and_resumed_with_the_lower_layers_still_fixed(tmp_path):
    model = deep_model("llama", trainable_layers=1)
    start = _prompt(model)
    common.train_steps(model, common.batch_for("llama"), steps=2)
    model.save_pretrained(tmp_path)
    batch = common.inference_batch("llama")
    expected = common.forward_logits(model, batch)
    served = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path)
    torch.testing.assert_close(common.forward_logits(served, batch), expected)
    resumed = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path, is_trainable=True)
    assert resumed.get_nb_trainable_parameters()[0] == model.get_nb_trainable_parameters()[0]
    torch.testing.assert_close(common.forward_logits(resumed, batch), expected)
    common.train_steps(resumed, common.batch_for("llama"), steps=1)
    frozen = _frozen_columns(model, 1)
    assert torch.equal(_prompt(resumed)[:, :frozen], start[:, :frozen])
    assert not torch.equal(_prompt(resumed)[:, frozen:], _prompt(model)[:, frozen:])


def test_layer_scaled_trains_the_last_layers_relative_to_their_size_and_keeps_the_rest():
    model = deep_model("llama", trainable_layers=1, reparameterization="layer_scaled")
    before = _prompt(model)
    common.train_steps(model, common.batch_for("llama"), steps=2)
    after, frozen = _prompt(model), _frozen_columns(model, 1)
    torch.testing.assert_close(after[:, :frozen], before[:, :frozen], rtol=0, atol=1e-6)  # raw x scale, recomputed
    assert not torch.allclose(after[:, frozen:], before[:, frozen:])


# ------------------------------------------------------------------ bad input: a clear error naming the value
@pytest.mark.parametrize("value", [0, -2, True, 1.5, "2"])
def test_trainable_layers_that_are_not_a_positive_count_are_refused_by_value(value):
    with pytest.raises(ValueError, match=rf"trainable_layers must be None .* got {value!r}"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="zero", trainable_layers=value)


def test_more_trainable_layers_than_the_model_has_is_refused_with_both_counts():
    with pytest.raises(ValueError, match=r"trainable_layers=3, but this model has 2 self-attention layers: give 1\.\.2"):
        deep_model("llama", trainable_layers=3)


def test_trainable_layers_with_a_residual_mlp_over_every_layer_is_refused():
    with pytest.raises(ValueError, match=r"trainable_layers=2 .*reparameterization='residual_mlp' shares one MLP"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, trainable_layers=2, reparameterization="residual_mlp")


def test_a_recipe_refuses_trainable_layers_for_a_method_that_has_no_layers():
    from softprompt_bench.recipe_config import RecipeConfig

    with pytest.raises(ValueError, match=r"trainable_layers=4 is read only by methods 'deep_prompt' and 'mixture' \(a bank of deep prompts\); got method='lora'"):
        RecipeConfig(method="lora", trainable_layers=4)
