"""Plain PEFT key/value prompts (PREFIX_TUNING, CARTRIDGE) as a deep mixture's bank: prompts
trained in plain PEFT, served per row in one mixed-task batch (which plain PEFT cannot do, peft#759), each row as
plain PEFT gives it alone; refused, naming why, where a cache prefix is not the plugin's deep prompt."""

import peft
import pytest
import torch

import testing_common as common
from peft_softprompt_ext import MixturePromptTuningConfig, serve_prompts

P = 5


def plain_folder(tmp_path, model_name: str, kind: str, seed: int, **extra) -> str:
    """A plain PEFT adapter of `kind`, its keys and values drawn with `seed` (as if trained), saved without the plugin's files."""
    model, task_type = common.tiny_model(model_name)
    if kind == "CARTRIDGE":
        config = peft.CartridgeConfig(task_type=task_type, num_virtual_tokens=P, num_frozen_tokens=1, **extra)
    else:
        config = peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=P, **{"prefix_projection": False, **extra})
    plain = peft.get_peft_model(model, config)
    with torch.no_grad():
        for parameter in plain.prompt_encoder["default"].parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(seed)))
    folder = tmp_path / f"{kind.lower()}-{seed}"
    plain.save_pretrained(folder)
    return str(folder)


def plain_logits_and_tokens(model_name: str, folder: str, row: torch.Tensor):
    plain = peft.PeftModel.from_pretrained(common.tiny_model(model_name)[0], folder).eval()
    mask = torch.ones_like(row)
    with torch.no_grad():
        logits = plain(input_ids=row, attention_mask=mask).logits
        tokens = plain.generate(input_ids=row, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    return logits, tokens[:, row.shape[1]:]


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_plain_cartridge_and_prefix_tuning_prompts_serve_a_mixed_batch_each_row_as_plain_peft_alone(model_name, tmp_path):
    """PREFIX_TUNING with prefix_projection=True saves its projection's output, keys and values, which plain PEFT
    loads for inference as a table: it serves exactly too."""
    sources = [plain_folder(tmp_path, model_name, "CARTRIDGE", 1), plain_folder(tmp_path, model_name, "PREFIX_TUNING", 2),
               plain_folder(tmp_path, model_name, "PREFIX_TUNING", 3, prefix_projection=True, encoder_hidden_size=8)]  # fmt: skip
    model, task_type = common.tiny_model(model_name)
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=3, mixing="one_hot")
    mixture = peft.get_peft_model(model, config).eval()
    rows = torch.randint(5, 90, (4, 7), generator=torch.Generator().manual_seed(0))
    task_ids = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits = mixture(input_ids=rows, attention_mask=torch.ones_like(rows), task_ids=task_ids).logits
        tokens = mixture.generate(input_ids=rows, attention_mask=torch.ones_like(rows), task_ids=task_ids, max_new_tokens=4,
                                  do_sample=False, pad_token_id=0)[:, rows.shape[1]:]  # fmt: skip
    for index, task in enumerate(task_ids.tolist()):
        expected_logits, expected_tokens = plain_logits_and_tokens(model_name, sources[task], rows[index : index + 1])
        torch.testing.assert_close(logits[index : index + 1], expected_logits, rtol=1e-5, atol=1e-5)
        assert tokens[index].tolist() == expected_tokens[0].tolist()
    served, task_id = serve_prompts(common.tiny_model(model_name)[0], {"cartridge": sources[0], "prefix": sources[1], "projected": sources[2]})
    with torch.no_grad():
        by_name = served(input_ids=rows, attention_mask=torch.ones_like(rows),
                         task_ids=task_id(["cartridge", "prefix", "projected", "cartridge"])).logits  # fmt: skip
    torch.testing.assert_close(by_name, logits, rtol=0, atol=1e-6)
    mixture.save_pretrained(tmp_path / "mixture")  # the bank travels in the mixture's own save
    loaded = peft.PeftModel.from_pretrained(common.tiny_model(model_name)[0], tmp_path / "mixture").eval()
    with torch.no_grad():
        again = loaded(input_ids=rows, attention_mask=torch.ones_like(rows), task_ids=task_ids).logits
    torch.testing.assert_close(again, logits, rtol=0, atol=1e-6)


def test_a_plain_key_value_bank_trains_task_prompts_from_its_mean(tmp_path):
    sources = [plain_folder(tmp_path, "llama", "CARTRIDGE", 1), plain_folder(tmp_path, "llama", "CARTRIDGE", 2)]
    model, task_type = common.tiny_model("llama")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=2, mixing="task")
    mixture = peft.get_peft_model(model, config)
    before = [parameter.detach().clone() for parameter in mixture.parameters() if parameter.requires_grad]
    common.train_steps(mixture, {**common.batch_for("llama"), "task_ids": torch.tensor([0, 1, 0])}, steps=2)
    after = [parameter for parameter in mixture.parameters() if parameter.requires_grad]
    assert before and any(not torch.equal(old, new) for old, new in zip(before, after))


def test_a_plain_key_value_bank_is_refused_on_a_sliding_window_model(tmp_path):
    sources = [plain_folder(tmp_path, "gemma3", "CARTRIDGE", 1)]
    model, task_type = common.tiny_model("gemma3")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=1, mixing="one_hot")
    with pytest.raises(ValueError, match=r"cartridge-1.*CARTRIDGE.*sliding-window"):
        peft.get_peft_model(model, config)


def test_a_plain_key_value_bank_prompt_of_another_layout_is_refused_naming_it(tmp_path):
    """A cartridge of tiny GPT-2 (another layer count and width) offered to tiny Llama."""
    sources = [plain_folder(tmp_path, "gpt2", "CARTRIDGE", 1)]
    model, task_type = common.tiny_model("llama")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=1, mixing="one_hot")
    with pytest.raises(ValueError, match=r"cartridge-1' \(CARTRIDGE\) was made for num_layers=2, num_attention_heads=4, token_dim=32; "
                                         r"this model has 2 self-attention layers of \(key/value heads, head dim\) \[\(2, 8\)\]"):
        peft.get_peft_model(model, config)


def test_a_bank_mixing_plain_key_value_and_input_row_prompts_is_refused(tmp_path):
    sources = [plain_folder(tmp_path, "llama", "CARTRIDGE", 1), common.bank_folders("llama")[0]]
    model, task_type = common.tiny_model("llama")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=2, mixing="one_hot")
    with pytest.raises(ValueError, match=r"a bank holds one kind"):
        peft.get_peft_model(model, config)


def test_a_bank_source_saved_again_as_another_kind_between_its_two_reads_is_refused_naming_it(tmp_path, monkeypatch):
    """A review's suspicion (2026-12-06): the bank reads each source's config once unlocked (to choose the bank's kind
    and checks) and again with its table under the lock; a save of another kind between the two reads got the first
    kind's checks (a plugin deep prompt read first: an error about a missing layout). Simulated: the first read sees a
    CARTRIDGE, the second the PREFIX_TUNING now in the folder (passed unnoticed before)."""
    import peft_softprompt_ext.mixture.model as mixture_model

    sources = [plain_folder(tmp_path, "llama", "PREFIX_TUNING", 1), plain_folder(tmp_path, "llama", "PREFIX_TUNING", 2)]
    real = mixture_model.load_saved_config

    def first_read(source, revision=None):
        saved = dict(real(source, revision))
        return {**saved, "peft_type": "CARTRIDGE", "num_frozen_tokens": 1} if source == sources[1] else saved

    monkeypatch.setattr(mixture_model, "load_saved_config", first_read)
    model, task_type = common.tiny_model("llama")
    config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P, source_prompts=sources, num_tasks=2, mixing="one_hot")
    with pytest.raises(ValueError, match=rf"Bank prompt '{sources[1]}' was saved again while it was read: a CARTRIDGE adapter first, now a PREFIX_TUNING one"):
        peft.get_peft_model(model, config)
