"""What plain PEFT reproduces from a plugin adapter's `vanilla/` copy: each claim the model card and
README make (hub.PLAIN_PEFT_SCOPE), tested here, including the two places where it differs."""

import peft
import pytest
import torch
from peft import PeftModel

import testing_common as common
from peft_softprompt_ext.hub import PLAIN_PEFT_SCOPE


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request, tmp_path_factory):
    """(plugin model, plain PEFT model loaded from its vanilla/ copy, model name)."""
    folder = tmp_path_factory.mktemp(f"scope-{request.param}")
    plugin, _ = common.make_peft_model(request.param, "vocab_top_frequent")
    common.train_steps(plugin, common.batch_for(request.param), steps=2)
    plugin.save_pretrained(folder)
    plain = PeftModel.from_pretrained(common.tiny_model(request.param)[0], folder, subfolder="vanilla")
    assert plain.peft_config["default"].peft_type == peft.PeftType.PROMPT_TUNING
    return plugin, plain, request.param


def right_padded(model_name):
    batch = common.inference_batch(model_name)
    batch["attention_mask"][0, -2:] = 0
    return batch


def real_positions(logits, mask):
    return logits[:, -mask.shape[1] :][mask.bool()]


def test_the_card_states_the_scope():
    assert "unpadded and right-padded" in PLAIN_PEFT_SCOPE[0] and "left padding" in PLAIN_PEFT_SCOPE[1]


def test_plain_peft_gives_equal_logits_unpadded_and_right_padded(pair):
    plugin, plain, model_name = pair
    unpadded = common.inference_batch(model_name)
    torch.testing.assert_close(common.forward_logits(plain, unpadded), common.forward_logits(plugin, unpadded), rtol=1e-5, atol=1e-5)
    batch = right_padded(model_name)
    mask = batch["attention_mask"]
    torch.testing.assert_close(real_positions(common.forward_logits(plain, batch), mask),
                               real_positions(common.forward_logits(plugin, batch), mask), rtol=1e-5, atol=1e-5)  # fmt: skip


def test_plain_peft_puts_the_prompt_in_front_of_left_padding(pair):
    plugin, plain, model_name = pair
    batch = common.inference_batch(model_name, left_pad=True)
    mask = batch["attention_mask"]
    difference = (real_positions(common.forward_logits(plain, batch), mask) - real_positions(common.forward_logits(plugin, batch), mask))
    assert difference.abs().max() > 1e-2  # positions differ for the padded row: documented, not hidden


def test_plain_peft_greedy_tokens_equal_unpadded(pair):
    plugin, plain, model_name = pair
    batch = common.inference_batch(model_name)
    kwargs = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)
    with torch.no_grad():
        expected = plugin.generate(**batch, **kwargs)
        torch.testing.assert_close(plain.generate(**batch, use_cache=False, **kwargs), expected, rtol=0, atol=0)
        cached = plain.generate(**batch, use_cache=True, **kwargs)
    if common.CACHE_NAME == "past_key_values":  # transformers < 5.24: PEFT 0.21 finds the cache
        torch.testing.assert_close(cached, expected, rtol=0, atol=0)
    else:  # transformers >= 5.24: PEFT 0.21 re-feeds the prompt at every step (README: use_cache=False)
        assert not torch.equal(cached, expected)
