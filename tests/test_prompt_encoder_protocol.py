"""Every registered plugin method implements the declared prompt-encoder protocol (prompt_encoder.py)."""

import pytest
import torch

import testing_common as common
from conformance_cases import CONFIGS
from peft_softprompt_ext import PromptEncoder
from peft_softprompt_ext._peft_compat import registered_methods
from peft_softprompt_ext.plugin_config import PluginPromptConfig
from peft_softprompt_ext.prompt_encoder import INPUT_EMBEDDINGS, KEY_VALUES, REQUIRED


def test_the_registry_holds_every_plugin_method():
    assert set(registered_methods()) >= {"VOCAB_SAMPLED_PROMPT_TUNING", "MIXTURE_PROMPT_TUNING", "PROJECTED_PROMPT_TUNING"}


@pytest.mark.parametrize("peft_type", sorted(registered_methods()))
def test_each_registered_method_declares_the_protocol(peft_type):
    config_cls, encoder_cls = registered_methods()[peft_type]
    assert issubclass(config_cls, PluginPromptConfig) and config_cls.PEFT_TYPE_NAME == peft_type
    assert issubclass(encoder_cls, PromptEncoder)
    for member in REQUIRED:  # implemented, not the protocol's NotImplementedError
        assert getattr(encoder_cls, member) is not getattr(PromptEncoder, member), f"{encoder_cls.__name__}.{member}"
    assert encoder_cls.prompt_kind in (INPUT_EMBEDDINGS, KEY_VALUES)


@pytest.mark.parametrize("peft_type", sorted(registered_methods()))
def test_each_registered_method_is_in_the_conformance_matrix(peft_type):
    kinds = {case.build("CAUSAL_LM", "gpt2").peft_type for case in CONFIGS}
    assert peft_type in {str(getattr(kind, "value", kind)) for kind in kinds}


@pytest.mark.parametrize("case", [case for case in CONFIGS if case.fast], ids=lambda case: case.name)
def test_an_encoder_keeps_its_declared_promises(case):
    model, task_type = common.tiny_model("gpt2")
    config = case.build(task_type, "gpt2")
    peft_model = __import__("peft").get_peft_model(model, config)
    encoder = peft_model.prompt_encoder["default"]
    width, length, batch = config.row_width(), config.num_virtual_tokens, 3  # deep: every layer's keys and values per row
    assert encoder.num_tasks == len(encoder.task_labels) == getattr(config, "num_tasks", 1)
    task_ids = torch.arange(batch) % encoder.num_tasks
    embeds = model.get_input_embeddings()(torch.randint(6, 300, (batch, 4)))
    prompts = encoder(batch, task_ids=task_ids, inputs_embeds=embeds, attention_mask=torch.ones(batch, 4))
    assert prompts.shape == (batch, length, width)
    assert encoder.input_dependent == case.input_dependent
    if not encoder.input_dependent:  # shareable: the distinct prompts, one per task, give every row's prompt
        tables, rows = encoder.shared_prompts(batch, task_ids)
        assert tables.shape == (encoder.num_tasks, length, width)
        torch.testing.assert_close(tables[rows], prompts)
    assert (encoder.export_refusal is None) == (not encoder.input_dependent)
    if encoder.export_refusal is None:
        for task in range(encoder.num_tasks):
            expected = prompts[task_ids.tolist().index(task)]
            torch.testing.assert_close(encoder.prompt_rows(task), expected)
            if encoder.plain_peft_type == "PROMPT_TUNING":
                torch.testing.assert_close(encoder.prompt_table(task), expected)
            else:  # a deep prompt has no input rows for PROMPT_TUNING, and says so
                with pytest.raises(ValueError, match="no single prompt of input rows"):
                    encoder.prompt_table(task)
    state = encoder.adapter_state_dict()
    assert {name: tuple(t.shape) for name, t in state.items()} == type(encoder).expected_state_shapes(config)
    # copies: a state dict kept in memory does not follow training (found 2026-12-07 by a probe: they were views)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(1.0)
    assert all(not torch.equal(kept, encoder.adapter_state_dict()[name]) for name, kept in state.items()
               if kept.numel() and name != "bank")  # fmt: skip (the bank is a buffer: it never trains)
    encoder.load_adapter_state({name: t.clone() for name, t in state.items()})
    torch.testing.assert_close(encoder(batch, task_ids=task_ids, inputs_embeds=embeds, attention_mask=torch.ones(batch, 4)), prompts)


@pytest.mark.parametrize("case", [case for case in CONFIGS if case.fast], ids=lambda case: case.name)
def test_inference_mode_at_get_peft_model_keeps_the_methods_start(case):
    """Found 2026-12-06: inference_mode=True given to get_peft_model skipped every method's start, as a load does: the
    prompt was nn.Embedding's random rows (a one_hot mixture's bank all zeros, a projected prompt not projected),
    with no error. Only a load, whose checkpoint holds the weights, skips it now."""
    import peft

    states = []
    for inference_mode in (False, True):
        model, config = common.tiny_model("gpt2")[0], case.build("CAUSAL_LM", "gpt2")
        config.inference_mode = inference_mode
        torch.manual_seed(0)  # (MLPs and attention projections start from the global generator)
        states.append(peft.get_peft_model(model, config).prompt_encoder["default"].state_dict())
    assert states[0].keys() == states[1].keys()
    for name in states[0]:
        torch.testing.assert_close(states[1][name], states[0][name], rtol=0, atol=0, msg=name)


def test_a_saved_adapters_config_builds_without_its_sources_for_its_weights_to_load(tmp_path):
    """The review of 917f70e: PEFT saves inference_mode=True, and a config read back from a save (it carries the base
    model's fingerprint) is what PeftModel(base, config) + set_peft_model_state_dict builds before loading the weights.
    Such a build skips the start, as before: a one_hot mixture whose bank folders are gone still builds and loads."""
    import shutil

    import peft
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    from peft_softprompt_ext import MixturePromptTuningConfig, VocabSampledPromptTuningConfig

    sources = []
    for index in range(2):
        folder = tmp_path / f"source{index}"
        peft.get_peft_model(common.tiny_model("gpt2")[0], VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                                                                          seed=index)).save_pretrained(folder)  # fmt: skip
        sources.append(str(folder))
    config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_prompts=sources, num_tasks=2, mixing="one_hot")
    saved = peft.get_peft_model(common.tiny_model("gpt2")[0], config)
    saved.save_pretrained(tmp_path / "mixture")
    for folder in sources:
        shutil.rmtree(folder)
    generic = PeftModel(common.tiny_model("gpt2")[0], PeftConfig.from_pretrained(tmp_path / "mixture"))  # (the reviewer's case: it raised)
    set_peft_model_state_dict(generic, load_file(tmp_path / "mixture" / "adapter_model.safetensors"))
    with torch.no_grad():  # PEFT's generic class applies no prompt (plain PEFT's prompt methods alike): the README says
        plain = common.tiny_model("gpt2")[0](**common.batch_for("gpt2")).logits  # to build with get_peft_model
        torch.testing.assert_close(generic(**common.batch_for("gpt2")).logits, plain)
    rebuilt = peft.get_peft_model(common.tiny_model("gpt2")[0], PeftConfig.from_pretrained(tmp_path / "mixture"))
    set_peft_model_state_dict(rebuilt, load_file(tmp_path / "mixture" / "adapter_model.safetensors"))
    batch = common.batch_for("gpt2")
    task_ids = torch.tensor([1, 0, 1])
    with torch.no_grad():
        expected = saved(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], task_ids=task_ids).logits
        torch.testing.assert_close(rebuilt(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], task_ids=task_ids).logits, expected)
