"""Models with a learned table of absolute positions (GPT-2, BERT): a prompt in front moves the input P positions
on, so prompt + input can run past the table. That failed with a bare `IndexError: index out of range in self`
inside torch's embedding lookup (GPT-2) or "The expanded size of the tensor (261) must match the existing size
(256)" (BERT), in forward and part-way through generate; now a ValueError names the numbers and what to do."""

import peft
import pytest
import torch

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig

TABLE = 256  # the tiny GPT-2's n_positions and the tiny BERT's max_position_embeddings
P = 5  # every config of testing_common.all_configs; the deep prompt below too


def _model(model_name: str, config_name: str):
    if config_name == "deep":
        model, task_type = common.tiny_model(model_name)
        return peft.get_peft_model(model, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=P, deep_init="random", seed=1))
    return common.make_peft_model(model_name, config_name)[0]


def _extra(config_name: str, rows: int) -> dict:
    return {"task_ids": torch.zeros(rows, dtype=torch.long)} if config_name.startswith("mixture_task") else {}


def _ids(length: int, rows: int = 1) -> dict:
    input_ids = torch.randint(6, 300, (rows, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
@pytest.mark.parametrize("shared_prefix", [None, "off"])
def test_a_causal_lm_forward_past_the_position_table_is_refused_naming_the_numbers(config_name, shared_prefix):
    peft_model = _model("gpt2", config_name)
    if shared_prefix is not None and config_name != "deep":
        peft_model.peft_config["default"].shared_prefix = shared_prefix
    with torch.no_grad():
        fits = peft_model(**_ids(TABLE - P), **_extra(config_name, 1)).logits  # the last position is TABLE - 1
        assert fits.shape[1] in (TABLE - P, TABLE)
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* position {TABLE}, .* {TABLE} positions \(config.n_positions\)"):
            peft_model(**_ids(TABLE - P + 1), **_extra(config_name, 1))


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
@pytest.mark.parametrize("shared_prefix", [None, "off"])
def test_given_position_ids_past_the_position_table_are_refused_naming_the_numbers(config_name, shared_prefix):
    """Found 2026-12-07 by a probe: a short input with the caller's own position_ids near the table's end (248..254
    of 256) failed with a bare IndexError inside torch: the check skipped reading positions whenever the call's
    length was far from the table's end, as if positions always counted from 0."""
    peft_model = _model("gpt2", config_name)
    if shared_prefix is not None and config_name != "deep":
        peft_model.peft_config["default"].shared_prefix = shared_prefix
    with torch.no_grad():
        peft_model(**_ids(7), position_ids=torch.arange(TABLE - P - 7, TABLE - P)[None], **_extra(config_name, 1))  # up to TABLE - 1
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* position {TABLE + 1}, .* {TABLE} positions \(config.n_positions\)"):
            peft_model(**_ids(7), position_ids=torch.arange(TABLE - P - 5, TABLE - P + 2)[None], **_extra(config_name, 1))


@pytest.mark.parametrize("config_name", ["vocab_uniform", "mixture_task", "deep"])
def test_a_prompt_that_leaves_no_position_to_the_input_is_refused_when_built(config_name):
    """Found 2026-12-07 by a probe: a prompt of 256 or more virtual tokens on GPT-2 (a table of 256) failed with a bare
    IndexError, when built (a deep prompt's init ran it through the model) or at the first forward."""
    from peft_softprompt_ext import MixturePromptTuningConfig, VocabSampledPromptTuningConfig

    model, task_type = common.tiny_model("gpt2")
    config = {"vocab_uniform": VocabSampledPromptTuningConfig(task_type=task_type, num_virtual_tokens=TABLE, vocab_sampling="uniform"),
              "mixture_task": MixturePromptTuningConfig(task_type=task_type, num_virtual_tokens=TABLE, source_prompts=list(common.bank_folders("gpt2"))),
              "deep": DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=TABLE, deep_init="random")}[config_name]  # fmt: skip
    with pytest.raises(ValueError, match=rf"num_virtual_tokens={TABLE} .* table of {TABLE} positions \(config.n_positions\): no input token"):
        peft.get_peft_model(model, config)

def test_a_deep_prompt_on_an_encoder_is_limited_by_the_table_only_where_its_start_runs_it(tmp_path):
    """A deep prompt on an encoder leaves the input its own positions: it may be longer than the table, but its start
    runs its rows through the model (BERT's type buffer: a bare size error) except for "zero"; a load runs nothing (a
    review found the first version of the build-time check refusing both, and an adapter saved before it)."""
    bert, task_type = common.tiny_model("bert")
    with pytest.raises(ValueError, match=rf"num_virtual_tokens={TABLE} is started by running its rows through the model "
                                         rf"\(deep_init='random'\), but BertForSequenceClassification has a table of {TABLE}"):
        peft.get_peft_model(bert, DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=TABLE, deep_init="random"))
    long = peft.get_peft_model(common.tiny_model("bert")[0], DeepPromptTuningConfig(task_type=task_type, num_virtual_tokens=TABLE + 1, deep_init="zero"))
    batch = common.inference_batch("bert")
    long.save_pretrained(tmp_path)
    loaded = peft.PeftModel.from_pretrained(common.tiny_model("bert")[0], tmp_path)
    torch.testing.assert_close(common.forward_logits(loaded, batch), common.forward_logits(long, batch))


@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_past_the_position_table_is_refused_and_up_to_it_works(config_name, use_cache):
    peft_model = _model("gpt2", config_name)
    length = TABLE - P - 10
    settings = dict(do_sample=False, use_cache=use_cache, pad_token_id=0)
    with torch.no_grad():
        # the last generated token is never fed: positions 0 .. P + length + 10 - 2 are used
        out = peft_model.generate(**_ids(length), max_new_tokens=11, min_new_tokens=11, **settings)
        assert out.shape[1] == length + 11
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* {TABLE} positions \(config.n_positions\)"):
            peft_model.generate(**_ids(length), max_new_tokens=12, min_new_tokens=12, **settings)


def test_left_padding_that_keeps_every_row_inside_the_table_is_not_refused():
    """Positions follow the mask: a row padded past the table's length still has its positions inside it."""
    peft_model = _model("gpt2", "vocab_uniform")
    batch = _ids(TABLE, rows=2)
    batch["attention_mask"][:, :P] = 0  # each row holds TABLE - P real tokens: positions 0 .. TABLE - 1
    unpadded = _ids(TABLE, rows=2)["input_ids"][:, P:]
    with torch.no_grad():
        padded_logits = peft_model(**batch).logits[:, -1]
        alone = peft_model(input_ids=unpadded, attention_mask=torch.ones_like(unpadded)).logits[:, -1]
    torch.testing.assert_close(padded_logits, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_name", ["bert", "gpt2_seq_cls"])
def test_a_classifier_input_past_the_position_table_is_refused(model_name):
    if model_name == "gpt2_seq_cls":
        from transformers import GPT2Config, GPT2ForSequenceClassification

        from peft_softprompt_ext import VocabSampledPromptTuningConfig

        torch.manual_seed(0)
        base = GPT2ForSequenceClassification(GPT2Config(vocab_size=common.VOCAB_SIZE, n_positions=TABLE, n_embd=32, n_layer=2, n_head=4,
                                                        num_labels=2, pad_token_id=0)).eval()  # fmt: skip
        peft_model, field = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, seed=1)), "n_positions"
    else:
        peft_model, field = _model("bert", "vocab_uniform"), "max_position_embeddings"
    with torch.no_grad():
        assert peft_model(**_ids(TABLE - P)).logits.shape == (1, 2)
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* {TABLE} positions \(config.{field}\)") as refused:
            peft_model(**_ids(TABLE - P + 1))
    assert f"truncate inputs to at most {TABLE - P} tokens, or" in str(refused.value) and "generate" not in str(refused.value)


def _tiny_bart():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(vocab_size=common.VOCAB_SIZE, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=TABLE,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2)  # fmt: skip
    return BartForConditionalGeneration(config).eval()


def test_a_seq2seq_encoder_input_past_the_position_table_is_refused():
    """BART looks its encoder positions up in a learned table: forward and generate crashed with a bare IndexError.
    The refusal's advice is the encoder's: the generated tokens go to the decoder."""
    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    peft_model = peft.get_peft_model(_tiny_bart(), VocabSampledPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, seed=1))
    decoder = {"decoder_input_ids": torch.full((1, 2), 2)}
    with torch.no_grad():
        peft_model(**_ids(TABLE - P), **decoder)
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* position {TABLE}, .* {TABLE} positions \(config.max_position_embeddings\)"):
            peft_model(**_ids(TABLE - P + 1), **decoder)
        with pytest.raises(ValueError, match=rf"{P} virtual tokens .* position {TABLE}, ") as refused:
            peft_model.generate(**_ids(TABLE - P + 1), max_new_tokens=2)
    # found 2026-12-07 by a probe: the advice counted the tokens to generate, which go to the decoder and its own table
    assert f"truncate inputs to at most {TABLE - P} tokens, or" in str(refused.value) and "generate" not in str(refused.value)


def test_a_table_numbered_from_past_its_padding_index_counts_only_the_positions_tokens_can_use():
    """RoBERTa numbers positions from padding_idx + 1: max_position_embeddings=66 with pad 1 holds 64 tokens; the
    check counted 66, so 65-66 crashed inside the model and the message named 66 as the limit."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=1, num_labels=2)  # fmt: skip
    peft_model = peft.get_peft_model(RobertaForSequenceClassification(config).eval(),
                                     VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P, seed=1))  # fmt: skip
    with torch.no_grad():
        assert peft_model(**_ids(64 - P)).logits.shape == (1, 2)
        with pytest.raises(ValueError, match=r"table of 64 positions \(config.max_position_embeddings=66, of which the first 2 are not used"):
            peft_model(**_ids(64 - P + 1))


def test_models_without_a_position_table_are_not_limited():
    """Llama (rotary) runs past max_position_embeddings as the base model does; nothing to refuse."""
    peft_model = _model("llama", "vocab_uniform")
    limit = peft_model.base_model.config.max_position_embeddings
    with torch.no_grad():
        assert peft_model(**_ids(limit + 3)).logits.shape[1] in (limit + 3, limit + 3 + P)


def test_a_table_grown_after_the_first_call_is_read_again():
    """Found 2026-12-07 by a probe: the table's size was found at the first call and kept, so after GPT-2's table was
    grown from 256 to 512 positions (`config.n_positions` with it) calls the base model runs were refused at 256."""
    peft_model = _model("gpt2", "vocab_uniform").eval()
    base = peft_model.get_base_model()
    with torch.no_grad():
        peft_model(**_ids(7))
        grown = torch.nn.Embedding(2 * TABLE, base.transformer.wpe.embedding_dim)
        grown.weight[:TABLE] = base.transformer.wpe.weight
        base.transformer.wpe, base.config.n_positions = grown, 2 * TABLE
        assert peft_model(**_ids(TABLE)).logits.shape[1] == TABLE + P
        with pytest.raises(ValueError, match=rf"position {2 * TABLE}, .* {2 * TABLE} positions \(config.n_positions\)"):
            peft_model(**_ids(2 * TABLE - P + 1))
