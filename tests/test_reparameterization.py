"""Residual reparameterisation: collapsed on save/export, resumable, and refused when unknown."""

import peft
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import testing_common as common
from peft_softprompt_ext import VocabSampledPromptTuningConfig, export_prompt_tuning


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
    with pytest.raises(ValueError, match=r"reparameterization='lstm' is not one of \[None, 'residual_mlp'\]"):
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
