"""Soft prompts on vision-language models (LLaVA; Qwen2-VL's multi-axis rotary positions): the image features land
on the image tokens, and the text around them reads the prompt as in a text-only model (found 2026-12-07 by a probe)."""

import inspect

import peft
import pytest
import torch
import transformers

from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig
from peft_softprompt_ext.init import usable_token_ids
from testing_common import prompted, sampled_prompt_ids

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


def tiny_qwen2_vl():
    torch.manual_seed(0)
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=256, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2)  # fmt: skip
    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN, video_token_id=VOCAB - 2,
                                        vision_start_token_id=VOCAB - 3, vision_end_token_id=VOCAB - 4)  # fmt: skip
    return transformers.Qwen2VLForConditionalGeneration(config).eval()


def qwen2_vl_batch(in_front=None):
    """Text, an image of 4 merged patches (grid 1 x 4 x 4), text; `in_front` [B, P]: text ids put before it."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, 1), VOCAB - 3), torch.full((2, 4), IMAGE_TOKEN),
                     torch.full((2, 1), VOCAB - 4), torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(32, 1176, generator=generator),
             "image_grid_thw": torch.tensor([[1, 4, 4]] * 2)}  # fmt: skip
    if "mm_token_type_ids" in inspect.signature(transformers.Qwen2VLForConditionalGeneration.forward).parameters:  # (transformers 5.23; 5.0 finds them by id)
        batch["mm_token_type_ids"] = (ids == IMAGE_TOKEN).int()
    return batch


def qwen2_vl_prompt(kind: str, shared_prefix: str = "auto"):
    return prompted(tiny_qwen2_vl, kind, shared_prefix)


@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("shallow", "off"), ("deep", "auto")])
def test_prompts_on_qwen2_vl_take_its_multi_axis_positions(kind, shared_prefix):
    """Qwen2-VL numbers an image's tokens on three axes (M-RoPE), from the input ids: a prompted call ran every token on
    one axis (7.0 off on a logit scale of 6.7; plain PEFT alike), and given such positions it failed off the shared
    prefix. The prompt must read as text tokens in front: the base model on [the sampled tokens; the input]."""
    peft_model = qwen2_vl_prompt(kind, shared_prefix)
    in_front = sampled_prompt_ids(qwen2_vl_prompt("shallow"))  # (a deep prompt sampled with the same seed: those tokens' keys/values)
    with torch.no_grad():
        expected = tiny_qwen2_vl()(**qwen2_vl_batch(in_front)).logits[:, P:]
        batch = qwen2_vl_batch()
        logits = peft_model(**batch).logits
        given = peft_model.get_base_model().model.get_rope_index(**{name: batch[name] for name in ("input_ids", "image_grid_thw",
                "attention_mask", "mm_token_type_ids") if name in batch})[0]  # fmt: skip
        logits_given = peft_model(**batch, position_ids=given).logits
    for got in (logits, logits_given):
        torch.testing.assert_close(got[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_generate_on_qwen2_vl_with_and_without_the_cache_gives_the_prompted_base_models_tokens(kind):
    peft_model = qwen2_vl_prompt(kind, "off")
    in_front = sampled_prompt_ids(qwen2_vl_prompt("shallow"))
    with torch.no_grad():
        expected = tiny_qwen2_vl().generate(**qwen2_vl_batch(in_front), max_new_tokens=4, do_sample=False)[:, -4:]
        for use_cache in (True, False):
            tokens = peft_model.generate(**qwen2_vl_batch(), max_new_tokens=4, do_sample=False, use_cache=use_cache)[:, -4:]
            assert tokens.tolist() == expected.tolist(), f"use_cache={use_cache}"


@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("shallow", "off"), ("deep", "auto")])
def test_a_left_padded_row_on_qwen2_vl_reads_as_the_row_alone(kind, shared_prefix):
    peft_model = qwen2_vl_prompt(kind, shared_prefix)
    batch = qwen2_vl_batch()
    alone = {name: value[:1] if name != "pixel_values" else value[:16] for name, value in batch.items()}
    padded = dict(batch, input_ids=torch.cat((torch.zeros(2, 2, dtype=torch.long), batch["input_ids"]), dim=1))
    padded["attention_mask"] = torch.cat((torch.tensor([[0, 0], [1, 1]]), batch["attention_mask"]), dim=1)
    padded["input_ids"][1, :2] = torch.tensor([7, 8])
    if "mm_token_type_ids" in batch:
        padded["mm_token_type_ids"] = (padded["input_ids"] == IMAGE_TOKEN).int()
    with torch.no_grad():
        expected = peft_model(**alone).logits[0, -5:]
        got = peft_model(**padded).logits[0, -5:]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def tiny_mllama():
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig

    torch.manual_seed(0)
    text = MllamaTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1,
                                         eos_token_id=2, cross_attention_layers=[1])  # fmt: skip
    vision = MllamaVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                                             attention_heads=4, vision_output_dim=64, image_size=28, patch_size=14, max_num_tiles=2,
                                             intermediate_layers_indices=[0], supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])  # fmt: skip
    model = transformers.MllamaForConditionalGeneration(transformers.MllamaConfig(text_config=text, vision_config=vision,
                                                                                  image_token_index=IMAGE_TOKEN)).eval()  # fmt: skip
    model.generation_config.eos_token_id = None
    with torch.no_grad():  # (initialised at 0, its cross-attention layers would leave the text as it is)
        for name, parameter in model.named_parameters():
            if "cross_attn_attn_gate" in name or "cross_attn_mlp_gate" in name:
                parameter.fill_(1.0)
    return model


def mllama_batch(in_front=None):
    """Two text tokens, the image token, five text tokens (which see the image: cross_attention_mask [B, L, 1, 2])."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 2), generator=generator), torch.full((2, 1), IMAGE_TOKEN),
                     torch.randint(6, 300, (2, 5), generator=generator)], dim=1)  # fmt: skip
    cross = torch.zeros(2, 8, 1, 2, dtype=torch.long)
    cross[:, 2:] = 1
    if in_front is not None:
        ids, cross = torch.cat((in_front, ids), dim=1), torch.cat((torch.zeros(2, in_front.shape[1], 1, 2, dtype=torch.long), cross), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 1, 2, 3, 28, 28, generator=generator),
            "aspect_ratio_ids": torch.tensor([[1], [1]]), "aspect_ratio_mask": torch.ones(2, 1, 2, dtype=torch.long),
            "cross_attention_mask": cross}  # fmt: skip


def mllama_prompt(kind: str, shared_prefix: str = "auto"):
    return prompted(tiny_mllama, kind, shared_prefix)


@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("shallow", "off"), ("deep", "auto")])
def test_a_prompt_on_mllama_sees_no_image_as_text_in_front_of_it(kind, shared_prefix):
    """Mllama's cross_attention_mask has a row per token: the prompt's rows went in without theirs (a crash in its
    cross-attention off the shared prefix, and in uncached generate). They see no image, as text in front of one."""
    peft_model = mllama_prompt(kind, shared_prefix)
    in_front = sampled_prompt_ids(mllama_prompt("shallow"))
    with torch.no_grad():
        expected = tiny_mllama()(**mllama_batch(in_front)).logits[:, P:]
        for switches in ({}, {"output_attentions": True}):
            logits = peft_model(**mllama_batch(), **switches).logits
            torch.testing.assert_close(logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
        tokens = tiny_mllama().generate(**mllama_batch(in_front), max_new_tokens=3, do_sample=False)[:, -3:]
        for use_cache in (True, False):
            got = peft_model.generate(**mllama_batch(), max_new_tokens=3, do_sample=False, use_cache=use_cache)[:, -3:]
            assert got.tolist() == tokens.tolist(), f"use_cache={use_cache}"


def tiny_paligemma():
    torch.manual_seed(0)
    text = transformers.GemmaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    num_key_value_heads=1, head_dim=32, max_position_embeddings=256, pad_token_id=0,
                                    initializer_range=0.3)  # fmt: skip
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                             image_size=28, patch_size=14)  # fmt: skip
    config = transformers.PaliGemmaConfig(text_config=text, vision_config=vision, image_token_index=IMAGE_TOKEN, projection_dim=64,
                                          hidden_size=64, vocab_size=VOCAB)  # fmt: skip
    return transformers.PaliGemmaForConditionalGeneration(config).eval()


def paligemma_batch(in_front=None):
    """Four image tokens, BOS and five text tokens; the last two are the suffix (type 1), the rest the prefix."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.full((2, 4), IMAGE_TOKEN), torch.full((2, 1), 2), torch.randint(6, 300, (2, 5), generator=generator)], dim=1)
    types = torch.zeros_like(ids)
    types[:, -2:] = 1
    if in_front is not None:
        ids, types = torch.cat((in_front, ids), dim=1), torch.cat((torch.zeros_like(in_front), types), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": types,
            "pixel_values": torch.randn(2, 3, 28, 28, generator=generator)}  # fmt: skip


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_prompt_on_paligemma_reads_as_text_in_front_and_its_generate_is_refused(kind):
    """PaliGemma numbers positions from 1 in generate and builds its prefix block (image and prefix text attend both
    ways) only at generate's first step: a prompted generate disagreed with the same model's forward from its first
    token (4.8 off on a logit scale of 7.6; found 2026-12-07 by a probe). Forward (training, scoring) is exact; generate
    is refused, naming the model."""
    if kind == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="zero")
    else:
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3)
    peft_model = peft.get_peft_model(tiny_paligemma(), config).eval()
    with torch.no_grad():
        logits = peft_model(**paligemma_batch()).logits
        if kind == "shallow":
            in_front = sampled_prompt_ids(peft_model)
            expected = tiny_paligemma()(**paligemma_batch(in_front)).logits[:, P:]
            torch.testing.assert_close(logits[:, P:], expected, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match="PaliGemmaForConditionalGeneration numbers its positions from 1 in generate"):
            peft_model.generate(**paligemma_batch(), max_new_tokens=2)


@pytest.mark.parametrize("with_mask", [True, False])
@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_forward_continuing_a_cache_on_qwen2_vl_numbers_its_tokens_as_generate_does(kind, with_mask):
    """A decoding loop of forward calls: the text after an image is numbered past the image's positions, as the model
    keeps them (`rope_deltas`) from the first call; a continuation was numbered by the mask alone (5.9 off generate's
    second step on a logit scale of 5.8), a deep prompt's without a mask by the cache length alone (a review: 5.9)."""
    peft_model = qwen2_vl_prompt(kind, "off")
    batch = qwen2_vl_batch()
    with torch.no_grad():
        generated = peft_model.generate(**batch, max_new_tokens=2, do_sample=False, output_logits=True, return_dict_in_generate=True)
        if not with_mask:
            del batch["attention_mask"]
        first = peft_model(**batch, use_cache=True)
        token = first.logits[:, -1].argmax(-1, keepdim=True)
        mask = {"attention_mask": torch.ones(2, batch["input_ids"].shape[1] + 1, dtype=torch.long)} if with_mask else {}
        second = peft_model(input_ids=token, past_key_values=first.past_key_values, **mask)
    torch.testing.assert_close(first.logits[:, -1], generated.logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(second.logits[:, -1], generated.logits[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("shallow", "off"), ("deep", "auto")])
def test_a_forward_continuing_a_cache_on_mllama_takes_the_whole_cross_attention_mask(kind, shared_prefix):
    """transformers 5.23's Mllama takes a continuation's cross_attention_mask for every token so far, and reads the rows
    at the cache's positions, which hold the prompt's (a review: its rows came out empty, a crash)."""
    peft_model, base = mllama_prompt(kind, shared_prefix), tiny_mllama()
    in_front = sampled_prompt_ids(mllama_prompt("shallow"))
    prompted, batch = mllama_batch(in_front), mllama_batch()
    with torch.no_grad():
        first, first_base = peft_model(**batch, use_cache=True), base(**prompted, use_cache=True)
        torch.testing.assert_close(first.logits[:, -1], first_base.logits[:, -1], atol=1e-4, rtol=1e-4)
        token = first_base.logits[:, -1].argmax(-1, keepdim=True)

        def next_step(model, inputs, cache):
            cross = torch.cat((inputs["cross_attention_mask"], inputs["cross_attention_mask"][:, -1:]), dim=1)
            mask = torch.cat((inputs["attention_mask"], torch.ones_like(token)), dim=1)
            return model(input_ids=token, attention_mask=mask, cross_attention_mask=cross, past_key_values=cache).logits[:, -1]

        try:
            expected = next_step(base, prompted, first_base.past_key_values)
        except RuntimeError:
            pytest.skip("this transformers' Mllama takes a continuation's cross_attention_mask for the fed tokens only")
        torch.testing.assert_close(next_step(peft_model, batch, first.past_key_values), expected, atol=1e-4, rtol=1e-4)


def test_qwen2_vl_without_the_image_token_types_is_refused_naming_them():
    """transformers 5.23's Qwen2-VL needs mm_token_type_ids to number an image's tokens: the model's own error said so,
    a prompted call failed with a TypeError from inside (a review)."""
    rope_index = inspect.signature(transformers.models.qwen2_vl.modeling_qwen2_vl.Qwen2VLModel.get_rope_index).parameters
    if "mm_token_type_ids" not in rope_index:
        pytest.skip("this transformers finds the image tokens by their id")
    batch = qwen2_vl_batch()
    del batch["mm_token_type_ids"]
    with pytest.raises(ValueError, match="mm_token_type_ids"):
        qwen2_vl_prompt("shallow")(**batch)


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_left_padded_decoding_loop_on_qwen2_vl_reads_as_the_row_alone(kind):
    """The offset of the text after an image counts a row's real tokens, not its padding (transformers 5.0's
    `rope_deltas` counts the padding too: a second review found the padded row's next steps 4.8 off the row alone)."""
    batch = qwen2_vl_batch()
    alone = {name: value[:1] if name != "pixel_values" else value[:16] for name, value in batch.items()}
    padded = dict(batch, input_ids=torch.cat((torch.tensor([[0, 0], [7, 8]]), batch["input_ids"]), dim=1))
    padded["attention_mask"] = torch.cat((torch.tensor([[0, 0], [1, 1]]), batch["attention_mask"]), dim=1)
    if "mm_token_type_ids" in batch:
        padded["mm_token_type_ids"] = (padded["input_ids"] == IMAGE_TOKEN).int()
    steps = []
    with torch.no_grad():
        for inputs in (padded, alone):
            peft_model, mask, logits = qwen2_vl_prompt(kind, "off"), inputs["attention_mask"], []
            token = torch.full((mask.shape[0], 1), 42)
            output = peft_model(**inputs, use_cache=True)
            for _ in range(2):
                mask = torch.cat((mask, torch.ones_like(token)), dim=1)
                output = peft_model(input_ids=token, attention_mask=mask, past_key_values=output.past_key_values)
                logits.append(output.logits[0, -1])
            steps.append(torch.stack(logits))
    torch.testing.assert_close(steps[0], steps[1], atol=1e-4, rtol=1e-4)


def test_a_text_only_call_on_qwen2_vl_without_a_mask_runs():
    """transformers 5.0's Qwen2-VL, given no positions, asks input_ids for them, which a prompted call has not (a second
    review: an AttributeError from inside)."""
    ids = torch.randint(6, 300, (2, 7), generator=torch.Generator().manual_seed(5))
    peft_model = qwen2_vl_prompt("shallow", "off")
    with torch.no_grad():
        expected = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        torch.testing.assert_close(peft_model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_forward_continuing_generates_cache_on_qwen2_vl_numbers_its_tokens_as_generate_does(kind):
    """A cache generate returned, continued by forward calls: generate keeps the offset of the text after the image too
    (found 2026-12-07 in the last read: 5.0 off generate's next step)."""
    batch = qwen2_vl_batch()
    with torch.no_grad():
        expected = qwen2_vl_prompt(kind, "off").generate(**batch, max_new_tokens=3, do_sample=False, output_logits=True,
                                                         return_dict_in_generate=True).logits[2]  # fmt: skip
        peft_model = qwen2_vl_prompt(kind, "off")
        output = peft_model.generate(**batch, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
        mask = torch.ones_like(output.sequences)
        logits = peft_model(input_ids=output.sequences[:, -1:], attention_mask=mask, past_key_values=output.past_key_values).logits
    torch.testing.assert_close(logits[:, -1], expected, atol=1e-4, rtol=1e-4)


ERNIE_IMAGE_START, ERNIE_IMAGE_END = VOCAB - 3, VOCAB - 4


def tiny_ernie_vl():
    """Ernie-4.5-VL: a mixture of experts whose layers route each token by `moe_mm_token_type_ids` (image tokens and
    their start and end to the vision experts)."""
    torch.manual_seed(0)
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "mrope_section": [3, 3, 2], "rope_theta": 10000.0}, moe_intermediate_size=[32, 32],
                moe_k=2, moe_num_experts=4, moe_num_shared_experts=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=14, spatial_merge_size=2, temporal_merge_size=2)
    config = transformers.Ernie4_5_VLMoeConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN, video_token_id=VOCAB - 2,
                                               image_start_token_id=ERNIE_IMAGE_START, image_end_token_id=ERNIE_IMAGE_END,
                                               video_start_token_id=VOCAB - 5, video_end_token_id=VOCAB - 6)  # fmt: skip
    return transformers.Ernie4_5_VLMoeForConditionalGeneration(config).eval()


def ernie_vl_batch(in_front=None):
    """Text, an image (start, 4 merged patches, end), text, with the token types Ernie's processor returns."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, 1), ERNIE_IMAGE_START),
                     torch.full((2, 4), IMAGE_TOKEN), torch.full((2, 1), ERNIE_IMAGE_END),
                     torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    image = (ids == IMAGE_TOKEN) | (ids == ERNIE_IMAGE_START) | (ids == ERNIE_IMAGE_END)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(32, 3 * 14 * 14, generator=generator),
            "image_grid_thw": torch.tensor([[1, 4, 4]] * 2), "mm_token_type_ids": (ids == IMAGE_TOKEN).int(),
            "moe_mm_token_type_ids": image.int()}  # fmt: skip


@pytest.mark.skipif(not hasattr(transformers, "Ernie4_5_VLMoeConfig"), reason="transformers without Ernie-4.5-VL")
@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("shallow", "off"), ("deep", "auto")])
def test_a_prompt_on_ernie_vl_goes_to_the_text_experts(kind, shared_prefix):
    """Ernie-4.5-VL routes each token to text or vision experts by `moe_mm_token_type_ids`, one per token: a prompt
    joined in front of the input left them a row per input token (an IndexError in the experts off the shared prefix:
    with output_router_logits, output_attentions, gradient checkpointing; found 2026-12-07 by a probe; plain PEFT fails
    the same way on every call). The prompt's rows are text, as text ids in front of the input."""
    peft_model = prompted(tiny_ernie_vl, kind, shared_prefix)
    in_front = sampled_prompt_ids(prompted(tiny_ernie_vl, "shallow"))
    with torch.no_grad():
        expected = tiny_ernie_vl()(**ernie_vl_batch(in_front)).logits[:, P:]
        for switches in ({}, {"output_router_logits": True}, {"output_attentions": True}):
            logits = peft_model(**ernie_vl_batch(), **switches).logits
            torch.testing.assert_close(logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4, msg=str(switches))
        tokens = tiny_ernie_vl().generate(**ernie_vl_batch(in_front), max_new_tokens=3, do_sample=False)[:, -3:]
        assert peft_model.generate(**ernie_vl_batch(), max_new_tokens=3, do_sample=False)[:, -3:].tolist() == tokens.tolist()
    peft_model.train()
    peft_model.get_base_model().gradient_checkpointing_enable()
    batch = ernie_vl_batch()
    peft_model(**batch, labels=batch["input_ids"]).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in peft_model.parameters() if p.requires_grad)


def test_paligemma_is_the_only_family_whose_generate_numbers_positions_from_one():
    """`refuse_generate_numbering_from_one` names PaliGemma: the one model whose generate adds 1 to the positions it
    prepares (transformers 5.0 and 5.23, by a scan of every modeling file). A release that adds another family fails
    here, so that family's generate is examined before it runs with a prompt."""
    import pathlib
    import re

    pattern = re.compile(r'\["position_ids"\]\s*(\+=\s*1|=\s*model_inputs\["position_ids"\]\s*\+\s*1)')
    models = pathlib.Path(transformers.__file__).parent / "models"
    found = {path.parent.name for path in models.glob("*/modeling_*.py") if pattern.search(path.read_text(encoding="utf-8"))}
    assert found == {"paligemma"}


KOSMOS_IMAGE_TOKENS, KOSMOS_BOI, KOSMOS_EOI = 4, VOCAB - 2, VOCAB - 3
KOSMOS_COUNTS = dict(num_layers=2, token_dim=32, num_attention_heads=4)  # (Kosmos-2's config names them as PEFT does not look for)


def tiny_kosmos2():
    torch.manual_seed(0)
    text = dict(vocab_size=VOCAB, embed_dim=32, layers=2, attention_heads=4, ffn_dim=64, max_position_embeddings=128, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, init_std=0.3)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28, patch_size=14)
    config = transformers.Kosmos2Config(text_config=text, vision_config=vision, latent_query_num=KOSMOS_IMAGE_TOKENS)
    return transformers.Kosmos2ForConditionalGeneration(config).eval()


def kosmos_text(generator, text_tokens: int, in_front=None):
    """Kosmos-2's and 2.5's ids [2, L]: <s>, the image's start, 4 image slots, its end, text; `in_front` [2, P]: text ids
    put before them; and `image_embeds_position_mask`, which marks the image slots."""
    ids = torch.cat([torch.zeros(2, 1, dtype=torch.long), torch.full((2, 1), KOSMOS_BOI), torch.full((2, KOSMOS_IMAGE_TOKENS), 5),
                     torch.full((2, 1), KOSMOS_EOI), torch.randint(6, 300, (2, text_tokens), generator=generator)], dim=1)  # fmt: skip
    slots = torch.zeros_like(ids)
    slots[:, 2 : 2 + KOSMOS_IMAGE_TOKENS] = 1
    if in_front is not None:
        ids, slots = torch.cat((in_front, ids), dim=1), torch.cat((torch.zeros_like(in_front), slots), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "image_embeds_position_mask": slots}


def kosmos2_batch(in_front=None):
    generator = torch.Generator().manual_seed(1)
    text = kosmos_text(generator, 5, in_front)
    return {**text, "pixel_values": torch.randn(2, 3, 28, 28, generator=generator)}


@pytest.mark.parametrize("shared_prefix", ["auto", "off"])
def test_a_prompt_on_kosmos2_leaves_the_image_in_its_slots_and_its_generate_is_refused(shared_prefix):
    """Kosmos-2 marks its image's slots with `image_embeds_position_mask`, one entry per token: a prompt in front left
    it a row per input token (an IndexError off the shared prefix; plain PEFT alike), and the shared prefix ran the
    prompt alone, which Kosmos-2 refuses without an image (found 2026-12-07 by a probe). Its generate hands the input
    to its text model's generate, which the prompt never reached (the unprompted tokens, without a word): refused.
    A deep prompt, whose set-up runs a text alone, is refused saying so."""
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                            shared_prefix=shared_prefix, **KOSMOS_COUNTS)  # fmt: skip
    peft_model = peft.get_peft_model(tiny_kosmos2(), config).eval()
    with torch.no_grad():
        expected = tiny_kosmos2()(**kosmos2_batch(sampled_prompt_ids(peft_model))).logits[:, P:]
        torch.testing.assert_close(peft_model(**kosmos2_batch()).logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match=r"Kosmos2ForConditionalGeneration.generate hands its input to self.text_model.generate"):
            peft_model.generate(**kosmos2_batch(), max_new_tokens=3)
    deep = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", **KOSMOS_COUNTS)
    with pytest.raises(ValueError, match=r"Kosmos2ForConditionalGeneration does not run a text of 3 tokens alone"):
        peft.get_peft_model(tiny_kosmos2(), deep)


def tiny_idefics():
    torch.manual_seed(0)
    vision = dict(embed_dim=32, image_size=28, patch_size=14, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    config = transformers.IdeficsConfig(vocab_size=VOCAB, additional_vocab_size=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, alpha_initializer="ones", alpha_type="float", initializer_range=0.2,
                                        vision_config=vision, use_resampler=False, cross_layer_interval=1, pad_token_id=0)  # fmt: skip
    return transformers.IdeficsForVisionText2Text(config).eval()


def idefics_batch(in_front=None):
    """Text, the image token, text; `image_attention_mask` [B, L, 1]: the tokens from the image on see it."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 2), generator=generator), torch.full((2, 1), IMAGE_TOKEN),
                     torch.randint(6, 300, (2, 5), generator=generator)], dim=1)  # fmt: skip
    sees = torch.zeros(2, ids.shape[1], 1, dtype=torch.long)
    sees[:, 2:] = 1
    if in_front is not None:
        ids, sees = torch.cat((in_front, ids), dim=1), torch.cat((torch.zeros(2, in_front.shape[1], 1, dtype=torch.long), sees), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 1, 3, 28, 28, generator=generator),
            "image_attention_mask": sees}  # fmt: skip


@pytest.mark.parametrize("shared_prefix", ["auto", "off"])
def test_a_prompt_on_idefics_sees_no_image_as_text_in_front_of_it(shared_prefix):
    """Idefics' `image_attention_mask` has a row per token: the prompt's rows went in without theirs (a size error in
    its cross-attention off the shared prefix; plain PEFT alike), and the shared prefix ran the prompt alone, which
    Idefics refuses without an image (found 2026-12-07 by a probe). The prompt's rows see no image."""
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                            shared_prefix=shared_prefix)  # fmt: skip
    peft_model = peft.get_peft_model(tiny_idefics(), config).eval()
    with torch.no_grad():
        expected = tiny_idefics()(**idefics_batch(sampled_prompt_ids(peft_model))).logits[:, P:]
        torch.testing.assert_close(peft_model(**idefics_batch()).logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"IdeficsForVisionText2Text does not run a text of 3 tokens alone"):
        peft.get_peft_model(tiny_idefics(), DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random"))


def test_blip2_whose_forward_requires_input_ids_is_refused_saying_so():
    """BLIP-2's forward requires input_ids and builds its input from them; a soft prompt's rows go in as inputs_embeds
    (found 2026-12-07 by a probe: transformers' own TypeError; its generate, handed to the language model's, ignored
    the prompt without a word). A deep prompt, whose set-up runs a text alone, is refused: BLIP-2 wants an image."""
    torch.manual_seed(0)
    text = transformers.OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32,
                                  max_position_embeddings=128, pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28, patch_size=14)
    qformer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, encoder_hidden_size=32, vocab_size=100)
    config = transformers.Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(), num_query_tokens=4, image_token_id=IMAGE_TOKEN)
    with pytest.raises(ValueError, match=r"Blip2ForConditionalGeneration takes no inputs_embeds without input_ids"):
        peft.get_peft_model(transformers.Blip2ForConditionalGeneration(config).eval(),
                            VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform"))  # fmt: skip
    with pytest.raises(ValueError, match=r"Blip2ForConditionalGeneration does not run a text of 3 tokens alone"):
        peft.get_peft_model(transformers.Blip2ForConditionalGeneration(config).eval(),
                            DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random"))  # fmt: skip


def tiny_git():
    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28, patch_size=14)
    config = transformers.GitConfig(vision_config=vision, vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2)  # fmt: skip
    return transformers.GitForCausalLM(config).eval()


def test_a_prompt_on_git_follows_the_image_features_git_puts_in_front():
    """GIT puts its image features in front of the text inside its forward: the shared prefix, the prompt run alone
    before the call, put the prompt in front of them instead of between them and the text (2.6 off the prompt fed by
    hand on a logit scale of 4.6; found 2026-12-07 by a probe). The call takes the standard path, and so do later ones;
    shared_prefix="on" is refused, naming why."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.ones(2, 1, dtype=torch.long), torch.randint(6, 300, (2, 6), generator=generator)], dim=1)
    pixels = torch.randn(2, 3, 28, 28, generator=generator)
    config = lambda mode: VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                                         shared_prefix=mode)  # fmt: skip
    peft_model = peft.get_peft_model(tiny_git(), config("auto")).eval()
    with torch.no_grad():
        expected = tiny_git()(input_ids=torch.cat((sampled_prompt_ids(peft_model), ids), dim=1), pixel_values=pixels).logits[:, -ids.shape[1]:]
        for switches in ({}, {}, {"output_attentions": True}):
            torch.testing.assert_close(peft_model(input_ids=ids, pixel_values=pixels, **switches).logits[:, -ids.shape[1]:], expected,
                                       atol=1e-4, rtol=1e-4)  # fmt: skip
        # (transformers 5.0's GIT does not run the prompt's rows alone at all: refused at the build's check)
        with pytest.raises(ValueError, match=r"shared_prefix='on' but .*GitForCausalLM (puts \d+ rows of its own in front|does not run)"):
            peft.get_peft_model(tiny_git(), config("on")).eval()(input_ids=ids, pixel_values=pixels)


def tiny_llama4():
    torch.manual_seed(0)
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, intermediate_size_mlp=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, num_local_experts=2, pad_token_id=0, attention_chunk_size=64, initializer_range=0.2,
                no_rope_layers=[1, 1])  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, image_size=56, patch_size=14,
                  vision_output_dim=32, projector_input_dim=32, projector_output_dim=32, initializer_range=0.2)  # fmt: skip
    config = transformers.Llama4Config(text_config=text, vision_config=vision, image_token_index=IMAGE_TOKEN, boi_token_index=VOCAB - 2,
                                       eoi_token_index=VOCAB - 3)  # fmt: skip
    config.pad_token_id = None  # (transformers 5.0 reads it at the build)
    model = transformers.Llama4ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None
    return model


def llama4_batch(in_front=None):
    """Text, an image of 4 tokens (56 x 56 in 14 x 14 patches, pixel-shuffled), text; `in_front` [2, P]: ids before it."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, 4), IMAGE_TOKEN),
                     torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 3, 56, 56, generator=generator)}


def test_a_shallow_prompt_on_llama4_with_an_image_is_refused_in_the_plugins_words():
    """Llama 4 refuses `pixel_values` beside `inputs_embeds`: every prompted forward with an image failed in transformers'
    words ("You cannot specify both pixel_values and inputs_embeds"; found 2026-12-07 by a probe; plain PEFT fails too),
    and a shallow prompt's rows join the input's there (its chunked attention keeps the shared prefix off). Refused
    saying why; text alone runs. (Deep prompts: refused at the build for its chunked attention.)"""
    refusal = r"(?s)Llama4ForConditionalGeneration refuses this call's pixel_values beside inputs_embeds \(ValueError: You cannot.*LoRA"
    encodes_first = "mm_encoder_outputs" in inspect.signature(transformers.Llama4ForConditionalGeneration.forward).parameters
    try:
        with torch.no_grad():
            tiny_llama4()(**llama4_batch())
    except AttributeError as error:  # (transformers 5.0: 'BaseModelOutput' object has no attribute 'pooler_output')
        pytest.skip(f"this transformers' Llama 4 fails on an image itself: {error}")
    for shared_prefix in ("auto", "off"):  # (its chunked attention layers keep the shared prefix off)
        peft_model = prompted(tiny_llama4, "shallow", shared_prefix)
        in_front = sampled_prompt_ids(peft_model)
        with torch.no_grad(), pytest.raises(ValueError, match=refusal):
            peft_model(**llama4_batch())
        with torch.no_grad():
            if encodes_first:  # (transformers 5.23's generate encodes the image first and hands its features over beside the rows)
                expected = tiny_llama4().generate(**llama4_batch(in_front), max_new_tokens=2, do_sample=False)[:, -2:]
                assert peft_model.generate(**llama4_batch(), max_new_tokens=2, do_sample=False)[:, -2:].tolist() == expected.tolist()
            else:
                with pytest.raises(ValueError, match=refusal):
                    peft_model.generate(**llama4_batch(), max_new_tokens=2)
    batch = {name: llama4_batch()[name] for name in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expected = tiny_llama4()(**{name: llama4_batch(in_front)[name] for name in batch}).logits[:, P:]
        torch.testing.assert_close(peft_model(**batch).logits[:, P:], expected, atol=1e-4, rtol=1e-4)  # text alone still runs


def tiny_kosmos2_5():
    torch.manual_seed(0)
    text = dict(vocab_size=VOCAB, embed_dim=32, layers=2, attention_heads=4, ffn_dim=64, max_position_embeddings=128, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, dropout=0.0)  # fmt: skip
    vision = dict(hidden_size=32, patch_embed_hidden_size=12, intermediate_size=64, head_dim=8, num_hidden_layers=1, num_attention_heads=4,
                  max_num_patches=16)  # fmt: skip
    config = transformers.Kosmos2_5Config(text_config=text, vision_config=vision, latent_query_num=KOSMOS_IMAGE_TOKENS)
    model = transformers.Kosmos2_5ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None
    return model


def kosmos2_5_batch(in_front=None):
    """`kosmos_text`, and flattened patches, each led by its row and column."""
    generator = torch.Generator().manual_seed(1)
    text = kosmos_text(generator, 3, in_front)
    patches = torch.randn(2, 8, 14, generator=generator)
    patches[:, :, 0], patches[:, :, 1] = torch.arange(8) // 4 + 1, torch.arange(8) % 4 + 1
    return {**text, "flattened_patches": patches}


@pytest.mark.parametrize("kind", ["shallow", "shallow off", "deep", "mixture"])
def test_a_prompt_on_kosmos2_5_reads_as_text_in_front_of_its_image_in_forward_and_generate(kind, tmp_path):
    """Kosmos-2.5's sinusoidal positions read `position_ids.view(-1)`, which a broadcast view of one row refuses (found
    2026-12-08 by a probe: every prompted generate of a batch, and a mixture's shared prefix in forward, failed there;
    the forward of a single prompt ran). The reference: the base model on [the sampled tokens; the input]."""
    shallow = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                             shared_prefix="off" if kind == "shallow off" else "auto", **KOSMOS_COUNTS)  # fmt: skip
    in_front = sampled_prompt_ids(peft.get_peft_model(tiny_kosmos2_5(), shallow))
    if kind == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="vocab_sampled", vocab_sampling="uniform",
                                        seed=3, **KOSMOS_COUNTS)  # fmt: skip
    elif kind == "mixture":
        from peft_softprompt_ext import MixturePromptTuningConfig

        sources = []
        for seed in (3, 4):
            source = peft.get_peft_model(tiny_kosmos2_5(), VocabSampledPromptTuningConfig(
                task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=seed, **KOSMOS_COUNTS))  # fmt: skip
            source.save_pretrained(tmp_path / str(seed))
            sources.append(str(tmp_path / str(seed)))
        config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, source_prompts=sources, mixing="one_hot",
                                           num_tasks=2, **KOSMOS_COUNTS)  # fmt: skip
    else:
        config = shallow
    peft_model = peft.get_peft_model(tiny_kosmos2_5(), config).eval()
    task = {"task_ids": torch.tensor([0, 0])} if kind == "mixture" else {}
    with torch.no_grad():
        base = tiny_kosmos2_5()
        expected = base(**kosmos2_5_batch(in_front)).logits[:, P:]
        torch.testing.assert_close(peft_model(**kosmos2_5_batch(), **task).logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
        tokens = base.generate(**kosmos2_5_batch(in_front), max_new_tokens=3, do_sample=False)[:, -3:]
        for use_cache in (True, False):
            got = peft_model.generate(**kosmos2_5_batch(), **task, max_new_tokens=3, do_sample=False, use_cache=use_cache)[:, -3:]
            assert got.tolist() == tokens.tolist(), f"use_cache={use_cache}"


FLORENCE_IMAGE_TOKENS = 17  # (what the tiny vision tower below gives a 32 x 32 image)


def tiny_florence2():
    torch.manual_seed(0)
    vision = dict(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1], patch_prenorm=[False, True], embed_dim=[16, 32],
                  num_heads=[2, 4], num_groups=[2, 4], window_size=2, drop_path_rate=0.0, projection_dim=32, max_temporal_embeddings=4,
                  max_position_embeddings=16)  # fmt: skip
    text = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                decoder_start_token_id=2)  # fmt: skip
    config = transformers.Florence2Config(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN)
    return transformers.Florence2ForConditionalGeneration(config).eval()


def florence2_batch(in_front=None):
    """The image's tokens, then text; `in_front` [1, P]: text ids put before them."""
    ids = torch.cat([torch.full((1, FLORENCE_IMAGE_TOKENS), IMAGE_TOKEN), torch.tensor([[0, 7, 8, 9]])], dim=1)
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))}


def test_florence2_prompts_forward_and_refuse_their_generate_and_a_deep_init_in_the_plugins_words():
    """Florence-2 (seq2seq) finds its image tokens in generate's input tensor, which given embeddings holds none, and its
    model makes decoder_input_ids beside given decoder_inputs_embeds (found 2026-12-08 by a probe: "Image features and
    image tokens do not match, tokens: 0" from a shallow prompt's generate, plain PEFT alike; "You must specify exactly
    one of decoder_input_ids or decoder_inputs_embeds" from a deep prompt's build). The shallow forward is exact; the
    generate and a deep init that runs rows are refused naming why; deep_init="zero" builds."""
    config = VocabSampledPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3, **KOSMOS_COUNTS)
    peft_model = peft.get_peft_model(tiny_florence2(), config).eval()
    rows, table = peft_model.prompt_encoder["default"](1)[0], peft_model.get_input_embeddings().weight
    in_front = torch.cdist(rows, table).argmin(dim=-1)[None]
    decoder = {"decoder_input_ids": torch.tensor([[2, 5, 6]])}
    with torch.no_grad():
        expected = tiny_florence2()(**florence2_batch(in_front), **decoder).logits
        torch.testing.assert_close(peft_model(**florence2_batch(), **decoder).logits, expected, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match=r"(?s)Florence2ForConditionalGeneration's generate refuses this call's pixel_values beside "
                                             r"inputs_embeds .*decode with forward calls"):  # fmt: skip
            peft_model.generate(**florence2_batch(), max_new_tokens=2)
    deep = DeepPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, deep_init="random", **KOSMOS_COUNTS)
    with pytest.raises(ValueError, match=r"(?s)deep_init='random' runs input rows through Florence2ForConditionalGeneration as "
                                         r"inputs_embeds, which it does not take .*decoder_inputs_embeds.*deep_init='zero'"):  # fmt: skip
        peft.get_peft_model(tiny_florence2(), deep)
    zero = DeepPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, deep_init="zero", **KOSMOS_COUNTS)
    with torch.no_grad():
        peft.get_peft_model(tiny_florence2(), zero).eval()(**florence2_batch(), **decoder)
