"""Causal LMs beyond the matrix's families, as users bring them: grouped-query (Qwen2, Mistral), fused qkv with
partial rotary (Phi3), learned positions with an offset (OPT), partial rotary (GPT-NeoX), multi-query with a
learned table (GPTBigCode), soft-capped sliding windows (Gemma2), and Falcon, whose attention does not run through
transformers' attention interface (deep prompts refused there, saying so). Shallow and deep prompts: the prompt fed
by hand gives the plugin's logits, and greedy generate with a cache equals it without one and a manual loop."""

import inspect

import peft
import pytest
import torch
import transformers

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, layer_prefix, VocabSampledPromptTuningConfig
from peft_softprompt_ext.position_table import first_position

P = 5
SMALL = dict(vocab_size=common.VOCAB_SIZE, pad_token_id=0)
ARCHITECTURES = {
    "qwen2": lambda: transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, initializer_range=0.2, **SMALL),
    "mistral_window": lambda: transformers.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                         num_key_value_heads=2, sliding_window=12, initializer_range=0.2, **SMALL),
    "phi3": lambda: transformers.Phi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, partial_rotary_factor=0.5, initializer_range=0.2, bos_token_id=2,
                                            eos_token_id=3, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, **SMALL),
    "opt": lambda: transformers.OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4, max_position_embeddings=64,
                                          word_embed_proj_dim=32, init_std=0.08, dropout=0.0, attention_dropout=0.0, bos_token_id=2,
                                          eos_token_id=3, vocab_size=common.VOCAB_SIZE, pad_token_id=1),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                                   rotary_pct=0.25, initializer_range=0.2, hidden_dropout=0.0, attention_dropout=0.0, **SMALL),
    "gpt_bigcode": lambda: transformers.GPTBigCodeConfig(n_embd=32, n_layer=2, n_head=4, n_positions=64, multi_query=True, initializer_range=0.2,
                                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=2, eos_token_id=3, **SMALL),
    "gemma2_window": lambda: transformers.Gemma2Config(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                       num_key_value_heads=1, head_dim=32, sliding_window=12, initializer_range=0.03, **SMALL),
    "falcon": lambda: transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_kv_heads=2,
                                                new_decoder_architecture=True, initializer_range=0.2, bos_token_id=2, eos_token_id=3,
                                                hidden_dropout=0.0, attention_dropout=0.0, **SMALL),
    # chunked attention (every other layer; the others NoPE): chunks of 8 slots, counted from the first real token
    "llama4_chunked": lambda: transformers.Llama4TextConfig(hidden_size=32, intermediate_size=64, intermediate_size_mlp=64, num_hidden_layers=2,
                                                            num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_local_experts=2,
                                                            num_experts_per_tok=1, attention_chunk_size=8, no_rope_layer_interval=2,
                                                            initializer_range=0.2, **SMALL),
    # ALiBi: Bloom's built from the attention mask; MPT's counted over slots, padding included
    "bloom": lambda: transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=4, initializer_range=0.2, hidden_dropout=0.0,
                                              attention_dropout=0.0, bos_token_id=2, eos_token_id=3, **SMALL),
    "mpt": lambda: transformers.MptConfig(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=128, initializer_range=0.2,
                                          resid_pdrop=0.0, emb_pdrop=0.0, bos_token_id=2, eos_token_id=3, **SMALL),
    # transformers' MPT reads no alibi flag: ALiBi all the same (found 2026-12-07 by a review: the flag was trusted)
    "mpt_alibi_off": lambda: transformers.MptConfig(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=128, initializer_range=0.2,
                                                    resid_pdrop=0.0, emb_pdrop=0.0, bos_token_id=2, eos_token_id=3, attn_config={"alibi": False},
                                                    **SMALL),
    # attention that does more with its cache than attend to it: DiffLlama attends twice per layer with values rebuilt
    # from the cache's, Doge masks keys by its cached values, JetMoE repeats them after the cache (a deep prompt put in
    # generate's cache gave other tokens than forward, or crashed; found 2026-12-07 by a probe)
    "diffllama": lambda: transformers.DiffLlamaConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                      num_key_value_heads=2, initializer_range=0.1, **SMALL),
    "doge": lambda: transformers.DogeConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, initializer_range=0.1, **SMALL),
    "jetmoe": lambda: transformers.JetMoeConfig(hidden_size=64, num_hidden_layers=2, num_key_value_heads=2, kv_channels=16, intermediate_size=64,
                                                num_local_experts=4, num_experts_per_tok=2, initializer_range=0.1, **SMALL),
    # learned positions numbered from padding_idx + 1 (rows 0-1 serve padding), as a decoder (found 2026-12-07 by a probe:
    # the plugin numbered [prompt; text] from 0, 2.6 off the prompt fed by hand)
    "roberta_decoder": lambda: transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                                          max_position_embeddings=64, is_decoder=True, hidden_dropout_prob=0.0,
                                                          attention_probs_dropout_prob=0.0, bos_token_id=2, eos_token_id=3,
                                                          vocab_size=common.VOCAB_SIZE, pad_token_id=1),
}  # fmt: skip
NO_DEEP = {"falcon", "llama4_chunked", "bloom", "mpt", "mpt_alibi_off"}  # attention outside transformers' interface; chunked attention (refused, saying why)
COUNTS = {"mpt": dict(token_dim=32, num_layers=2, num_attention_heads=4), "mpt_alibi_off": dict(token_dim=32, num_layers=2, num_attention_heads=4)}  # MPT's config names its sizes as PEFT does not look for


def _base(architecture: str):
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(ARCHITECTURES[architecture]()).eval()


def _prompted(architecture: str, method: str):
    if method == "deep":
        config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=3)
    else:
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3,
                                                **COUNTS.get(architecture, {}))  # fmt: skip
    return peft.get_peft_model(_base(architecture), config)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_a_shallow_prompt_gives_the_logits_of_the_prompt_fed_by_hand(architecture):
    peft_model = _prompted(architecture, "vocab")
    batch = common.batch_for("llama", length=9)
    with torch.no_grad():
        logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, -9:]
        prompt = peft_model.prompt_encoder["default"](3)
        embeds = torch.cat((prompt, peft_model.get_input_embeddings()(batch["input_ids"])), dim=1)
        by_hand = peft_model.get_base_model()(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long)).logits[:, P:]
    torch.testing.assert_close(logits, by_hand, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["vocab", "deep"])
@pytest.mark.parametrize("architecture", sorted(set(ARCHITECTURES) - NO_DEEP))
def test_generate_with_a_cache_equals_no_cache_and_a_manual_loop(architecture, method):
    if method == "deep" and architecture == "diffllama" and "ALL_ATTENTION_FUNCTIONS" not in inspect.getsource(_module_of("diffllama")):
        with pytest.raises(ValueError, match=r"DiffLlamaForCausalLM ran no attention through transformers' attention interface"):
            _prompted(architecture, method)  # (transformers 5.0's DiffLlama attends outside the interface: refused)
        return
    peft_model = _prompted(architecture, method)
    peft_model.generation_config.eos_token_id = None  # random weights: let every row run the whole length
    peft_model.generation_config.pad_token_id = 0
    common.check_generate_matches_no_cache(peft_model, common.batch_for("llama", left_pad=True), max_new_tokens=12)


def test_a_deep_prompt_on_a_model_whose_attention_bypasses_the_interface_is_refused_saying_so():
    with pytest.raises(ValueError, match=r"FalconForCausalLM ran no attention through transformers' attention interface"):
        _prompted("falcon", "deep")


def _module_of(architecture: str):
    import importlib

    return importlib.import_module(f"transformers.models.{architecture}.modeling_{architecture}")


def _skip_where_the_base_fails_left_padding(architecture: str) -> None:
    """transformers 5.0's Doge reads a left-padded row otherwise than the row alone by itself (2.3 off): nothing to
    hold a prompt to there."""
    base = _base(architecture)
    ids, mask = torch.tensor([[0, 0, 5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        # (as the plugin numbers a left-padded row; GPT-BigCode numbers by slot, RoBERTa from padding_idx + 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + first_position(base)
        off = (base(input_ids=ids, attention_mask=mask, position_ids=positions).logits[0, 2:] - base(input_ids=ids[:, 2:]).logits[0]).abs().max()
    if off > 1e-4:
        pytest.skip(f"transformers {transformers.__version__}'s own {type(base).__name__} reads a left-padded row {float(off):.3g} off the row alone")


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_a_left_padded_row_gets_the_logits_it_gets_alone(architecture):
    """Found 2026-12-06 on Llama 4's chunked attention: chunks are counted from a row's first real slot, and a prompt in
    front of the row's left padding moved every boundary by the padding (5.35 off the row alone; plain PEFT too). The
    padding now goes in front of the prompt there, as on sliding-window models."""
    _skip_where_the_base_fails_left_padding(architecture)
    peft_model = _prompted(architecture, "vocab")
    batch = common.batch_for("llama", length=12, left_pad=True)  # row 0: 2 pads, then 10 tokens (past a chunk of 8)
    with torch.no_grad():
        padded = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0, -10:]
        alone = peft_model(input_ids=batch["input_ids"][:1, 2:]).logits[0, -10:]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_a_row_padded_on_both_sides_gets_the_logits_it_gets_alone(architecture):
    """Found 2026-12-07 (a probe on Gemma-3's sliding window): a row padded on both sides (trl's GRPO / RLOO batches)
    kept its left padding between the prompt and the tokens; on chunked and sliding-window attention it goes first now."""
    _skip_where_the_base_fails_left_padding(architecture)
    # row 0: 2 pads, 10 tokens (past a chunk of 8), 3 pads
    common.check_row_padded_on_both_sides_equals_alone(_prompted(architecture, "vocab"), length=12, right=3)


def test_a_deep_prompt_on_chunked_attention_is_refused_saying_so():
    """Llama 4's chunk mask is built from the input's own positions: a prompt in every layer would fall in other chunks
    in forward than as a cache prefix in generate (the probe: forward 6.19 off the text's keys and values, greedy tokens
    cached and uncached apart)."""
    with pytest.raises(ValueError, match=r"Llama4ForCausalLM has chunked attention \(attention_chunk_size=8"):
        _prompted("llama4_chunked", "deep")


@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_a_model_with_a_recurrent_state_is_refused_saying_so(method):
    """Found 2026-12-06: Mamba has no attention; given head counts by hand (PEFT asks for them), a shallow prompt ran,
    but a left-padded row was 3.13 off the row alone (the state decays over the padding after the prompt) and cached
    greedy tokens differed from uncached ones (plain PEFT's prompt tuning too). Refused at the build, naming the model."""
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(transformers.MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=8, expand=2,
                                                                                  conv_kernel=4, **SMALL))  # fmt: skip
    counts = dict(num_attention_heads=4, num_layers=2, token_dim=32)  # (PEFT's own check asks for them first)
    config = (DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", **counts) if method == "deep" else
              VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", **counts))  # fmt: skip
    with pytest.raises(ValueError, match=r"MambaForCausalLM keeps a recurrent state \(cache_params\)"):
        peft.get_peft_model(base, config)


# Models whose forward scales the embedding of input_ids but takes inputs_embeds as given (the scale is not in the
# embedding module, as Gemma's is): Falcon-H1 (embedding_multiplier; real checkpoints ~5.66), and the encoders of
# Marian, Pegasus, MVP and BlenderbotSmall with scale_embedding=True (sqrt(d_model)).
IDS_SCALED = {
    "falcon_h1": ("CAUSAL_LM", lambda: transformers.FalconH1Config(
        vocab_size=common.VOCAB_SIZE, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, mamba_n_heads=8, mamba_d_head=8, mamba_n_groups=1, mamba_d_state=8, mamba_chunk_size=16, mamba_d_ssm=64,
        embedding_multiplier=5.66, initializer_range=0.2, tie_word_embeddings=False, max_position_embeddings=256)),
    "marian": ("SEQ_2_SEQ_LM", lambda: transformers.MarianConfig(
        vocab_size=common.VOCAB_SIZE, decoder_vocab_size=common.VOCAB_SIZE, pad_token_id=0, decoder_start_token_id=0, d_model=32,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        scale_embedding=True, max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)),
    "pegasus": ("SEQ_2_SEQ_LM", lambda: transformers.PegasusConfig(
        vocab_size=common.VOCAB_SIZE, pad_token_id=0, decoder_start_token_id=0, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, scale_embedding=True,
        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)),
}  # fmt: skip


def tiny_blenderbot_small():
    return transformers.BlenderbotSmallConfig(vocab_size=common.VOCAB_SIZE, pad_token_id=0, decoder_start_token_id=0, d_model=32, encoder_layers=2,
                                              decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                              decoder_ffn_dim=64, scale_embedding=True, max_position_embeddings=256, dropout=0.0,
                                              attention_dropout=0.0, activation_dropout=0.0)  # fmt: skip


@pytest.mark.parametrize("name", ["marian", "pegasus", "blenderbot_small"])
def test_a_seq2seq_deep_prompt_starts_from_the_sampled_tokens_keys_and_values_in_both_stacks(name):
    """Marian's and Pegasus' decoders put their sqrt(d_model) on given decoder_inputs_embeds too, BlenderbotSmall's on
    neither, where the encoders scale ids only (found 2026-12-08 by a probe: the decoder layers of a deep prompt sampled
    from tokens started 1.0-14.6 off those tokens' keys and values, the encoder's exact). The reference: the base
    model's cache for the sampled ids as encoder and decoder input."""
    make_config = tiny_blenderbot_small if name == "blenderbot_small" else IDS_SCALED[name][1]

    def build():
        torch.manual_seed(0)
        return transformers.AutoModelForSeq2SeqLM.from_config(make_config()).eval()

    sampling = dict(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3)
    shallow = peft.get_peft_model(build(), VocabSampledPromptTuningConfig(**sampling))
    rows, table = shallow.prompt_encoder["default"](1)[0], shallow.get_input_embeddings().weight
    ids = (torch.nn.functional.normalize(rows, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T).argmax(dim=-1)[None]
    deep = peft.get_peft_model(build(), DeepPromptTuningConfig(deep_init="vocab_sampled", **sampling))
    encoder = deep.prompt_encoder["default"]
    with torch.no_grad():
        cache = build()(input_ids=ids, decoder_input_ids=ids, use_cache=True).past_key_values.self_attention_cache
        prompt = layer_prefix.split(encoder(1), encoder.slots)
    decoder_layers = [index for index, slot in enumerate(encoder.slots) if ".decoder." in f".{slot.name}"]
    assert len(decoder_layers) == 2
    for layer, index in enumerate(decoder_layers):
        keys, values = prompt[index]
        torch.testing.assert_close(keys, cache.layers[layer].keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(values, cache.layers[layer].values, atol=1e-4, rtol=1e-4)


def test_a_seq2seq_deep_prompt_whose_encoder_runs_attention_outside_the_interface_warns_naming_it():
    """LongT5's local encoder attention does not run through transformers' attention interface, so a deep prompt goes
    into its decoder's layers only (found 2026-12-08 by a probe: built without a word; BigBird-Pegasus and Pegasus-X
    alike, T5Gemma2's decoder the other way round). Warned, naming the stack; T5 (both stacks) builds without it."""
    import warnings

    config = dict(vocab_size=common.VOCAB_SIZE, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, pad_token_id=0,
                  decoder_start_token_id=0, dropout_rate=0.0)  # fmt: skip
    deep = dict(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, deep_init="random", seed=3)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*attention interface.*")
            peft.get_peft_model(transformers.T5ForConditionalGeneration(transformers.T5Config(**config)), DeepPromptTuningConfig(**deep))
    except ValueError as refusal:  # (T5's attention runs through the interface from transformers 5.15)
        if "ran no attention through transformers' attention interface" in str(refusal):
            pytest.skip(str(refusal)[:120])
        raise
    with pytest.warns(UserWarning, match=r"LongT5ForConditionalGeneration's encoder runs its self-attention outside transformers' "
                                         r"attention interface, so a deep prompt goes into the decoder's layers only"):  # fmt: skip
        peft.get_peft_model(transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(**config)), DeepPromptTuningConfig(**deep))


@pytest.mark.parametrize("method", ["vocab", "deep"])
@pytest.mark.parametrize("name", sorted(IDS_SCALED))
def test_input_ids_are_embedded_as_the_base_model_embeds_them(name, method):
    """Found 2026-12-07 by a probe of the vLLM room: the plugin embedded a row's input_ids with the embedding module
    alone, so on models whose forward scales only that embedding the text went in 5.66x (Falcon-H1) or sqrt(d_model)x
    (Marian, Pegasus) too small beside the prompt (plain PEFT alike). input_ids now give what inputs_embeds of the base
    model's own embedding give, for shallow and deep prompts."""
    task_type, make_config = IDS_SCALED[name]
    auto = transformers.AutoModelForSeq2SeqLM if task_type == "SEQ_2_SEQ_LM" else transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    base = auto.from_config(make_config()).eval()
    ids = torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(1))
    extra = {"decoder_input_ids": ids[:, :4]} if task_type == "SEQ_2_SEQ_LM" else {}
    scale = base.model.embedding_multiplier if name == "falcon_h1" else base.get_encoder().embed_scale
    assert scale > 2
    text = base.get_input_embeddings()(ids) * scale  # what the base model's forward makes of ids: checked first
    with torch.no_grad():
        torch.testing.assert_close(base(inputs_embeds=text, **extra).logits, base(input_ids=ids, **extra).logits, rtol=1e-5, atol=1e-5)
    if method == "deep":
        config = DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="random", seed=3)
    else:
        config = VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, vocab_sampling="uniform", seed=3)
    try:
        peft_model = peft.get_peft_model(base, config)
    except ValueError as refusal:  # (hybrids under transformers 5.0: refused, tests/test_hybrid_models.py)
        if "keeps it in a cache class of its own" in str(refusal):
            pytest.skip(str(refusal)[:120])
        raise
    with torch.no_grad():
        from_ids = peft_model(input_ids=ids, **extra).logits
        from_embeds = peft_model(inputs_embeds=text, **extra).logits
    torch.testing.assert_close(from_ids, from_embeds, rtol=1e-5, atol=1e-5)


def _ids_scaled_base(name: str, seed: int = 0):
    task_type, make_config = IDS_SCALED[name]
    auto = transformers.AutoModelForSeq2SeqLM if task_type == "SEQ_2_SEQ_LM" else transformers.AutoModelForCausalLM
    torch.manual_seed(seed)
    base = auto.from_config(make_config()).eval()
    try:
        peft.get_peft_model(auto.from_config(make_config()), VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=P))
    except ValueError as refusal:  # (hybrids under transformers 5.0: refused, tests/test_hybrid_models.py)
        if "keeps it in a cache class of its own" in str(refusal):
            pytest.skip(str(refusal)[:120])
        raise
    return base, task_type


def test_a_projection_onto_a_model_that_scales_its_ids_gives_the_rows_it_makes_of_them():
    """Found 2026-12-07 by a probe: fit_projection aligned the bare embedding tables, so onto Falcon-H1 (multiplier
    5.66) a projected prompt went in 5.66x smaller than its text (logits 2.93 off the text fed as ids)."""
    from peft_softprompt_ext import fit_projection
    from peft_softprompt_ext.ids_embedding import text_embedding_of

    target, _ = _ids_scaled_base("falcon_h1")
    torch.manual_seed(0)
    source = transformers.AutoModelForCausalLM.from_config(ARCHITECTURES["qwen2"]()).eval()
    with torch.no_grad():
        target.get_input_embeddings().weight.copy_(source.get_input_embeddings().weight)  # one table: the map is the scale
    tokenizer = common.tiny_tokenizer()
    projection = fit_projection(source, tokenizer, target, tokenizer, min_anchors=8)
    ids = torch.arange(10, 20)
    with torch.no_grad():
        projected = projection.project(source.get_input_embeddings()(ids))
        consumed = text_embedding_of(target)(ids)
    error = ((projected - consumed).norm() / consumed.norm()).item()
    assert error < 0.05, f"projected rows {error:.0%} off the rows Falcon-H1 makes of the same ids (the bare rows: 82%)"


@pytest.mark.parametrize("name", ["falcon_h1", "marian"])
def test_mixing_weights_report_the_weights_forward_uses_on_a_model_that_scales_its_ids(name):
    """Found 2026-12-07 by a probe: mixing_weights(model, input_ids=...) embedded the ids with the bare module, so on
    Falcon-H1 it reported [0.175 0.638 0.187] where forward used [0.256 0.531 0.213]."""
    from peft_softprompt_ext import MixturePromptTuningConfig, mixing_weights

    folders = []
    for index in range(2):
        base, task_type = _ids_scaled_base(name)
        folder = common.fixture_dir(f"ids-scaled-bank-{name}-{index}")
        config = VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=4, vocab_sampling="uniform", seed=100 + index)
        peft.get_peft_model(base, config).save_pretrained(folder)
        folders.append(folder)
    base, task_type = _ids_scaled_base(name)
    model = peft.get_peft_model(base, MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=4, source_prompts=folders,
                                                                mixing="attention", attention_temperature=0.1))  # fmt: skip
    encoder = model.prompt_encoder["default"]
    torch.manual_seed(7)
    with torch.no_grad():  # as after training: the attention no longer at its uniform start
        for parameter in (encoder.attention_up.weight, encoder.attention_down.weight):
            parameter.normal_(0, 0.5)
    ids = torch.randint(3, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    used, original = [], encoder.mixing_weights
    encoder.mixing_weights = lambda *args: used.append(original(*args)) or used[-1]
    extra = {"decoder_input_ids": ids[:, :2]} if task_type == "SEQ_2_SEQ_LM" else {}
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)
    del encoder.mixing_weights
    reported = mixing_weights(model, input_ids=ids, attention_mask=torch.ones_like(ids))["weights"]
    torch.testing.assert_close(reported, used[0].mean(dim=0).cpu(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["gemma3n", "esm"])
def test_a_model_that_reads_more_from_input_ids_than_their_rows_is_refused_saying_what(family):
    """Found 2026-12-07 by a probe: Gemma 3n looks per-layer inputs up from input_ids, and ESM with token_dropout=True
    rescales each row by its share of mask tokens; a prompt's text goes in as inputs_embeds, which skips both (Gemma
    3n: 1.73 off on a logit scale of 4.4 once its altup scales are trained), without a word (plain PEFT alike)."""
    if family == "gemma3n":
        if not hasattr(transformers, "Gemma3nTextConfig"):
            pytest.skip(f"transformers {transformers.__version__} has no Gemma 3n")
        config = transformers.Gemma3nTextConfig(
            vocab_size=common.VOCAB_SIZE, vocab_size_per_layer_input=common.VOCAB_SIZE, hidden_size=32, hidden_size_per_layer_input=8,
            intermediate_size=[64, 64], num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8, laurel_rank=4,
            altup_num_inputs=2, num_kv_shared_layers=0, layer_types=["full_attention", "full_attention"],
            activation_sparsity_pattern=[0.0, 0.0], pad_token_id=0, max_position_embeddings=128)  # fmt: skip
        model, task_type, message = transformers.AutoModelForCausalLM.from_config(config), "CAUSAL_LM", r"per-layer inputs looked up from the input ids"
    else:
        config = transformers.EsmConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, pad_token_id=1, mask_token_id=4, token_dropout=True,
                                        position_embedding_type="rotary", emb_layer_norm_before=False, max_position_embeddings=128,
                                        num_labels=2)  # fmt: skip  (ESM-2's checkpoints: rotary, no layer norm before)
        model, task_type, message = transformers.AutoModelForSequenceClassification.from_config(config), "SEQ_CLS", r"token_dropout=True"
    for method in ("vocab", "deep"):
        config_class = DeepPromptTuningConfig if method == "deep" else VocabSampledPromptTuningConfig
        extra = {"deep_init": "random"} if method == "deep" else {"vocab_sampling": "uniform"}
        with pytest.raises(ValueError, match=message):
            peft.get_peft_model(model, config_class(task_type=task_type, num_virtual_tokens=P, **extra))
    if family == "esm":  # without token dropout (rotary positions, no layer norm before) the ids and the embeddings agree
        config.token_dropout = False  # (a new model: its embedding module reads the flag when built)
        model = transformers.AutoModelForSequenceClassification.from_config(config)
        peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, vocab_sampling="uniform"))


def _esm_with_absolute_positions():
    return transformers.EsmConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  pad_token_id=0, num_labels=3, position_embedding_type="absolute", token_dropout=False,
                                  max_position_embeddings=128, initializer_range=0.1)  # fmt: skip


def _longformer():
    return transformers.LongformerConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                         pad_token_id=0, num_labels=3, attention_window=[4, 4], max_position_embeddings=128)  # fmt: skip


def _esmc():
    return transformers.CONFIG_MAPPING["esmc"](vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                               num_key_value_heads=4, intermediate_size=64, pad_token_id=0, num_labels=3)  # fmt: skip


@pytest.mark.parametrize("family, message", [
    ("esm absolute", r"EsmForSequenceClassification reads a text's input_ids otherwise than as their embedding rows \(given the rows as "
                     r"inputs_embeds its outputs were [0-9.]+ off"),
    ("longformer", r"LongformerForSequenceClassification runs a text given as input_ids but not given as inputs_embeds \(TypeError"),
    ("esmc", r"runs a text given as input_ids but not given as inputs_embeds"),
])  # fmt: skip
def test_a_model_that_reads_a_text_given_as_embeddings_otherwise_is_refused_for_input_rows(family, message):
    """Found 2026-12-08 by a probe: ESM skips its whole embedding module for given inputs_embeds (absolute positions and
    layer norm too): a shallow prompt 0.30 off the prompt fed by hand on a logit scale of 0.33, without a word; Longformer
    makes its global attention mask from input_ids and ESMC embeds only ids: transformers' errors at every forward (plain
    PEFT alike). The build checks the model given a text's ids and their rows once; a mixture of input rows too."""
    if family == "esmc" and "esmc" not in transformers.CONFIG_MAPPING:
        pytest.skip(f"transformers {transformers.__version__} has no ESMC")
    config = {"esm absolute": _esm_with_absolute_positions, "longformer": _longformer, "esmc": _esmc}[family]()
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    with pytest.raises(ValueError, match=message):
        peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, vocab_sampling="uniform", seed=3))


def test_a_prompt_tuning_export_on_a_model_that_scales_its_ids_warns_that_plain_peft_reads_it_otherwise(tmp_path):
    """A review found (2026-12-07) that a PROMPT_TUNING export of a Marian / Pegasus / Falcon-H1 prompt, loaded by plain
    PEFT, gets its text without the model's factor (logits 1.86-5.09 off the plugin's), without a word."""
    from peft_softprompt_ext import export_prompt_tuning

    base, task_type = _ids_scaled_base("marian")
    model = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, vocab_sampling="uniform"))
    with pytest.warns(UserWarning, match=r"multiplies the embedding of input_ids by 5\.657.*plain PEFT does not"):
        export_prompt_tuning(model, tmp_path / "export")


def test_a_model_that_scales_its_inputs_embeds_in_place_leaves_the_prompt_as_it_was():
    """CTRL multiplies the `inputs_embeds` it is given by sqrt(d_model) in place: the shared prefix handed it the
    prompt's own table, so each forward scaled the trained prompt (x8 here; found 2026-12-07 by a probe: logits 0.58
    off the prompt fed by hand, cached generate unlike uncached, and a save would have stored the scaled prompt;
    plain PEFT, which joins the rows into a new tensor, kept it)."""
    torch.manual_seed(0)
    base = transformers.CTRLConfig(vocab_size=common.VOCAB_SIZE, n_embd=64, n_layer=2, n_head=4, dff=64, n_positions=128, pad_token_id=0,
                                   resid_pdrop=0.0, embd_pdrop=0.0)  # fmt: skip
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3)
    peft_model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(base).eval(), config).eval()
    weight = peft_model.prompt_encoder["default"].embedding.weight
    before = weight.detach().clone()
    ids = common.batch_for("llama", length=9)["input_ids"][:1]
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits[:, -9:]
        embeds = torch.cat((weight[None], peft_model.get_input_embeddings()(ids)), dim=1)
        by_hand = peft_model.get_base_model()(inputs_embeds=embeds).logits[:, P:]
        cached = peft_model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        uncached = peft_model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0, use_cache=False)
    torch.testing.assert_close(weight.detach(), before, rtol=0, atol=0)
    torch.testing.assert_close(logits, by_hand, rtol=1e-4, atol=1e-4)
    assert cached.tolist() == uncached.tolist()


def test_a_deep_prompt_on_a_model_that_scales_its_inputs_embeds_in_place_leaves_the_callers_as_they_were():
    """A review of 2026-12-08 found a tidy handing CTRL the caller's own inputs_embeds on the deep path: scaled in place,
    a second identical call gave other logits, and backward through a leaf that requires a gradient failed."""
    torch.manual_seed(0)
    base = transformers.CTRLConfig(vocab_size=common.VOCAB_SIZE, n_embd=64, n_layer=2, n_head=4, dff=64, n_positions=128, pad_token_id=0,
                                   resid_pdrop=0.0, embd_pdrop=0.0)  # fmt: skip
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=1)
    try:
        peft_model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(base).eval(), config).eval()
    except ValueError as refusal:  # (transformers 5.0's CTRL runs no attention through the interface)
        if "ran no attention through transformers' attention interface" in str(refusal):
            pytest.skip(str(refusal)[:120])
        raise
    ids = common.batch_for("llama", length=9)["input_ids"][:1]
    embeds = peft_model.get_input_embeddings()(ids).detach()
    kept = embeds.clone()
    with torch.no_grad():
        first, second = peft_model(inputs_embeds=embeds).logits, peft_model(inputs_embeds=embeds).logits
    torch.testing.assert_close(embeds, kept, rtol=0, atol=0)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    leaf = kept.clone().requires_grad_()
    peft_model(inputs_embeds=leaf).logits.sum().backward()
    assert leaf.grad is not None


@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_a_bert_style_causal_lm_loaded_without_is_decoder_is_refused_saying_so(method):
    """BertLMHeadModel without is_decoder=True attends both ways and keeps no cache (transformers logs a warning and
    runs): a prompted forward failed with a bare TypeError (found 2026-12-07 by a probe). With is_decoder=True the
    prompt gives the logits of the prompt fed by hand."""
    def bert(is_decoder: bool):
        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                         is_decoder=is_decoder)  # fmt: skip
        return transformers.BertLMHeadModel(config).eval()

    config = lambda: (DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=3) if method == "deep"
                      else VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3))  # fmt: skip
    with pytest.raises(ValueError, match=r"BertLMHeadModel was loaded with is_decoder=False.*is_decoder=True"):
        peft.get_peft_model(bert(False), config())
    if method == "deep":
        return
    peft_model = peft.get_peft_model(bert(True), config()).eval()
    ids = common.batch_for("llama", length=9)["input_ids"]
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits[:, -9:]
        embeds = torch.cat((peft_model.prompt_encoder["default"](ids.shape[0]), peft_model.get_input_embeddings()(ids)), dim=1)
        by_hand = peft_model.get_base_model()(inputs_embeds=embeds).logits[:, P:]
    torch.testing.assert_close(logits, by_hand, rtol=1e-4, atol=1e-4)


def test_a_deep_prompt_on_attention_that_does_more_with_its_cache_is_not_exported_as_a_cache_prefix(tmp_path):
    """DiffLlama reads its cache's values otherwise than a prompt in front of its layers: plain PEFT PREFIX_TUNING (a
    cache prefix) would run the prompt otherwise, so the export is refused, saying why (as on sliding windows)."""
    if "ALL_ATTENTION_FUNCTIONS" not in inspect.getsource(_module_of("diffllama")):
        pytest.skip(f"transformers {transformers.__version__}'s DiffLlama attends outside the interface (deep prompts refused)")
    from peft_softprompt_ext import export_prefix_tuning

    with pytest.raises(ValueError, match=r"attention that does more with its cache \(DiffLlama, Doge, JetMoE\)"):
        export_prefix_tuning(_prompted("diffllama", "deep"), tmp_path / "plain")
    export_prefix_tuning(_prompted("qwen2", "deep"), tmp_path / "plain")


@pytest.mark.skipif(not hasattr(transformers, "EuroBertConfig"), reason="transformers without EuroBERT")
@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_a_left_padded_row_of_a_rotary_encoder_classifier_gets_the_logits_it_gets_alone(method):
    """EuroBERT's rotary encoder numbers every slot, and its rotation sees only distances: the base model reads a
    left-padded row as the row alone (1.2e-7), but padding between the prompt and the tokens moved them apart (found
    2026-12-07 by a probe: 0.069 off shallow, 0.060 deep; plain PEFT 0.057). The positions are counted by the mask."""
    config = transformers.EuroBertConfig(vocab_size=common.VOCAB_SIZE, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, num_labels=3, pad_token_id=0, bos_token_id=2,
                                         eos_token_id=3, initializer_range=0.1)  # fmt: skip
    torch.manual_seed(0)
    base = transformers.EuroBertForSequenceClassification(config).eval()
    prompt = (DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="random", seed=3) if method == "deep"
              else VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, vocab_sampling="uniform", seed=3))  # fmt: skip
    peft_model = peft.get_peft_model(base, prompt).eval()
    row = torch.tensor([[11, 57, 203, 99, 140, 8, 77]])
    padded = torch.tensor([[0, 0, 11, 57, 203, 99, 140, 8, 77], [5, 6, 7, 8, 9, 10, 11, 12, 13]])
    with torch.no_grad():
        alone = peft_model(input_ids=row, attention_mask=torch.ones_like(row)).logits[0]
        in_batch = peft_model(input_ids=padded, attention_mask=(padded != 0).long()).logits[0]
    torch.testing.assert_close(in_batch, alone, rtol=1e-4, atol=1e-5)


def test_models_that_cannot_take_a_prompt_where_it_goes_are_refused_saying_why():
    """Funnel's default pooling does not run the 3-token text a deep prompt's set-up runs (a bare shape error from
    inside); FSMT's encoder requires input_ids, where a prompt's rows go in as inputs_embeds (the prompt built, then
    generate failed with transformers' own TypeError; plain PEFT alike). Found 2026-12-07 by a probe."""
    torch.manual_seed(0)
    funnel = transformers.FunnelForSequenceClassification(transformers.FunnelConfig(vocab_size=common.VOCAB_SIZE, d_model=64, n_head=4,
                                                                                    d_head=16, d_inner=64, num_labels=3, pad_token_id=0))  # fmt: skip
    with pytest.raises(ValueError, match=r"FunnelForSequenceClassification does not run a text of 3 tokens alone \(RuntimeError"):
        peft.get_peft_model(funnel, DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="random"))
    fsmt = transformers.FSMTForConditionalGeneration(transformers.FSMTConfig(src_vocab_size=common.VOCAB_SIZE, tgt_vocab_size=common.VOCAB_SIZE,
                                                                             d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                                                             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                                                             pad_token_id=1, decoder_start_token_id=2, langs=["en", "de"]))  # fmt: skip
    with pytest.raises(ValueError, match=r"FSMTForConditionalGeneration takes no inputs_embeds without input_ids \(its forward, or its "
                                         r"encoder's, requires input_ids\).*use LoRA"):
        peft.get_peft_model(fsmt, VocabSampledPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, vocab_sampling="uniform"))


def test_a_roberta_decoder_runs_to_the_end_of_its_position_table():
    """RoBERTa's rows 0-1 serve padding: a table of 16 rows holds 14 positions, all of which prompt + input may use
    (a review, 2026-12-07: counting from padding_idx + 1, the check refused the last two); the 15th is refused."""
    config = transformers.RobertaConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=16, is_decoder=True, pad_token_id=1)  # fmt: skip
    torch.manual_seed(0)
    base = transformers.RobertaForCausalLM(config).eval()
    peft_model = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, seed=1)).eval()
    prompt = peft_model.get_prompt(batch_size=1).detach()
    with torch.no_grad():
        ids = torch.arange(5, 15)[None]  # 4 + 10 = 14 positions
        by_hand = base(inputs_embeds=torch.cat((prompt, base.get_input_embeddings()(ids)), dim=1)).logits[:, 4:]
        torch.testing.assert_close(peft_model(input_ids=ids).logits[:, -10:], by_hand, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match=r"needs position 14, but RobertaForCausalLM has a table of 14 positions .*at most 10 tokens"):
            peft_model(input_ids=torch.arange(5, 16)[None])


@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_building_a_prompt_leaves_every_module_in_the_mode_it_was_in(method):
    """The build runs the model in eval mode for its checks, then gave the whole model the top module's mode back: a
    layer the user had left in eval mode came back in train mode, its dropout active (a review, 2026-12-07)."""
    model = _base("qwen2")
    model.train()
    model.model.layers[0].eval()
    _prompted_model = peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, seed=3)
                                          if method == "vocab" else DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P,
                                                                                           deep_init="vocab_sampled", seed=3))  # fmt: skip
    assert model.training and not model.model.layers[0].training and model.model.layers[1].training


def _cross_attention_decoder(name: str):
    """A tiny causal LM with cross-attention layers (the decoder of an EncoderDecoderModel: GPT-2's, RoBERTa's)."""
    torch.manual_seed(0)
    if name == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, add_cross_attention=True, resid_pdrop=0.0,
                                         embd_pdrop=0.0, attn_pdrop=0.0, vocab_size=common.VOCAB_SIZE, initializer_range=0.2)  # fmt: skip
    else:
        config = ARCHITECTURES["roberta_decoder"]()
        config.add_cross_attention = True
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = None, 0
    return model


@pytest.mark.parametrize("name", ["gpt2", "roberta"])
@pytest.mark.parametrize("shared_prefix", ["auto", "off"])
def test_a_prompt_on_a_cross_attention_decoder_reads_as_text_in_front_of_its_input(name, shared_prefix):
    """Found 2026-12-07 by a review: the shared prefix ran the prompt without the rows' `encoder_hidden_states` (GPT-2's
    decoder 0.96 off the prompt fed by hand; transformers 5.0's generate, which then took the shared prefix too, other
    tokens), and the check of inputs beside the ids refused a padded RoBERTa call off the shared prefix, numbering the
    ids around their padding id but the rows in a row. The first call here is right-padded."""
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3, shared_prefix=shared_prefix)
    peft_model = peft.get_peft_model(_cross_attention_decoder(name), config).eval()
    in_front = common.sampled_prompt_ids(peft.get_peft_model(_cross_attention_decoder(name), VocabSampledPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3)))  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    ids, encoded = torch.randint(6, 300, (2, 7), generator=generator), torch.randn(2, 4, 32, generator=generator)
    mask = torch.ones_like(ids)
    ids[1, -2:], mask[1, -2:] = first_position(peft_model.get_base_model()) - 1 if name == "roberta" else 0, 0  # (RoBERTa's pad id 1)
    with torch.no_grad():
        base = _cross_attention_decoder(name)
        expected = base(input_ids=torch.cat((in_front, ids), 1), attention_mask=torch.cat((torch.ones_like(in_front), mask), 1),
                        encoder_hidden_states=encoded).logits[:, P:]  # fmt: skip
        got = peft_model(input_ids=ids, attention_mask=mask, encoder_hidden_states=encoded).logits[:, -ids.shape[1]:]
        torch.testing.assert_close(got[0], expected[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[1, :5], expected[1, :5], atol=1e-4, rtol=1e-4)
        if name == "gpt2":  # generate, cached and not, against the base model given the prompt's tokens (RoBERTa's own generate
            # with encoder_hidden_states fails in its cache under transformers 5.23 and differs from its own forward loop under 5.0)
            whole = torch.cat((in_front[:1], ids[:1]), 1)
            tokens = base.generate(input_ids=whole, attention_mask=torch.ones_like(whole), encoder_hidden_states=encoded[:1], max_new_tokens=4,
                                   do_sample=False)[:, -4:]  # fmt: skip
            for use_cache in (True, False):
                got = peft_model.generate(input_ids=ids[:1], attention_mask=mask[:1], encoder_hidden_states=encoded[:1], max_new_tokens=4,
                                          do_sample=False, use_cache=use_cache)[:, -4:]  # fmt: skip
                assert got.tolist() == tokens.tolist(), f"use_cache={use_cache}"


def _bert_to_gpt2():
    """A tiny EncoderDecoderModel: BERT's encoder (it takes token_type_ids), GPT-2's decoder with cross-attention."""
    torch.manual_seed(0)
    encoder = transformers.BertConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=256, pad_token_id=0, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)  # fmt: skip
    decoder = transformers.GPT2Config(vocab_size=common.VOCAB_SIZE, n_positions=256, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = 2, 0
    model = transformers.EncoderDecoderModel(config=config).eval()
    model.generation_config.decoder_start_token_id, model.generation_config.pad_token_id, model.generation_config.eos_token_id = 2, 0, None
    return model


def test_an_encoder_decoder_models_token_types_give_the_prompt_type_0():
    """Found 2026-12-07 by a probe: a shallow SEQ_2_SEQ_LM prompt on an EncoderDecoderModel with BERT's encoder, called
    with token_type_ids, failed inside BERT's embeddings (12 rows, 7 types), forward and generate; plain PEFT drops the
    types with a warning. The prompt's rows get type 0, as a BERT classifier's prompt: the base model given the prompt's
    tokens by hand, type 0 for them."""
    counts = dict(num_layers=2, token_dim=32, num_attention_heads=4)  # (PEFT reads none from an EncoderDecoderConfig)
    config = VocabSampledPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3, **counts)
    peft_model = peft.get_peft_model(_bert_to_gpt2(), config).eval()
    ids = torch.randint(6, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    types, start = torch.ones_like(ids), torch.full((3, 1), 2)
    whole = torch.cat((common.sampled_prompt_ids(peft_model)[:1].expand(3, -1), ids), dim=1)
    by_hand = dict(input_ids=whole, attention_mask=torch.ones_like(whole), token_type_ids=torch.cat((torch.zeros(3, P, dtype=types.dtype), types), 1))
    with torch.no_grad():
        expected = _bert_to_gpt2()(**by_hand, decoder_input_ids=start).logits
        got = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=types, decoder_input_ids=start).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        tokens = _bert_to_gpt2().generate(**by_hand, max_new_tokens=3, do_sample=False)
        got = peft_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=types, max_new_tokens=3, do_sample=False)
    assert got.tolist() == tokens.tolist()


@pytest.mark.parametrize("name", ["BertForQuestionAnswering", "BertForTokenClassification", "BertForMaskedLM", "BertForMultipleChoice",
                                  "BertForPreTraining", "BertModel", "FunnelModel", "FunnelBaseModel"])
@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_seq_cls_on_a_model_that_classifies_no_sequence_is_refused_saying_what_it_is(name, method):
    """Found 2026-12-07 by a probe: SEQ_CLS built on BERT's question-answering, token-classification, masked-LM and bare
    models; on the first the loss scored the answer span on the prompt's positions, without a word (plain PEFT alike).
    (A review: also pre-training heads, and Funnel's two bare models, which transformers lists together.)"""
    if name.startswith("Funnel"):
        config = transformers.FunnelConfig(vocab_size=common.VOCAB_SIZE, d_model=32, n_head=4, d_head=8, d_inner=64, block_sizes=[1, 1],
                                           num_decoder_layers=1)  # fmt: skip
    else:
        config = transformers.BertConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, pad_token_id=0)  # fmt: skip
    prompt = (VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, vocab_sampling="uniform") if method == "vocab"
              else DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, deep_init="random"))  # fmt: skip
    with pytest.raises(ValueError, match=rf"task_type='SEQ_CLS' needs a sequence classifier .*{name} is a"):
        peft.get_peft_model(getattr(transformers, name)(config), prompt)


def test_a_callers_own_mistake_in_a_seq2seq_generate_is_raised_as_transformers_says_it():
    """A review of 2026-12-08 found the new refusal of inputs beside embeddings (Florence-2) blaming a caller's own
    mistakes on them: a misspelt setting, or num_return_sequences above num_beams, came out as "refuses this call's
    decoder_input_ids beside inputs_embeds ... use LoRA". They come out as transformers raises them."""
    model = peft.get_peft_model(common.tiny_model("t5")[0], VocabSampledPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3, seed=3))
    batch = common.batch_for("t5")
    decoder = torch.zeros(batch["input_ids"].shape[0], 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"temprature") as raised:
        model.generate(**batch, decoder_input_ids=decoder, max_new_tokens=3, temprature=0.5)
    assert "beside inputs_embeds" not in str(raised.value)
    with pytest.raises(ValueError, match=r"num_return_sequences") as raised:
        model.generate(**batch, decoder_input_ids=decoder, max_new_tokens=3, num_beams=2, num_return_sequences=3)
    assert "beside inputs_embeds" not in str(raised.value)


def test_running_out_of_memory_in_a_deep_init_is_raised_as_it_is():
    """A review of 2026-12-08: the deep init's rewording of a model's refusal of rows caught an out-of-memory error too,
    and advised deep_init='zero' under another exception type (batch-size finders look for the OOM)."""
    model = common.tiny_model("llama")[0]

    def out_of_memory(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    handle = model.model.layers[0].self_attn.register_forward_pre_hook(out_of_memory, with_kwargs=True)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            peft.get_peft_model(model, DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=3))
    finally:
        handle.remove()


def test_a_token_dim_of_numpys_integer_type_builds():
    """A review of 2026-12-08: the new token_dim check refused numpy.int64(32), which built before."""
    import numpy

    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, token_dim=numpy.int64(32))
    model = peft.get_peft_model(common.tiny_model("llama")[0], config)
    assert type(model.peft_config["default"].token_dim) is int


@pytest.mark.parametrize("family, message", [
    ("ibert", r"IBertForSequenceClassification's input embedding \(QuantEmbedding\) returns a tuple, not embedding rows"),
    ("canine", r"CanineForSequenceClassification has no input embedding table"),
])  # fmt: skip
def test_a_model_whose_input_embedding_gives_no_rows_is_refused_naming_it(family, message):
    """Found 2026-12-08 by a probe: I-BERT's quantised embedding returns (rows, scaling factor), a bare AttributeError
    from the prompt's start (plain PEFT builds, then fails at its first forward); Canine hashes characters and has no
    embedding table, transformers' bare "get_input_embeddings not auto-handled"."""
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3)
    config = (transformers.IBertConfig(vocab_size=common.VOCAB_SIZE, pad_token_id=0, **sizes) if family == "ibert"
              else transformers.CanineConfig(num_hash_buckets=64, **sizes))  # fmt: skip
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    with pytest.raises(ValueError, match=message):
        peft.get_peft_model(model, VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, vocab_sampling="uniform", seed=3))


def test_a_deep_start_that_a_models_attention_reads_otherwise_warns(tmp_path):
    """Found 2026-12-08 by a probe: DiffLlama attends twice per layer, so a deep prompt started from a shallow prompt
    (or sampled tokens) was 1.90 off that prompt's logits at step 0, where the README promises them, without a word."""
    common_sizes = dict(vocab_size=common.VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, pad_token_id=0, initializer_range=0.1)  # fmt: skip

    def build():
        torch.manual_seed(0)
        return transformers.DiffLlamaForCausalLM(transformers.DiffLlamaConfig(**common_sizes)).eval()

    shallow = peft.get_peft_model(build(), VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, vocab_sampling="uniform", seed=3))
    shallow.save_pretrained(tmp_path / "shallow")
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="prompt", init_prompt=str(tmp_path / "shallow"))
    import re
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            peft.get_peft_model(build(), config)
        except ValueError as refusal:  # (transformers 5.0's DiffLlama runs no attention through the interface)
            if "ran no attention through transformers' attention interface" in str(refusal):
                pytest.skip(str(refusal)[:120])
            raise
    expected = (r"DiffLlamaForCausalLM's attention does more with keys and values in front of its own than attend to them .*"
                r"deep_init='prompt' starts from the keys and values init_prompt leaves")  # fmt: skip
    assert any(re.search(expected, str(warning.message)) for warning in caught), [str(warning.message) for warning in caught]


def test_a_deep_start_from_tokens_on_a_causal_decoder_that_takes_no_position_ids_warns(tmp_path):
    """Found 2026-12-08 by a probe: BartForCausalLM (and Marian's, Pegasus', Whisper's) takes no position_ids, so the
    input was numbered from 0 beside a deep prompt in its layers: a start from sampled tokens 4.4 off those tokens fed by
    hand on a logit scale of 4.1, without a word. Warned; a review: a random start builds without it, and a saved deep
    adapter still loads."""
    import warnings

    config = transformers.BartConfig(vocab_size=common.VOCAB_SIZE, d_model=32, decoder_layers=2, encoder_layers=2, decoder_attention_heads=4,
                                     encoder_attention_heads=4, decoder_ffn_dim=64, encoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0)  # fmt: skip

    def build():
        torch.manual_seed(0)
        return transformers.BartForCausalLM(config).eval()

    sampled = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="vocab_sampled", vocab_sampling="uniform", seed=3)
    with pytest.warns(UserWarning, match=r"BartForCausalLM.forward takes no position_ids, so the input is numbered from 0 beside a deep"):
        peft.get_peft_model(build(), sampled)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*takes no position_ids.*")
        model = peft.get_peft_model(build(), DeepPromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=P, deep_init="random", seed=3))  # fmt: skip
        model.save_pretrained(tmp_path / "deep")
        peft.PeftModel.from_pretrained(build(), tmp_path / "deep")


def test_a_causal_lm_keeping_its_cache_in_a_class_of_its_own_is_refused():
    """Found 2026-12-08 by a probe: XLNet's generate keeps mems, not a DynamicCache, and failed in its own masks with a
    prompt (plain PEFT alike); under transformers 5.0 an LFM2 of attention layers only kept its own cache class, and the
    shared prefix failed at every forward."""
    config = transformers.XLNetConfig(vocab_size=common.VOCAB_SIZE, d_model=32, n_layer=2, n_head=4, d_inner=64, pad_token_id=0)
    with pytest.raises(ValueError, match=r"XLNetLMHeadModel's generate keeps its cache in a class of its own"):
        peft.get_peft_model(transformers.XLNetLMHeadModel(config).eval(), VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
