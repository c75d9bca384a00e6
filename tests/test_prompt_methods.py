"""ALL_CONFIGS x TINY_MODELS: the checks every plugin prompt method must pass (like PEFT's own)."""

import json
import os

import peft
import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftConfig, PeftModel

import testing_common as common
from testing_common import ALL_CONFIG_NAMES, CAUSAL_MODELS, TINY_MODELS, batch_for, forward_logits, make_peft_model

MATRIX = [(model, config) for model in TINY_MODELS for config in ALL_CONFIG_NAMES]
EXPORTABLE_MATRIX = [(m, c) for m, c in MATRIX if c not in common.INPUT_DEPENDENT_CONFIGS]


def comparable_fields(config) -> dict:
    """Config fields to compare across save/load. PEFT's SEQ_CLS model appends the classifier names
    to modules_to_save every time it builds (vanilla too), so that list compares as a set."""
    fields = {k: v for k, v in config.to_dict().items() if k != "inference_mode"}
    fields["modules_to_save"] = sorted(set(fields.get("modules_to_save") or []))
    return fields


@pytest.mark.parametrize("model_name,config_name", MATRIX)
def test_only_prompt_parameters_get_gradients(model_name, config_name):
    peft_model, _ = make_peft_model(model_name, config_name)
    common.check_only_prompt_gets_grad(peft_model, batch_for(model_name))


@pytest.mark.parametrize("model_name,config_name", MATRIX)
def test_a_few_steps_lower_the_loss(model_name, config_name):
    peft_model, _ = make_peft_model(model_name, config_name)
    # mixtures also train mixing logits and reparameterised prompts an MLP: smaller steps keep the
    # tiny random T5 stable
    lr = 0.003 if "reparam" in config_name else 0.01 if config_name.startswith("mixture") else 0.03
    losses = common.train_steps(peft_model, batch_for(model_name), steps=8, lr=lr)
    assert losses[-1] < losses[0] - 1e-3, losses


@pytest.mark.parametrize("model_name,config_name", MATRIX)
def test_save_then_load_restores_config_class_and_logits(model_name, config_name, tmp_path):
    peft_model, config = make_peft_model(model_name, config_name)
    common.train_steps(peft_model, batch_for(model_name), steps=2)  # move away from the init
    batch = common.inference_batch(model_name)
    expected = forward_logits(peft_model, batch)
    peft_model.save_pretrained(tmp_path)

    base, _ = common.tiny_model(model_name)
    loaded = PeftModel.from_pretrained(base, tmp_path)
    assert type(loaded.peft_config["default"]) is type(config)
    assert comparable_fields(loaded.peft_config["default"]) == comparable_fields(config)
    torch.testing.assert_close(forward_logits(loaded, batch), expected, rtol=1e-5, atol=1e-5)
    assert type(PeftConfig.from_pretrained(tmp_path)) is type(config)


@pytest.mark.parametrize("model_name", list(TINY_MODELS))
def test_load_with_is_trainable_resumes_training(model_name, tmp_path):
    peft_model, _ = make_peft_model(model_name, "vocab_top_frequent")
    peft_model.save_pretrained(tmp_path)
    batch = batch_for(model_name)
    base, _ = common.tiny_model(model_name)
    resumed = PeftModel.from_pretrained(base, tmp_path, is_trainable=True)
    assert resumed.peft_config["default"].inference_mode is False
    before = resumed.prompt_encoder["default"].embedding.weight.detach().clone()
    torch.testing.assert_close(before, peft_model.prompt_encoder["default"].embedding.weight.detach())
    common.check_only_prompt_gets_grad(resumed, batch)
    losses = common.train_steps(resumed, batch, steps=5)
    assert losses[-1] < losses[0]
    assert not torch.equal(before, resumed.prompt_encoder["default"].embedding.weight.detach())


@pytest.mark.parametrize("config_name", ["mixture_task", "mixture_attention"])
def test_mixture_resumes_training_with_the_bank_frozen(config_name, tmp_path):
    peft_model, _ = make_peft_model("llama", config_name)
    peft_model.save_pretrained(tmp_path)
    resumed = PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path, is_trainable=True)
    encoder = resumed.prompt_encoder["default"]
    bank = encoder.bank.clone()
    common.check_only_prompt_gets_grad(resumed, batch_for("llama"))
    common.train_steps(resumed, batch_for("llama"), steps=3)
    torch.testing.assert_close(encoder.bank, bank, rtol=0, atol=0)
    assert "bank" not in dict(encoder.named_parameters())


def test_load_without_is_trainable_is_frozen(tmp_path):
    peft_model, _ = make_peft_model("gpt2", "vocab_uniform")
    peft_model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_loading_weights_into_an_adapter_the_model_has_keeps_whether_it_trains(method, tmp_path):
    """Trainer's load_best_model_at_end and resume_from_checkpoint call load_adapter(folder, name) without
    is_trainable over adapters the model has: the plugin froze them (a second train() moved nothing, or failed,
    and a resume with two adapters failed on the optimizer's groups). Plain PEFT keeps them as they were."""
    from peft_softprompt_ext import DeepPromptTuningConfig

    def prompted():
        base, task_type = common.tiny_model("llama")
        if method == "deep":
            return peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
        return make_peft_model("llama", "vocab_uniform")[0]

    peft_model = prompted()
    peft_model.save_pretrained(tmp_path)
    trains = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trains
    peft_model.load_adapter(tmp_path, adapter_name="default")
    assert [name for name, p in peft_model.named_parameters() if p.requires_grad] == trains
    fresh = prompted()
    fresh.load_adapter(tmp_path, adapter_name="new")  # a new adapter loads frozen, as from_pretrained does
    assert not any(p.requires_grad for name, p in fresh.named_parameters() if ".new." in name)


def test_trainer_load_best_model_at_end_leaves_the_prompt_training(tmp_path):
    """The end-to-end case of the test above: after Trainer(load_best_model_at_end=True).train() the prompt was frozen."""
    import datasets
    from transformers import Trainer, TrainingArguments

    peft_model, _ = make_peft_model("llama", "vocab_uniform")
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(6, 300, (7,), generator=generator).tolist() for _ in range(12)]
    rows = datasets.Dataset.from_list([{"input_ids": row, "attention_mask": [1] * 7, "labels": row} for row in ids])
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=0.05, report_to=[],
                             use_cpu=True, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2, disable_tqdm=True,
                             load_best_model_at_end=True, metric_for_best_model="eval_loss")  # fmt: skip
    Trainer(model=peft_model, args=args, train_dataset=rows, eval_dataset=rows.select(range(4))).train()
    from peft_softprompt_ext.prompt_encoder import is_fixed_parameter

    prompt = [(name, p) for name, p in peft_model.named_parameters() if "prompt_encoder" in name and not is_fixed_parameter(name)]
    assert prompt and all(p.requires_grad for _, p in prompt)


def test_training_a_model_whose_prompt_was_loaded_frozen_says_how_to_resume(tmp_path):
    peft_model, _ = make_peft_model("llama", "vocab_uniform")
    peft_model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path).train()
    with pytest.raises(ValueError, match=r"Nothing in this model trains.*is_trainable=True"):
        loaded(**batch_for("llama"))


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
@pytest.mark.parametrize("config_name", ALL_CONFIG_NAMES)
@pytest.mark.parametrize("left_pad", [False, True])
def test_generate_with_cache_equals_no_cache_and_manual_loop(model_name, config_name, left_pad):
    peft_model, _ = make_peft_model(model_name, config_name)
    common.check_generate_matches_no_cache(peft_model, batch_for(model_name, left_pad=left_pad), max_new_tokens=32,
                                           manual_loop=config_name not in common.INPUT_DEPENDENT_CONFIGS)  # fmt: skip


@pytest.mark.parametrize("config_name", ALL_CONFIG_NAMES)
def test_seq2seq_generate_with_and_without_cache(config_name):
    peft_model, _ = make_peft_model("t5", config_name)
    batch = batch_for("t5")
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=12,
                  min_new_tokens=12, do_sample=False)  # fmt: skip
    with torch.no_grad():
        cached = peft_model.generate(**kwargs, use_cache=True)
        uncached = peft_model.generate(**kwargs, use_cache=False)
        # the decoder's first step must see the prompt: compare with a manual forward
        start = torch.zeros((3, 1), dtype=torch.long)
        first = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=start)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)
    torch.testing.assert_close(cached[:, 1], first.logits[:, -1].argmax(-1), rtol=0, atol=0)


def test_a_model_whose_input_embeddings_are_narrower_than_its_hidden_size_names_the_token_dim_to_pass():
    """OPT-350m's layout (word_embed_proj_dim 16 under hidden_size 32): refused as 'The initial prompt has shape (5, 16);
    expected (5, 32)' with no cause; with the named token_dim it trains and generates; a deep prompt needs nothing."""
    from transformers import OPTConfig, OPTForCausalLM

    from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig

    def opt():
        torch.manual_seed(0)
        return OPTForCausalLM(OPTConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                                        max_position_embeddings=64, word_embed_proj_dim=16, pad_token_id=1, dropout=0.0)).eval()  # fmt: skip

    with pytest.raises(ValueError, match=r"token_dim=32 \(PEFT fills in the model's hidden_size\) but the model's input embeddings are 16 wide.*pass token_dim=16"):
        peft.get_peft_model(opt(), VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, seed=1))
    batch = batch_for("gpt2")
    for config in (VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, seed=1, token_dim=16),
                   DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, deep_init="random", seed=1)):
        peft_model = peft.get_peft_model(opt(), config)
        with torch.no_grad():
            generated = peft_model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3)
        assert generated.shape == (3, batch["input_ids"].shape[1] + 3)


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
@pytest.mark.parametrize("mask_covers_the_prompt", [False, True])
def test_seq2seq_forward_with_given_encoder_outputs_equals_the_whole_forward(config_name, mask_covers_the_prompt):
    """transformers' pattern of encoding once and decoding from `encoder_outputs`: a shallow prompt crashed on a padded
    input-length mask ("size of tensor a (7) must match ... (12)"; plain PEFT extends the mask and is exact), and a
    deep prompt without input_ids raised a bare AttributeError."""
    from transformers.modeling_outputs import BaseModelOutput

    from peft_softprompt_ext import DeepPromptTuningConfig

    if config_name == "deep":
        if not common.T5_ROUTES_ATTENTION:
            pytest.skip(common.NO_DEEP_T5)
        base, task_type = common.tiny_model("t5")
        peft_model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
    else:
        peft_model = make_peft_model("t5", config_name)[0]
    batch = batch_for("t5")
    batch["attention_mask"][0, -2:] = 0  # a right-padded row
    extra = {"task_ids": torch.zeros(3, dtype=torch.long)} if config_name == "mixture_task" else {}
    decoder_input_ids = torch.zeros((3, 2), dtype=torch.long)
    with torch.no_grad():
        whole = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids, **extra)
        encoded = BaseModelOutput(last_hidden_state=whole.encoder_last_hidden_state)
        mask = batch["attention_mask"]
        if mask_covers_the_prompt and config_name != "deep":  # the encoder's own length: prompt columns included
            mask = torch.cat((torch.ones((3, 5), dtype=mask.dtype), mask), dim=1)
        given = peft_model(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=decoder_input_ids, **extra)
    torch.testing.assert_close(given.logits, whole.logits, rtol=0, atol=0)


def test_seq2seq_encoder_outputs_with_a_mask_of_neither_length_is_refused_naming_the_lengths():
    from transformers.modeling_outputs import BaseModelOutput

    peft_model = make_peft_model("t5", "vocab_uniform")[0]
    batch = batch_for("t5")  # 7 tokens: the encoder output holds 5 + 7
    with torch.no_grad():
        encoded = BaseModelOutput(last_hidden_state=peft_model(**batch).encoder_last_hidden_state)
        with pytest.raises(ValueError, match=r"attention_mask has 9 columns; encoder_outputs hold 12 positions .* \(7 columns\) or one covering the prompt too \(12\)"):
            peft_model(encoder_outputs=encoded, attention_mask=torch.ones((3, 9), dtype=torch.long), decoder_input_ids=batch["labels"])


def test_seq2seq_generate_with_encoder_outputs_says_the_prompt_goes_into_the_encoder_input():
    from transformers.modeling_outputs import BaseModelOutput

    peft_model = make_peft_model("t5", "vocab_uniform")[0]
    encoded = BaseModelOutput(last_hidden_state=torch.zeros((3, 12, 32)))
    with pytest.raises(ValueError, match=r"Do not pass encoder_outputs to generate with a soft prompt"):
        peft_model.generate(encoder_outputs=encoded, attention_mask=torch.ones((3, 12), dtype=torch.long), max_new_tokens=2)


@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep"])
def test_a_prompted_seq2seq_model_as_the_assistant_is_refused_saying_why(config_name):
    """Found 2026-12-07 by a probe: a plugin T5 model as another model's assistant_model was refused with "Do not pass
    encoder_outputs", which the user had not passed: transformers encodes the input with the assistant's own encoder
    (without its prompt) and passes the outputs (plain PEFT's prompt and prefix tuning fail there too)."""
    from peft_softprompt_ext import DeepPromptTuningConfig

    if config_name == "deep":
        if not common.T5_ROUTES_ATTENTION:
            pytest.skip(common.NO_DEEP_T5)
        base, task_type = common.tiny_model("t5")
        assistant = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=3, deep_init="random"))
    else:
        assistant = common.make_peft_model("t5", config_name)[0]
    batch = {k: v for k, v in common.batch_for("t5", batch_size=1).items() if k != "labels"}
    with pytest.raises(ValueError, match=r"cannot be the assistant_model of another model's generate.*without its prompt"):
        common.tiny_model("t5", seed=2)[0].generate(**batch, max_new_tokens=4, do_sample=False, assistant_model=assistant)


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
@pytest.mark.parametrize("assist", [{"assistant_model": "base"}, {"prompt_lookup_num_tokens": 3}])
def test_assisted_decoding_gives_the_greedy_tokens(model_name, config_name, assist):
    from peft_softprompt_ext import DeepPromptTuningConfig

    if config_name == "deep":
        base, task_type = common.tiny_model(model_name)
        peft_model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
    else:
        peft_model = common.make_peft_model(model_name, config_name)[0]
    if "assistant_model" in assist:
        assist = {"assistant_model": common.tiny_model(model_name, seed=1)[0]}
    batch = common.batch_for(model_name, batch_size=1, length=9)  # assisted decoding takes one row
    kwargs = dict(**batch, max_new_tokens=12, do_sample=False)  # (transformers 5.0 refuses min_new_tokens with an assistant)
    with torch.no_grad():
        torch.testing.assert_close(peft_model.generate(**kwargs, **assist), peft_model.generate(**kwargs), rtol=0, atol=0)


@pytest.mark.parametrize("model_name", ["llama", "gemma3"])  # (GPT-2's layers ignore num_hidden_layers: its base model fails)
@pytest.mark.parametrize("config_name", ["vocab_uniform", "vocab_uniform_unshared", "mixture_task", "deep"])
def test_early_exit_decoding_gives_the_greedy_tokens_and_leaves_the_model_whole(model_name, config_name):
    """Found 2026-12-07 by a probe: generate(assistant_early_exit=1) (the model drafts with its first layers) failed with
    an IndexError where the base model runs: the prompt's keys and values went into every layer of a draft cache that
    holds one. transformers restores config.num_hidden_layers only after a successful draft, so every later call ran
    one layer of two (a deep prompt's forward was 4.0 off)."""
    from peft_softprompt_ext import DeepPromptTuningConfig

    base, task_type = common.tiny_model(model_name)
    batch = common.batch_for(model_name, batch_size=1, length=9)  # assisted decoding takes one row
    kwargs = dict(**batch, max_new_tokens=12, do_sample=False)
    try:
        with torch.no_grad():
            base.generate(**kwargs, assistant_early_exit=1)
    except TypeError as error:  # transformers 5.0: "get_candidates() missing 1 required positional argument"
        pytest.skip(f"transformers' own early exit fails on the base model here: {error}")
    if config_name == "deep":
        peft_model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
    else:
        peft_model = common.make_peft_model(model_name, config_name.removesuffix("_unshared"))[0]
        if config_name.endswith("_unshared"):
            peft_model.peft_config["default"].shared_prefix = "off"
    with torch.no_grad():
        before, greedy = common.forward_logits(peft_model, batch), peft_model.generate(**kwargs)
        torch.testing.assert_close(peft_model.generate(**kwargs, assistant_early_exit=1), greedy, rtol=0, atol=0)
        torch.testing.assert_close(common.forward_logits(peft_model, batch), before, rtol=0, atol=0)


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task"])
def test_generate_returns_hidden_states_and_attentions_in_the_callers_layout_where_padding_runs_first(config_name):
    """Found 2026-12-07 by a probe: on a model with a sliding window (Gemma-3), a left-padded generate runs each row's
    padding in front of the prompt, and its hidden states and attentions came back in that order ([padding; prompt;
    tokens]; a row's last hidden state 3 off forward's), where forward gives them prompt first, as plain PEFT does."""
    peft_model = common.make_peft_model("gemma3", config_name)[0]
    common.innermost(peft_model).set_attn_implementation("eager")  # (sdpa returns no attentions)
    batch = common.batch_for("gemma3", batch_size=3, length=7, left_pad=True)
    switches = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        generated = peft_model.generate(**batch, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, **switches)
        for step in range(3):  # each step against a forward over the input and the tokens generated before it
            tokens = generated.sequences[:, : batch["input_ids"].shape[1] + step]
            mask = torch.cat((batch["attention_mask"], torch.ones((3, step), dtype=torch.long)), dim=1)
            forward = peft_model(input_ids=tokens, attention_mask=mask, **switches)
            rows = slice(None) if step == 0 else slice(-1, None)  # the first step feeds every position, later ones one
            for ours, reference in zip(generated.hidden_states[step], forward.hidden_states):
                torch.testing.assert_close(ours, reference[:, rows], rtol=1e-4, atol=1e-5)
            for ours, reference in zip(generated.attentions[step], forward.attentions):
                torch.testing.assert_close(ours, reference[:, :, rows], rtol=1e-4, atol=1e-5)


def test_seq2seq_assisted_decoding_with_a_shallow_prompt_is_refused_saying_why():
    peft_model, _ = common.make_peft_model("t5", "vocab_uniform")
    batch = common.batch_for("t5", batch_size=1)  # assisted decoding takes one row
    assistant = common.tiny_model("t5", seed=1)[0]
    with pytest.raises(ValueError, match="assistant_model.*DeepPromptTuningConfig"):
        peft_model.generate(**batch, max_new_tokens=4, assistant_model=assistant)


@pytest.mark.parametrize("model_name,task_type,message", [
    ("bert", "CAUSAL_LM", r"task_type='CAUSAL_LM' needs a causal LM .*BertForSequenceClassification"),
    ("gpt2", "SEQ_2_SEQ_LM", r"task_type='SEQ_2_SEQ_LM' needs an encoder-decoder model .*GPT2LMHeadModel"),
    ("t5", "CAUSAL_LM", r"task_type='CAUSAL_LM' needs a causal LM .*T5ForConditionalGeneration"),
    ("gpt2", "SEQ_CLS", r"task_type='SEQ_CLS' needs a sequence classifier .*GPT2LMHeadModel"),
])  # fmt: skip
def test_a_task_type_the_model_is_not_is_refused_naming_both(model_name, task_type, message):
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    config = VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, vocab_sampling="uniform")
    with pytest.raises(ValueError, match=message):
        peft.get_peft_model(common.tiny_model(model_name)[0], config)


@pytest.mark.parametrize("config_name", ALL_CONFIG_NAMES)
def test_config_json_round_trip(config_name, tmp_path):
    config = common.all_configs()[config_name]("CAUSAL_LM", "gpt2")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert "corpus" not in saved
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config)
    assert loaded.to_dict() == config.to_dict()


def test_auto_peft_model_for_causal_lm_with_local_base_folder(tmp_path):
    base, _ = common.tiny_model("llama")
    base.save_pretrained(tmp_path / "base")
    base = type(base).from_pretrained(tmp_path / "base")
    peft_model = peft.get_peft_model(base, common.all_configs()["vocab_top_frequent"]("CAUSAL_LM", "llama"))
    assert peft_model.peft_config["default"].base_model_name_or_path == str(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "adapter")
    batch = common.inference_batch("llama")
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    torch.testing.assert_close(forward_logits(loaded, batch), forward_logits(peft_model, batch), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- vanilla export, one subprocess
VANILLA_LOADER = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification
AUTO = {"CAUSAL_LM": AutoModelForCausalLM, "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM, "SEQ_CLS": AutoModelForSequenceClassification}
root = sys.argv[1] if len(sys.argv) > 1 else ROOT
results = {}
for case in json.load(open(f"{root}/cases.json")):
    base = AUTO[case["task_type"]].from_pretrained(case["base"]).eval()
    model = PeftModel.from_pretrained(base, case["adapter"]).eval()
    batch = torch.load(case["batch"])
    with torch.no_grad():
        logits = model(**batch).logits
    expected = torch.load(case["expected"])
    results[case["name"]] = {"max_abs_diff": (logits - expected).abs().max().item(), "scale": expected.abs().max().item(),
                             "type": str(model.peft_config["default"].peft_type)}
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def vanilla_export_results(tmp_path_factory):
    from peft_softprompt_ext import export_prompt_tuning

    root = tmp_path_factory.mktemp("export")
    cases = []
    for model_name, config_name in EXPORTABLE_MATRIX:
        name = f"{model_name}-{config_name}"
        peft_model, config = make_peft_model(model_name, config_name)
        common.train_steps(peft_model, batch_for(model_name), steps=2)
        base, _ = common.tiny_model(model_name)
        base.save_pretrained(root / f"base-{model_name}")
        export_prompt_tuning(peft_model, root / name)
        batch = common.inference_batch(model_name)
        torch.save(batch, root / f"{name}-batch.pt")
        torch.save(forward_logits(peft_model, batch), root / f"{name}-expected.pt")
        cases.append({"name": name, "task_type": str(config.task_type.value if hasattr(config.task_type, "value") else config.task_type),
                      "base": str(root / f"base-{model_name}"), "adapter": str(root / name),
                      "batch": str(root / f"{name}-batch.pt"), "expected": str(root / f"{name}-expected.pt")})  # fmt: skip
    (root / "cases.json").write_text(json.dumps(cases))
    result = common.run_python_without_plugin(VANILLA_LOADER.replace("ROOT", repr(str(root))))
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULTS"))
    return json.loads(line[len("RESULTS"):])


@pytest.mark.parametrize("model_name,config_name", EXPORTABLE_MATRIX)
def test_vanilla_export_loads_without_plugin_with_equal_logits(vanilla_export_results, model_name, config_name):
    result = vanilla_export_results[f"{model_name}-{config_name}"]
    assert result["type"] == "PeftType.PROMPT_TUNING"
    assert result["max_abs_diff"] <= common.FLOAT32_PATHS * max(1.0, result["scale"])


def test_export_writes_one_plain_tensor(tmp_path):
    from safetensors.torch import load_file

    from peft_softprompt_ext import export_prompt_tuning

    peft_model, _ = make_peft_model("gpt2", "vocab_uniform")
    export_prompt_tuning(peft_model, tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert list(tensors) == ["prompt_embeddings"]
    torch.testing.assert_close(tensors["prompt_embeddings"], peft_model.prompt_encoder["default"].embedding.weight.detach())
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors"]


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
def test_packed_rows_are_refused_saying_why(model_name):
    """trl's packing gives position_ids that restart within a row and no attention mask: a prompt in front of the row
    would reach its first sequence only."""
    peft_model, _ = common.make_peft_model(model_name, "vocab_uniform")
    ids = batch_for(model_name)["input_ids"]
    packed = torch.tensor([[0, 1, 2, 0, 1, 2, 3]] * ids.shape[0])
    with pytest.raises(ValueError, match=r"position_ids restart within a row \(packed sequences"):
        peft_model(input_ids=ids, position_ids=packed, labels=ids)
    # found 2026-12-06: trl's padding_free=True without packing flattens rows the same way, and the advice named only
    # packing=False, the user's setting already
    with pytest.raises(ValueError, match=r"padding_free=True.*SFTConfig\(packing=False, padding_free=False\)"):
        peft_model(input_ids=ids, position_ids=packed, labels=ids)
    left_padded = {"attention_mask": torch.tensor([[0, 0, 1, 1, 1, 1, 1]] * ids.shape[0]),
                   "position_ids": torch.tensor([[1, 1, 0, 1, 2, 3, 4]] * ids.shape[0])}  # generate's own, with a mask
    peft_model(input_ids=ids, **left_padded)


@pytest.mark.parametrize("model_name", ["gpt2", "bert"])
def test_position_ids_of_another_shape_are_named(model_name):
    peft_model, _ = make_peft_model(model_name, "vocab_uniform")
    batch = common.inference_batch(model_name)
    with pytest.raises(ValueError, match=r"position_ids has shape \(3, 9\) but the input is \(3, 7\)"):
        peft_model(**batch, position_ids=torch.arange(9).expand(3, -1))


@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep_text"])
@pytest.mark.parametrize("model_name", ["llama", "bert"])
def test_position_ids_of_one_row_apply_to_every_row(model_name, config_name):
    """Found 2026-12-06: position_ids [1, L] for a batch of B rows (transformers' own default shape, which the base
    model and plain PEFT broadcast) were refused by every plugin prompt."""
    model, task_type = common.tiny_model(model_name)
    config = common.deep_config(config_name, task_type, model_name) or common.all_configs()[config_name](task_type, model_name)
    peft_model = peft.get_peft_model(model, config)
    batch = common.inference_batch(model_name)
    length = batch["input_ids"].shape[1]
    with torch.no_grad():
        one_row = peft_model(**batch, position_ids=torch.arange(length)[None]).logits
        every_row = peft_model(**batch, position_ids=torch.arange(length).expand(3, -1)).logits
    torch.testing.assert_close(one_row, every_row, rtol=0, atol=0)


@pytest.mark.parametrize("model_name", [*CAUSAL_MODELS, "t5"])
@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
def test_generate_takes_the_input_as_transformers_names_it_inputs(model_name, config_name):
    """Found 2026-12-05: generate(inputs=ids) (transformers' name for the first argument) was refused as if no
    input were given; plain PEFT takes it."""
    if (config_name, model_name) == ("deep", "t5") and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    peft_model = make_peft_model(model_name, config_name)[0] if config_name != "deep" else _deep(model_name)
    batch = common.inference_batch(model_name)
    kwargs = dict(attention_mask=batch["attention_mask"], max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad():
        expected = peft_model.generate(input_ids=batch["input_ids"], **kwargs)
        torch.testing.assert_close(peft_model.generate(inputs=batch["input_ids"], **kwargs), expected, rtol=0, atol=0)
        torch.testing.assert_close(peft_model.generate(batch["input_ids"], **kwargs), expected, rtol=0, atol=0)
        torch.testing.assert_close(peft_model.generate(inputs=None, input_ids=batch["input_ids"], **kwargs), expected, rtol=0, atol=0)
        with pytest.raises(TypeError, match=r"got multiple values for argument 'inputs'"):
            peft_model.generate(batch["input_ids"], inputs=batch["input_ids"], **kwargs)


def _deep(model_name):
    from peft_softprompt_ext import DeepPromptTuningConfig

    base, task_type = common.tiny_model(model_name)
    return peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))


@pytest.mark.parametrize("shared_prefix", ["auto", "off"])
def test_token_type_ids_of_a_causal_lm_get_type_zero_for_the_prompt(shared_prefix):
    """Found 2026-12-06: GPT-2 takes token_type_ids, and with a shallow prompt they were given for the input only:
    forward and generate failed with "shape '[-1, 12]' is invalid for input of size 21". The prompt's positions now
    get type 0, as a BERT prompt's do; plain PEFT drops the types instead, which changes the input."""
    peft_model, _ = make_peft_model("gpt2", "vocab_uniform")
    peft_model.peft_config["default"].shared_prefix = shared_prefix
    batch = common.inference_batch("gpt2")
    types = torch.zeros_like(batch["input_ids"])
    types[:, 3:] = 1
    base = peft_model.get_base_model()
    with torch.no_grad():
        logits = peft_model(**batch, token_type_ids=types).logits
        prompt = peft_model.prompt_encoder["default"].prompt_rows()[None].expand(3, -1, -1)
        num_virtual = prompt.shape[1]
        manual = base(inputs_embeds=torch.cat((prompt, base.get_input_embeddings()(batch["input_ids"])), dim=1),
                      attention_mask=torch.cat((torch.ones(3, num_virtual, dtype=torch.long), batch["attention_mask"]), dim=1),
                      token_type_ids=torch.cat((torch.zeros(3, num_virtual, dtype=torch.long), types), dim=1)).logits  # fmt: skip
        torch.testing.assert_close(logits, manual, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(logits, peft_model(**batch).logits)  # the types are read
        generated = peft_model.generate(**batch, token_type_ids=types, max_new_tokens=1, do_sample=False, pad_token_id=0)
        longer = [peft_model.generate(**batch, token_type_ids=types, max_new_tokens=4, do_sample=False, pad_token_id=0, use_cache=cached)
                  for cached in (True, False)]  # fmt: skip
    assert generated[:, -1].tolist() == manual[:, -1].argmax(-1).tolist()
    assert longer[0].tolist() == longer[1].tolist()


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep_text"])
def test_get_encoder_of_a_seq2seq_prompt_reads_the_prompt(config_name):
    """Found 2026-12-06: transformers' pattern `model(encoder_outputs=model.get_encoder()(ids, mask), ...)` ran the
    base model's encoder without the prompt, and the forward took its outputs: the base model's logits (a deep
    prompt's: its decoder half only), without a word. get_encoder() now gives the encoder with the prompt."""
    if config_name.startswith("deep") and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5)
    model, task_type = common.tiny_model("t5")
    config = common.deep_config(config_name, task_type, "t5") or common.all_configs()[config_name](task_type, "t5")
    peft_model = peft.get_peft_model(model, config)
    batch = common.inference_batch("t5")
    tasks = {"task_ids": torch.zeros(3, dtype=torch.long)} if config_name.startswith("mixture") else {}
    with torch.no_grad():
        prompted = peft_model(**batch, **tasks).logits
        encoded = peft_model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **tasks)
        given = peft_model(encoder_outputs=encoded, attention_mask=batch["attention_mask"],
                           decoder_input_ids=batch["decoder_input_ids"], **tasks).logits  # fmt: skip
        torch.testing.assert_close(given, prompted, rtol=1e-5, atol=1e-5)
        with peft_model.disable_adapter():
            bare = peft_model(**batch).logits
            encoded = peft_model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            torch.testing.assert_close(peft_model(encoder_outputs=encoded, attention_mask=batch["attention_mask"],
                                                  decoder_input_ids=batch["decoder_input_ids"]).logits, bare)  # fmt: skip
    assert not torch.allclose(bare, prompted)
    encoder = peft_model.get_encoder()  # the encoder's own attributes, as before (the review caught them missing)
    assert encoder.main_input_name == "input_ids" and encoder.config is model.encoder.config
    assert encoder.embed_tokens is model.encoder.embed_tokens and encoder.device == model.device
    import copy
    import pickle

    assert copy.deepcopy(encoder).main_input_name == "input_ids" and pickle.loads(pickle.dumps(encoder)).config == encoder.config


@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep_text"])
def test_a_classifiers_trained_head_goes_with_disable_adapter_and_stays_after_unload(config_name, tmp_path):
    """Found 2026-12-06: inside disable_adapter() a SEQ_CLS prompt's trained head copy still ran (1.3 off the base
    model, where LoRA's disabled head gives the base exactly); unload() left PEFT's head wrapper in the model, whose
    save then held keys the model class does not know (a reload got a random head). As with LoRA, unload() now keeps
    the trained head as a plain module and disable_adapter() runs the original one."""
    import transformers

    model, task_type = common.tiny_model("bert")
    config = common.deep_config(config_name, task_type, "bert") or common.all_configs()[config_name](task_type, "bert")
    batch = common.inference_batch("bert")
    with torch.no_grad():
        pristine = model(**batch).logits
    peft_model = peft.get_peft_model(model, config)
    wrapped = peft_model.get_base_model().classifier
    with torch.no_grad():
        wrapped.modules_to_save["default"].weight.add_(0.5)  # a trained head
        prompted = peft_model(**batch).logits
        with peft_model.disable_adapter():
            torch.testing.assert_close(peft_model(**batch).logits, pristine, rtol=0, atol=0)
        torch.testing.assert_close(peft_model(**batch).logits, prompted, rtol=0, atol=0)  # enabled again
    head = wrapped.modules_to_save["default"]
    unloaded = peft_model.unload()
    assert unloaded.classifier is head and type(head) is torch.nn.Linear
    unloaded.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, unloaded(**batch).logits, rtol=0, atol=0)


def test_over_a_lora_model_only_the_prompts_own_head_is_switched_off_or_unloaded():
    """The review of the fix above: over a LoRA PeftModel, disable_adapter() also switched off the LoRA model's own
    head copies, and unload() unwrapped them (a reload of that LoRA model would then miss its trained modules)."""
    model, task_type = common.tiny_model("bert")
    lora = peft.get_peft_model(model, peft.LoraConfig(target_modules=["query"], modules_to_save=["pooler"], init_lora_weights=False),
                               adapter_name="lora").eval()  # fmt: skip
    pooler = lora.base_model.model.bert.pooler
    batch = common.inference_batch("bert")
    with torch.no_grad():
        pooler.modules_to_save["lora"].dense.weight.add_(0.5)  # the LoRA model's trained module
        inner = lora(**batch).logits
    peft_model = peft.get_peft_model(lora, common.all_configs()["vocab_uniform"](task_type, "bert"))
    with torch.no_grad():
        peft_model.get_base_model().base_model.model.classifier.modules_to_save["default"].weight.add_(0.5)  # the prompt's head
        with peft_model.disable_adapter():
            assert not pooler.disable_adapters  # the LoRA model's module stays on; the prompt's head is off
            assert peft_model.get_base_model().base_model.model.classifier.disable_adapters
            torch.testing.assert_close(peft_model(**batch).logits, inner, rtol=0, atol=0)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    with peft_model.disable_adapter():
        pass
    assert {name for name, p in peft_model.named_parameters() if p.requires_grad} == trainable  # as it was
    unloaded = peft_model.unload()
    assert unloaded is lora and isinstance(lora.base_model.model.bert.pooler, type(pooler)) and pooler.active_adapters == ["lora"]
    assert type(lora.base_model.model.classifier) is torch.nn.Linear  # the prompt's trained head, kept


def test_left_padded_rows_past_a_sliding_window_equal_the_rows_alone():
    """Found 2026-12-06: the prompt went in front of a row's left padding, and a sliding window counts the padding's
    slots, so past the window a padded row lost the prompt's first rows earlier than the row alone (plain PEFT has
    that layout too). The tiny Gemma-3's window is 16: 5 prompt rows + 23 tokens, one row with one pad in front."""
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    base, task_type = common.tiny_model("gemma3")
    model = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=5,
                                                                     vocab_sampling="uniform", seed=3))  # fmt: skip
    ids = torch.randint(6, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        alone = model(input_ids=ids[:1, 1:], attention_mask=mask[:1, 1:], labels=labels[:1, 1:], output_hidden_states=True)
        model.peft_config["default"].shared_prefix = "off"
        standard = model(input_ids=ids[:1, 1:], attention_mask=mask[:1, 1:]).logits
    # every position of the padded row but its pad, in the caller's layout (prompt first), equals the row alone
    real = torch.cat((torch.arange(5), torch.arange(6, 29)))
    torch.testing.assert_close(padded.logits[0, real], alone.logits[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.hidden_states[-1][0, real], alone.hidden_states[-1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.logits, standard, rtol=1e-5, atol=1e-5)
    for shared in ("auto", "off"):  # greedy generate past the window: the padded row in a batch and alone
        model.peft_config["default"].shared_prefix = shared
        with torch.no_grad():
            settings = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": False}
            batched = model.generate(input_ids=ids[:, :12], attention_mask=mask[:, :12], **settings)
            single = model.generate(input_ids=ids[:1, 1:12], attention_mask=mask[:1, 1:12], **settings)
        assert torch.equal(batched[0, -12:], single[0, -12:]), shared


def _takes_per_row_logits_to_keep() -> bool:
    import transformers.modeling_utils as modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


@pytest.mark.parametrize("config_name", ["vocab_uniform", "projected"])
def test_rows_padded_on_both_sides_past_a_sliding_window_equal_the_rows_alone(config_name):
    """Found 2026-12-07 by a probe: a row padded on the left and on the right (trl's GRPO / RLOO batches: a left-padded
    prompt, then a completion padded on the right) kept its left padding between the prompt and the tokens on a
    sliding-window model: its logits were 0.27 off the row alone, and GRPO's completion log-probs 0.15-0.20 (plain PEFT
    0.29 with left padding alone). Logits, the loss, `logits_to_keep` and trl's fused log-probs now equal the row alone."""
    base, task_type = common.tiny_model("gemma3")
    model = peft.get_peft_model(base, common.conformance_config(config_name, task_type, "gemma3")).eval()
    P, tokens = model.peft_config["default"].num_virtual_tokens, torch.randint(6, 300, (14,), generator=torch.Generator().manual_seed(3))
    lefts = [3, 1, 0, 6]  # each row: 14 tokens and 6 pads, that many in front (3 and 1: both sides; 0: right; 6: left)
    ids = torch.stack([torch.cat((torch.zeros(left, dtype=torch.long), tokens, torch.zeros(6 - left, dtype=torch.long))) for left in lefts])
    mask = torch.stack([torch.cat((torch.zeros(left), torch.ones(14), torch.zeros(6 - left))).long() for left in lefts])
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        alone = model(input_ids=tokens[None], labels=tokens[None])
        padded = model(input_ids=ids, attention_mask=mask, labels=labels)
        kept = model(input_ids=ids, attention_mask=mask, logits_to_keep=9).logits
        positions = torch.tensor([1, P + 2, P + 9, P + 19])  # the caller's layout: the prompt, padding, tokens
        picked = model(input_ids=ids, attention_mask=mask, logits_to_keep=positions).logits
    torch.testing.assert_close(picked, padded.logits[:, positions], rtol=1e-5, atol=1e-5)
    if _takes_per_row_logits_to_keep():  # transformers 5.23: positions per row [B, K], or a boolean mask [B, T]
        per_row = torch.stack([torch.tensor([P + left, P + left + 13]) for left in lefts])
        chosen = torch.zeros(padded.logits.shape[:2], dtype=torch.bool)
        chosen[:, P + 3] = True
        with torch.no_grad():
            by_row = model(input_ids=ids, attention_mask=mask, logits_to_keep=per_row).logits
            by_mask = model(input_ids=ids, attention_mask=mask, logits_to_keep=chosen).logits
        torch.testing.assert_close(by_row, torch.gather(padded.logits, 1, per_row[..., None].expand(-1, -1, padded.logits.shape[-1])),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
        torch.testing.assert_close(by_mask, padded.logits[chosen], rtol=1e-5, atol=1e-5)
    for row, left in enumerate(lefts):
        torch.testing.assert_close(padded.logits[row, P + left : P + left + 14], alone.logits[0, P:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept, padded.logits[:, -9:], rtol=1e-5, atol=1e-5)  # the caller's last 9 positions
    torch.testing.assert_close(padded.loss, alone.loss, rtol=1e-5, atol=1e-5)
    trl_utils = pytest.importorskip("trl.trainer.utils")
    if not hasattr(trl_utils, "add_fused_lm_head"):
        return
    trl_utils.add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy"))
    with torch.no_grad():
        fused_alone = model(input_ids=tokens[None], labels=tokens[None], fused_lm_head=True)
        fused = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    for row, left in enumerate(lefts):  # log_probs[i] scores the label at i + 1: the first token's is at P + left - 1
        for name in ("log_probs", "entropy"):
            torch.testing.assert_close(getattr(fused, name)[row, P + left - 1 : P + left + 13], getattr(fused_alone, name)[0, P - 1 :],
                                       rtol=1e-5, atol=1e-5)  # fmt: skip
        assert not fused.log_probs[row, P + left + 13 :].any()  # the right padding scores nothing


@pytest.mark.parametrize("padding", ["right", "both"])
def test_a_generate_of_rows_padded_on_the_right_past_a_sliding_window_is_the_same_with_and_without_a_cache(padding):
    """Found 2026-12-07 by a review: a first version of the both-sided fix moved all padding first; a right-padded
    generate's first step then ran as given, and its later steps (whose masks have padding in front of the new token)
    were reordered against their cache: cached and uncached greedy tokens differed. Only each row's leading padding
    moves; padding after a real token stays, as the base model reads it."""
    model = common.make_peft_model("gemma3", "vocab_uniform")[0].eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.randint(6, 300, (2, 14), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, -4:], ids[0, -4:] = 0, 0
    if padding == "both":
        mask[1, :3], ids[1, :3] = 0, 0
    # (no manual loop: for right-padded rows the base model's own generate and a loop of forwards take other positions)
    common.check_generate_matches_no_cache(model, {"input_ids": ids, "attention_mask": mask}, max_new_tokens=8, manual_loop=False)


@pytest.mark.parametrize(("model_name", "config_name", "shared"), [
    ("gemma3", "vocab_uniform", "auto"), ("gemma3", "vocab_uniform", "off"), ("gemma3", "mixture_attention", "auto"),
    ("llama", "mixture_attention", "auto"), ("llama", "deep", "auto")])  # fmt: skip
def test_a_generate_given_no_mask_reads_left_padding_as_transformers_infers_it(model_name, config_name, shared):
    """Found 2026-12-07 by a probe: `generate(input_ids)` without a mask on a left-padded batch (transformers infers the
    mask from `pad_token_id`, so the base model's tokens are the same with and without it) gave other tokens on a
    sliding-window model with the shared prefix: the call put the prompt's keys and values in front of the padding,
    while each later step, seeing transformers' mask, reordered the padding first (Gemma-3 and Mistral; plain PEFT's
    tokens are the same with and without the mask). The call now takes the mask transformers infers, so it equals the
    call given that mask, and the row alone. (transformers 5.23 infers no mask for an encoder-decoder's input.)"""
    from peft_softprompt_ext import DeepPromptTuningConfig

    if config_name == "deep":
        base, task_type = common.tiny_model(model_name)
        model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=5, deep_init="random", seed=3))
    else:
        model = common.make_peft_model(model_name, config_name)[0]
        model.peft_config["default"].shared_prefix = shared
    model.eval()
    pad = model.generation_config.pad_token_id = 0
    ids = torch.randint(6, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    ids[0, :2] = pad  # the tiny model's pad id; its eos id is another
    mask = (ids != pad).long()
    settings = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    with torch.no_grad():
        given = model.generate(input_ids=ids, attention_mask=mask, **settings)
        inferred = model.generate(input_ids=ids, **settings)
        positional = model.generate(ids, **settings)
        alone = model.generate(input_ids=ids[:1, 2:], **settings)
        with model.disable_adapter():  # the base model reads the pads alike with and without the mask
            assert torch.equal(model.generate(input_ids=ids, **settings), model.generate(input_ids=ids, attention_mask=mask, **settings))
    assert torch.equal(inferred, given) and torch.equal(positional, given)
    assert torch.equal(given[0, -6:], alone[0, -6:])


@pytest.mark.parametrize("case", ["pad_from_the_model", "pad_is_the_models_eos"])
def test_a_generate_given_a_generation_config_infers_the_mask_transformers_infers(case):
    """Found 2026-12-07 by a review of the fix above: the mask was inferred from the passed generation_config's own pad
    and eos ids, where transformers takes the model's for what the passed config leaves unset. A config without a pad id
    on a model with one left the bug above; a config whose pad id is the model's eos id (the usual "pad = eos" recipe)
    masked every eos in the input, which transformers does not (other tokens than before the fix)."""
    from transformers import GenerationConfig

    model = common.make_peft_model("gemma3", "vocab_uniform")[0].eval()
    ids = torch.randint(6, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    settings = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    if case == "pad_from_the_model":  # the model's pad id 0 pads row 0; the passed config names none
        ids[0, :2] = 0
        generation_config, mask = GenerationConfig(**settings), (ids != 0).long()
    else:  # the model has no pad id; the passed config pads with its eos id, which the input holds mid-row
        model.generation_config.pad_token_id, model.generation_config.eos_token_id = None, 2
        ids[:, 4] = 2
        generation_config, mask = GenerationConfig(pad_token_id=2, **settings), torch.ones_like(ids)
    with torch.no_grad():
        inferred = model.generate(input_ids=ids, generation_config=generation_config)
        given = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)
        with model.disable_adapter():
            base = model.get_base_model()
            assert torch.equal(base.generate(input_ids=ids, generation_config=generation_config),
                               base.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config))  # fmt: skip
    assert torch.equal(inferred, given)


def test_a_generation_config_set_on_the_prompts_model_infers_the_mask_on_its_first_call():
    """Found 2026-12-07 by a second review: PEFT's generate copies the PeftModel's `generation_config` onto the model
    transformers reads only when the call starts, so the mask of the first call after `peft_model.generation_config =
    ...` was inferred from the old config (a prompt over a LoRA model: other tokens on the first call than on the
    second). The plugin reads the config PEFT hands transformers."""
    from transformers import GenerationConfig

    base, task_type = common.tiny_model("llama")
    lora = peft.get_peft_model(base, peft.LoraConfig(task_type=task_type, r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model = peft.get_peft_model(lora, common.all_configs()["mixture_attention"](task_type, "llama")).eval()
    ids = torch.randint(6, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    ids[0, :4] = 5
    model.generation_config = GenerationConfig(pad_token_id=5, eos_token_id=3, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad():
        first = model.generate(input_ids=ids)
        given = model.generate(input_ids=ids, attention_mask=(ids != 5).long())
    assert torch.equal(first, given)


# --------------------------------------------------------------------------- static caches
def _static_model(model_name: str, config_name: str = "vocab_uniform"):
    peft_model, _ = make_peft_model(model_name, config_name)
    return peft_model.eval()


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
@pytest.mark.parametrize("setting", [{}, {"num_beams": 2, "num_return_sequences": 2}, {"return_dict_in_generate": True}])
def test_a_shallow_prompt_generates_with_a_static_cache_as_with_the_default_one(model_name, setting):
    """generate(cache_implementation="static") was refused for every shallow prompt on a causal LM (plain PEFT fails
    there with KeyError 'cache_position'): generate sizes a static cache for the input and the new tokens, with no
    room for the prompt's rows. The prompt now runs as the keys and values it leaves in every layer (left padding too);
    a returned cache holds the input and the new tokens only."""
    model = _static_model(model_name)
    batch = common.inference_batch(model_name, left_pad=True)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6, min_new_tokens=6,
                  do_sample=False, pad_token_id=0, **setting)  # fmt: skip
    with torch.no_grad():
        static = model.generate(cache_implementation="static", **kwargs)
        dynamic = model.generate(**kwargs)
    if setting.get("return_dict_in_generate"):
        keys = static[common.CACHE_NAME].layers[0].keys  # sized by generate for the input and the new tokens fed back
        assert type(static[common.CACHE_NAME]).__name__ == "StaticCache" and keys.shape[-2] == batch["input_ids"].shape[1] + 5
        static, dynamic = static.sequences, dynamic.sequences
    assert torch.equal(static, dynamic)


def test_a_mixed_task_batch_generates_with_a_static_cache_each_row_with_its_task():
    from peft_softprompt_ext import MixturePromptTuningConfig

    config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_prompts=list(common.bank_folders("llama")),
                                       num_tasks=2, mixing="task")  # fmt: skip
    model = peft.get_peft_model(common.tiny_model("llama")[0], config).eval()
    with torch.no_grad():
        model.prompt_encoder["default"].task_logits.normal_(0, 3, generator=torch.Generator().manual_seed(0))
    batch = common.inference_batch("llama", left_pad=True)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6, min_new_tokens=6,
                  do_sample=False, pad_token_id=0, task_ids=torch.tensor([0, 1, 0]))  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model.generate(cache_implementation="static", **kwargs), model.generate(**kwargs))


def test_an_empty_static_cache_given_to_generate_is_served_the_same_way():
    from transformers import StaticCache

    model = _static_model("llama")
    batch = common.inference_batch("llama")
    length = batch["input_ids"].shape[1] + 6  # room for the input and the new tokens, none for the prompt
    cache = StaticCache(config=model.get_base_model().config, max_cache_len=length)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6, min_new_tokens=6,
                  do_sample=False, pad_token_id=0)  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model.generate(**{common.CACHE_NAME: cache}, **kwargs), model.generate(**kwargs))


@pytest.mark.parametrize("case,message", [
    ("gemma3", r"Gemma3ForCausalLM has a sliding attention window, chunked attention or recurrent layers"),
    ("output_hidden_states", r"output_hidden_states / output_attentions ask for the prompt positions' outputs"),
])  # fmt: skip
def test_a_shallow_prompt_that_cannot_run_in_every_layer_refuses_a_static_cache_saying_why(case, message):
    model = _static_model("gemma3" if case == "gemma3" else "llama")
    batch = common.inference_batch("gemma3" if case == "gemma3" else "llama")
    extra = {"output_hidden_states": True, "return_dict_in_generate": True} if case == "output_hidden_states" else {}
    with pytest.raises(ValueError, match=r"does not fit a static cache.*" + message):
        model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3,
                       cache_implementation="static", pad_token_id=0, **extra)  # fmt: skip


def test_generate_goes_on_from_a_static_cache_it_returned_as_from_a_returned_dynamic_cache():
    """Found by a review: a static cache given again (not empty) took the input-row path, which counts P prompt rows
    in a cache that holds none: other tokens."""
    from transformers import StaticCache

    model = _static_model("llama")
    batch = common.inference_batch("llama", left_pad=True)
    first = dict(attention_mask=batch["attention_mask"], max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0,
                 return_dict_in_generate=True)  # fmt: skip
    results = {}
    for kind in ("static", "dynamic"):
        given = {common.CACHE_NAME: StaticCache(config=model.get_base_model().config, max_cache_len=batch["input_ids"].shape[1] + 12)} \
            if kind == "static" else {}  # fmt: skip
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], **given, **first)
            mask = torch.cat((batch["attention_mask"], torch.ones_like(out.sequences[:, batch["input_ids"].shape[1]:])), dim=1)
            results[kind] = model.generate(input_ids=out.sequences, attention_mask=mask, max_new_tokens=4, min_new_tokens=4,
                                           do_sample=False, pad_token_id=0, **{common.CACHE_NAME: out[common.CACHE_NAME]})  # fmt: skip
    assert torch.equal(results["static"], results["dynamic"])


def test_a_static_cache_is_continued_only_the_way_it_was_written():
    """Found by a review (2026-12-06): a static cache generate wrote holds no prompt rows (the prompt ran in every
    layer), one a forward call wrote holds them, and nothing told them apart: a forward continuing generate's was 2.2
    off, and generate continuing a forward's gave other tokens (transformers 5.23; an IndexError with 5.0). Each is
    refused now, naming the cache; an emptied cache (`reset()`) serves a forward again."""
    from transformers import StaticCache

    model = _static_model("llama")
    batch = common.inference_batch("llama")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    config = model.get_base_model().config
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0, return_dict_in_generate=True,
                             **{common.CACHE_NAME: StaticCache(config=config, max_cache_len=ids.shape[1] + 12)})  # fmt: skip
        written = out[common.CACHE_NAME]
        length = int(written.get_seq_length())
        full_mask = torch.ones_like(out.sequences)
        with pytest.raises(ValueError, match=r"past_key_values: this StaticCache was written by generate with a static cache"):
            model(input_ids=out.sequences[:, -1:], attention_mask=full_mask, **{common.CACHE_NAME: written})
        assert int(written.get_seq_length()) == length  # nothing written
        written.reset()
        expected = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, **{common.CACHE_NAME: written}).logits, expected)

        filled = StaticCache(config=config, max_cache_len=ids.shape[1] + 16)
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], **{common.CACHE_NAME: filled})
        with pytest.raises(ValueError, match=r"this StaticCache holds \d+ positions written by a forward call, the prompt's 5 rows"):
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0,
                           **{common.CACHE_NAME: filled})  # fmt: skip


def test_a_prompt_kv_cache_made_before_a_static_cache_generate_still_serves_after_it():
    """Found by a review: the static-cache path routes the model's attention (as deep prompts do), which changed its
    recorded attention implementation: a prompt_kv_cache made before was then refused as made for another model."""
    from peft_softprompt_ext import prompt_kv_cache

    model = _static_model("llama")
    batch = common.inference_batch("llama")
    cache = prompt_kv_cache(model)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        before = model.generate(prompt_cache=cache, **kwargs)
        model.generate(cache_implementation="static", **kwargs)
        assert torch.equal(model.generate(prompt_cache=cache, **kwargs), before)


def test_a_static_cache_generate_refuses_token_type_ids_and_a_prompt_cache_naming_them():
    from peft_softprompt_ext import prompt_kv_cache

    model = _static_model("gpt2")
    batch = common.inference_batch("gpt2")
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3, pad_token_id=0,
                  cache_implementation="static")  # fmt: skip
    with pytest.raises(ValueError, match=r"static cache \(cache_implementation='static'.*token_type_ids give the prompt"):
        model.generate(token_type_ids=torch.zeros_like(batch["input_ids"]), **kwargs)
    with pytest.raises(ValueError, match=r"shared_prefix='on' but .*a static cache \(cache_implementation='static'\) has no room"):
        model.generate(prompt_cache=prompt_kv_cache(model), **kwargs)
    assert "_plugin_generation_prompts" not in model.__dict__  # nothing left behind by the refusals


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_generate_on_the_lora_model_inside_a_prompts_generate_over_it_runs_without_the_prompt(kind):
    """Found 2026-12-06: for a generate over a LoRA PeftModel, the transformers model under it steps through the prompt's
    method, and so did every generate made on that model inside the call: a logits processor's generate on the LoRA
    model failed (a size mismatch in torch.cat, shallow and deep). Only the call's own generate steps through the prompt
    now; the LoRA model as an assistant (whose proposals the prompt's model checks) keeps greedy's tokens."""
    from transformers import LogitsProcessor, LogitsProcessorList

    from peft_softprompt_ext import DeepPromptTuningConfig

    base, task_type = common.tiny_model("llama")
    torch.manual_seed(4)
    lora = peft.get_peft_model(base, peft.LoraConfig(task_type=task_type, r=4, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False)).eval()  # fmt: skip
    config = (DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=4, deep_init="random", seed=1) if kind == "deep"
              else common.all_configs()["vocab_uniform"](task_type, "llama"))  # fmt: skip
    model = peft.get_peft_model(lora, config).eval()
    inner = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    outer = {"input_ids": torch.tensor([[9, 10, 11, 12, 13], [0, 14, 15, 16, 17]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])}  # fmt: skip
    greedy = {"max_new_tokens": 4, "do_sample": False}
    with torch.no_grad():
        lora_alone = lora.generate(**inner, **greedy)
        prompt_alone = model.generate(**outer, **greedy)

    class GeneratesOnTheLoraModel(LogitsProcessor):
        seen = []

        def __call__(self, input_ids, scores):
            self.seen.append(lora.generate(**inner, **greedy))
            return scores

    processor = GeneratesOnTheLoraModel()
    with torch.no_grad():
        with_processor = model.generate(**outer, **greedy, logits_processor=LogitsProcessorList([processor]))
        assisted = model.generate(**{k: v[:1] for k, v in outer.items()}, **greedy, assistant_model=lora)
    torch.testing.assert_close(with_processor, prompt_alone, rtol=0, atol=0)
    assert len(processor.seen) == 4
    for seen in processor.seen:
        torch.testing.assert_close(seen, lora_alone, rtol=0, atol=0)
    torch.testing.assert_close(assisted, prompt_alone[:1], rtol=0, atol=0)  # assisted greedy decoding changes no token
    assert "generate" not in base.__dict__ and "prepare_inputs_for_generation" not in base.__dict__


@pytest.mark.parametrize("setting", [{}, {"num_beams": 2}])
def test_a_static_cache_over_a_lora_model_runs_each_rows_prompt_through_its_rows_adapter(setting):
    """Found by a review (2026-12-06): with a static cache a shallow prompt runs as the keys and values it leaves in
    every layer, computed at the call's start, before PEFT's LoRA generate puts each row's adapter (`adapter_names=`) in
    place: every row's prompt ran through the active adapter, and rows of the other adapter got other tokens."""
    base, task_type = common.tiny_model("llama")
    torch.manual_seed(4)
    lora = peft.get_peft_model(base, peft.LoraConfig(task_type=task_type, r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
                               adapter_name="x")  # fmt: skip
    torch.manual_seed(5)
    lora.add_adapter("y", peft.LoraConfig(task_type=task_type, r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model = peft.get_peft_model(lora.eval(), common.all_configs()["vocab_uniform"](task_type, "llama")).eval()
    batch = common.inference_batch("llama", left_pad=True)
    names = ["x", "y", "y"]
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5, min_new_tokens=5,
                  do_sample=False, pad_token_id=0, adapter_names=names, **setting)  # fmt: skip
    with torch.no_grad():
        dynamic = model.generate(**kwargs)
        static = model.generate(cache_implementation="static", **kwargs)
        if not setting:
            manual = common.greedy_manual_loop(model, batch["input_ids"], batch["attention_mask"], 5, adapter_names=names)
            torch.testing.assert_close(dynamic, manual, rtol=0, atol=0)
    torch.testing.assert_close(static, dynamic, rtol=0, atol=0)


@pytest.mark.parametrize("config_name", ["vocab_top_frequent", "mixture_task_2", "mixture_attention_2"])
@pytest.mark.parametrize("model_name", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("shared", ["auto", "off"])
def test_the_loss_of_a_left_padded_batch_is_the_loss_of_its_rows_alone(model_name, config_name, shared):
    """Found 2026-12-06 by a probe: transformers pairs each label with the position before it, and in a left-padded row
    that is a padding position for the first real token, which alone a shallow prompt's last position predicts. The
    padded row's loss was 7.96 where alone it was 7.68 (llama; plain PEFT alike); now the batch loss is the
    token-weighted loss of its rows alone, with the shared prefix too (Gemma-3's padding goes first: it was right
    before). A review then found the attention mixture reading the moved labels (its prompt reads each row up to its
    first labelled token): 0.15 off the row alone; it reads them as given. Its logits are checked too."""
    from conformance_support import prompted_model

    model = prompted_model(config_name, model_name)
    if hasattr(model.peft_config["default"], "shared_prefix"):
        model.peft_config["default"].shared_prefix = shared
    ids = torch.randint(6, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :1] = 0
    labels = ids.masked_fill(mask == 0, -100)
    tasks = torch.tensor([1, 0, 1]) if config_name.endswith("_2") else None
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask, labels=labels, **({"task_ids": tasks} if tasks is not None else {}))
        total, count = 0.0, 0
        for row in range(3):
            keep = mask[row].bool()
            alone = {"input_ids": ids[row : row + 1, keep], "labels": labels[row : row + 1, keep]}
            if tasks is not None:
                alone["task_ids"] = tasks[row : row + 1]
            output = model(**alone)
            torch.testing.assert_close(batched.logits[row : row + 1, -int(keep.sum()):], output.logits[:, -int(keep.sum()):], rtol=1e-5, atol=1e-5)
            total, count = total + float(output.loss) * int(keep.sum()), count + int(keep.sum())
    torch.testing.assert_close(float(batched.loss), total / count, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config_name", ["mixture_task_2", "deep_vocab"])
@pytest.mark.parametrize("setting", [{}, {"cache_implementation": "static"}, {"use_cache": False}])
def test_a_generate_of_the_model_inside_its_own_generate_changes_neither(config_name, setting):
    """Found by a review (2026-12-06): a generate of the same model inside its generate (a logits processor asking the
    model something) ended by removing the outer call's prompts and PEFT's step method from the model, so the outer
    call went on without its prompt (other tokens, with the default and the static cache; the inner call, with a static
    cache, had also failed on the outer call's prompt in the layers until the layer path served only its own steps)."""
    from conformance_support import prompted_model
    from transformers import LogitsProcessorList

    model = prompted_model(config_name, "llama")
    base = model.get_base_model()
    multi = config_name.endswith("_2")
    outer_batch = common.inference_batch("llama", left_pad=True)
    inner_batch = common.inference_batch("llama", batch_size=2, length=5, seed=7)
    greedy = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0, **setting)
    outer = dict(input_ids=outer_batch["input_ids"], attention_mask=outer_batch["attention_mask"], **greedy,
                 **({"task_ids": torch.tensor([0, 1, 1])} if multi else {}))  # fmt: skip
    inner = dict(input_ids=inner_batch["input_ids"], attention_mask=inner_batch["attention_mask"], **greedy,
                 **({"task_ids": torch.tensor([1, 0])} if multi else {}))  # fmt: skip

    processor = common.once_inside_generate(lambda input_ids: model.generate(**inner))
    with torch.no_grad():
        outer_alone, inner_alone = model.generate(**outer), model.generate(**inner)
        nested = model.generate(**outer, logits_processor=LogitsProcessorList([processor]))
    torch.testing.assert_close(nested, outer_alone, rtol=0, atol=0)
    torch.testing.assert_close(processor.seen, inner_alone, rtol=0, atol=0)
    assert "_plugin_generation_prompts" not in model.__dict__ and "forward" not in base.__dict__


@pytest.mark.parametrize("config_name", ["vocab_top_frequent", "deep_vocab"])
@pytest.mark.parametrize("setting", [{}, {"use_cache": False}, {"cache_implementation": "static"}])
def test_a_generate_with_the_adapter_disabled_inside_the_prompts_generate_is_the_base_models(config_name, setting):
    """Found by a review (2026-12-06): a generate with the adapter disabled, made inside the prompt's generate (a logits
    processor's), stepped through the method PEFT had set for the prompt's call and failed (a size mismatch in the
    cache); plain PEFT gives other tokens than the base model there. It is the base model's generate now, and the outer
    call's tokens do not change."""
    from conformance_support import prompted_model
    from transformers import LogitsProcessorList

    model = prompted_model(config_name, "llama")
    base = model.get_base_model()
    batch = common.inference_batch("llama", batch_size=2)
    inner_batch = common.inference_batch("llama", batch_size=1, seed=7)
    greedy = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)

    def disabled_generate():
        with model.disable_adapter():
            return model.generate(**inner_batch, **greedy)

    probe = common.once_inside_generate(lambda input_ids: disabled_generate())
    with torch.no_grad():
        base_alone = base.generate(**inner_batch, **greedy)
        outer_alone = model.generate(**batch, **greedy, **setting)
        outer = model.generate(**batch, **greedy, **setting, logits_processor=LogitsProcessorList([probe]))
    torch.testing.assert_close(probe.seen, base_alone, rtol=0, atol=0)
    torch.testing.assert_close(outer, outer_alone, rtol=0, atol=0)


def test_a_forward_of_the_model_from_another_thread_during_a_layer_path_generate_takes_no_prompt():
    """Found by a review (2026-12-06): the layer path's step flag lived on the model, shared by threads, so a forward
    of the base model from another thread landing between a step's preparation and its forward took the prompt (5.1 off
    the base model) and the step ran without it. The flag is read from the caller's context now. A forward pre-hook
    runs the other thread's forward at that instant."""
    import threading

    from conformance_support import prompted_model

    model = prompted_model("deep_vocab", "llama")
    base = model.get_base_model()
    batch = common.inference_batch("llama", batch_size=2)
    other = common.inference_batch("llama", batch_size=2, seed=9)
    with torch.no_grad():
        manual = common.greedy_manual_loop(model, batch["input_ids"], batch["attention_mask"], 3)
        expected = base(**other).logits
    seen = {}

    def other_thread():
        with torch.no_grad():
            seen["logits"] = base(**other).logits

    def before_a_step(module, args, kwargs):
        if threading.current_thread() is threading.main_thread() and "logits" not in seen:
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()

    handle = base.register_forward_pre_hook(before_a_step, with_kwargs=True)
    try:
        with torch.no_grad():
            generated = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False, use_cache=False)
    finally:
        handle.remove()
    torch.testing.assert_close(seen["logits"], expected, rtol=0, atol=0)
    torch.testing.assert_close(generated, manual, rtol=0, atol=0)


@pytest.mark.parametrize("config_name", ["vocab_top_frequent", "mixture_task_2", "deep_vocab"])
def test_a_prompt_over_a_model_accelerate_offloads_gives_the_same_logits_and_tokens(config_name, tmp_path):
    """Found by a probe (2026-12-06): accelerate's cpu_offload leaves the parameters on the meta device and moves them in
    for each call; the plugin took the model's device from its first parameter, so a shallow prompt's forward and
    generate failed ("unknown device type for autocast"; a static cache: "Cannot copy out of meta tensor"), where plain
    PEFT prompt tuning runs. The device the hooks run the model on is taken there."""
    from accelerate import cpu_offload
    from conformance_support import prompted_model

    model = prompted_model(config_name, "llama")
    batch = common.inference_batch("llama", left_pad=True)
    tasks = {"task_ids": torch.tensor([0, 1, 1])} if config_name.endswith("_2") else {}
    greedy = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0, **tasks)
    settings = [{}, {"cache_implementation": "static"}, {"use_cache": False}]
    with torch.no_grad():
        logits = model(**batch, **tasks).logits
        tokens = [model.generate(**batch, **greedy, **setting) for setting in settings]
        cpu_offload(model.get_base_model(), execution_device=torch.device("cpu"))
        assert next(model.get_base_model().parameters()).device.type == "meta"
        torch.testing.assert_close(model(**batch, **tasks).logits, logits, rtol=1e-5, atol=1e-5)
        for setting, expected in zip(settings, tokens):
            torch.testing.assert_close(model.generate(**batch, **greedy, **setting), expected, rtol=0, atol=0, msg=lambda m: f"{setting}: {m}")
    # saved after offloading (found 2026-12-07: the fingerprint read the meta weight, "Cannot copy out of meta tensor")
    model.save_pretrained(tmp_path)
    if config_name == "vocab_top_frequent":  # (an export reads the fingerprint too)
        from peft_softprompt_ext import export_prompt_tuning

        export_prompt_tuning(model, tmp_path / "plain")
    loaded = peft.PeftModel.from_pretrained(common.tiny_model("llama")[0], tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, **tasks).logits, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config_name", ["vocab_top_frequent", "deep_vocab"])
@pytest.mark.parametrize("emptied", ["init_empty_weights", "cpu_offload"])
def test_a_prompt_built_on_embeddings_without_values_is_refused_saying_to_offload_after(config_name, emptied, tmp_path):
    """Found by a probe (2026-12-07): a model built under accelerate's init_empty_weights, or offloaded before the
    prompt was built, has its embeddings on the meta device; the build stopped in a bare "Cannot copy out of meta
    tensor" (plain PEFT builds, then fails at its first forward)."""
    import accelerate

    model, task_type = common.tiny_model("llama")
    if emptied == "init_empty_weights":
        with accelerate.init_empty_weights():
            model = type(model)(model.config)
    else:
        accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    refusal = r"LlamaForCausalLM's input embeddings are on the meta device .*build or load the prompt first, then offload"
    with pytest.raises(ValueError, match=refusal):
        peft.get_peft_model(model, common.conformance_config(config_name, task_type, "llama"))
    if emptied == "cpu_offload":  # (a review: loading a saved prompt, or a second one, failed in the fingerprint the same way)
        saved = str(tmp_path / "saved")
        peft.get_peft_model(common.tiny_model("llama")[0], common.conformance_config(config_name, task_type, "llama")).save_pretrained(saved)
        with pytest.raises(ValueError, match=refusal):
            peft.PeftModel.from_pretrained(model, saved)
        built = peft.get_peft_model(common.tiny_model("llama")[0], common.conformance_config(config_name, task_type, "llama"))
        accelerate.cpu_offload(built.get_base_model(), execution_device=torch.device("cpu"))
        with pytest.raises(ValueError, match=refusal):
            built.load_adapter(saved, adapter_name="second")


def _t5gemma(task_type: str):
    import transformers

    torch.manual_seed(0)
    sub = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
               vocab_size=common.VOCAB_SIZE, sliding_window=12, pad_token_id=0)  # fmt: skip
    config = transformers.T5GemmaConfig(encoder=dict(sub), decoder=dict(sub), vocab_size=common.VOCAB_SIZE, pad_token_id=0, bos_token_id=2,
                                        eos_token_id=3, dropout_rate=0.0, attention_dropout=0.0)  # fmt: skip
    return transformers.AutoModelForSeq2SeqLM.from_config(config).eval()


@pytest.mark.parametrize("model_name,config_name", [("t5", "vocab_uniform"), ("t5", "mixture_task"), ("t5gemma", "vocab_uniform")])
def test_a_left_padded_encoder_row_gets_what_it_gets_alone(model_name, config_name):
    """Found 2026-12-07 by a probe: an encoder counts positions over the padding (T5's relative buckets, T5Gemma's rotary
    positions and bidirectional sliding window), and a left-padded row kept its padding between the prompt and its
    tokens: T5Gemma 0.102 off the row alone (plain PEFT 0.054; Gemma's tokenizers pad on the left). Each row's leading
    padding now goes in front of the prompt, and the encoder's outputs come back in the caller's layout."""
    from transformers.modeling_outputs import BaseModelOutput

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    if model_name == "t5gemma":
        import transformers

        if not hasattr(transformers, "T5GemmaConfig"):
            pytest.skip(f"transformers {transformers.__version__} has no T5Gemma")
        model = peft.get_peft_model(_t5gemma("SEQ_2_SEQ_LM"), VocabSampledPromptTuningConfig(
            task_type="SEQ_2_SEQ_LM", num_virtual_tokens=5, vocab_sampling="uniform", seed=3, token_dim=32, num_layers=2,
            num_attention_heads=4))  # fmt: skip
    else:
        model = make_peft_model(model_name, config_name)[0]
    model = model.double()  # rows alone against a batch: float32 kernels differ by batch size at ~1e-5 (T5Gemma's rotary
    # tables stay float32: ~2e-7 here)
    batch = batch_for("t5", length=9, left_pad=True)  # row 0: 2 pads, then 7 tokens
    tasks = {"task_ids": torch.tensor([0, 0, 0])} if config_name.startswith("mixture") else {}
    decoder = torch.tensor([[0, 50, 60, 70]] * 3)
    with torch.no_grad():
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder, **tasks)
        alone = model(input_ids=batch["input_ids"][:1, 2:], decoder_input_ids=decoder[:1], **{k: v[:1] for k, v in tasks.items()})
        torch.testing.assert_close(padded.logits[:1], alone.logits, rtol=1e-6, atol=1e-6)
        real = torch.cat((torch.arange(5), torch.arange(7, 14)))  # the prompt's 5 slots and the row's 7 tokens
        torch.testing.assert_close(padded.encoder_last_hidden_state[0, real], alone.encoder_last_hidden_state[0], rtol=1e-6, atol=1e-6)
        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **tasks)
        torch.testing.assert_close(encoded.last_hidden_state, padded.encoder_last_hidden_state, rtol=1e-6, atol=1e-6)
        # a review found tuples (return_dict=False) and a returned cache's cross-attention in the run's order
        as_tuple = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=False, **tasks)
        torch.testing.assert_close(as_tuple[0], encoded.last_hidden_state, rtol=0, atol=0)
        first = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder[:, :3],
                      use_cache=True, **tasks)  # fmt: skip
        step = model(encoder_outputs=BaseModelOutput(first.encoder_last_hidden_state), attention_mask=batch["attention_mask"],
                     decoder_input_ids=decoder[:, 3:], **{common.CACHE_NAME: getattr(first, common.CACHE_NAME)}, **tasks)  # fmt: skip
        torch.testing.assert_close(step.logits[:, -1], padded.logits[:, 3], rtol=1e-6, atol=1e-6)
        greedy = dict(max_new_tokens=6, do_sample=False)
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **tasks, **greedy)
        generated_alone = model.generate(input_ids=batch["input_ids"][:1, 2:], **{k: v[:1] for k, v in tasks.items()}, **greedy)
    torch.testing.assert_close(generated[:1, : generated_alone.shape[1]], generated_alone, rtol=0, atol=0)


def test_an_encoder_with_absolute_positions_keeps_a_left_padded_rows_layout():
    """BART's learned positions count the padding whatever the prompt does: the review of the reorder above found it
    moving the prompt's positions there, mostly further from the row alone (BART 1.83-2.95 off against 1.73-1.90).
    Such encoders read [prompt; padding; tokens] as plain PEFT gives them."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=common.VOCAB_SIZE, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                                     pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)  # fmt: skip
    model = peft.get_peft_model(transformers.AutoModelForSeq2SeqLM.from_config(config).eval(), common.all_configs()["vocab_uniform"]("SEQ_2_SEQ_LM", "t5"))
    batch = batch_for("t5", length=9, left_pad=True)
    decoder = torch.tensor([[2, 50, 60, 70]] * 3)
    with torch.no_grad():
        prompt = model.prompt_encoder["default"](3)
        embeds = torch.cat((prompt, model.get_base_model().get_input_embeddings()(batch["input_ids"])), dim=1)
        mask = torch.cat((torch.ones(3, 5, dtype=torch.long), batch["attention_mask"]), dim=1)
        by_hand = model.get_base_model()(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder).logits
        torch.testing.assert_close(model(**batch_for("t5", length=9, left_pad=True) | {"labels": None}, decoder_input_ids=decoder).logits, by_hand,
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_encoders_with_a_position_table_are_told_from_relative_and_rotary_ones():
    """The seq2seq reorder above applies only to encoders without a position table; a review found ProphetNet's and a
    BERT encoder's tables (`position_embeddings`) missed when only `embed_positions` was looked for."""
    import transformers

    from peft_softprompt_ext.injection.seq2seq import _has_absolute_positions

    small = dict(vocab_size=common.VOCAB_SIZE, pad_token_id=0)
    bert = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, **small)
    models = {
        "t5": (common.tiny_model("t5")[0], False),
        "bart": (transformers.BartForConditionalGeneration(transformers.BartConfig(d_model=32, encoder_layers=1, decoder_layers=1, **small)), True),
        "prophetnet": (transformers.ProphetNetForConditionalGeneration(transformers.ProphetNetConfig(
            hidden_size=32, encoder_ffn_dim=64, decoder_ffn_dim=64, num_encoder_layers=1, num_decoder_layers=1, num_encoder_attention_heads=4,
            num_decoder_attention_heads=4, **small)), True),
        "bert2bert": (transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
            bert, transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, is_decoder=True,
                                         add_cross_attention=True, **small))), True),
    }  # fmt: skip
    if hasattr(transformers, "T5GemmaConfig"):
        models["t5gemma"] = (_t5gemma("SEQ_2_SEQ_LM"), False)
    assert {name: _has_absolute_positions(model) for name, (model, _) in models.items()} == {name: answer for name, (_, answer) in models.items()}


def _classifier_that_needs_input_ids(kind: str):
    """Encoder-decoder classifiers find their end-of-sequence token in input_ids and refuse inputs_embeds alone."""
    import transformers

    torch.manual_seed(0)
    if kind == "bart":
        return transformers.BartForSequenceClassification(transformers.BartConfig(
            vocab_size=common.VOCAB_SIZE, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=2)).eval()  # fmt: skip
    return transformers.T5ForSequenceClassification(transformers.T5Config(
        vocab_size=common.VOCAB_SIZE, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, num_labels=2, pad_token_id=0,
        eos_token_id=2, decoder_start_token_id=0)).eval()  # fmt: skip


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_a_prompt_of_input_rows_on_a_classifier_that_takes_no_inputs_embeds_is_refused_when_built(kind, tmp_path):
    """Found 2026-12-07 by a probe: a shallow prompt on BART's (and T5's) classifier built, then every forward failed with
    transformers' NotImplementedError for inputs_embeds (plain PEFT alike). Refused at the build now, naming the way out;
    a deep prompt (the input stays input_ids) still runs there."""
    from peft_softprompt_ext import DeepPromptTuningConfig, MixturePromptTuningConfig, VocabSampledPromptTuningConfig

    ids = torch.tensor([[5, 6, 7, 2]])
    refusal = rf"{type(_classifier_that_needs_input_ids(kind)).__name__} takes no inputs_embeds.*DeepPromptTuningConfig"
    with pytest.raises(ValueError, match=refusal):
        peft.get_peft_model(_classifier_that_needs_input_ids(kind), VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform"))
    plain = peft.get_peft_model(_classifier_that_needs_input_ids(kind), peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5))
    plain.save_pretrained(tmp_path / "plain")  # a bank of plain prompts of this model: a mixture of them is refused too
    with pytest.raises(ValueError, match=refusal):
        peft.get_peft_model(_classifier_that_needs_input_ids(kind), MixturePromptTuningConfig(
            task_type="SEQ_CLS", num_virtual_tokens=5, source_prompts=[str(tmp_path / "plain")], mixing="task"))  # fmt: skip
    if kind == "t5" and not common.T5_ROUTES_ATTENTION:
        return  # (deep prompts on T5 need transformers >= 5.15)
    subclass = type("MyClassifier", (type(_classifier_that_needs_input_ids(kind)),), {"forward": lambda self, *a, **k: super(subclass, self).forward(*a, **k)})
    with pytest.raises(ValueError, match=r"MyClassifier takes no inputs_embeds"):  # (a review: a subclass's forward was read alone)
        peft.get_peft_model(subclass(_classifier_that_needs_input_ids(kind).config), VocabSampledPromptTuningConfig(
            task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform"))  # fmt: skip
    def own_forward(self, input_ids=None, inputs_embeds=None, **kwargs):  # its own forward, calling another helper of super()
        return super(own, self).get_input_embeddings()
    own = type("OwnForward", (type(_classifier_that_needs_input_ids(kind)),), {"forward": own_forward})
    peft.get_peft_model(own(_classifier_that_needs_input_ids(kind).config), VocabSampledPromptTuningConfig(
        task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform"))  # fmt: skip (a second review: it was refused)
    deep = peft.get_peft_model(_classifier_that_needs_input_ids(kind), DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, deep_init="zero"))
    assert deep(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 2)



@pytest.mark.parametrize("model_name", ["gpt2", "t5", "bert"])
@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task"])
def test_arguments_given_by_position_mean_what_they_mean_to_peft(model_name, config_name):
    """Found 2026-12-07 by a probe: the forward wrapper handed PEFT's positional arguments on in its own order, so a
    classifier's labels (PEFT's 4th argument) were taken as task ids (no loss; a mixture routed rows by label) and a
    seq2seq call's decoder_input_ids as something else ("You must specify exactly one of input_ids or inputs_embeds")."""
    model, _ = make_peft_model(model_name, config_name)
    model.eval()
    batch = batch_for(model_name)
    fourth = {"t5": "decoder_input_ids"}.get(model_name, "labels")
    value = batch["labels"][:, :4] if model_name == "t5" else batch["labels"]
    with torch.no_grad():
        by_name = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **{fourth: value})
        by_position = model(batch["input_ids"], batch["attention_mask"], None, value)
    torch.testing.assert_close(by_position.logits, by_name.logits)
    if fourth == "labels":
        torch.testing.assert_close(by_position.loss, by_name.loss)


def test_roberta_given_its_own_position_ids_gives_the_logits_it_gives_without_them():
    """Found 2026-12-07 by a review: given position_ids, a shallow prompt's rows were put at table rows 0..P-1, where
    RoBERTa numbers tokens from padding_idx + 1 (row 1 is its padding row): 0.009 off on a logit scale of 0.01."""
    import transformers

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    torch.manual_seed(0)
    base = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
        vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, pad_token_id=1, num_labels=2)).eval()  # fmt: skip
    model = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform"))
    ids = torch.randint(5, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    own = (torch.arange(10) + 2)[None].expand(2, -1)  # what RoBERTa numbers an unpadded row
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=own).logits,
                                   model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits)  # fmt: skip


@pytest.mark.parametrize("model_name,config_name", [("bert", "vocab_uniform"), ("gpt2_cls", "vocab_uniform"), ("gpt2_cls", "deep"),
                                                    ("roberta", "vocab_uniform")])  # fmt: skip
def test_a_classifiers_given_positions_past_its_table_are_named(model_name, config_name):
    """Found 2026-12-07 by a probe: a SEQ_CLS forward never read the caller's position_ids, so positions that the prompt
    moves past the learned table failed inside torch (BERT: "index 256 is out of bounds"; GPT-2: "index out of range");
    the causal LM path names them. RoBERTa's given ids index its table as they are (its first rows unused for tokens);
    the message counts positions as the model numbers its tokens, from row 2."""
    import transformers

    from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig

    small = dict(vocab_size=common.VOCAB_SIZE, num_labels=2)
    if model_name == "bert":
        base, table = common.tiny_model("bert")[0], 256
    elif model_name == "roberta":
        table = 130
        base = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_position_embeddings=table,
            pad_token_id=1, **small)).eval()  # fmt: skip
    else:
        table = 256
        base = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_positions=table, n_embd=32, n_layer=1, n_head=4,
                                                                                  pad_token_id=0, **small)).eval()  # fmt: skip
    P = 5
    config = (DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="random") if config_name == "deep"
              else VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, vocab_sampling="uniform"))  # fmt: skip
    model = peft.get_peft_model(base, config)
    ids = torch.randint(6, 300, (2, 4), generator=torch.Generator().manual_seed(0))
    for last, fits in ((table - P - 1, True), (table - P, False)):
        positions = torch.arange(last - 3, last + 1).expand(2, -1)
        with torch.no_grad():
            if fits:
                model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions)
            else:
                usable = table - 2 if model_name == "roberta" else table  # (the message counts positions, RoBERTa's from row 2)
                with pytest.raises(ValueError, match=rf"this call needs position {usable}, but .* has a table of {usable} positions"):
                    model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions)
