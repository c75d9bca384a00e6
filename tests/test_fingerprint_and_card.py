"""Base-model fingerprints and the files a saved plugin adapter carries for sharing (offline)."""

import copy
import json
import os

import peft
import pytest
import torch
import transformers
from huggingface_hub import ModelCard
from peft import PeftModel

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, attach_results, export_prefix_tuning, export_prompt_tuning
from peft_softprompt_ext.fingerprint import base_model_fingerprint, embedding_digest


@pytest.fixture
def saved(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_top_frequent")
    peft_model.save_pretrained(tmp_path)
    return peft_model, tmp_path


def test_fingerprint_is_saved_in_the_adapter_config(saved):
    peft_model, folder = saved
    fingerprint = json.loads((folder / "adapter_config.json").read_text())["base_model_fingerprint"]
    assert fingerprint == base_model_fingerprint(peft_model)
    assert fingerprint["hidden_size"] == 32 and fingerprint["vocab_size"] == common.VOCAB_SIZE
    assert fingerprint["architecture"] == "GPT2LMHeadModel" and fingerprint["embedding_digest"].startswith("sha256:")


def test_same_shapes_other_weights_is_refused_with_what_differs(saved):
    _, folder = saved
    other, _ = common.tiny_model("gpt2", seed=1)
    with pytest.raises(ValueError, match=r"trained on another base model: embedding_digest_all_rows: adapter 'sha256:"):
        PeftModel.from_pretrained(other, folder)


def test_other_architecture_is_refused_naming_it(saved):
    _, folder = saved
    llama, _ = common.tiny_model("llama")
    with pytest.raises(ValueError, match=r"architecture: adapter 'GPT2LMHeadModel' vs base model 'LlamaForCausalLM'"):
        PeftModel.from_pretrained(llama, folder)


def test_override_loads_and_adopts_the_new_base(saved, tmp_path):
    peft_model, folder = saved
    other, _ = common.tiny_model("gpt2", seed=1)
    loaded = PeftModel.from_pretrained(other, folder, allow_base_model_mismatch=True)
    torch.testing.assert_close(loaded.prompt_encoder["default"].embedding.weight, peft_model.prompt_encoder["default"].embedding.weight)
    assert loaded.peft_config["default"].base_model_fingerprint == base_model_fingerprint(other)


def test_digest_ignores_dtype_but_not_values():
    weight = torch.randn(100, 8)
    assert embedding_digest(weight) == embedding_digest(weight.to(torch.bfloat16))
    changed = weight.clone()
    changed[0, 0] += 1.0
    assert embedding_digest(changed) != embedding_digest(weight)


def _saved_on(dtype, folder):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(common.tiny_model_folder("llama"), dtype=dtype)
    peft_model = peft.get_peft_model(base, common.all_configs()["vocab_uniform"]("CAUSAL_LM", "llama"))
    peft_model.save_pretrained(folder)
    return peft_model


def _llama_in(dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(common.tiny_model_folder("llama"), dtype=dtype)


@pytest.mark.parametrize("saved_dtype, loaded_dtype", [(torch.float32, torch.float16), (torch.float32, torch.bfloat16),
                                                       (torch.float16, torch.float32), (torch.bfloat16, torch.float16),
                                                       (torch.float16, torch.bfloat16)])  # fmt: skip
def test_an_adapter_loads_into_its_base_model_held_in_another_dtype(saved_dtype, loaded_dtype, tmp_path):
    peft_model = _saved_on(saved_dtype, tmp_path)
    loaded = PeftModel.from_pretrained(_llama_in(loaded_dtype), tmp_path)
    torch.testing.assert_close(loaded.get_prompt_embedding_to_save("default"), peft_model.get_prompt_embedding_to_save("default"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_another_model_held_in_another_dtype_is_still_refused(dtype, tmp_path):
    _saved_on(torch.float32, tmp_path)
    other = common.tiny_model("llama", seed=1)[0].to(dtype)
    with pytest.raises(ValueError, match="trained on another base model: embedding_digest"):
        PeftModel.from_pretrained(other, tmp_path)


def _changed_llama_in(dtype):
    model = _llama_in(torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight[100:111] += 0.5  # 11 rows of 512, none at the 32 sampled positions
    return model.to(dtype)


@pytest.mark.parametrize("saved_dtype, loaded_dtype", [(torch.float32, torch.bfloat16), (torch.float32, torch.float16),
                                                       (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])  # fmt: skip
def test_a_changed_model_held_in_another_dtype_is_refused(saved_dtype, loaded_dtype, tmp_path):
    """Where the dtypes differed, only the 32 sampled values were compared: a model with 11 of its 512 embedding rows
    changed was refused in float32 but accepted in bfloat16 or float16. Every pair with a side that holds the
    original values now compares exact digests (bfloat16- and float16-rounded)."""
    _saved_on(saved_dtype, tmp_path)
    with pytest.raises(ValueError, match="trained on another base model: embedding_digest"):
        PeftModel.from_pretrained(_changed_llama_in(loaded_dtype), tmp_path)


@pytest.mark.parametrize("edit", [{"embedding_sample": [0.1, 0.2]}, {"embedding_dtype": "float8"}, {"embedding_sample": None},
                                  {"embedding_sample": ["a"] * 32}, {"embedding_digest_float16": 5}, {"embedding_digest_all_rows": 5},
                                  {"embedding_digest_all_rows_float16": None}])  # fmt: skip
def test_a_fingerprint_with_a_malformed_dtype_sample_is_refused(edit, tmp_path):
    _saved_on(torch.float32, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["base_model_fingerprint"].update(edit)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no valid base_model_fingerprint"):
        PeftModel.from_pretrained(_llama_in(torch.float16), tmp_path)


def test_a_model_with_rows_changed_between_the_hashed_ones_is_refused(tmp_path):
    """Found 2026-12-07 by a probe: only every k-th embedding row was hashed (at most 4,096), so with 8,192 rows a
    model whose odd rows differed (half the matrix) took the prompt without a word; every row is hashed now."""
    import copy

    base = _llama_in(torch.float32)
    torch.manual_seed(0)
    base.resize_token_embeddings(8192, mean_resizing=False)
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.get_input_embeddings().weight[1::1000] += 0.5  # 9 rows, none of them hashed before (every second row was)
    peft.get_peft_model(base, common.all_configs()["vocab_uniform"]("CAUSAL_LM", "llama")).save_pretrained(tmp_path)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        with pytest.raises(ValueError, match=r"trained on another base model: embedding_digest_all_rows: adapter 'sha256:"):
            PeftModel.from_pretrained(copy.deepcopy(other).to(dtype), tmp_path)


def test_a_float64_model_and_its_float32_copy_compare_exactly(tmp_path):
    """Found 2026-12-07 by a probe: where float64 was involved only the 32 sampled values decided, so a prompt saved
    on a float64 model loaded into a float32 model with 11 of its rows changed."""
    _saved_on(torch.float64, tmp_path)
    PeftModel.from_pretrained(_llama_in(torch.float32), tmp_path)  # its float32 copy: the same model
    PeftModel.from_pretrained(_llama_in(torch.bfloat16), tmp_path)  # a 16-bit copy: the sampled values decide
    with pytest.raises(ValueError, match="trained on another base model: embedding_digest_all_rows"):
        PeftModel.from_pretrained(_changed_llama_in(torch.float32), tmp_path)


def test_a_fingerprint_saved_before_the_all_rows_digests_still_loads(tmp_path):
    peft_model = _saved_on(torch.float32, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    for key in ("embedding_digest_all_rows", "embedding_digest_all_rows_float16"):
        del config["base_model_fingerprint"][key]
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    for dtype in (torch.float32, torch.float16):  # its sampled rows' digests decide, as when it was saved
        loaded = PeftModel.from_pretrained(_llama_in(dtype), tmp_path)
        torch.testing.assert_close(loaded.get_prompt_embedding_to_save("default"), peft_model.get_prompt_embedding_to_save("default"))
    with pytest.raises(ValueError, match="trained on another base model: embedding_digest: "):
        PeftModel.from_pretrained(_changed_llama_in(torch.float32), tmp_path)
    config["base_model_fingerprint"]["embedding_digest_all_rows"] = "sha256:" + "0" * 64  # one without the other
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no valid base_model_fingerprint .*without the other"):
        PeftModel.from_pretrained(_llama_in(torch.float32), tmp_path)


def test_a_fingerprint_saved_before_the_float16_digest_still_loads_into_a_float16_copy(tmp_path):
    peft_model = _saved_on(torch.float32, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    del config["base_model_fingerprint"]["embedding_digest_float16"]
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    loaded = PeftModel.from_pretrained(_llama_in(torch.float16), tmp_path)  # its sampled values decide, as before
    torch.testing.assert_close(loaded.get_prompt_embedding_to_save("default"), peft_model.get_prompt_embedding_to_save("default"))


def test_a_fingerprint_saved_before_the_dtype_sample_still_checks_exactly(tmp_path):
    peft_model = _saved_on(torch.float32, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    for key in ("embedding_sample", "embedding_dtype"):
        config["base_model_fingerprint"].pop(key, None)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    loaded = PeftModel.from_pretrained(_llama_in(torch.float32), tmp_path)  # an old save loads as before
    torch.testing.assert_close(loaded.get_prompt_embedding_to_save("default"), peft_model.get_prompt_embedding_to_save("default"))


def test_save_writes_a_vanilla_copy_that_plain_peft_loads(saved):
    peft_model, folder = saved
    assert json.loads((folder / "vanilla" / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
    base, _ = common.tiny_model("gpt2")
    vanilla = PeftModel.from_pretrained(base, folder, subfolder="vanilla")
    batch = common.inference_batch("gpt2")
    torch.testing.assert_close(common.forward_logits(vanilla, batch), common.forward_logits(peft_model, batch), rtol=1e-5, atol=1e-5)


def _resized_base(model_name: str, folder):
    """A tiny model saved and loaded back with 8 tokens added (tokenizer.add_tokens, then resize_token_embeddings)."""
    common.tiny_model(model_name)[0].save_pretrained(folder)
    base = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    base.resize_token_embeddings(common.VOCAB_SIZE + 8)
    return base


def _tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "adapter_model.safetensors"))


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])  # GPT-2 ties its input and output embeddings
@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep"])
@pytest.mark.parametrize("save_embedding_layers", ["auto", True, False])
def test_the_vanilla_copy_holds_the_embedding_layers_the_save_holds(model_name, config_name, save_embedding_layers, tmp_path):
    """Found 2026-12-07 by a probe: after resize_token_embeddings, a plugin save of a model with tied embeddings failed
    (safetensors refused the two tied tensors of the vanilla/ copy), whatever save_embedding_layers said; and the
    vanilla/ copy held the embedding layers by PEFT's "auto" rule whatever the save was told (True: the save held them
    and the copy not, 0.678 off in plain PEFT; False: the copy held them)."""
    base = _resized_base(model_name, tmp_path / "base")
    if config_name == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, deep_init="random", seed=3)
    else:
        config = common.all_configs()[config_name]("CAUSAL_LM", model_name)
    peft_model = peft.get_peft_model(base, config)
    peft_model.save_pretrained(tmp_path / "saved", save_embedding_layers=save_embedding_layers)
    own = {key: tensor for key, tensor in _tensors(tmp_path / "saved").items() if key.startswith("base_model.")}
    copy = {key: tensor for key, tensor in _tensors(tmp_path / "saved" / "vanilla").items() if key.startswith("base_model.")}
    assert bool(own) == (save_embedding_layers is not False)  # "auto": PEFT saves them, the vocabulary being resized
    assert sorted(copy) == sorted(own) and all(torch.equal(copy[key], own[key]) for key in own)
    if save_embedding_layers == "auto":  # an export writes what PEFT's default save writes
        export = export_prefix_tuning if config_name == "deep" else export_prompt_tuning
        assert sorted(_tensors(export(peft_model, tmp_path / "export"))) == sorted(_tensors(tmp_path / "saved" / "vanilla"))


def test_model_card_parses_and_carries_the_fields(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_top_frequent")
    attach_results(peft_model, {"method": "vocab_sampled", "task": "movie_sentiment", "seed": 0, "steps": 5, "batch_size": 4,
                                "metrics": {"accuracy": 0.8125, "macro_f1": 0.8}})  # fmt: skip
    peft_model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "peft"
    assert {"prompt-tuning", "soft-prompt", "peft-softprompt-ext", "vocab_sampled_prompt_tuning"} <= set(card.data.tags)
    text = card.text
    assert '"vocab_sampling": "top_frequent"' in text and '"num_virtual_tokens": 5' in text
    assert "| accuracy | 0.8125 |" in text
    assert "nearest tokens (cosine)" in text and "(1.00)" in text  # sampled rows read back as themselves
    assert 'subfolder="vanilla"' in text and "import peft_softprompt_ext" in text


def test_the_card_of_a_second_adapter_loads_that_adapter(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.add_adapter("other", common.all_configs()["vocab_top_frequent"]("CAUSAL_LM", "gpt2"))
    peft_model.save_pretrained(tmp_path)
    text = ModelCard.load(tmp_path / "other" / "README.md").text
    assert 'PeftModel.from_pretrained(base_model, REPO_ID, subfolder="other")' in text and 'subfolder="other/vanilla"' in text
    assert 'subfolder="other' not in ModelCard.load(tmp_path / "README.md").text
    loaded = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path, subfolder="other")  # as its card says
    plain = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path, subfolder="other/vanilla")
    expected = peft_model.get_prompt_embedding_to_save("other")
    torch.testing.assert_close(loaded.get_prompt_embedding_to_save("default"), expected)
    torch.testing.assert_close(plain.get_prompt_embedding_to_save("default"), expected)


def test_an_export_over_a_plugin_save_drops_the_saves_card_and_plain_copy_but_keeps_a_users_files(tmp_path):
    """The export kept the plugin save's card ('# Soft prompt: ...', describing the plugin adapter that was gone)
    and its vanilla/ copy beside the new plain adapter."""
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.save_pretrained(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    export_prompt_tuning(peft_model, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors", "notes.txt"]
    (tmp_path / "README.md").write_text("my own words")  # a README the plugin did not write stays
    export_prompt_tuning(peft_model, tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own words"
    (tmp_path / "vanilla").mkdir()  # a vanilla/ of the user's own stays (found 2026-12-07 by a probe: it was dropped)
    (tmp_path / "vanilla" / "recipe.txt").write_text("mine too")
    export_prompt_tuning(peft_model, tmp_path)
    assert (tmp_path / "vanilla" / "recipe.txt").read_text() == "mine too"
    with pytest.raises(ValueError, match=r"vanilla/ in .* holds files this plugin did not write"):
        peft_model.save_pretrained(tmp_path)  # a save writes its plain copy there: refused, naming them
    assert (tmp_path / "vanilla" / "recipe.txt").read_text() == "mine too"


def test_exports_name_what_they_cannot_export_and_take_numpy_and_torch_task_indices(tmp_path):
    """Found 2026-12-07 by a probe: export_prefix_tuning / export_cartridge of a plain PEFT adapter and an export of a
    bare transformers model failed with bare AttributeErrors; task=np.int64(1) was refused as "not in 0..1"."""
    import numpy

    from peft_softprompt_ext import export_cartridge

    plain = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    for export in (export_prefix_tuning, export_cartridge):
        with pytest.raises(ValueError, match=r"'default' is a plain PEFT PROMPT_TUNING adapter"):
            export(plain, tmp_path / "x")
    with pytest.raises(ValueError, match=r"Expected a PeftModel .*got a GPT2LMHeadModel"):
        export_prompt_tuning(common.tiny_model("gpt2")[0], tmp_path / "y")
    mixture = peft.get_peft_model(common.tiny_model("gpt2")[0], common.conformance_config("mixture_task_2", "CAUSAL_LM", "gpt2"))
    with torch.no_grad():
        mixture.prompt_encoder["default"].target_prompts.add_(torch.randn_like(mixture.prompt_encoder["default"].target_prompts))
    export_prompt_tuning(mixture, tmp_path / "int", task=1)
    for task in (numpy.int64(1), torch.tensor(1)):
        export_prompt_tuning(mixture, tmp_path / "other", task=task)
        torch.testing.assert_close(_tensors(tmp_path / "other"), _tensors(tmp_path / "int"), rtol=0, atol=0)


def test_a_card_says_why_a_prompt_has_no_readout_and_refuses_a_plain_adapter():
    """The card of a deep prompt or an attention mixture said 'no tokenizer at ...' where the tokenizer loaded fine and
    describe_prompt had refused the prompt; build_model_card on a plain PEFT adapter raised a bare AttributeError."""
    from peft_softprompt_ext import DeepPromptTuningConfig
    from peft_softprompt_ext.hub import build_model_card

    deep = peft.get_peft_model(common.tiny_model("llama")[0], DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                                                                      deep_init="random", tokenizer_name_or_path=common.tiny_tokenizer_dir()))  # fmt: skip
    text = build_model_card(deep).text
    assert "no single prompt of input rows" in text and "no tokenizer" not in text
    plain = peft.get_peft_model(common.tiny_model("llama")[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with pytest.raises(ValueError, match=r"plain PEFT PROMPT_TUNING adapter: build_model_card writes the card of a plugin adapter"):
        build_model_card(plain)


def test_a_second_adapter_named_vanilla_is_refused_before_anything_is_written(tmp_path):
    """PEFT saves it into vanilla/, where the default adapter's plain copy goes: the copy overwrote it, and loading
    it back was skipped with a warning."""
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.add_adapter("vanilla", common.all_configs()["vocab_top_frequent"]("CAUSAL_LM", "gpt2"))
    with pytest.raises(ValueError, match=r"adapter named 'vanilla' .* vanilla/ .* plain PEFT copy"):
        peft_model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    peft_model.save_pretrained(tmp_path / "alone", selected_adapters=["vanilla"])  # without the default adapter: no clash


@pytest.mark.parametrize("results,message", [({"metrics": [0.8]}, r"results\['metrics'\] must be a dict of metric names to values, got \[0.8\]"),
                                             ({"metrics": {"accuracy": 0.8}, "seed": {}}, None)])  # fmt: skip
def test_attached_results_are_checked_when_attached(results, message, tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    if message:
        with pytest.raises(ValueError, match=message):
            attach_results(peft_model, results)
        return
    attach_results(peft_model, results)
    peft_model.save_pretrained(tmp_path)  # the card is written
    assert "| accuracy | 0.8000 |" in (tmp_path / "README.md").read_text()


def test_attached_results_go_on_their_adapters_card_only(tmp_path):
    """Found 2026-12-07 by a probe: one recipe run's metrics went on every adapter's card (a 7-token adapter's card
    showed a 4-token run it never had), and no card said which split or how many rows the metrics scored."""
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    other = common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2")
    other.num_virtual_tokens = 7
    peft_model.add_adapter("other", other)
    results = {"method": "vocab_sampled", "task": "movie_sentiment", "seed": 0, "steps": 4, "batch_size": 2,
               "config": {"eval_split": "test"}, "metrics": {"accuracy": 0.75, "confusion": [[700, 300], [0, 56]]}}  # fmt: skip
    attach_results(peft_model, results)  # the active adapter's
    with pytest.raises(ValueError, match=r"adapter_name='nosuch' is not an adapter of this model; it has \['default', 'other'\]"):
        attach_results(peft_model, results, adapter_name="nosuch")
    peft_model.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "| accuracy | 0.7500 |" in card and "scored on the test split (1,056 rows)" in card
    assert "No recipe results attached." in (tmp_path / "other" / "README.md").read_text()
    attach_results(peft_model, {**results, "metrics": {"accuracy": 0.5}}, adapter_name="other")
    peft_model.save_pretrained(tmp_path)
    assert "| accuracy | 0.5000 |" in (tmp_path / "other" / "README.md").read_text()
    assert "| accuracy | 0.7500 |" in (tmp_path / "README.md").read_text()
    # a new prompt under the name (deleted and added again) has no results (found 2026-12-07 by a probe: the deleted
    # adapter's metrics went on the new, untrained adapter's card); a copy of the model keeps its adapters' results
    peft_model.delete_adapter("other")
    peft_model.add_adapter("other", other)
    copied = copy.deepcopy(peft_model)
    for model, folder in ((peft_model, tmp_path / "again"), (copied, tmp_path / "copied")):
        model.save_pretrained(folder)
        assert "No recipe results attached." in (folder / "other" / "README.md").read_text()
        assert "| accuracy | 0.7500 |" in (folder / "README.md").read_text()
    # another prompt loaded over it, or the prompt trained further: the results were not measured on it (the review)
    attach_results(peft_model, {**results, "metrics": {"accuracy": 0.5}}, adapter_name="other")
    with torch.no_grad():
        copied.prompt_encoder["other"].embedding.weight.add_(0.5)
    copied.save_pretrained(tmp_path / "perturbed")
    peft_model.load_adapter(tmp_path / "perturbed" / "other", "other")  # another 7-token prompt, over this one
    common.train_steps(peft_model, common.batch_for("gpt2"), steps=1)  # the active (default) adapter
    peft_model.save_pretrained(tmp_path / "changed")
    for card in (tmp_path / "changed" / "README.md", tmp_path / "changed" / "other" / "README.md"):
        text = card.read_text()
        assert "| accuracy |" not in text and "attached before it changed, trained further, loaded over or cast" in text


def test_results_attached_to_a_lora_model_change_nothing(tmp_path):
    """The recipes attach every run's results, LoRA's too: no plugin card there, and nothing fails."""
    lora = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]))
    attach_results(lora, {"method": "lora", "metrics": {"accuracy": 0.5}})
    lora.save_pretrained(tmp_path)
    assert "peft-softprompt-ext" not in (tmp_path / "README.md").read_text()


def test_peft_card_update_keeps_the_plugin_cards_tags_and_writes_no_local_path_as_base_model(tmp_path):
    """Found 2026-12-07 by a probe: PEFT's create_or_update_model_card (Trainer's create_model_card calls it before a
    push) replaced the plugin card's tags and wrote a base model loaded from a folder as `base_model`, a local path the
    Hub refuses (the plugin's card names it in the text only)."""
    common.tiny_model("gpt2")[0].save_pretrained(tmp_path / "base")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    peft_model = peft.get_peft_model(base, common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2"))
    peft_model.save_pretrained(tmp_path / "saved")
    peft_model.create_or_update_model_card(str(tmp_path / "saved"))
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert {"prompt-tuning", "soft-prompt", "peft-softprompt-ext", "vocab_sampled_prompt_tuning"} <= set(card.data.tags)
    assert card.data.base_model is None and "# Soft prompt" in card.text
    plain = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    plain.save_pretrained(tmp_path / "plain")
    plain.create_or_update_model_card(str(tmp_path / "plain"))  # plain PEFT's card: PEFT's own update, unchanged
    assert ModelCard.load(tmp_path / "plain" / "README.md").data.base_model == str(tmp_path / "base")


def test_describe_prompt_names_bad_arguments():
    from peft_softprompt_ext import describe_prompt

    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    with pytest.raises(ValueError, match="k must be a positive integer, got True"):
        describe_prompt(peft_model, common.tiny_tokenizer(), k=True)
    with pytest.raises(ValueError, match="tokenizer must be the base model's tokenizer .*got None"):
        describe_prompt(peft_model, None)
    for chunk in (-1, 0, True, 2.5):  # found 2026-12-06: -1 gave '<pad>' at cosine -2 for every position, 0 a range() error
        with pytest.raises(ValueError, match=rf"chunk must be a positive integer, got {chunk!r}"):
            describe_prompt(peft_model, common.tiny_tokenizer(), chunk=chunk)
    with pytest.raises(ValueError, match=r"describe_prompt reads a PeftModel's prompt; got a GPT2LMHeadModel"):
        describe_prompt(common.tiny_model("gpt2")[0], common.tiny_tokenizer())  # found 2026-12-06: AttributeError


@pytest.mark.parametrize("model_name", ["gemma3", "bert"])
def test_describe_prompt_refuses_a_deep_prompt_saying_it_has_no_input_rows(model_name):
    from peft_softprompt_ext import DeepPromptTuningConfig, describe_prompt

    base, task_type = common.tiny_model(model_name)
    model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random"))
    with pytest.raises(ValueError, match="per-layer keys and values, which PROMPT_TUNING .*cannot hold"):
        describe_prompt(model, common.tiny_tokenizer())


def test_pickle_saves_are_refused(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    with pytest.raises(ValueError, match="safetensors only"):
        peft_model.save_pretrained(tmp_path, safe_serialization=False)


def test_vanilla_peft_save_is_unchanged(tmp_path):
    model, _ = common.tiny_model("gpt2")
    vanilla = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    vanilla.save_pretrained(tmp_path)
    assert not (tmp_path / "vanilla").exists()


def test_a_classifier_prompts_card_counts_its_trained_head():
    """The card of a SEQ_CLS prompt gave the prompt's parameters alone; the classifier head trains and is saved too."""
    from peft_softprompt_ext.hub import build_model_card

    peft_model, _ = common.make_peft_model("bert", "vocab_uniform")
    trainable, _ = peft_model.get_nb_trainable_parameters()
    prompt = sum(p.numel() for p in peft_model.prompt_encoder["default"].parameters())
    assert trainable > prompt  # the head
    text = build_model_card(peft_model).text
    assert f"({trainable:,} trainable parameters: {prompt:,} in the prompt, {trainable - prompt:,} in the trained head" in text


def test_a_card_names_a_hub_base_model_only(tmp_path):
    """A base model loaded from a local folder put that path in the card's `base_model` metadata, which the Hub
    refuses at push time (it must be a model id); a Hub id is kept."""
    from peft_softprompt_ext.hub import build_model_card

    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    for name, expected in ((str(tmp_path), None), ("openai-community/gpt2", "openai-community/gpt2"), ("gpt2", "gpt2")):
        peft_model.peft_config["default"].base_model_name_or_path = name
        card = build_model_card(peft_model)
        assert card.data.to_dict().get("base_model") == expected, name
        assert f"`{name}`" in card.text  # the text still says which model
    peft_model.peft_config["default"].base_model_name_or_path = None  # a model built from its config
    card = build_model_card(peft_model)
    assert "`None`" not in card.text and "a base model built from its config" in card.text and "base_model" not in card.data.to_dict()


@pytest.mark.parametrize("config_name", ["deep_top_layer", "deep_layer_scaled"])
def test_a_deep_prompts_card_counts_only_what_trains(config_name):
    """Found 2026-12-06 by a review: with the fixed layers of trainable_layers and layer_scaled's scale held as
    parameters, the card counted them as trainable (640 for deep_top_layer's 320)."""
    from peft_softprompt_ext.hub import build_model_card

    base, task_type = common.tiny_model("gpt2")
    peft_model = peft.get_peft_model(base, common.conformance_config(config_name, task_type, "gpt2"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert f"({trainable:,} trainable parameters)" in build_model_card(peft_model).text


def _counting_every_row_hashes(monkeypatch) -> list:
    """The every-row digests computed from now on (two per fingerprint: bfloat16 and float16 rounding)."""
    from peft_softprompt_ext import fingerprint

    calls, original = [], fingerprint.all_rows_digest
    monkeypatch.setattr(fingerprint, "all_rows_digest", lambda weight, *a, **k: calls.append(weight) or original(weight, *a, **k))
    return calls


@pytest.mark.parametrize("config_name", ["vocab_top_frequent", "deep_vocab", "mixture_task_2"])
def test_a_load_hashes_the_base_models_embeddings_once(config_name, tmp_path, monkeypatch):
    """Found 2026-12-07: a load computed the base model's fingerprint twice (its saved config checked, then PEFT's
    build of it), each hashing every embedding row: ~3 s on a 262k x 2,304 float32 table."""
    peft.get_peft_model(common.tiny_model("llama")[0], common.conformance_config(config_name, "CAUSAL_LM", "llama")).save_pretrained(tmp_path)
    base = common.tiny_model("llama")[0]
    calls = _counting_every_row_hashes(monkeypatch)
    loaded = PeftModel.from_pretrained(base, tmp_path)
    assert len(calls) == 2, f"from_pretrained hashed the embeddings {len(calls) // 2} times"
    calls.clear()
    loaded.load_adapter(tmp_path, "second")
    assert len(calls) == 2, f"load_adapter hashed the embeddings {len(calls) // 2} times"
    with pytest.raises(ValueError, match="trained on another base model: embedding_digest_all_rows"):
        PeftModel.from_pretrained(common.tiny_model("llama", seed=1)[0], tmp_path)  # (each model is hashed: still refused)


def test_a_save_of_several_adapters_hashes_the_base_models_embeddings_once(tmp_path, monkeypatch):
    """Found 2026-12-07 (a last read): a save of several plugin adapters computed the base model's fingerprint once per
    adapter, each hashing every embedding row; the fingerprints saved stay each adapter's base model's as it is."""
    peft_model = peft.get_peft_model(common.tiny_model("llama")[0], common.conformance_config("vocab_top_frequent", "CAUSAL_LM", "llama"))
    peft_model.add_adapter("second", common.conformance_config("vocab_uniform", "CAUSAL_LM", "llama"))
    peft_model.add_adapter("third", common.conformance_config("vocab_reparam", "CAUSAL_LM", "llama"))
    calls = _counting_every_row_hashes(monkeypatch)
    peft_model.save_pretrained(tmp_path)
    assert len(calls) == 2, f"save_pretrained of three adapters hashed the embeddings {len(calls) // 2} times"
    expected = base_model_fingerprint(peft_model.base_model)
    for sub in ("", "second", "third"):
        saved = json.loads((tmp_path / sub / "adapter_config.json").read_text())["base_model_fingerprint"]
        assert saved == expected, sub


def test_a_fingerprint_held_for_one_load_sees_embeddings_changed_in_it():
    from peft_softprompt_ext.fingerprint import computed_once

    model = common.tiny_model("llama")[0]
    with computed_once():
        before = base_model_fingerprint(model)
        assert base_model_fingerprint(model) == before
        with torch.no_grad():
            model.get_input_embeddings().weight[3] += 1.0  # in place
        changed = base_model_fingerprint(model)
        model.get_input_embeddings().weight = torch.nn.Parameter(torch.zeros_like(model.get_input_embeddings().weight))
        replaced = base_model_fingerprint(model)
    assert len({before["embedding_digest_all_rows"], changed["embedding_digest_all_rows"], replaced["embedding_digest_all_rows"]}) == 3
    changed["embedding_sample"].append(0.0)  # a caller's edit of its copy is its own
    assert base_model_fingerprint(model) == replaced
