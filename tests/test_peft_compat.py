"""The PEFT seam: registration, version guard, patched methods. Fails loudly when PEFT changes."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import peft
import pytest
import torch

import peft_softprompt_ext
from peft_softprompt_ext import _peft_compat
from testing_common import CACHE_NAME, batch_for, greedy_manual_loop, tiny_model

REPO = Path(__file__).resolve().parents[1]


def test_supported_range_matches_pyproject():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    peft_requirement = next(d for d in dependencies if d.startswith("peft"))
    from packaging.requirements import Requirement

    assert Requirement(peft_requirement).specifier == _peft_compat.SUPPORTED_PEFT


def test_installed_peft_is_in_supported_range():
    assert peft.__version__ in _peft_compat.SUPPORTED_PEFT


@pytest.mark.parametrize("version", ["0.20.0", "0.22.0", "1.0.0"])
def test_unsupported_peft_version_fails_at_import_with_one_message(version):
    code = f"import peft; peft.__version__ = {version!r}; import peft_softprompt_ext"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: peft_softprompt_ext supports peft")
    assert f"peft=={version} is installed" in last_line


def test_plugin_types_are_enum_members_and_registered():
    for name in _peft_compat.PLUGIN_PEFT_TYPES:
        member = peft.PeftType(name)
        assert member is peft.PeftType[name] and member in list(peft.PeftType)
        assert peft.mapping.PEFT_TYPE_TO_CONFIG_MAPPING[name].__module__.startswith("peft_softprompt_ext")
        assert peft.mapping.PEFT_TYPE_TO_TUNER_MAPPING[name].__module__.startswith("peft_softprompt_ext")


def test_importing_twice_changes_nothing():
    members_before = list(peft.PeftType)
    mappings_before = {k: len(v) for k, v in vars(peft.mapping).items() if k.startswith("PEFT_TYPE_TO_")}
    wrapped_before = {(owner, name): _peft_compat.original_method(owner, name) for owner, name, _ in _peft_compat.PATCHED_METHODS}
    importlib.reload(importlib.import_module("peft_softprompt_ext.vocab_sampled"))
    importlib.reload(peft_softprompt_ext)
    assert list(peft.PeftType) == members_before
    assert {k: len(v) for k, v in vars(peft.mapping).items() if k.startswith("PEFT_TYPE_TO_")} == mappings_before
    for owner, name, _ in _peft_compat.PATCHED_METHODS:
        assert _peft_compat.original_method(owner, name) is wrapped_before[(owner, name)], f"{name} was wrapped twice"
        assert not hasattr(_peft_compat.original_method(owner, name), "__peft_softprompt_ext_original__")


# PEFT methods we wrap, with the parameters our wrappers assume. A change here means PEFT moved
# under us: re-read the method and update _peft_compat.py before widening SUPPORTED_PEFT.
EXPECTED_SIGNATURES = {
    "PeftModel._setup_prompt_encoder": ["self", "adapter_name"],
    "PeftModel.get_prompt": ["self", "batch_size", "task_ids", "max_cache_len"],
    "PeftModel.save_pretrained": ["self", "save_directory", "safe_serialization", "selected_adapters",
                                  "save_embedding_layers", "is_main_process", "path_initial_model_for_weight_conversion",
                                  "kwargs"],  # fmt: skip
    "PeftModel.push_to_hub": ["self", "repo_id", "commit_message", "commit_description", "private", "token",
                              "revision", "create_pr", "max_shard_size", "tags"],  # fmt: skip
    "PeftModelForCausalLM.forward": ["self", "input_ids", "attention_mask", "inputs_embeds", "labels",
                                     "output_attentions", "output_hidden_states", "return_dict", "task_ids", "kwargs"],  # fmt: skip
    "PeftModelForCausalLM.generate": ["self", "args", "kwargs"],
    "PeftModelForCausalLM.prepare_inputs_for_generation": ["self", "args", "task_ids", "kwargs"],
    "PeftModelForSeq2SeqLM.forward": ["self", "input_ids", "attention_mask", "inputs_embeds", "decoder_input_ids",
                                      "decoder_attention_mask", "decoder_inputs_embeds", "labels", "output_attentions",
                                      "output_hidden_states", "return_dict", "task_ids", "kwargs"],  # fmt: skip
    "PeftModelForSeq2SeqLM.generate": ["self", "kwargs"],
    "PeftModelForSequenceClassification.forward": ["self", "input_ids", "attention_mask", "inputs_embeds", "labels",
                                                   "output_attentions", "output_hidden_states", "return_dict",
                                                   "task_ids", "kwargs"],  # fmt: skip
    "PeftModel.disable_adapter": ["self"],
    "PeftModel.get_prompt_embedding_to_save": ["self", "adapter_name"],
    "PeftModel.load_adapter": ["self", "model_id", "adapter_name", "is_trainable", "torch_device", "autocast_adapter_dtype",
                               "ephemeral_gpu_offload", "low_cpu_mem_usage", "key_mapping", "kwargs"],  # fmt: skip
    "PeftModel.delete_adapter": ["self", "adapter_name"],
    "PeftModel.create_or_update_model_card": ["self", "output_dir"],
}


def test_wrapped_peft_methods_keep_their_signatures():
    assert _peft_compat.peft_internals_signature_report() == EXPECTED_SIGNATURES


def test_auto_peft_model_from_pretrained_keeps_its_signature():
    import inspect

    from peft.auto import _BaseAutoPeftModel

    original = _BaseAutoPeftModel.__dict__["from_pretrained"].__peft_softprompt_ext_original__
    assert list(inspect.signature(original.__func__).parameters) == [
        "cls", "pretrained_model_name_or_path", "adapter_name", "is_trainable", "config", "revision", "import_allowlist", "kwargs",
    ]  # fmt: skip


def test_methods_we_add_are_not_defined_by_peft():
    """merge_and_unload / unload reach a tuner through PeftModel.__getattr__; ours only add a plugin case."""
    for owner, name, implementation in _peft_compat.ADDED_METHODS:
        assert owner.__dict__[name] is implementation
        assert not any(name in vars(base) for base in owner.__mro__[1:]), f"PEFT now defines {owner.__name__}.{name}"


def test_peft_internals_we_rely_on_exist():
    from peft.tuners.tuners_utils import BasePromptEncoder

    assert {"_get_adapter_state_dict", "_load_adapter_state_dict"} <= set(vars(BasePromptEncoder))
    assert "is_trainable" in peft.PeftModel.from_pretrained.__wrapped__.__code__.co_varnames
    model, _ = tiny_model("gpt2")
    vanilla = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    assert hasattr(vanilla, "base_model_prepare_inputs_for_generation")
    assert {"prompt_encoder", "prompt_tokens", "word_embeddings"} <= set(vars(vanilla)) | set(vanilla._modules)
    # a SEQ_CLS prompt's trained head: its wrapper's adapters, switch and unload (disable_adapter / unload)
    from peft.utils.other import AuxiliaryTrainingWrapper

    head = peft.get_peft_model(tiny_model("bert")[0], peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)).base_model.classifier
    assert isinstance(head, AuxiliaryTrainingWrapper) and head._adapters == {"default"} and head.disable_adapters is False
    assert callable(head.enable_adapters) and callable(head.unload_and_optionally_merge_module)
    import inspect

    from peft.tuners.tuners_utils import _delete_auxiliary_adapter  # (delete_adapter: head copies first)

    assert list(inspect.signature(_delete_auxiliary_adapter).parameters) == ["model", "adapter_name", "new_active_adapters"]


def test_plain_peft_fails_to_delete_a_prompt_beside_two_others_on_a_classifier():
    """Documents the upstream bug `_peft_compat._delete_adapter` works around for the plugin's adapters: PEFT hands every
    remaining adapter to the head copy's wrapper, which takes one, and raises after removing the prompt. If this fails,
    PEFT changed: revisit _delete_adapter."""
    model = peft.get_peft_model(tiny_model("bert")[0], peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3))
    for name in ("b", "c"):
        model.add_adapter(name, peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3))
    with pytest.raises(ValueError, match=r"Attempted to set multiple \(\['default', 'b'\]\) adapters at once"):
        model.delete_adapter("c")
    assert list(model.peft_config) == ["default", "b"] and set(model.base_model.classifier.modules_to_save) == {"default", "b", "c"}


def test_vanilla_prompt_tuning_still_runs_peft_code():
    """Our wrappers must not change vanilla PEFT: its forward equals a hand-built prompt concat."""
    model, _ = tiny_model("gpt2")
    vanilla = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    batch = batch_for("gpt2")
    with torch.no_grad():
        logits = vanilla(input_ids=batch["input_ids"]).logits
        prompt = vanilla.prompt_encoder["default"].embedding.weight.unsqueeze(0).expand(3, -1, -1)
        embeds = torch.cat((prompt, vanilla.word_embeddings(batch["input_ids"])), dim=1)
        expected = vanilla.get_base_model()(inputs_embeds=embeds).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_vanilla_prompt_tuning_generate_with_cache_is_right_only_before_transformers_5_24():
    """Documents the upstream bug our methods avoid: PEFT 0.21 looks for the cache under
    `past_key_values`, which transformers >= 5.24 renamed `cache`, so it re-feeds the virtual tokens at
    every step there. If this fails, PEFT or transformers changed: revisit the patch and the README."""
    model, _ = tiny_model("gpt2")
    torch.manual_seed(0)
    vanilla = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    batch = batch_for("gpt2")
    with torch.no_grad():
        cached = vanilla.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  max_new_tokens=16, do_sample=False, use_cache=True)  # fmt: skip
    manual = greedy_manual_loop(vanilla, batch["input_ids"], batch["attention_mask"], 16)
    if CACHE_NAME == "cache":
        assert not torch.equal(cached, manual)
    else:
        assert torch.equal(cached, manual)


@pytest.mark.parametrize("kind", ["plain", "plugin"])
def test_trainer_counts_a_shallow_prompts_scored_tokens_as_transformers_does(kind, tmp_path):
    """Documents an upstream count the README describes: transformers' Trainer that counts a causal LM's scored
    tokens from each row's second label on (`_loss_shifts_labels`, transformers PR #46204) divides a shallow prompt's
    loss, which scores the first label too (from the last virtual token), by too few: 8 rows x 7 labels, 56 scored,
    48 counted. Earlier releases counted every label: exact. If this fails, transformers changed: revisit the README."""
    import transformers
    from datasets import Dataset

    from testing_common import all_configs

    model, _ = tiny_model("llama")
    config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5) if kind == "plain" else all_configs()["vocab_uniform"]("CAUSAL_LM", "llama")
    peft_model = peft.get_peft_model(model, config)
    ids = torch.randint(3, 100, (8, 7), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * 7] * 8, "labels": ids.tolist()})
    args = transformers.TrainingArguments(str(tmp_path), per_device_train_batch_size=8, learning_rate=0.0, max_steps=1, logging_steps=1,
                                          report_to=[], save_strategy="no", use_cpu=True)  # fmt: skip
    trainer = transformers.Trainer(model=peft_model, args=args, train_dataset=data)
    with torch.no_grad():
        mean = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.item()  # over all 56
    trainer.train()
    logged = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    expected = mean * 56 / 48 if getattr(trainer, "_loss_shifts_labels", False) else mean
    assert logged == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("adapter_name", ["p", "prompt", "vocab", "tuning"])
def test_ordinary_adapter_names_raise_no_prefix_warning(adapter_name, recwarn):
    """Issue #11 (7): PEFT warned that such names are substrings of the plugin type's key prefix."""
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    model, _ = tiny_model("gpt2")
    peft_model = peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
                                     adapter_name=adapter_name)  # fmt: skip
    peft_model.add_adapter(adapter_name + "2", VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    assert not [w for w in recwarn if "should not be contained in the prefix" in str(w.message)]
