"""Soft prompts on audio-language models (Qwen2-Audio, Voxtral), which put the audio features on their audio tokens only
when given `input_ids` (found 2026-12-07 by a probe: a prompted forward ran without the audio, shallow and deep alike,
6.9 and 5.3 off the prompt fed by hand on logit scales of ~4.9; plain PEFT alike)."""

import peft
import pytest
import torch
import transformers

from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig
from testing_common import prompted, sampled_prompt_ids

VOCAB, AUDIO_TOKEN, P = 400, 399, 5
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            pad_token_id=0, max_position_embeddings=256, initializer_range=0.2)  # fmt: skip


def tiny_qwen2_audio():
    torch.manual_seed(0)
    audio = dict(num_mel_bins=8, encoder_layers=1, encoder_attention_heads=4, encoder_ffn_dim=64, d_model=32, max_source_positions=10, init_std=0.2)
    config = transformers.Qwen2AudioConfig(audio_config=audio, text_config={**TEXT, "model_type": "qwen2"}, audio_token_index=AUDIO_TOKEN)
    model = transformers.Qwen2AudioForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None
    return model


def tiny_voxtral():
    torch.manual_seed(0)
    audio = dict(num_mel_bins=8, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128, hidden_size=32, max_source_positions=16,
                 initializer_range=0.2)  # fmt: skip
    config = transformers.VoxtralConfig(audio_config=audio, text_config={**TEXT, "model_type": "llama"}, audio_token_id=AUDIO_TOKEN)
    model = transformers.VoxtralForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None
    return model


# family -> (builder, audio tokens per row, the audio inputs of a batch of 2)
FAMILIES = {
    "qwen2_audio": (tiny_qwen2_audio, 5, lambda g: {"input_features": torch.randn(2, 8, 20, generator=g),
                                                    "feature_attention_mask": torch.ones(2, 20, dtype=torch.long)}),  # fmt: skip
    "voxtral": (tiny_voxtral, 4, lambda g: {"input_features": torch.randn(2, 8, 32, generator=g)}),
}


def audio_batch(family: str, in_front=None, with_audio: bool = True):
    """Text, the audio's tokens, text; `in_front` [2, P]: text ids put before it."""
    _, audio_tokens, audio = FAMILIES[family]
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, audio_tokens), AUDIO_TOKEN),
                     torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return {**batch, **audio(generator)} if with_audio else batch


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind, shared_prefix", [("shallow", "auto"), ("deep", "auto")])
def test_a_prompt_on_an_audio_model_reads_as_text_in_front_of_its_audio(family, kind, shared_prefix):
    """The reference: the base model on [the sampled tokens; the input], with the audio; forward and greedy generate
    with and without the cache."""
    build = FAMILIES[family][0]
    peft_model = prompted(build, kind, shared_prefix)
    in_front = sampled_prompt_ids(prompted(build, "shallow"))
    with torch.no_grad():
        base = build()
        expected = base(**audio_batch(family, in_front)).logits[:, P:]
        without_audio = base(**audio_batch(family, in_front, with_audio=False)).logits[:, P:]
        assert (expected - without_audio).abs().max() > 0.5  # (the audio matters)
        torch.testing.assert_close(peft_model(**audio_batch(family)).logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
        tokens = base.generate(**audio_batch(family, in_front), max_new_tokens=3, do_sample=False)[:, -3:]
        for use_cache in (True, False) if kind == "deep" else (True,):  # (a shallow prompt without a cache: refused, below)
            got = peft_model.generate(**audio_batch(family), max_new_tokens=3, do_sample=False, use_cache=use_cache)[:, -3:]
            assert got.tolist() == tokens.tolist(), f"use_cache={use_cache}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_prompt_of_input_rows_joined_to_an_audio_models_input_is_refused_naming_the_audio(family):
    """Off the shared prefix (`shared_prefix="off"`, generate without a cache) a shallow prompt's rows go in front of the
    input's as `inputs_embeds`, beside which these models drop the audio: refused, naming the input and the ways that
    keep it; text alone still runs."""
    build = FAMILIES[family][0]
    peft_model = prompted(build, "shallow", "off")
    refusal = r"(?s)ForConditionalGeneration reads this call's .*input_features only beside input_ids .*shared_prefix='auto'"
    with torch.no_grad(), pytest.raises(ValueError, match=refusal):
        peft_model(**audio_batch(family))
    with torch.no_grad(), pytest.raises(ValueError, match=refusal):
        prompted(build, "shallow").generate(**audio_batch(family), max_new_tokens=2, use_cache=False)
    in_front = sampled_prompt_ids(prompted(build, "shallow"))
    with torch.no_grad():
        expected = build()(**audio_batch(family, in_front, with_audio=False)).logits[:, P:]
        got = peft_model(**audio_batch(family, with_audio=False)).logits[:, P:]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_training_a_shallow_prompt_on_an_audio_model_keeps_the_audio_or_is_refused_naming_why():
    """Found 2026-12-07 by a probe: in train mode a shallow prompt left the shared prefix where only the audio tower had
    dropout (its rows never run through it; now it stays: the loss of the prompt fed by hand, with the audio), and under
    gradient checkpointing it was refused with every cause but the user's, first advising the shared_prefix='auto' it
    had. The refusal names gradient checkpointing now."""
    build = FAMILIES["qwen2_audio"][0]
    batch = audio_batch("qwen2_audio")
    labels = batch["input_ids"].clone()
    in_front = sampled_prompt_ids(prompted(build, "shallow"))
    with torch.no_grad():
        whole = audio_batch("qwen2_audio", in_front)
        expected = build()(**whole, labels=torch.cat((torch.full_like(in_front, -100), labels), dim=1)).loss
    peft_model = prompted(build, "shallow").train()
    base = peft_model.get_base_model()
    tower = base.model.audio_tower if hasattr(base, "model") else base.audio_tower  # (transformers 5.0: on the model itself)
    for module in tower.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.1
    tower.eval()  # (its dropout set but idle here, so that the loss can be compared)
    loss = peft_model(**batch, labels=labels).loss
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    loss.backward()
    peft_model = prompted(build, "shallow").train()
    peft_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ValueError, match=r"(?s)only beside input_ids .*off the shared prefix .*because gradient checkpointing is on.*DeepPromptTuningConfig"):
        peft_model(**batch, labels=labels)


def tiny_whisper():
    config = transformers.WhisperConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8,
                                        max_source_positions=16, max_target_positions=32, pad_token_id=0, decoder_start_token_id=1)  # fmt: skip
    return transformers.WhisperForConditionalGeneration(config).eval(), "SEQ_2_SEQ_LM", "WhisperForConditionalGeneration takes neither input_ids nor inputs_embeds .its forward takes input_features"


def tiny_wav2vec2_classifier():
    config = transformers.Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                         conv_dim=(8, 8), conv_stride=(4, 4), conv_kernel=(8, 8), num_conv_pos_embeddings=4,
                                         num_conv_pos_embedding_groups=2, num_labels=2)  # fmt: skip
    return transformers.Wav2Vec2ForSequenceClassification(config).eval(), "SEQ_CLS", "Wav2Vec2ForSequenceClassification takes neither input_ids nor inputs_embeds .its forward takes input_values"


@pytest.mark.parametrize("build", [tiny_whisper, tiny_wav2vec2_classifier])
@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_model_that_reads_no_text_is_refused_at_the_build(build, kind):
    """Whisper's encoder reads `input_features`, Wav2Vec2 `input_values`: a prompt built on Whisper failed at its first
    forward with a bare TypeError (found 2026-12-07; plain PEFT: "You have to provide either input_ids or
    inputs_embeds"), on Wav2Vec2 transformers' NotImplementedError for its input embeddings came out."""
    model, task_type, names = build()
    config = (DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=3, deep_init="random") if kind == "deep" else
              VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=3, vocab_sampling="uniform", seed=1))  # fmt: skip
    with pytest.raises(ValueError, match=rf"(?s){names}.*does not take. Use LoRA"):
        peft.get_peft_model(model, config)


OMNI_AUDIO, OMNI_IMAGE, OMNI_VIDEO, OMNI_AUDIO_START, OMNI_AUDIO_END, OMNI_VISION_START, OMNI_VISION_END = 399, 398, 397, 396, 395, 394, 393


def tiny_qwen3_omni_thinker():
    torch.manual_seed(0)
    vision = dict(depth=2, embed_dim=32, hidden_size=32, out_hidden_size=32, intermediate_size=24, num_heads=4, patch_size=16, spatial_merge_size=1,
                  temporal_patch_size=2, deepstack_visual_indexes=[1])  # fmt: skip
    audio = dict(d_model=32, encoder_attention_heads=4, encoder_ffn_dim=32, encoder_layers=2, num_mel_bins=20, max_source_positions=1500,
                 downsample_hidden_size=32, n_window=50, output_dim=32, n_window_infer=100)  # fmt: skip
    text = dict(rope_parameters={"mrope_section": [1, 1, 2], "rope_type": "default", "interleaved": True, "rope_theta": 10000.0},
                vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                pad_token_id=0, initializer_range=0.2, moe_intermediate_size=32, num_experts_per_tok=2, num_experts=4)  # fmt: skip
    config = transformers.Qwen3OmniMoeThinkerConfig(audio_config=audio, vision_config=vision, text_config=text, audio_token_id=OMNI_AUDIO,
                                                    image_token_id=OMNI_IMAGE, video_token_id=OMNI_VIDEO, audio_start_token_id=OMNI_AUDIO_START,
                                                    audio_end_token_id=OMNI_AUDIO_END, vision_start_token_id=OMNI_VISION_START,
                                                    vision_end_token_id=OMNI_VISION_END, user_token_id=392, initializer_range=0.2)  # fmt: skip
    model = transformers.Qwen3OmniMoeThinkerForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None
    return model


def omni_batch(in_front=None):
    """Text, an audio's 4 tokens, text, an image's 4 tokens, text; `in_front` [2, P]: text ids put before it."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(6, 300, (2, 3), generator=generator), torch.full((2, 1), OMNI_AUDIO_START), torch.full((2, 4), OMNI_AUDIO),
                     torch.full((2, 1), OMNI_AUDIO_END), torch.randint(6, 300, (2, 2), generator=generator), torch.full((2, 1), OMNI_VISION_START),
                     torch.full((2, 4), OMNI_IMAGE), torch.full((2, 1), OMNI_VISION_END), torch.randint(6, 300, (2, 4), generator=generator)], dim=1)  # fmt: skip
    if in_front is not None:
        ids = torch.cat((in_front, ids), dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(8, 1536, generator=generator),
            "image_grid_thw": torch.tensor([[1, 2, 2]] * 2), "input_features": torch.randn(2, 20, 30, generator=generator),
            "feature_attention_mask": torch.ones(2, 30, dtype=torch.long)}  # fmt: skip


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_a_prompt_on_qwen3_omni_with_an_image_and_audio_reads_as_text_in_front(kind):
    """Qwen3-Omni's thinker numbers its tokens (`get_rope_index`) by the audio's lengths and a video's seconds per grid,
    which its forward passes under other names than its inputs' (`feature_attention_mask` summed, `video_second_per_grid`)
    (found 2026-12-08 by a probe: a TypeError from inside for every prompt on a call with an image and audio)."""
    peft_model = prompted(tiny_qwen3_omni_thinker, kind)
    in_front = sampled_prompt_ids(prompted(tiny_qwen3_omni_thinker, "shallow"))
    with torch.no_grad():
        base = tiny_qwen3_omni_thinker()
        expected = base(**omni_batch(in_front)).logits[:, P:]
        torch.testing.assert_close(peft_model(**omni_batch()).logits[:, -expected.shape[1]:], expected, atol=1e-4, rtol=1e-4)
        tokens = base.generate(**omni_batch(in_front), max_new_tokens=3, do_sample=False)[:, -3:]
        got = peft_model.generate(**omni_batch(), max_new_tokens=3, do_sample=False)[:, -3:]
        assert got.tolist() == tokens.tolist()
