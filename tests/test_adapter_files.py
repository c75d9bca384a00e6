"""Saving is atomic; loading refuses missing, truncated, pickle-only or mis-shaped adapters."""

import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import save_file

import testing_common as common


@pytest.fixture
def saved(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.save_pretrained(tmp_path)
    return peft_model, tmp_path


def snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def load(folder):
    return PeftModel.from_pretrained(common.tiny_model("gpt2")[0], folder)


def test_missing_weights_file_is_refused(saved):
    _, folder = saved
    os.remove(folder / "adapter_model.safetensors")
    with pytest.raises(FileNotFoundError, match="has no adapter_model.safetensors"):
        load(folder)


def test_missing_config_is_refused(saved):
    _, folder = saved
    os.remove(folder / "adapter_config.json")
    with pytest.raises(ValueError, match="adapter_config.json"):
        load(folder)


@pytest.mark.parametrize("keep_bytes", [4, 60, -8])
def test_truncated_weights_are_refused(saved, keep_bytes):
    _, folder = saved
    path = folder / "adapter_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    with pytest.raises(ValueError, match="truncated"):
        load(folder)


def test_truncated_config_is_refused(saved):
    _, folder = saved
    path = folder / "adapter_config.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match="not valid JSON"):
        load(folder)


def test_pickle_only_adapter_is_refused(saved):
    _, folder = saved
    os.rename(folder / "adapter_model.safetensors", folder / "adapter_model.bin")
    with pytest.raises(ValueError, match="holds only adapter_model.bin \\(pickle\\)"):
        load(folder)


def test_wrong_prompt_shape_is_refused_with_both_shapes(saved):
    _, folder = saved
    save_file({"prompt_embeddings": torch.zeros(7, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"shape \(7, 32\).*expected a float tensor of shape \(5, 32\)"):
        load(folder)


def test_missing_prompt_tensor_is_refused(saved):
    _, folder = saved
    save_file({"something_else": torch.zeros(5, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="lack 'prompt_embeddings'"):
        load(folder)


def test_save_keeps_unrelated_files_and_leaves_no_staging_folder(saved):
    peft_model, folder = saved
    (folder / "results.json").write_text("{}")
    peft_model.save_pretrained(folder)
    assert (folder / "results.json").exists()
    assert not [name for name in os.listdir(folder.parent) if name.startswith(".staging-")]


def test_a_save_keeps_a_readme_it_did_not_write(saved):
    """A user's README.md in the save folder is theirs: kept (with a warning that the card was not written), as
    PEFT keeps its text; a card an earlier plugin save wrote is replaced."""
    peft_model, folder = saved
    assert "peft-softprompt-ext" in (folder / "README.md").read_text()  # the plugin's card
    (folder / "README.md").write_text("# My project notes\n")
    with pytest.warns(UserWarning, match="README.md .* kept"):
        peft_model.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# My project notes\n"
    (folder / "README.md").unlink()
    peft_model.save_pretrained(folder)
    assert "peft-softprompt-ext" in (folder / "README.md").read_text()


def test_a_save_keeps_other_adapters_and_trainer_checkpoints_in_its_folder(saved):
    """Found 2026-12-05: a save dropped every subfolder holding an adapter_config.json, so Trainer.save_model()
    deleted the checkpoint-N/ folders of the same output_dir (and a user's LoRA kept there)."""
    peft_model, folder = saved
    checkpoint = folder / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text("{}")
    (checkpoint / "optimizer.pt").write_bytes(b"state")
    peft_model.save_pretrained(folder)
    assert (checkpoint / "optimizer.pt").read_bytes() == b"state" and (checkpoint / "adapter_config.json").exists()


@pytest.mark.parametrize("how", ["selected_adapters", "a model whose only adapter is another"])
def test_a_save_without_the_default_adapter_keeps_the_folders_default_adapter(saved, how):
    """Found 2026-12-07 by a probe: saving only another adapter into a folder holding a default save (selected_adapters
    without "default", or a model whose only adapter has another name) deleted the default adapter's weights, config,
    card and vanilla/ copy, where plain PEFT leaves them, and left PEFT's generic README.md at the top, which every
    later save then kept as the user's, writing no card."""
    import peft

    from peft_softprompt_ext.adapter_files import is_plugin_card

    peft_model, folder = saved
    before = snapshot(folder)
    other = common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2")
    other.num_virtual_tokens = 7
    if how == "selected_adapters":
        peft_model.add_adapter("other", other)
        peft_model.save_pretrained(folder, selected_adapters=["other"])
    else:
        peft.get_peft_model(common.tiny_model("gpt2")[0], other, adapter_name="other").save_pretrained(folder)
    after = snapshot(folder)
    assert {path: after.get(path) for path in before} == before  # the default save's every file, as it was
    assert (folder / "other" / "adapter_config.json").is_file() and is_plugin_card(folder / "other" / "README.md")
    torch.testing.assert_close(common.forward_logits(load(folder), common.inference_batch("gpt2")),
                               common.forward_logits(peft_model, common.inference_batch("gpt2")), rtol=0, atol=0)  # fmt: skip
    peft_model.save_pretrained(folder)  # a full save again: the card is the plugin's
    assert is_plugin_card(folder / "README.md")


def test_a_save_that_is_not_the_main_process_writes_nothing(saved):
    """Found 2026-12-05: save_pretrained(is_main_process=False) (every non-main rank under Trainer / Accelerate)
    replaced the folder with one holding only the card and vanilla/: the adapter was gone."""
    peft_model, folder = saved
    before = snapshot(folder)
    peft_model.save_pretrained(folder, is_main_process=False)
    assert snapshot(folder) == before


def test_a_pickle_save_is_refused_when_asked_positionally_too(saved):
    """Found 2026-12-05: save_pretrained(folder, False) (safe_serialization by position) wrote a pickle over the save."""
    peft_model, folder = saved
    before = snapshot(folder)
    with pytest.raises(ValueError, match="safetensors only"):
        peft_model.save_pretrained(folder, False)
    assert snapshot(folder) == before


def test_interrupted_save_leaves_the_previous_adapter_intact(saved, monkeypatch):
    peft_model, folder = saved
    before = snapshot(folder)
    import safetensors.torch

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    monkeypatch.setattr("peft.peft_model.safe_save_file", crash, raising=False)
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="disk full"):
        peft_model.save_pretrained(folder)
    assert snapshot(folder) == before
    assert not [name for name in os.listdir(folder.parent) if name.startswith(".staging-")]
