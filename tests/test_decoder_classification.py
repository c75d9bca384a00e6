"""SEQ_CLS on a causal decoder (GPT-2, Llama): the model classifies from each row's last real token,
so a row's logits must not depend on the padding around it, as they do not without a prompt."""

import functools

import peft
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BloomConfig, FalconConfig, GPT2Config, LlamaConfig, MistralConfig, MptConfig

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, MixturePromptTuningConfig, VocabSampledPromptTuningConfig

PAD = 0
LENGTHS = (7, 4, 5)


def _classifier(model_name: str):
    torch.manual_seed(0)
    if model_name == "gpt2":
        config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, bos_token_id=2, eos_token_id=3)
    elif model_name == "falcon":  # its classifier takes no position_ids (they would fall into **kwargs, unread)
        config = FalconConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_kv_heads=2, new_decoder_architecture=True,
                              vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, bos_token_id=2, eos_token_id=3, initializer_range=0.2)  # fmt: skip
    elif model_name == "mistral":  # a sliding window (8) shorter than prompt + the longest row
        config = MistralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                               vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, bos_token_id=2, eos_token_id=3, sliding_window=8)  # fmt: skip
    elif model_name == "bloom":  # ALiBi built from the attention mask; no position_ids
        config = BloomConfig(n_layer=2, hidden_size=32, n_head=4, vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, bos_token_id=2,
                             eos_token_id=3, initializer_range=0.2)  # fmt: skip
    elif model_name == "mpt":  # ALiBi counted over slots, padding included
        config = MptConfig(n_layers=2, d_model=32, n_heads=4, expansion_ratio=2, max_seq_len=128, vocab_size=common.VOCAB_SIZE,
                           pad_token_id=PAD, bos_token_id=2, eos_token_id=3, initializer_range=0.2)  # fmt: skip
    else:
        config = LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                             vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, bos_token_id=2, eos_token_id=3)  # fmt: skip
    config.num_labels = 3
    return AutoModelForSequenceClassification.from_config(config).eval()


@functools.lru_cache(maxsize=None)
def _bank(model_name: str) -> tuple[str, ...]:
    """Two saved prompts of this classifier (a mixture's bank must come from the same model)."""
    folders = []
    for seed in (1, 2):
        config = VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform", seed=seed,
                                                **_counts(model_name))  # fmt: skip
        folder = common.fixture_dir(f"decoder-classifier-bank-{model_name}-")
        peft.get_peft_model(_classifier(model_name), config).save_pretrained(folder)
        folders.append(folder)
    return tuple(folders)


def _counts(model_name: str) -> dict:
    """MPT's config names its sizes as PEFT does not look for them (d_model, n_layers): given by hand, as PEFT asks."""
    return dict(token_dim=32, num_layers=2, num_attention_heads=4) if model_name == "mpt" else {}


def _prompted(model_name: str, method: str):
    if method == "vocab":
        config = VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, vocab_sampling="uniform", seed=3,
                                                **_counts(model_name))  # fmt: skip
    elif method == "deep":
        config = DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, deep_init="random", seed=3)
    else:
        config = MixturePromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, source_prompts=list(_bank(model_name)),
                                           mixing=method.removeprefix("mixture_"), num_tasks=2, attention_hidden=8, **_counts(model_name))  # fmt: skip
    return peft.get_peft_model(_classifier(model_name), config).eval()


def _rows():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(4, common.VOCAB_SIZE, (length,), generator=generator) for length in LENGTHS]


def _batch(rows, side: str):
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        place = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[index, place], mask[index, place] = row, 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("method", ["vocab", "deep", "mixture_task", "mixture_attention"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_rows_class_logits_do_not_depend_on_its_padding(model_name, side, method, embeds=False):
    model, rows = _prompted(model_name, method), _rows()
    tasks = {"task_ids": torch.tensor([0, 1, 1])} if method.startswith("mixture") else {}
    with torch.no_grad():
        alone = torch.cat([model(**_batch([row], "right"), **{k: v[i : i + 1] for k, v in tasks.items()}).logits
                           for i, row in enumerate(rows)])  # fmt: skip
        batch = _batch(rows, side)
        if embeds:
            batch["inputs_embeds"] = model.get_base_model().get_input_embeddings()(batch.pop("input_ids"))
        batched = model(**batch, **tasks).logits
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["vocab", "deep", "mixture_task"])
@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_right_padded_ids_without_a_mask_are_read_at_their_last_real_token_as_the_base_model_reads_them(model_name, method):
    """Found 2026-12-07 by a probe: without an attention_mask a shallow prompt's classifier read a right-padded row at
    its last position, a pad (2.18 off the row alone on GPT-2; plain PEFT 2.69), where the base model and a deep prompt
    find the last token that is not the pad id. A row ending in the pad id (pad = eos, GPT-2's usual set-up) is read
    before it, as the base model reads it."""
    model, rows = _prompted(model_name, method), _rows()
    tasks = {"task_ids": torch.tensor([0, 1, 1])} if method.startswith("mixture") else {}
    with torch.no_grad():
        alone = torch.cat([model(input_ids=row[None], **{k: v[i : i + 1] for k, v in tasks.items()}).logits for i, row in enumerate(rows)])
        batched = model(input_ids=_batch(rows, "right")["input_ids"], **tasks).logits
        ending_in_pad = model(input_ids=torch.cat((rows[0], torch.tensor([PAD])))[None], **{k: v[:1] for k, v in tasks.items()}).logits
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ending_in_pad, alone[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["vocab", "deep", "mixture_task"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_rows_class_logits_do_not_depend_on_its_padding_given_embeddings(model_name, side, method):
    """Found 2026-12-06 by a probe: given inputs_embeds, the classifier reads each row's last position (it finds the
    last real token from input_ids only), and a deep prompt passed right-padded rows as they were: 0.13-0.25 off the
    rows alone (the base model alone: 0.26-0.46). Shallow prompts reordered them already."""
    test_a_rows_class_logits_do_not_depend_on_its_padding(model_name, side, method, embeds=True)


@pytest.mark.parametrize("method", ["vocab", "mixture_task"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_classifier_that_takes_no_position_ids_is_padding_independent_too(side, method):
    """FalconForSequenceClassification drops position_ids: a left-padded row put its padding between the prompt and
    its tokens, and its logits moved (0.27 vs 0.11 on one class); rows are now reordered, padding first."""
    test_a_rows_class_logits_do_not_depend_on_its_padding("falcon", side, method)


@pytest.mark.parametrize("method", ["vocab", "mixture_task"])  # (deep prompts are refused there: no attention interface)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("model_name", ["bloom", "mpt"])
def test_an_alibi_classifier_is_padding_independent_too(model_name, side, method):
    """Found 2026-12-07 by a probe: Bloom's and MPT's attention modules carry no `is_causal`, so their classifiers were
    not taken for causal decoders: a right-padded row was read at its last position, a pad (Bloom 2.22 off the row
    alone, MPT 0.285; plain PEFT 1.46 and 0.47). MPT counts its ALiBi distances over slots: padding goes first there."""
    test_a_rows_class_logits_do_not_depend_on_its_padding(model_name, side, method)


@pytest.mark.parametrize("summary_type", ["last", "first"])
def test_an_xlnet_classifier_reads_the_token_its_summary_names(summary_type):
    """XLNet has a causal LM and no masked LM, so it counts as a decoder: its classifier reads the last token by default
    (a right-padded row was 0.035 off the row alone before, 0 now); with summary_type="first" it reads the first and
    its rows stay in place (found 2026-12-07 by a review: they were reordered too, 0.029 off)."""
    from transformers import XLNetConfig

    torch.manual_seed(0)
    config = XLNetConfig(d_model=32, n_layer=2, n_head=4, d_inner=64, vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, num_labels=2,
                         summary_type=summary_type)  # fmt: skip
    base = AutoModelForSequenceClassification.from_config(config).eval()
    model = peft.get_peft_model(base, VocabSampledPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4, vocab_sampling="uniform", seed=3))
    rows = _rows()
    with torch.no_grad():
        alone = torch.cat([model(**_batch([row], "right")).logits for row in rows])
        torch.testing.assert_close(model(**_batch(rows, "right")).logits, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["vocab", "deep", "mixture_task"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_sliding_window_classifier_is_padding_independent_too(side, method):
    """Found 2026-12-06: a left-padded row kept its padding between the prompt and its tokens, and a sliding window
    counts those slots: past the window the row lost the prompt's first rows earlier than alone."""
    test_a_rows_class_logits_do_not_depend_on_its_padding("mistral", side, method)


@pytest.mark.parametrize("method", ["vocab", "deep"])
def test_the_loss_of_a_padded_batch_is_the_loss_of_its_rows(method):
    model, rows = _prompted("llama", method), _rows()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        batched = model(**_batch(rows, "right"), labels=labels).loss
        alone = torch.stack([model(input_ids=row[None], labels=labels[i : i + 1]).loss for i, row in enumerate(rows)]).mean()
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_deep_prompt_from_text_puts_the_input_after_the_text(model_name):
    """deep_init="text" keys/values are what the text leaves at positions 0..P-1, so the input must sit at P..: a
    decoder classifier's deep path gave it 0..L-1 (GPT-2 logits 0.16 off the base model on text + input, Llama 1.68)."""
    text = " ".join(common.CORPUS[:2])
    text_ids = common.tiny_tokenizer()(text, add_special_tokens=False)["input_ids"][:5]
    config = DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, deep_init="text", init_text=text,
                                    tokenizer_name_or_path=common.tiny_tokenizer_dir())  # fmt: skip
    model, row = peft.get_peft_model(_classifier(model_name), config).eval(), _rows()[0][None]
    with torch.no_grad():
        expected = _classifier(model_name)(input_ids=torch.cat((torch.tensor([text_ids]), row), dim=1)).logits
        for inputs in ({"input_ids": row}, {"input_ids": row, "attention_mask": torch.ones_like(row)},
                       {"input_ids": row, "position_ids": torch.arange(row.shape[1])[None]}):  # fmt: skip
            torch.testing.assert_close(model(**inputs).logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_deep_prompt_from_a_shallow_one_starts_at_its_logits(model_name, side):
    shallow = _prompted(model_name, "vocab")
    folder = common.fixture_dir(f"decoder-classifier-shallow-{model_name}-")
    shallow.save_pretrained(folder)
    deep = peft.get_peft_model(_classifier(model_name), DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5,
                                                                               deep_init="prompt", init_prompt=folder)).eval()  # fmt: skip
    batch = _batch(_rows(), side)
    with torch.no_grad():
        torch.testing.assert_close(deep(**batch).logits, shallow(**batch).logits, rtol=1e-5, atol=1e-5)


def test_a_deep_prompt_refuses_an_input_past_a_classifiers_position_table():
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=common.VOCAB_SIZE, pad_token_id=PAD, n_positions=16)
    config.num_labels = 3
    base = AutoModelForSequenceClassification.from_config(config).eval()
    model = peft.get_peft_model(base, DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, deep_init="random"))
    with torch.no_grad():
        model(input_ids=torch.full((1, 11), 5))  # 5 + 11 = 16 positions: fits
        with pytest.raises(ValueError, match="needs position 16"):
            model(input_ids=torch.full((1, 12), 5), attention_mask=torch.ones(1, 12, dtype=torch.long))


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_a_deep_prompt_on_a_decoder_classifier_exports_to_prefix_tuning_with_equal_logits(model_name, tmp_path):
    """Its input follows the prompt as in a causal LM, so PEFT's cache prefix holds it exactly (unpadded and
    right-padded rows): the export was refused, and the save had no plain copy. CARTRIDGE, the same prefix, too."""
    from peft_softprompt_ext import export_cartridge, export_prefix_tuning

    model = _prompted(model_name, "deep")
    common.train_steps(model, {**_batch(_rows(), "right"), "labels": torch.tensor([0, 2, 1])}, steps=2)
    model.eval()
    export_prefix_tuning(model, tmp_path / "prefix")
    export_cartridge(model, tmp_path / "cartridge")
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "vanilla" / "adapter_config.json").exists()
    _classifier(model_name).save_pretrained(tmp_path / "base")
    batch = _batch(_rows(), "right")
    with torch.no_grad():
        expected = model(**batch).logits
    loaded = common.plain_peft_logits(tmp_path / "base", [tmp_path / "prefix", tmp_path / "saved" / "vanilla", tmp_path / "cartridge"],
                                      "AutoModelForSequenceClassification", batch, expected, tmp_path)  # fmt: skip
    assert [run["type"] for run in loaded] == ["PREFIX_TUNING", "PREFIX_TUNING", "CARTRIDGE"], loaded
    assert all(run["difference"] <= 1e-5 for run in loaded), loaded


def test_a_deep_decoder_classifier_takes_a_4d_mask_with_its_positions():
    """With position_ids given, the 2D prompt mask the positions would come from is not needed: a 4D mask was refused
    as if it were a cache's (found by a review)."""
    model, row = _prompted("llama", "deep"), _rows()[0][None]
    length = row.shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))[None, None]
    with torch.no_grad():
        expected = model(input_ids=row, attention_mask=torch.ones_like(row)).logits
        got = model(input_ids=row, attention_mask=causal, position_ids=torch.arange(length)[None]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
