"""Reparameterisations (residual_mlp, layer_scaled): collapsed on save/export, resumable, refused when unknown."""

import peft
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig, export_prompt_tuning


def test_starts_close_to_the_initialised_prompt():
    plain, _ = common.make_peft_model("gpt2", "vocab_uniform")
    model, _ = common.tiny_model("gpt2")
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, vocab_sampling="uniform", seed=3,
                                            reparameterization="residual_mlp", reparameterization_hidden=16)  # fmt: skip
    encoder = peft.get_peft_model(model, config).prompt_encoder["default"]
    torch.testing.assert_close(encoder.embedding.weight, plain.prompt_encoder["default"].embedding.weight)
    assert (encoder.prompt_table() - encoder.embedding.weight).abs().max() < 0.05


def test_save_holds_the_collapsed_prompt_and_what_resumes_training(tmp_path):
    peft_model, _ = common.make_peft_model("llama", "vocab_reparam")
    common.train_steps(peft_model, common.batch_for("llama"), steps=3)
    peft_model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    encoder = peft_model.prompt_encoder["default"]
    torch.testing.assert_close(tensors["prompt_embeddings"], encoder.prompt_table().detach())
    assert "reparameterization.raw_prompt" in tensors and "reparameterization.down.weight" in tensors
    resumed = PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path, is_trainable=True)
    torch.testing.assert_close(resumed.prompt_encoder["default"].embedding.weight, encoder.embedding.weight)
    losses_resumed = common.train_steps(resumed, common.batch_for("llama"), steps=2)
    losses_original = common.train_steps(peft_model, common.batch_for("llama"), steps=2)
    assert losses_resumed == pytest.approx(losses_original, rel=1e-5)  # optimizer state aside, same trajectory start


def test_export_is_the_collapsed_prompt(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_reparam")
    common.train_steps(peft_model, common.batch_for("gpt2"), steps=3)
    export_prompt_tuning(peft_model, tmp_path)
    exported = load_file(tmp_path / "adapter_model.safetensors")
    assert list(exported) == ["prompt_embeddings"]
    torch.testing.assert_close(exported["prompt_embeddings"], peft_model.prompt_encoder["default"].prompt_table().detach())


def test_unknown_reparameterization_is_named():
    with pytest.raises(ValueError, match=r"reparameterization='lstm' is not one of \[None, 'residual_mlp', 'layer_scaled'\]"):
        VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, reparameterization="lstm")


def test_checkpoint_without_reparameterization_tensors_is_refused(tmp_path):
    plain, _ = common.make_peft_model("gpt2", "vocab_uniform")
    plain.save_pretrained(tmp_path)
    import json

    config_path = tmp_path / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["reparameterization"], config["reparameterization_hidden"] = "residual_mlp", 16
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"reparameterization='residual_mlp' adapter weights lack \['reparameterization.raw_prompt'"):
        PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path)


def _layer_scaled(model_name: str, **kwargs):
    model, task_type = common.tiny_model(model_name)
    config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, reparameterization="layer_scaled", **kwargs)
    return peft.get_peft_model(model, config)


def _parts(encoder):
    """(start, width) of each layer's keys and each layer's values in a deep prompt's row."""
    start, parts = 0, []
    for slot in encoder.slots:
        width = slot.kv_heads * slot.head_dim
        parts += [(start, width), (start + width, width)]
        start += 2 * width
    return parts


@pytest.mark.parametrize("model_name", ["llama", "gpt2", "t5"])
def test_layer_scaled_starts_at_the_initial_prompt_with_one_scale_per_layer_keys_and_values(model_name):
    if model_name == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    plain_model, task_type = common.tiny_model(model_name)
    plain = peft.get_peft_model(plain_model, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=7))
    scaled = _layer_scaled(model_name, deep_init="random", seed=7).prompt_encoder["default"]
    initial = plain.prompt_encoder["default"].prompt_rows()
    torch.testing.assert_close(scaled.prompt_rows(), initial, rtol=1e-6, atol=1e-7)
    scale = scaled.reparameterization.scale
    for start, width in _parts(scaled):
        part = initial[:, start : start + width]
        torch.testing.assert_close(scale[start : start + width], part.pow(2).mean().sqrt().expand(width))
    assert len(_parts(scaled)) == 2 * len(scaled.slots) and scale[0] != scale[-1]


def test_layer_scaled_moves_each_part_by_the_learning_rate_relative_to_its_size():
    peft_model = _layer_scaled("llama", deep_init="random", seed=3)
    encoder = peft_model.prompt_encoder["default"]
    before = encoder.prompt_rows().detach().clone()
    optimizer = torch.optim.AdamW([encoder.embedding.weight], lr=1e-3, weight_decay=0.0)
    peft_model(**common.batch_for("llama")).loss.backward()
    moved = encoder.embedding.weight.grad != 0
    optimizer.step()  # Adam's first step moves every entry with a gradient by lr in the trained (raw) space
    change = (encoder.prompt_rows().detach() - before).abs() / encoder.reparameterization.scale
    assert moved.float().mean() > 0.9
    torch.testing.assert_close(change[moved], torch.full_like(change[moved], 1e-3), rtol=1e-3, atol=0)
    sizes = [encoder.reparameterization.scale[start].item() for start, _ in _parts(encoder)]
    assert max(sizes) / min(sizes) > 1.2  # so plain (unscaled) steps of lr would fail the check above


def test_layer_scaled_saves_collapsed_loads_and_resumes(tmp_path):
    peft_model = _layer_scaled("llama", deep_init="random", seed=3)
    common.train_steps(peft_model, common.batch_for("llama"), steps=2, lr=0.01)
    peft_model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    encoder = peft_model.prompt_encoder["default"]
    assert set(tensors) == {"prompt_embeddings", "reparameterization.raw_prompt", "reparameterization.scale"}
    torch.testing.assert_close(tensors["prompt_embeddings"], encoder.prompt_rows().detach())
    loaded = PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path)
    torch.testing.assert_close(loaded.prompt_encoder["default"].prompt_rows(), encoder.prompt_rows())
    resumed = PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path, is_trainable=True)
    torch.testing.assert_close(resumed.prompt_encoder["default"].reparameterization.scale, encoder.reparameterization.scale)
    losses_resumed = common.train_steps(resumed, common.batch_for("llama"), steps=2, lr=0.01)
    losses_original = common.train_steps(peft_model, common.batch_for("llama"), steps=2, lr=0.01)
    assert losses_resumed == pytest.approx(losses_original, rel=1e-5)


def test_layer_scaled_refuses_a_prompt_that_starts_at_zero():
    with pytest.raises(ValueError, match=r"layer_scaled.*model\.layers\.0\.self_attn keys start at RMS 0.*not deep_init='zero'"):
        _layer_scaled("llama", deep_init="zero")


def test_layer_scaled_is_refused_where_there_are_no_layer_keys_and_values():
    with pytest.raises(ValueError, match=r"reparameterization='layer_scaled' .*VocabSampledPromptTuningConfig takes None or 'residual_mlp'"):
        VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, reparameterization="layer_scaled")
    # a mixture's bank is read when the model is built: an input-row bank is refused there
    # (tests/test_deep_mixture_targets.py); a mixture of deep prompts takes it
