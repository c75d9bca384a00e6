"""Adapters saved by an earlier release keep loading (tests/fixtures/make_saved_adapters.py made them
with commit 1309704): same logits, with the plugin and, from their vanilla/ copies, in plain PEFT."""

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import peft_softprompt_ext  # noqa: F401  (registers the plugin methods)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "saved_adapters"
EXPECTED = load_file(FIXTURES / "expected.safetensors")
BATCH = {"input_ids": EXPECTED["input_ids"], "attention_mask": EXPECTED["attention_mask"]}


def base():
    return AutoModelForCausalLM.from_pretrained(FIXTURES / "base").eval()


@pytest.mark.parametrize("name", ["vocab_sampled", "vocab_sampled_residual_mlp", "mixture_task"])
def test_an_adapter_saved_by_an_earlier_release_loads_with_the_same_logits(name):
    model = PeftModel.from_pretrained(base(), FIXTURES / name)
    with torch.no_grad():
        torch.testing.assert_close(model(**BATCH).logits, EXPECTED[f"logits.{name}"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["vocab_sampled", "vocab_sampled_residual_mlp", "mixture_task"])
def test_its_vanilla_copy_loads_in_plain_peft(name):
    plain = PeftModel.from_pretrained(base(), FIXTURES / name, subfolder="vanilla")
    unpadded = {"input_ids": BATCH["input_ids"][1:], "attention_mask": BATCH["attention_mask"][1:]}
    with torch.no_grad():
        torch.testing.assert_close(plain(**unpadded).logits, EXPECTED[f"logits.{name}"][1:], rtol=1e-5, atol=1e-4)
