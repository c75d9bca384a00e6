"""Hybrid models: attention beside layers that carry a state along the sequence (state-space, linear-attention or
convolution layers: Jamba, Bamba, Falcon-H1, Zamba2, Granite 4, Qwen3-Next, LFM2, Nemotron-H, OLMo-Hybrid, MiniMax,
RecurrentGemma). Found 2026-12-06: none was refused (only Mamba, whose forward takes `cache_params`, was). A shallow
prompt in front of a row's left padding left the padding between the prompt and the tokens, where the recurrent
layers' state decays over it: the row's logits were off the same row alone on 10 of these 11 models (by 1.6-6.5 here;
plain PEFT's prompt tuning alike). The padding now goes in front of the prompt there, as on sliding-window
models. Refused, naming the model: a model that keeps its state in a cache class of its own (MiniMax; every hybrid
under transformers 5.0) or in its layers (RecurrentGemma: deep prompts, and under 5.0 both), where cached generate
differed from uncached or failed; and deep prompts on keys and values of different widths (multi-head latent
attention), which failed inside torch.stack."""

import inspect
import warnings

import peft
import pytest
import torch
import transformers

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, VocabSampledPromptTuningConfig

P = 5
SMALL = dict(vocab_size=common.VOCAB_SIZE, pad_token_id=0, bos_token_id=1, eos_token_id=2, initializer_range=0.2,
             tie_word_embeddings=False, max_position_embeddings=256)  # fmt: skip
ATTENTION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
MAMBA2 = dict(mamba_n_heads=8, mamba_d_head=8, mamba_n_groups=1, mamba_d_state=8, mamba_chunk_size=16)


def _config(name: str):
    T = transformers
    builders = {
        "jamba": lambda: T.JambaConfig(**SMALL, **ATTENTION, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                                       num_experts=2, num_experts_per_tok=1, mamba_d_state=8, mamba_dt_rank=8, use_mamba_kernels=False),
        "bamba": lambda: T.BambaConfig(**SMALL, **ATTENTION, **MAMBA2, attn_layer_indices=[1]),
        "falcon_h1": lambda: T.FalconH1Config(**SMALL, **ATTENTION, **MAMBA2, mamba_d_ssm=64),
        "zamba2": lambda: T.Zamba2Config(**{**SMALL, "tie_word_embeddings": True}, hidden_size=32, num_hidden_layers=2, layers_block_type=["mamba", "hybrid"],
                                         mamba_d_state=8, n_mamba_heads=8, mamba_ngroups=1, chunk_size=16, num_attention_heads=4,
                                         num_key_value_heads=4, intermediate_size=64, use_mamba_kernels=False, adapter_rank=4),
        "granitemoehybrid": lambda: T.GraniteMoeHybridConfig(**SMALL, **ATTENTION, **MAMBA2, layer_types=["mamba", "attention"], num_local_experts=2,
                                                             num_experts_per_tok=1, shared_intermediate_size=64, position_embedding_type="rope"),
        "qwen3_next": lambda: T.Qwen3NextConfig(**SMALL, **ATTENTION, head_dim=8, layer_types=["linear_attention", "full_attention"], linear_key_head_dim=8,
                                                linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4, moe_intermediate_size=32,
                                                shared_expert_intermediate_size=32, num_experts=2, num_experts_per_tok=1),
        "lfm2": lambda: T.Lfm2Config(**SMALL, **ATTENTION, full_attn_idxs=[1], block_multiple_of=16),
        "nemotron_h": lambda: T.NemotronHConfig(**SMALL, hidden_size=32, layers_block_type=["mamba", "attention", "mlp"], num_attention_heads=4,
                                                num_key_value_heads=2, head_dim=8, intermediate_size=64, ssm_state_size=8, mamba_num_heads=8,
                                                mamba_head_dim=8, n_groups=1, chunk_size=16, use_mamba_kernels=False),
        "olmo_hybrid": lambda: T.OlmoHybridConfig(**SMALL, **ATTENTION, layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                                                  linear_num_value_heads=2, linear_key_head_dim=8, linear_value_head_dim=8),
        "minimax": lambda: T.MiniMaxConfig(**SMALL, **ATTENTION, head_dim=8, layer_types=["linear_attention", "full_attention"], num_local_experts=2,
                                           num_experts_per_tok=1, block_size=4),
        "recurrent_gemma": lambda: T.RecurrentGemmaConfig(**{k: v for k, v in SMALL.items() if k != "max_position_embeddings"}, hidden_size=32,
                                                          intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                          lru_width=32, attention_window_size=64, block_types=["recurrent", "attention"]),
    }  # fmt: skip
    classes = {"falcon_h1": "FalconH1Config", "granitemoehybrid": "GraniteMoeHybridConfig", "qwen3_next": "Qwen3NextConfig",
               "nemotron_h": "NemotronHConfig", "olmo_hybrid": "OlmoHybridConfig", "minimax": "MiniMaxConfig",
               "recurrent_gemma": "RecurrentGemmaConfig"}  # fmt: skip
    if getattr(T, classes.get(name, name.capitalize() + "Config"), None) is None:
        pytest.skip(f"transformers {transformers.__version__} has no {name}")
    return builders[name]()


HYBRIDS = ["bamba", "falcon_h1", "granitemoehybrid", "jamba", "lfm2", "minimax", "nemotron_h", "olmo_hybrid", "qwen3_next", "recurrent_gemma", "zamba2"]


def _base(name: str):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_config(name), attn_implementation="eager").eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None  # random weights: let every row run the whole length
    return model


def _refused(base, method: str) -> str | None:
    """The refusal expected, from transformers' own flags: a model that keeps its state in a cache class of its own
    (transformers 5.0's hybrids, MiniMax) or in its layers (5.0's RecurrentGemma, whose forward takes no cache), and
    for deep prompts RecurrentGemma in any release (its state lives in its layers, restarted at position 0)."""
    if not type(base)._supports_default_dynamic_cache():
        return "keeps it in a cache class of its own"
    if "past_key_values" not in inspect.signature(base.forward).parameters:
        return r"keeps it in its layers \(its forward takes no past_key_values\)"
    if method == "deep" and "recurrent" in (getattr(base.config, "block_types", None) or ()):
        return "keeps its recurrent layers' state in the layers themselves"
    return None


def _prompted_or_refused(name: str, method: str, check_base):
    base = _base(name)
    if method == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=3)
    else:
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3)
    refusal = _refused(base, method)
    if refusal is not None:
        with pytest.raises(ValueError, match=rf"{type(base).__name__} .*{refusal}"):
            peft.get_peft_model(base, config)
        return None
    try:
        check_base(base)
    except AssertionError as error:  # transformers' own model fails the same check: nothing to hold us to
        pytest.skip(f"transformers {transformers.__version__}'s own {type(base).__name__} fails it: {str(error)[:120]}")
    return peft.get_peft_model(base, config)


def _left_padded_row_equals_alone(model):
    batch = common.batch_for("llama", length=8, left_pad=True)  # row 0: 2 pads, then 6 tokens
    with torch.no_grad():
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0, -6:]
        alone = model(input_ids=batch["input_ids"][:1, 2:]).logits[0, -6:]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


def _row_padded_on_both_sides_equals_alone(model):
    common.check_row_padded_on_both_sides_equals_alone(model, length=8, right=2)  # row 0: 2 pads, 6 tokens, 2 pads


def _generate_equals_no_cache(model, manual_loop: bool = True):
    batch = common.batch_for("llama", left_pad=True)
    with torch.no_grad():
        model(**batch)  # an earlier call must leave nothing behind (RecurrentGemma's layers keep a state)
    common.check_generate_matches_no_cache(model, batch, max_new_tokens=8, manual_loop=manual_loop)


@pytest.mark.parametrize("method", ["vocab", "deep"])
@pytest.mark.parametrize("name", HYBRIDS)
def test_a_left_padded_row_gets_the_logits_it_gets_alone(name, method):
    peft_model = _prompted_or_refused(name, method, _left_padded_row_equals_alone)
    if peft_model is not None:
        _left_padded_row_equals_alone(peft_model)


@pytest.mark.parametrize("method", ["vocab", "deep"])
@pytest.mark.parametrize("name", HYBRIDS)
def test_a_row_padded_on_both_sides_gets_the_logits_it_gets_alone(name, method):
    """Found 2026-12-07 (a probe on Gemma-3's sliding window): only left-padded rows had their padding moved in front of
    the prompt; a row padded on both sides kept its left padding between the prompt and the tokens."""
    peft_model = _prompted_or_refused(name, method, _row_padded_on_both_sides_equals_alone)
    if peft_model is not None:
        _row_padded_on_both_sides_equals_alone(peft_model)


@pytest.mark.parametrize("method", ["vocab", "deep"])
@pytest.mark.parametrize("name", HYBRIDS)
def test_generate_with_a_cache_equals_no_cache_and_a_manual_loop(name, method):
    peft_model = _prompted_or_refused(name, method, lambda base: _generate_equals_no_cache(base, manual_loop=False))
    if peft_model is not None:
        _generate_equals_no_cache(peft_model)


def test_most_hybrids_run_where_transformers_keeps_their_state_in_dynamic_cache():
    """Guards the refusals above from spreading: on a transformers release whose Jamba takes DynamicCache (5.23 does),
    shallow and deep prompts build on Jamba, Bamba, Qwen3-Next and LFM2."""
    if not transformers.JambaForCausalLM._supports_default_dynamic_cache():
        pytest.skip(f"transformers {transformers.__version__} keeps Jamba's state in a cache class of its own")
    for name in ("jamba", "bamba", "qwen3_next", "lfm2"):
        for method in ("vocab", "deep"):
            assert _prompted_or_refused(name, method, lambda base: None) is not None, (name, method)


@pytest.mark.parametrize("name", ["deepseek_v3", "kimi_linear"])
def test_a_deep_prompt_on_keys_and_values_of_different_widths_is_refused_saying_so(name):
    """Multi-head latent attention (DeepSeek-V3, Kimi Linear) takes keys wider than its values: building a deep prompt
    failed in torch.stack ("stack expects each tensor to be equal size, but got [1, 4, 5, 16] ... [1, 4, 5, 8]")."""
    T = transformers
    mla = dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
               kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, v_head_dim=8, qk_nope_head_dim=8, **SMALL)  # fmt: skip
    if name == "kimi_linear" and not hasattr(T, "KimiLinearConfig"):
        pytest.skip(f"transformers {T.__version__} has no Kimi Linear")
    config = (T.DeepseekV3Config(**mla, n_routed_experts=2, num_experts_per_tok=1, first_k_dense_replace=1, n_group=1, topk_group=1)
              if name == "deepseek_v3" else
              T.KimiLinearConfig(**{k: v for k, v in mla.items() if k != "q_lora_rank"}, num_local_experts=2, num_experts_per_tok=1,
                                 layer_types=["linear_attention", "full_attention"], linear_head_dim=8, linear_num_heads=4))  # fmt: skip
    torch.manual_seed(0)
    base = T.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with pytest.raises(ValueError, match=r"takes keys \(4, 3, 16\) and values \(4, 3, 8\) per token"):
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random"))


def test_a_deep_prompt_on_latent_attention_with_keys_as_wide_as_values_is_refused_saying_so():
    """Found 2026-12-07 by a probe: DeepSeek-V3 with v_head_dim = qk_nope_head_dim + qk_rope_head_dim built a deep
    prompt, ran forward and uncached generate, and failed inside the cache in a cached generate ("Sizes of tensors must
    match"): transformers caches the latent parts there, not the keys and values (plain PEFT PREFIX_TUNING alike)."""
    T = transformers
    config = T.DeepseekV3Config(hidden_size=32, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                                v_head_dim=16, n_routed_experts=2, num_experts_per_tok=1, first_k_dense_replace=1, n_group=1,
                                topk_group=1, **SMALL)  # fmt: skip
    torch.manual_seed(0)
    base = T.AutoModelForCausalLM.from_config(config)
    with pytest.raises(ValueError, match=r"is multi-head latent attention \(kv_lora_rank=16\): its cache holds the compressed latent"):
        peft.get_peft_model(base, DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random"))


@pytest.mark.parametrize("deep_init", ["prompt", "text"])
def test_a_deep_prompt_started_from_an_input_on_a_hybrid_warns_that_its_recurrent_layers_see_none_of_it(deep_init, tmp_path):
    """A deep prompt is keys and values in the attention layers only: on a hybrid the recurrent layers' state never
    sees it, so `deep_init="prompt"` is not the shallow prompt's logits at step 0 (a probe, 2026-12-07: 10.7 off on
    tiny Qwen3.5, without a word). Warned, naming the layers; an attention-only model gets no such warning."""
    if _refused(_base("qwen3_next"), "deep") is not None:
        pytest.skip(f"transformers {transformers.__version__} refuses every prompt on Qwen3-Next")
    shallow = peft.get_peft_model(_base("qwen3_next"), VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P,
                                                                                      vocab_sampling="uniform", seed=3))  # fmt: skip
    shallow.save_pretrained(tmp_path / "shallow")
    source = dict(init_prompt=str(tmp_path / "shallow")) if deep_init == "prompt" else dict(init_text="the cat sat on the mat and the dog ran far away", tokenizer_name_or_path=common.tiny_tokenizer_dir())
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init=deep_init, **source)
    with pytest.warns(UserWarning, match=r"Qwen3NextForCausalLM has layers that carry a state along the sequence \(layer_types linear_attention\)"):
        peft.get_peft_model(_base("qwen3_next"), config)
    attention_only = transformers.LlamaConfig(**SMALL, **ATTENTION)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*carry a state")
        text = dict(init_text=source.get("init_text", "the cat sat on the mat"), tokenizer_name_or_path=common.tiny_tokenizer_dir())
        peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(attention_only),
                            DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="text", **text))  # fmt: skip
