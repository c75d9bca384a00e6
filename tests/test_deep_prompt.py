"""Deep prompts (issue #14) beyond the conformance matrix: the trainable-value contract, `deep_init="prompt"`
starting exactly where the shallow prompt was, plain PEFT PREFIX_TUNING and CARTRIDGE exports read without the plugin,
and every refusal the issue names (each message names the bad value)."""

import json
import warnings

import peft
import pytest
import torch

import testing_common as common
from conformance_support import prompted_model
from peft_softprompt_ext import DeepPromptTuningConfig, describe_prompt, export_cartridge, export_prefix_tuning, export_prompt_tuning

MODELS = ["gpt2", "llama", "gemma3", "t5", "bert"]
CAUSAL = ["gpt2", "llama", "gemma3"]
P = 5


def deep_model(model_name: str, seed: int = 0, **kwargs):
    if model_name == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5 + " (test_deep_prompt_on_t5_is_refused_before_transformers_5_15 checks it)")
    base, task_type = common.tiny_model(model_name, seed=seed)
    kwargs = {"deep_init": "random", "seed": 3, **kwargs}
    return peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, **kwargs))


def self_attention_layout(model) -> tuple[int, int, int]:
    """(self-attention layers, key/value heads, head dim) read off the model's own config, not the plugin's."""
    config = model.config
    if config.model_type == "t5":
        return config.num_layers + config.num_decoder_layers, config.num_heads, config.d_kv
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


@pytest.mark.parametrize("model_name", MODELS)
def test_trainable_values_are_two_x_layers_x_P_x_kv_heads_x_head_dim(model_name):
    model = deep_model(model_name)
    layers, kv_heads, head_dim = self_attention_layout(common.innermost(model))
    head = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save" in n and p.requires_grad)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable - head == 2 * layers * P * kv_heads * head_dim
    if model_name == "llama":  # grouped-query attention: the cache holds 2 key/value heads, not the 4 query heads
        assert kv_heads == 2 and trainable == 2 * 2 * P * 2 * 8


@pytest.mark.parametrize("model_name", CAUSAL)
def test_prompt_init_starts_at_the_shallow_prompts_logits_with_left_padding(model_name):
    shallow_folder = common.bank_folders(model_name)[0]
    shallow = peft.PeftModel.from_pretrained(common.tiny_model(model_name)[0], shallow_folder)
    deep = deep_model(model_name, deep_init="prompt", init_prompt=shallow_folder)
    batch = common.inference_batch(model_name, left_pad=True)
    expected = common.forward_logits(shallow, batch)[:, P:]  # a shallow prompt's logits include its own positions
    got = common.forward_logits(deep, batch)
    real = batch["attention_mask"].bool()
    assert expected.abs().max() > 0.1  # the comparison below is not vacuous
    torch.testing.assert_close(got[real], expected[real], rtol=1e-5, atol=1e-4)
    # and not by accident: a deep prompt from another start differs
    assert (common.forward_logits(deep_model(model_name), batch)[real] - expected[real]).abs().max() > 1e-2


@pytest.mark.parametrize("model_name", CAUSAL)
def test_a_forward_without_attention_mask_puts_the_input_after_the_prompt(model_name):
    """Bug (found 2026-12-03): with no attention_mask and no position_ids the input got positions 0.. instead of
    P.., so the logits differed from the same call with an all-ones mask (by 5.9 on the tiny Llama)."""
    model = deep_model(model_name).eval()
    ids = common.inference_batch(model_name)["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        got = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :3], use_cache=True)  # and a forward continuing its own cache
        cache = first.past_key_values if "past_key_values" in first else first.cache
        continued = model(input_ids=ids[:, 3:], past_key_values=cache).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(continued, expected[:, 3:], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("model_name", CAUSAL)
def test_a_forward_into_an_empty_static_cache_equals_one_without_a_cache(model_name):
    """Bug (found 2026-12-05): prefilling an empty StaticCache with nothing padded, transformers passes no mask
    and relies on sdpa's top-left causal alignment; the layer prefix rebuilt it bottom-right, so queries saw the
    cache's empty slots (logits off by 2.2 on the tiny GPT-2, 5.7 on Llama; generate(cache_implementation="static")
    gave other tokens; the conformance path generate_static_cache checks generate)."""
    from transformers import StaticCache

    model = deep_model(model_name).eval()
    ids = common.inference_batch(model_name)["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        cache = StaticCache(config=model.get_base_model().config, max_cache_len=ids.shape[1] + 16)
        got = model(input_ids=ids, attention_mask=mask, past_key_values=cache).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_generation_step_without_position_ids_counts_the_prompt():
    """A decoding step whose inputs carry no position ids (a model's own prepare_inputs may leave them out)
    gets P + what the cache holds, as with position ids; the layer prefix is not in the cache."""
    from peft_softprompt_ext._peft_compat import plugin_parts
    from peft_softprompt_ext.injection.causal_generate import prepare_causal_generation_step

    model = deep_model("llama").eval()
    ids = common.inference_batch("llama")["input_ids"]
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).past_key_values
    step = prepare_causal_generation_step(plugin_parts(model), {"input_ids": ids[:, -1:], "past_key_values": cache})
    assert step["position_ids"].tolist() == [[P + ids.shape[1]]] * ids.shape[0]


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_generate_puts_the_prompt_in_its_cache_once_unless_the_cache_is_returned(model_name, monkeypatch):
    """Cached generate: the prompt's keys/values go into generate's own cache at the first step (no per-layer
    concatenation at any step); where the cache is returned (return_dict_in_generate) or given, the layer
    prefix serves every step instead, so the returned cache holds the input and new tokens only. Tokens equal."""
    from peft_softprompt_ext import layer_prefix

    model = deep_model(model_name).eval()  # (its build checks once that a cache prefix runs as the layers' prefix)
    prefixed_calls = []
    original = layer_prefix._visible
    monkeypatch.setattr(layer_prefix, "_visible", lambda *args: prefixed_calls.append(1) or original(*args))
    batch = common.inference_batch(model_name, left_pad=True)
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        in_cache = model.generate(**batch, **settings)
        assert prefixed_calls == []
        returned = model.generate(**batch, **settings, return_dict_in_generate=True)
        assert len(prefixed_calls) > 0
        uncached = model.generate(**batch, **settings, use_cache=False)
    assert torch.equal(in_cache, returned.sequences) and torch.equal(in_cache, uncached)
    cache = returned.past_key_values
    assert cache.get_seq_length() == in_cache.shape[1] - 1  # input and new tokens (the last is not fed): no prompt


def test_text_init_holds_the_texts_keys_and_values():
    """The text's tokens run through the frozen model: a prompt from text, then the rest of the text, gives the
    logits the whole text gives alone (the cartridge idea, exact for a causal LM)."""
    tokenizer = common.tiny_tokenizer()
    text = " ".join(common.CORPUS[:3])
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    model = deep_model("llama", deep_init="text", init_text=text, tokenizer_name_or_path=common.tiny_tokenizer_dir())
    rest = ids[:, P : P + 6]
    prompted = common.forward_logits(model, {"input_ids": rest, "attention_mask": torch.ones_like(rest)})
    with model.disable_adapter():
        whole = common.forward_logits(model, {"input_ids": ids[:, : P + 6], "attention_mask": torch.ones(1, P + 6, dtype=torch.long)})
    torch.testing.assert_close(prompted, whole[:, P:], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_prefix_tuning_and_cartridge_exports_load_without_the_plugin_with_equal_logits(model_name, tmp_path):
    model = deep_model(model_name)
    common.train_steps(model, common.batch_for(model_name), steps=2)
    export_prefix_tuning(model, tmp_path / "prefix")
    export_cartridge(model, tmp_path / "cartridge")
    export_cartridge(model, tmp_path / "cartridge-frozen", num_frozen_tokens=2)
    common.tiny_model(model_name)[0].save_pretrained(tmp_path / "base")
    batch = common.inference_batch(model_name)
    folders = [tmp_path / name for name in ("prefix", "cartridge", "cartridge-frozen")]
    loaded = common.plain_peft_logits(tmp_path / "base", folders, "AutoModelForCausalLM", batch, common.forward_logits(model, batch), tmp_path)
    assert [(run["type"], run["prefix_projection"]) for run in loaded] == [("PREFIX_TUNING", False), ("CARTRIDGE", None), ("CARTRIDGE", None)]
    assert all(run["difference"] <= 1e-4 for run in loaded), loaded
    frozen = [json.loads((folder / "adapter_config.json").read_text())["num_frozen_tokens"] for folder in folders[1:]]
    assert frozen == [0, 2]


@pytest.mark.parametrize("value", [-1, 1.0, True, "1", P + 1])
def test_a_cartridge_export_names_a_bad_num_frozen_tokens(value, tmp_path):
    model = deep_model("llama")
    with pytest.raises(ValueError, match=f"num_frozen_tokens={value!r}" if value != P + 1 else f"num_frozen_tokens={P + 1}: the prompt has {P}"):
        export_cartridge(model, tmp_path / "cartridge", num_frozen_tokens=value)
    assert not (tmp_path / "cartridge").exists()


@pytest.mark.parametrize("setting", [{"use_cache": False}, {"return_dict_in_generate": True}, {"cache_implementation": "static"}])
def test_a_generation_config_given_by_position_is_read_as_by_keyword(setting):
    from transformers import GenerationConfig

    model = deep_model("llama").eval()
    batch = common.inference_batch("llama")
    config = GenerationConfig(max_new_tokens=5, min_new_tokens=5, do_sample=False, **setting)
    with torch.no_grad():  # generate(inputs, generation_config, ...) is transformers' own signature
        by_keyword = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], generation_config=config)
        by_position = model.generate(batch["input_ids"], config, attention_mask=batch["attention_mask"])
    if setting.get("return_dict_in_generate"):
        cache_length = by_position[common.CACHE_NAME].get_seq_length()
        assert cache_length == by_keyword[common.CACHE_NAME].get_seq_length() == batch["input_ids"].shape[1] + 4  # no prompt in it
        by_keyword, by_position = by_keyword.sequences, by_position.sequences
    torch.testing.assert_close(by_position, by_keyword, rtol=0, atol=0)


# ------------------------------------------------------------------ bad input: a clear error naming the value
def test_unknown_deep_init_is_refused_by_name():
    with pytest.raises(ValueError, match="'cartridge'"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="cartridge")


@pytest.mark.parametrize("text", ["", "   ", None])
def test_text_init_needs_a_text(text):
    with pytest.raises(ValueError, match="init_text"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="text", init_text=text,
                               tokenizer_name_or_path=common.tiny_tokenizer_dir())  # fmt: skip


def test_text_init_shorter_than_the_prompt_is_refused_with_both_counts():
    with pytest.raises(ValueError, match=r"init_text has \d+ tokens but num_virtual_tokens=40"):
        base, task_type = common.tiny_model("llama")
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=40, deep_init="text", init_text="a b",
                                                         tokenizer_name_or_path=common.tiny_tokenizer_dir()))  # fmt: skip


def test_text_init_with_another_models_tokenizer_is_refused():
    """Found 2026-12-07 by a probe: a tokenizer with more tokens than the model's embedding rows gave a bare IndexError,
    or passed silently when the text's first ids happened to fit; the vocabulary strategies refused it already."""
    base, task_type = common.tiny_model("llama")
    base.resize_token_embeddings(100)  # the tiny tokenizer has more tokens than that
    config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=2, deep_init="text", init_text="a b c d",
                                    tokenizer_name_or_path=common.tiny_tokenizer_dir())  # fmt: skip
    with pytest.raises(ValueError, match=r"The tokenizer has \d+ tokens but the model's input embedding has only 100 rows"):
        peft.get_peft_model(base, config)


def test_a_multitask_prompt_tuning_adapter_is_refused_as_a_single_prompt(tmp_path):
    """Found 2026-12-07 by a probe: plain PEFT's MULTITASK_PROMPT_TUNING adapter, whose prompt_embeddings is the part
    its tasks share, was read as a single prompt by deep_init='prompt' and by a mixture bank (5.4-6.0 off either task)."""
    from peft_softprompt_ext import MixturePromptTuningConfig

    base, task_type = common.tiny_model("gpt2")
    peft.get_peft_model(base, peft.MultitaskPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, num_tasks=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a MULTITASK_PROMPT_TUNING adapter: its 'prompt_embeddings' is the part its tasks share"):
        peft.get_peft_model(common.tiny_model("gpt2")[0], DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="prompt",
                                                                                 init_prompt=str(tmp_path)))  # fmt: skip
    with pytest.raises(ValueError, match="is a MULTITASK_PROMPT_TUNING adapter"):
        peft.get_peft_model(common.tiny_model("gpt2")[0], MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=P,
                                                                                    source_prompts=[str(tmp_path)]))  # fmt: skip


def test_a_deep_layout_on_a_prompt_of_input_rows_is_refused():
    """Found 2026-12-07 by a probe: a shallow config took a deep_layout (a deep adapter's config with its peft_type
    edited), and its width check then passed a table of keys and values as input rows (a bare size error in the model)."""
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    with pytest.raises(ValueError, match="deep_layout is set on a VocabSampledPromptTuningConfig, whose prompt is input rows"):
        VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_layout=[["model.layers.0.self_attn", 2, 16]])


def test_a_prompt_init_from_a_classifier_says_its_head_is_not_taken(tmp_path):
    """Found 2026-12-07 by a probe: deep_init='prompt' from a classifier's shallow prompt took the prompt but not the
    head trained with it, so step 0 was 4.7 off that adapter (GPT-2 classifier), without a word."""
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    base, task_type = common.tiny_model("bert")
    peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, vocab_sampling="uniform")).save_pretrained(tmp_path)
    config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="prompt", init_prompt=str(tmp_path))
    with pytest.warns(UserWarning, match=r"also holds \['base_model.classifier.*takes the prompt only"):
        peft.get_peft_model(common.tiny_model("bert")[0], config)
    with warnings.catch_warnings(record=True) as caught:  # a causal LM's prompt holds nothing else: no warning
        warnings.simplefilter("always")
        peft.get_peft_model(common.tiny_model("llama")[0], DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="prompt",
                                                                                  init_prompt=common.bank_folders("llama")[0]))  # fmt: skip
    assert not [warning for warning in caught if "also holds" in str(warning.message)]


def test_init_prompt_and_corpus_may_be_paths(tmp_path):
    """Found 2026-12-07 by a probe: init_prompt=Path(folder) was refused as if missing (or broke the save with a bare
    TypeError under another deep_init), corpus=Path(file) as 'got PosixPath'."""
    from pathlib import Path

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    folder = common.bank_folders("llama")[0]
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="prompt", init_prompt=Path(folder))
    assert config.init_prompt == folder
    peft.get_peft_model(common.tiny_model("llama")[0], config).save_pretrained(tmp_path / "deep")
    (tmp_path / "corpus.txt").write_text("a b c\nd e f\n")
    corpus = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="task_corpus",
                                            corpus=tmp_path / "corpus.txt", tokenizer_name_or_path=common.tiny_tokenizer_dir())  # fmt: skip
    assert corpus.corpus == str(tmp_path / "corpus.txt")


def test_prompt_init_needs_a_prompt():
    with pytest.raises(ValueError, match="init_prompt"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="prompt")


def test_prompt_init_from_another_base_model_is_refused_by_fingerprint():
    other_base = common.bank_folders("gpt2")[0]  # made on tiny gpt2 seed 0
    with pytest.raises(ValueError, match="fingerprint|another base model|different base model"):
        deep_model("gpt2", seed=1, deep_init="prompt", init_prompt=other_base)


def test_prompt_init_from_another_base_model_is_taken_when_the_user_allows_it():
    other_base = common.bank_folders("gpt2")[0]  # made on tiny gpt2 seed 0, same width
    model = deep_model("gpt2", seed=1, deep_init="prompt", init_prompt=other_base, allow_base_model_mismatch=True)
    assert model.peft_config["default"].allow_base_model_mismatch is True
    with pytest.raises(ValueError, match="allow_base_model_mismatch must be True or False, got 'yes'"):
        DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="prompt", init_prompt=other_base,
                               allow_base_model_mismatch="yes")  # fmt: skip


def test_prompt_init_from_a_deep_prompt_is_refused_naming_its_type(tmp_path):
    base, task_type = common.tiny_model("llama")
    peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="random")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"init_prompt .* is a DEEP_PROMPT_TUNING adapter .*input rows"):
        deep_model("llama", deep_init="prompt", init_prompt=str(tmp_path))


def test_a_deep_prompt_has_no_prompt_cache_to_compute_or_take():
    from peft_softprompt_ext import prompt_kv_cache

    model = deep_model("llama")
    batch = common.inference_batch("llama")
    with pytest.raises(ValueError, match="deep prompt.*keys and values in every layer already"):
        prompt_kv_cache(model)
    shallow, _ = common.make_peft_model("llama", "vocab_uniform")
    with pytest.raises(ValueError, match="deep prompt.*keys and values in every layer already"):
        model(**batch, prompt_cache=prompt_kv_cache(shallow))


def test_prompt_init_of_another_width_is_refused_with_both_widths():
    narrow = common.bank_folders("gpt2")[0]  # width 32; tiny gemma3 is 64 wide
    with pytest.raises(ValueError, match=r"\(5, 32\).*width 64"):
        deep_model("gemma3", deep_init="prompt", init_prompt=narrow)


def test_prompt_init_of_another_length_is_refused_with_both_lengths(tmp_path):
    base, task_type = common.tiny_model("gpt2")
    longer = peft.get_peft_model(base, peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=7))
    longer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="7 virtual tokens but num_virtual_tokens=5"):
        deep_model("gpt2", deep_init="prompt", init_prompt=str(tmp_path))


@pytest.mark.parametrize("variant", ["plain", "residual_mlp", "layer_scaled", "mixture"])
def test_reentrant_gradient_checkpointing_is_refused_while_training(variant):
    """Reentrant checkpointing replays each layer in its own backward pass, so the prompt they all read is reached
    once per layer: under DistributedDataParallel the synced gradient was silently wrong (0.7 relative error, the
    ranks drifting apart), and a computed prompt (residual_mlp, layer_scaled, a mixture) failed with "Trying to
    backward through the graph a second time". Non-reentrant checkpointing (transformers' default) is exact."""
    from peft_softprompt_ext import MixturePromptTuningConfig

    model, task_type = common.tiny_model("llama")
    if variant == "mixture":
        config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=list(common.deep_bank_folders("llama")),
                                           num_tasks=2, mixing="task")  # fmt: skip
        extra = {"task_ids": torch.tensor([0, 1, 0])}
    else:
        reparameterization = None if variant == "plain" else variant
        config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=1, reparameterization=reparameterization)
        extra = {}
    peft_model = peft.get_peft_model(model, config)
    batch = {**common.batch_for("llama"), **extra}
    peft_model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    peft_model.train()
    with pytest.raises(ValueError, match=r"use_reentrant=True.*gradient_checkpointing_kwargs=\{'use_reentrant': False\}"):
        peft_model(**batch)
    with torch.no_grad():  # nothing runs backward: nothing to refuse
        peft_model(**batch)
    peft_model.eval()
    peft_model(**batch)  # transformers checkpoints layers only in train mode
    peft_model.train()
    peft_model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model(**batch).loss.backward()
    assert all(p.grad is not None for p in peft_model.parameters() if p.requires_grad)


def test_an_init_that_runs_rows_through_a_model_refusing_inputs_embeds_is_refused_naming_the_way_out():
    """BartForSequenceClassification takes no inputs_embeds: deep_init 'random' / 'vocab_sampled' raised transformers'
    bare NotImplementedError from get_peft_model; 'zero' runs nothing and works."""
    from transformers import BartConfig, BartForSequenceClassification

    torch.manual_seed(0)
    config = BartConfig(vocab_size=common.VOCAB_SIZE, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, num_labels=2)  # fmt: skip
    with pytest.raises(ValueError, match=r"deep_init='random' runs input rows through BartForSequenceClassification as inputs_embeds.*deep_init='zero'"):
        peft.get_peft_model(BartForSequenceClassification(config), DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="random"))
    peft_model = peft.get_peft_model(BartForSequenceClassification(config).eval(),
                                     DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="zero"))  # fmt: skip
    ids = torch.tensor([[5, 6, 7, 2]])
    assert peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 2)


@pytest.mark.parametrize("layout", ["garbage", 5, [], [["model.layers.0.self_attn", "2", 8]], [["model.layers.0.self_attn", 2.5, 8]],
                                    [["model.layers.0.self_attn", True, 8]], [["model.layers.0.self_attn", 2]]])  # fmt: skip
def test_a_malformed_saved_deep_layout_is_refused_naming_it(layout, tmp_path):
    """A hand-edited deep_layout failed with messages naming nothing ("not enough values to unpack", "'int' object is
    not iterable", "unsupported operand type(s) for +") or built a (4, 144.0) shape from a float head count."""
    deep_model("llama").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["deep_layout"] = layout
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"deep_layout must be None or a non-empty list of \[module path, key/value heads, head dim\]"):
        peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path)


def test_a_prompt_that_does_not_fit_a_sliding_window_is_refused():
    base = common.tiny_gemma(sliding_window=6)
    with pytest.raises(ValueError, match="num_virtual_tokens=5 does not fit in the model's sliding attention window 6"):
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="zero"))
    # a window of 2 (ModernBERT with local_attention=4) leaves no room: the message said "use fewer than 1 virtual tokens"
    with pytest.raises(ValueError, match=r"num_virtual_tokens=1 does not fit .* window 2: a window of 2 leaves no room for a prompt"):
        peft.get_peft_model(common.tiny_gemma(sliding_window=2), DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=1,
                                                                                        deep_init="zero"))  # fmt: skip


def test_attention_that_takes_no_prefix_is_refused_by_name():
    base, task_type = common.tiny_model("llama")
    base.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="attn_implementation='flex_attention'"):
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="zero"))


@pytest.mark.parametrize("model_name", ["gemma3", "t5", "bert"])
def test_prefix_tuning_and_cartridge_exports_are_refused_where_they_are_not_exact(model_name, tmp_path):
    model = deep_model(model_name)
    with pytest.raises(ValueError, match="cannot be exported as plain PEFT PREFIX_TUNING: .*(sliding-window|encoders|seq2seq)"):
        export_prefix_tuning(model, tmp_path / "prefix")
    with pytest.raises(ValueError, match="cannot be exported as plain PEFT CARTRIDGE: .*(sliding-window|encoders|seq2seq)"):
        export_cartridge(model, tmp_path / "cartridge")
    assert not (tmp_path / "prefix").exists() and not (tmp_path / "cartridge").exists()  # nothing half-written


@pytest.mark.parametrize("config_name", ["mixture_attention", "mixture_task", "vocab_uniform"])
def test_key_value_exports_of_a_prompt_of_input_rows_say_it_is_not_a_deep_prompt(config_name, tmp_path):
    """Found by a review (2026-12-06): an attention mixture was refused with its PROMPT_TUNING reason ("use
    mixing='task'"), advice that then led to the same refusal for another reason."""
    model, _ = common.make_peft_model("llama", config_name)
    for export in (export_prefix_tuning, export_cartridge):
        with pytest.raises(ValueError, match=r"cannot be exported as plain PEFT (PREFIX_TUNING|CARTRIDGE): it is not a deep prompt \(use export_prompt_tuning\)\.$"):
            export(model, tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


def test_prompt_tuning_export_and_describe_prompt_refuse_a_deep_prompt(tmp_path):
    model = deep_model("gpt2")
    with pytest.raises(ValueError, match="keys and values|deep"):
        export_prompt_tuning(model, tmp_path / "plain")
    with pytest.raises(ValueError, match="keys and values|deep"):
        describe_prompt(model, common.tiny_tokenizer())


@pytest.mark.skipif(common.T5_ROUTES_ATTENTION, reason="this transformers routes T5's attention: deep prompts work there")
def test_deep_prompt_on_t5_is_refused_before_transformers_5_15():
    base, task_type = common.tiny_model("t5")
    with pytest.raises(ValueError, match="T5ForConditionalGeneration ran no attention through transformers' attention interface"):
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="zero"))


def test_a_deep_prompt_saved_on_one_base_is_refused_on_another(tmp_path):
    deep_model("llama").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "DEEP_PROMPT_TUNING" and saved["base_model_fingerprint"]
    with pytest.raises(ValueError, match="fingerprint|another base model|different base model"):
        peft.PeftModel.from_pretrained(common.tiny_model("llama", seed=1)[0], tmp_path)


def _two_forwards_then_backward(checkpointing: bool, second_batch_size: int, adapters: bool):
    """loss = forward(batch, task 0) + 2 forward(other batch, task 1) [or a second deep adapter's no_grad forward
    in between, as a DPO reference pass], one backward: the trained parameters' gradients."""
    from peft_softprompt_ext import MixturePromptTuningConfig

    model, task_type = common.tiny_model("llama")
    if adapters:
        peft_model = peft.get_peft_model(model, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=1))
        peft_model.add_adapter("reference", DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
    else:
        config = MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=list(common.deep_bank_folders("llama")),
                                           num_tasks=2, mixing="task")  # fmt: skip
        peft_model = peft.get_peft_model(model, config)
        with torch.no_grad():  # tasks that differ from the start
            peft_model.prompt_encoder["default"].task_logits.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    if checkpointing:
        peft_model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model.train()
    first = common.batch_for("llama", seed=1)
    second = common.batch_for("llama", batch_size=second_batch_size, seed=2)
    tasks = {} if adapters else {"task_ids": torch.zeros(3, dtype=torch.long)}
    loss = peft_model(**first, **tasks).loss
    if adapters:
        peft_model.set_adapter("reference")
        with torch.no_grad():
            peft_model(**second)
        peft_model.set_adapter("default")
    else:
        loss = loss + 2 * peft_model(**second, task_ids=torch.ones(second_batch_size, dtype=torch.long)).loss
    loss.backward()
    return {name: p.grad.clone() for name, p in peft_model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("second_batch_size", "adapters"), [(3, False), (2, False), (3, True)])
def test_checkpointed_layers_replay_the_prompt_their_forward_read(second_batch_size, adapters):
    """Backward replayed a checkpointed layer with the prompt of the LAST deep forward, not its own: two forwards
    then one backward gave gradients 0.1 off (larger than the gradient itself after a second adapter's reference
    pass), or crashed on another batch size."""
    expected = _two_forwards_then_backward(False, second_batch_size, adapters)
    got = _two_forwards_then_backward(True, second_batch_size, adapters)
    assert set(got) == set(expected) and expected
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_a_trained_deep_prompt_model_deep_copies():
    """The layers kept the last forward's (non-leaf) keys/values: copy.deepcopy failed after any training step."""
    import copy

    model = deep_model("llama", deep_init="random")
    model.train()
    model(**common.batch_for("llama")).loss.backward()
    copied = copy.deepcopy(model).eval()
    batch = common.inference_batch("llama")
    with torch.no_grad():
        torch.testing.assert_close(copied(**batch).logits, model.eval()(**batch).logits)


def test_a_layer_recomputed_by_a_foreign_checkpoint_function_is_refused_in_backward():
    """torch's own activation-checkpoint wrapper (FSDP's recipe) replays a layer outside transformers' checkpoint
    function, so the replay cannot know which prompt its forward read: refused, not computed with none."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    model = deep_model("llama")
    apply_activation_checkpointing(model.get_base_model(), check_fn=lambda module: isinstance(module, LlamaDecoderLayer))
    model.train()
    loss = model(**common.batch_for("llama")).loss
    with pytest.raises(RuntimeError, match="recomputed in backward by a checkpoint function other than transformers'"):
        loss.backward()


@pytest.mark.parametrize("trained_before", [False, True])
def test_a_base_model_pass_with_the_adapter_disabled_checkpoints_and_runs_backward(trained_before):
    """The base model's own pass (disable_adapter: a reference or KL term), checkpointed before any prompted pass
    (after a step without checkpointing, or none), replays with no prompt: not taken for a foreign replay."""
    model = deep_model("llama")
    model.train()
    batch = common.batch_for("llama")
    if trained_before:
        model(**batch).loss.backward()
        model.zero_grad()
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with model.disable_adapter():
        base = model(**batch).logits
    prompted = model(**batch).logits
    (prompted - base).pow(2).mean().backward()
    expected_model = deep_model("llama")
    expected_model.train()
    with expected_model.disable_adapter():
        expected_base = expected_model(**batch).logits
    (expected_model(**batch).logits - expected_base).pow(2).mean().backward()
    got = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    expected = {name: p.grad for name, p in expected_model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected) and expected
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)


def test_the_base_model_fine_tuned_alone_with_checkpointing_after_a_deep_prompt_trained_on_it():
    """A deep prompt reroutes the base model's attention for good: fine-tuning the base model itself afterwards with
    transformers' checkpointing replays its layers with no prompt (it was refused as a foreign replay)."""
    model = deep_model("llama")
    model.train()
    model(**common.batch_for("llama")).loss.backward()
    base = model.get_base_model()
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for parameter in base.parameters():
        parameter.requires_grad_(True)
    base(**common.batch_for("llama")).loss.backward()
    assert base.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_a_layout_refusal_names_the_layer_one_model_lacks(tmp_path):
    """It printed `[]` for the side with fewer layers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama(layers: int):
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                            intermediate_size=64, vocab_size=common.VOCAB_SIZE)).eval()  # fmt: skip

    peft.get_peft_model(llama(2), DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="zero")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"made for 2 self-attention layers \(no layer 2\) but this model has 3 \(layer 2: \['model\.layers\.2\.self_attn', 2, 8\]\)"):
        peft.PeftModel.from_pretrained(llama(3), tmp_path, allow_base_model_mismatch=True)


def _upcast_gpt2():
    import transformers

    config = transformers.GPT2Config(vocab_size=common.VOCAB_SIZE, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     reorder_and_upcast_attn=True, scale_attn_by_inverse_layer_idx=True)  # fmt: skip
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


def test_gpt2s_upcast_attention_is_kept_with_a_deep_prompt_attached(monkeypatch, tmp_path):
    """Found 2026-12-06: routing a deep prompt renamed GPT-2's eager attention, which GPT-2 reads to choose its
    reorder_and_upcast_attn path: that path ran 0 times, with the adapter disabled too (bf16 logits 0.047 off)."""
    from transformers.models.gpt2 import modeling_gpt2

    calls = []
    original = modeling_gpt2.GPT2Attention._upcast_and_reordered_attn
    monkeypatch.setattr(modeling_gpt2.GPT2Attention, "_upcast_and_reordered_attn", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    batch = common.inference_batch("gpt2", left_pad=True)
    with torch.no_grad():
        untouched = _upcast_gpt2()(**batch).logits
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, deep_init="random", seed=1)
    peft_model = peft.get_peft_model(_upcast_gpt2(), config)
    calls.clear()
    with torch.no_grad():
        with peft_model.disable_adapter():
            disabled = peft_model(**batch).logits
        assert len(calls) == 2
        peft_model(**batch)
    assert len(calls) == 4
    torch.testing.assert_close(disabled, untouched, rtol=0, atol=0)
    export_prefix_tuning(peft_model, tmp_path)
    plain = peft.PeftModel.from_pretrained(_upcast_gpt2(), tmp_path)
    unpadded = common.inference_batch("gpt2")
    with torch.no_grad():  # the upcast path over the prefix, as plain PEFT's (unpadded: its prefix sits before padding)
        torch.testing.assert_close(peft_model(**unpadded).logits, plain(**unpadded).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_name", ["llama", "t5"])
def test_unload_gives_back_the_base_model_as_it_was(model_name, tmp_path):
    """Found 2026-12-06: unload() returned the base model still routed through the plugin's attention (its
    config read 'peft_softprompt_ext_layer_prefix|sdpa', saved a plugin key into config.json, and refused
    config.output_attentions=True), with the plugin's forward hook left on it."""
    if model_name == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    model, task_type = common.tiny_model(model_name)
    implementation, hooks = model.config._attn_implementation, len(model._forward_pre_hooks)
    batch = common.inference_batch(model_name)
    with torch.no_grad():
        before = model(**batch).logits
    peft_model = peft.get_peft_model(model, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=3, deep_init="random"))
    with torch.no_grad():
        peft_model(**batch)
    unloaded = peft_model.unload()
    assert unloaded.config._attn_implementation == implementation and len(unloaded._forward_pre_hooks) == hooks
    assert all(not str(getattr(module, "config", None) and module.config._attn_implementation).startswith("peft_softprompt_ext")
               for module in unloaded.modules() if hasattr(getattr(module, "config", None), "_attn_implementation"))  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(unloaded(**batch).logits, before, rtol=0, atol=0)
    unloaded.save_pretrained(tmp_path)
    assert "peft_softprompt_ext" not in (tmp_path / "config.json").read_text()
    unloaded.config._attn_implementation = "eager"
    unloaded.config.output_attentions = True  # transformers refuses it for any implementation but 'eager'


@pytest.mark.parametrize("model_name", ["llama", "t5"])
def test_deleting_the_last_plugin_adapter_gives_back_the_base_model_as_it_was(model_name):
    """Found 2026-12-07 by a probe: delete_adapter() of the last deep prompt left the base model routed through the
    plugin's attention (its config named 'peft_softprompt_ext_layer_prefix|sdpa') with the plugin's hook on it, where
    unload() gives it back as it was; pickled, it failed in a process without the routing."""
    if model_name == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    model, task_type = common.tiny_model(model_name)
    implementation, hooks = model.config._attn_implementation, len(model._forward_pre_hooks)
    peft_model = peft.get_peft_model(model, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=3, deep_init="random"))
    peft_model.add_adapter("other", DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=2, deep_init="random"))
    peft_model.delete_adapter("other")  # a deep prompt is left: still routed
    assert model.config._attn_implementation.startswith("peft_softprompt_ext")
    peft_model.delete_adapter("default")
    assert model.config._attn_implementation == implementation and len(model._forward_pre_hooks) == hooks


@pytest.mark.parametrize("model_name", ["gpt2", "llama", "t5"])
@pytest.mark.parametrize("deleted_first", ["deep", "shallow"])
def test_deleting_the_last_deep_mixture_beside_a_shallow_one_unroutes_the_base_model(model_name, deleted_first):
    """Found 2026-12-07 by a probe: one PeftModel holding a mixture over shallow prompts and one over deep prompts (one
    PEFT type); delete_adapter of the deep one left the base model routed, with the plugin's hook (the unroute ran only
    once no plugin adapter was left). The shallow one's logits stay its own."""
    from peft_softprompt_ext import MixturePromptTuningConfig

    if model_name == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    model, task_type = common.tiny_model(model_name)
    implementation, hooks = model.config._attn_implementation, len(model._forward_pre_hooks)

    def mixture(banks):
        return MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=5, source_prompts=list(banks), num_tasks=2,
                                         mixing="task")  # fmt: skip

    batch = common.inference_batch(model_name)
    batch["task_ids"] = torch.tensor([0, 1, 0])
    peft_model = peft.get_peft_model(model, mixture(common.bank_folders(model_name)), adapter_name="shallow")
    with torch.no_grad():
        alone = common.forward_logits(peft_model, batch)
    peft_model.add_adapter("deep", mixture(common.deep_bank_folders(model_name)))
    if deleted_first == "shallow":  # the deep one active and left alone: still routed
        peft_model.set_adapter("deep")
        peft_model.add_adapter("shallow_again", mixture(common.bank_folders(model_name)))
        peft_model.delete_adapter("shallow")
        assert model.config._attn_implementation.startswith("peft_softprompt_ext")
        peft_model.set_adapter("shallow_again")
    peft_model.delete_adapter("deep")
    assert model.config._attn_implementation == implementation and len(model._forward_pre_hooks) == hooks
    with torch.no_grad():
        torch.testing.assert_close(common.forward_logits(peft_model, batch), alone, rtol=0, atol=0)


def test_a_deep_prompt_model_saved_whole_runs_in_a_fresh_process(tmp_path):
    """Found 2026-12-07 by a probe: a deep-prompt model saved with torch.save(model) failed in a fresh process that
    imported the plugin (KeyError: 'peft_softprompt_ext_layer_prefix|sdpa' is not a valid attention implementation):
    only building a deep prompt registered the routed attention; importing the plugin does now."""
    import subprocess
    import sys

    peft_model = deep_model("llama").eval()
    batch = common.inference_batch("llama")
    with torch.no_grad():
        expected = peft_model(**batch).logits
    torch.save({"model": peft_model, "batch": batch, "expected": expected}, tmp_path / "whole.pt")
    code = ("import torch, peft_softprompt_ext\n"
            f"saved = torch.load({str(tmp_path / 'whole.pt')!r}, weights_only=False)\n"
            "with torch.no_grad():\n"
            "    logits = saved['model'](**saved['batch']).logits\n"
            "torch.testing.assert_close(logits, saved['expected'], rtol=0, atol=0)\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("with_positions", [False, True])
def test_a_deep_causal_lm_takes_a_4d_mask(with_positions):
    """Found 2026-12-06: a deep prompt on a causal LM refused a 4D attention mask, naming static caches, though its
    layers add the prompt's columns themselves (a deep decoder classifier took one)."""
    peft_model = deep_model("llama").eval()
    ids = common.inference_batch("llama")["input_ids"]
    length = ids.shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))[None, None].expand(ids.shape[0], 1, -1, -1)
    positions = {"position_ids": torch.arange(length)[None].expand(ids.shape[0], -1)} if with_positions else {}
    with torch.no_grad():
        expected = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        torch.testing.assert_close(peft_model(input_ids=ids, attention_mask=causal, **positions).logits, expected, rtol=1e-5, atol=1e-5)


def test_a_shallow_prompt_refuses_a_4d_mask_naming_the_2d_one_and_the_deep_prompt():
    peft_model, _ = common.make_peft_model("llama", "vocab_uniform")
    ids = common.inference_batch("llama")["input_ids"]
    causal = torch.tril(torch.ones(7, 7, dtype=torch.bool))[None, None].expand(ids.shape[0], 1, -1, -1)
    with pytest.raises(NotImplementedError, match=r"needs a 2D attention mask .* shape torch.Size\(\[3, 1, 7, 7\]\).*DeepPromptTuningConfig"):
        peft_model(input_ids=ids, attention_mask=causal)


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_another_deep_prompt_model_called_inside_a_generate_keeps_its_own_prompt(model_name):
    """Found 2026-12-06: one open deep-prompt block stood for every model, so a second deep-prompt model run inside the
    first one's generate (a logits processor, a stopping criterion, an assistant) ran without its prompt, without a
    word (on Llama it gave the base model's logits)."""
    from transformers import LogitsProcessorList

    main, other = deep_model(model_name), deep_model(model_name, seed=1)
    ids = torch.tensor([[20, 21, 22, 23, 20, 21, 22]])
    with torch.no_grad():
        expected = other(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]

    probe = common.once_inside_generate(lambda input_ids: other(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[:, -1])
    with torch.no_grad():  # return_dict_in_generate: the prompt stays in the layers for the whole call (no cache)
        main.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False,
                      return_dict_in_generate=True, logits_processor=LogitsProcessorList([probe]))  # fmt: skip
    torch.testing.assert_close(probe.seen, expected, rtol=1e-5, atol=1e-5)


def test_a_deep_prompt_assistant_proposes_with_its_own_prompt():
    """The same bug seen through assisted decoding: an identical deep-prompt assistant proposed tokens without its
    prompt, so the main model rejected them and ran 5 forwards for 12 tokens; with its prompt every proposal holds."""
    main, assistant = deep_model("gpt2"), deep_model("gpt2")
    assistant.generation_config.update(assistant_confidence_threshold=0.0, num_assistant_tokens=5,
                                       num_assistant_tokens_schedule="constant")  # fmt: skip
    ids = torch.tensor([[20, 21, 22, 23, 20, 21, 22]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    forwards = []
    hook = main.get_base_model().register_forward_pre_hook(lambda *args: forwards.append(1))
    with torch.no_grad():
        greedy = main.generate(**batch, max_new_tokens=12, do_sample=False)  # (its eos lies outside the tiny vocabulary)
        forwards.clear()
        assisted = main.generate(**batch, max_new_tokens=12, do_sample=False, assistant_model=assistant)
    hook.remove()
    assert torch.equal(assisted, greedy)
    assert len(forwards) <= 3, f"{len(forwards)} forwards of the main model: the assistant's proposals were rejected"


@pytest.mark.parametrize("config_name", ["deep_top_layer", "deep_layer_scaled", "mixture_deep_task_2_top_layer_scaled"])
def test_a_copy_of_an_adapters_parameters_is_the_same_prompt(config_name):
    """Found 2026-12-06 with trl's DPOTrainer, which makes its reference adapter by copying the adapter's parameters:
    a deep prompt's fixed layers (trainable_layers) and layer_scaled's scale were buffers, so the copy kept its own
    start, which depends on the model's config (trl had set GPT-2's pad_token_id): the reference was another prompt."""
    base, task_type = common.tiny_model("gpt2")
    model = peft.get_peft_model(base, common.conformance_config(config_name, task_type, "gpt2"))
    with torch.no_grad():
        for parameter in model.prompt_encoder["default"].parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    model.config.pad_token_id = 7  # another start for a second adapter of the same config
    model.add_adapter("copy", model.peft_config["default"])
    for name, parameter in model.named_parameters():
        if ".default." in name:
            model.get_parameter(name.replace(".default.", ".copy.")).data.copy_(parameter.data)
    batch = common.inference_batch("gpt2")
    extra = {"task_ids": torch.tensor([0, 1, 0])} if "mixture" in config_name else {}
    with torch.no_grad():
        default = model(**batch, **extra).logits
        model.set_adapter("copy")
        copied = model(**batch, **extra).logits
    torch.testing.assert_close(copied, default, rtol=0, atol=0)
    trainable = [name for name, p in model.prompt_encoder["default"].named_parameters() if p.requires_grad]
    assert trainable and not any("frozen" in name or name.endswith("scale") for name in trainable), trainable


@pytest.mark.parametrize("model_name", CAUSAL)
def test_packed_rows_give_each_sequence_its_logits_alone(model_name):
    """trl's packing (and padding_free) puts several sequences in one row, position_ids restarting, no mask: a shallow
    prompt is refused there (only the first sequence would read it), and the refusal points to deep prompts. Keys and
    values in every layer reach each sequence: its logits in the packed row equal the sequence run alone."""
    model = deep_model(model_name).eval()
    torch.manual_seed(0)
    lengths = (6, 9, 4)  # the packed row (19 tokens) is longer than tiny Gemma-3's sliding window
    sequences = [torch.randint(5, 100, (1, n)) for n in lengths]
    packed = torch.cat(sequences, dim=1)
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    with torch.no_grad():  # use_cache=False, as in training: transformers reads restarting positions only without a cache
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits
        alone = [model(input_ids=ids).logits for ids in sequences]
    torch.testing.assert_close(together, torch.cat(alone, dim=1), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # not by accident: the same row read as one sequence differs from the second sequence on
        unpacked = model(input_ids=packed, use_cache=False).logits
    assert (unpacked[:, lengths[0]:] - together[:, lengths[0]:]).abs().max() > 1e-2


@pytest.mark.parametrize("architecture", ["electra", "opt_projected"])
def test_a_deep_prompt_on_embeddings_narrower_than_the_layers_saves_and_loads(architecture, tmp_path):
    """Found 2026-12-06: ELECTRA / ALBERT (embedding_size under hidden_size) and OPT-350m-style models (word_embed_proj_dim):
    a deep prompt never enters through the input embeddings, so it was built with PEFT's token_dim (the hidden size),
    trained and saved, and then its own load refused it ("token_dim=32 but the base model's embeddings are 16 wide")."""
    import transformers

    if architecture == "electra":
        config = transformers.ElectraConfig(vocab_size=common.VOCAB_SIZE, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=64, num_labels=2, initializer_range=0.2)  # fmt: skip
        build, task_type = transformers.ElectraForSequenceClassification, "SEQ_CLS"
    else:
        config = transformers.OPTConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, word_embed_proj_dim=16, num_hidden_layers=2,
                                        ffn_dim=64, num_attention_heads=4, max_position_embeddings=64, pad_token_id=1, init_std=0.2)  # fmt: skip
        build, task_type = transformers.OPTForCausalLM, "CAUSAL_LM"

    def base():
        torch.manual_seed(0)
        return build(config).eval()

    model = peft.get_peft_model(base(), DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="random", seed=3))
    model.save_pretrained(tmp_path)
    loaded = peft.PeftModel.from_pretrained(base(), tmp_path)
    batch = {"input_ids": torch.randint(5, 300, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
        with model.disable_adapter():  # not vacuous: the prompt moves the logits
            assert (model(**batch).logits - loaded(**batch).logits).abs().max() > 1e-3


LAYER_PATH_SETTINGS = [("deep_vocab", {"return_dict_in_generate": True}), ("deep_vocab", {"use_cache": False}),
                       ("deep_vocab", {"cache_implementation": "static"}), ("mixture_deep_task_2", {"use_cache": False}),
                       ("mixture_task_2", {"cache_implementation": "static"}), ("vocab_top_frequent", {"cache_implementation": "static"})]  # fmt: skip


@pytest.mark.parametrize("config_name,setting", LAYER_PATH_SETTINGS, ids=[f"{c}-{next(iter(s))}" for c, s in LAYER_PATH_SETTINGS])
@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_forward_of_the_model_inside_its_own_generate_runs_as_outside_it(model_name, config_name, setting):
    """Found 2026-12-06 by a probe: where generate runs the prompt in every layer (a deep prompt without generate's
    default cache; a shallow prompt with a static cache), the prompt was in the layers for the whole call, so a forward
    of the same model made inside it (a logits processor's) ran with the call's prompt: with the adapter disabled it was
    2.9-5.7 off the base model, with other task ids 1.0 off, a shallow prompt got its rows twice, and a batch of
    another size failed. Now only the call's own steps see it."""
    from transformers import LogitsProcessorList

    model = prompted_model(config_name, model_name)
    multi = config_name.endswith("_2")
    ids = torch.randint(6, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **({"task_ids": torch.tensor([1, 0, 1])} if multi else {})}
    inner_tasks = {"task_ids": torch.tensor([0])} if multi else {}

    def inner_calls(input_ids):
        with model.disable_adapter():
            disabled = model(input_ids=input_ids).logits[:, -1]
        return disabled, model(input_ids=input_ids[:1], **inner_tasks).logits[:, -1]

    probe = common.once_inside_generate(lambda input_ids: (input_ids, inner_calls(input_ids)))
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=2, min_new_tokens=2, do_sample=False, logits_processor=LogitsProcessorList([probe]), **setting)
        input_ids, (disabled, alone) = probe.seen
        base = model.get_base_model()(input_ids=input_ids).logits[:, -1]
        _, expected_alone = inner_calls(input_ids)
    torch.testing.assert_close(disabled, base, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, expected_alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config_name", ["deep_vocab", "mixture_deep_task_2", "vocab_top_frequent"])
def test_classifier_free_guidance_gives_the_same_tokens_with_every_cache_setting(config_name):
    """The same bug seen through transformers' classifier-free guidance, whose logits processor runs the model again
    for the unconditional logits: on the layer path that pass saw the prompt, with the default cache it did not, so
    the tokens depended on the cache setting (a deep prompt: return_dict_in_generate, static and no cache gave other
    tokens than the default; a shallow prompt: the static cache did)."""
    model = prompted_model(config_name, "llama")
    ids = torch.randint(6, 300, (1, 7), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **({"task_ids": torch.tensor([1])} if config_name.endswith("_2") else {})}
    negative = torch.tensor([[7, 8, 9]])
    tokens = {}
    for name, setting in [("default", {}), ("return_dict", {"return_dict_in_generate": True}),
                          ("static", {"cache_implementation": "static"}), ("no cache", {"use_cache": False})]:  # fmt: skip
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=8, min_new_tokens=8, do_sample=False, guidance_scale=3.0,
                                 negative_prompt_ids=negative, negative_prompt_attention_mask=torch.ones_like(negative), **setting)  # fmt: skip
        tokens[name] = (out if torch.is_tensor(out) else out.sequences)[0, ids.shape[1]:].tolist()
    assert all(t == tokens["default"] for t in tokens.values()), tokens


@pytest.mark.parametrize("config_name", ["deep_vocab", "mixture_deep_task_2"])
def test_a_call_with_the_adapter_disabled_inside_a_seq2seq_generate_runs_the_base_model(config_name):
    """Found 2026-12-06: an encoder-decoder's generate keeps a deep prompt in the layers for the whole call, and a call of
    the model with its adapter disabled made inside it (a logits processor's) ran with that prompt: 21-23 off the
    base model. Such a call now sees no prompt of the model."""
    from transformers import LogitsProcessorList

    if not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    model = prompted_model(config_name, "t5")
    multi = config_name.endswith("_2")
    ids = torch.randint(6, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    decoder_ids = torch.zeros(3, 2, dtype=torch.long)

    def disabled_logits():
        with model.disable_adapter():
            return model(input_ids=ids, decoder_input_ids=decoder_ids).logits[:, -1]

    probe = common.once_inside_generate(lambda input_ids: disabled_logits())
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False,
                       logits_processor=LogitsProcessorList([probe]), **({"task_ids": torch.tensor([1, 0, 1])} if multi else {}))  # fmt: skip
        base = model.get_base_model()(input_ids=ids, decoder_input_ids=decoder_ids).logits[:, -1]
    torch.testing.assert_close(probe.seen, base, rtol=1e-5, atol=1e-5)
