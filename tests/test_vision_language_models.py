"""Soft prompts on vision-language models (LLaVA; Qwen2-VL's multi-axis rotary positions): the image features land
on the image tokens, and the text around them reads the prompt as in a text-only model (found 2026-12-07 by a probe)."""

import peft
import pytest
import torch
import transformers

from peft_softprompt_ext import VocabSampledPromptTuningConfig
from peft_softprompt_ext.init import usable_token_ids

VOCAB, IMAGE_TOKEN, P = 400, 399, 5


def tiny_llava():
    torch.manual_seed(0)
    text = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)  # fmt: skip
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                           image_size=28, patch_size=14)  # fmt: skip
    config = transformers.LlavaConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN, vision_feature_layer=-1)
    return transformers.LlavaForConditionalGeneration(config).eval()


def llava_batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, 4), IMAGE_TOKEN),
                     torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 3, 28, 28, generator=generator)}


def test_vocabulary_sampling_leaves_out_the_models_image_token():
    """The image placeholder id is a special id of the model's config: a prompt row sampled from it was taken by the
    model for one more image token ("Image features and image tokens do not match")."""
    model = tiny_llava()
    usable = usable_token_ids(VOCAB, None, model.config).tolist()
    assert IMAGE_TOKEN not in usable and 0 not in usable
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=88,
                                            shared_prefix="off")  # fmt: skip
    peft_model = peft.get_peft_model(model, config).eval()
    rows = peft_model.prompt_encoder["default"](1)[0]
    assert not (rows == peft_model.get_input_embeddings().weight[IMAGE_TOKEN]).all(-1).any()
    with torch.no_grad():
        peft_model(**llava_batch())
