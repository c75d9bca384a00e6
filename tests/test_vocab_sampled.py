"""Vocabulary-sampled initialisation: each strategy, reproducibility, and every bad input."""

import peft
import pytest
import torch

import testing_common as common
from peft_softprompt_ext import VocabSampledPromptTuningConfig, describe_prompt
from peft_softprompt_ext.init import merge_rank_order, usable_token_ids
from peft_softprompt_ext.vocab_sampled import initial_token_rows

TOKENIZER_DIR = common.tiny_tokenizer_dir()


def config(**kwargs):
    kwargs.setdefault("task_type", "CAUSAL_LM")
    kwargs.setdefault("num_virtual_tokens", 8)
    return VocabSampledPromptTuningConfig(**kwargs)


def prompt_rows(model, **kwargs):
    return peft.get_peft_model(model, config(**kwargs)).prompt_encoder["default"].embedding.weight.detach()


def rows_to_ids(model, rows):
    """Which embedding row each prompt row is an exact copy of (-1 if none)."""
    table = model.get_input_embeddings().weight.detach()
    distances = torch.cdist(rows, table, compute_mode="donot_use_mm_for_euclid_dist")
    best = distances.argmin(dim=1)
    return torch.where(distances.min(dim=1).values < 1e-6, best, torch.full_like(best, -1))


tiny_gemma = common.tiny_gemma


def test_usable_vocabulary_excludes_special_unused_and_rows_past_the_tokenizer():
    tokenizer = common.tiny_tokenizer()
    usable = set(usable_token_ids(common.VOCAB_SIZE, tokenizer).tolist())
    for token in common.SPECIAL_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) not in usable
    assert max(usable) < len(tokenizer) < common.VOCAB_SIZE


def test_usable_vocabulary_without_tokenizer_excludes_model_special_ids():
    model, _ = common.tiny_model("llama")
    usable = usable_token_ids(common.VOCAB_SIZE, None, model.config)
    assert 0 not in usable.tolist() and len(usable) == common.VOCAB_SIZE - 3  # pad 0, bos 1, eos 2


@pytest.mark.parametrize("strategy", ["uniform", "top_frequent", "task_corpus"])
def test_sampled_rows_are_distinct_usable_token_embeddings(strategy):
    model, _ = common.tiny_model("gpt2")
    extra = {} if strategy == "uniform" else {"tokenizer_name_or_path": TOKENIZER_DIR}
    if strategy == "task_corpus":
        extra["corpus"] = common.CORPUS
    if strategy == "top_frequent":
        extra["num_frequent_tokens"] = 50
    ids = rows_to_ids(model, prompt_rows(model, vocab_sampling=strategy, **extra))
    usable = set(usable_token_ids(common.VOCAB_SIZE, common.tiny_tokenizer() if extra else None, model.config).tolist())
    assert (ids >= 0).all() and len(set(ids.tolist())) == 8  # without replacement
    assert set(ids.tolist()) <= usable


def test_top_frequent_draws_only_from_the_n_best_ranked_tokens():
    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    ids = rows_to_ids(model, prompt_rows(model, vocab_sampling="top_frequent", num_frequent_tokens=10,
                                         tokenizer_name_or_path=TOKENIZER_DIR))  # fmt: skip
    usable = set(usable_token_ids(common.VOCAB_SIZE, tokenizer).tolist())
    top = [i for i in merge_rank_order(tokenizer).tolist() if i in usable][:10]
    assert set(ids.tolist()) <= set(top)


def test_top_frequent_with_a_corpus_counts_tokens_in_it():
    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    corpus = ["the the the cat", "the cat sat"] * 5
    ids = rows_to_ids(model, prompt_rows(model, num_virtual_tokens=3, vocab_sampling="top_frequent", num_frequent_tokens=3,
                                         corpus=corpus, tokenizer_name_or_path=TOKENIZER_DIR))  # fmt: skip
    corpus_ids = {i for text in corpus for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    assert set(ids.tolist()) <= corpus_ids


def test_task_corpus_samples_only_tokens_that_occur_in_the_corpus():
    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    corpus = ["the movie was great", "a terrible film"]
    ids = rows_to_ids(model, prompt_rows(model, num_virtual_tokens=4, vocab_sampling="task_corpus", corpus=corpus,
                                         tokenizer_name_or_path=TOKENIZER_DIR))  # fmt: skip
    corpus_ids = {i for text in corpus for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    assert set(ids.tolist()) <= corpus_ids


def test_class_labels_come_first_and_multi_token_labels_are_averaged():
    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    labels = [" positive", " negative review"]
    rows = prompt_rows(model, vocab_sampling="class_labels", class_labels=labels, num_frequent_tokens=50,
                       tokenizer_name_or_path=TOKENIZER_DIR)  # fmt: skip
    embeddings = model.get_input_embeddings()
    for row, label in zip(rows, labels):
        ids = torch.tensor(tokenizer(label, add_special_tokens=False)["input_ids"])
        torch.testing.assert_close(row, embeddings(ids).mean(0))
    assert len(tokenizer(labels[1], add_special_tokens=False)["input_ids"]) > 1
    assert (rows_to_ids(model, rows[2:]) >= 0).all()


def test_same_seed_same_prompt_other_seed_other_prompt():
    model, _ = common.tiny_model("gpt2")
    first = prompt_rows(model, vocab_sampling="uniform", seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    torch.testing.assert_close(prompt_rows(model, vocab_sampling="uniform", seed=7), first, rtol=0, atol=0)
    assert not torch.equal(prompt_rows(model, vocab_sampling="uniform", seed=8), first)


def test_norm_matching_scales_rows_to_the_mean_vocabulary_norm():
    model, _ = common.tiny_model("gpt2")
    rows = prompt_rows(model, vocab_sampling="class_labels", class_labels=[" negative review"], norm_matching=True,
                       num_frequent_tokens=50, tokenizer_name_or_path=TOKENIZER_DIR)  # fmt: skip
    usable = usable_token_ids(common.VOCAB_SIZE, common.tiny_tokenizer())
    target = model.get_input_embeddings()(usable).norm(dim=-1).mean()
    torch.testing.assert_close(rows.norm(dim=-1), target.expand(8).detach(), rtol=1e-5, atol=1e-5)


def test_initialisation_happens_in_the_space_the_model_consumes():
    """Gemma scales embedding outputs by sqrt(hidden): prompt rows must match module outputs, not .weight rows."""
    model = tiny_gemma()
    rows = prompt_rows(model, vocab_sampling="class_labels", class_labels=[" positive"], num_frequent_tokens=50,
                       tokenizer_name_or_path=TOKENIZER_DIR)  # fmt: skip
    ids = torch.tensor(common.tiny_tokenizer()(" positive", add_special_tokens=False)["input_ids"])
    consumed = model.get_input_embeddings()(ids).mean(0)
    torch.testing.assert_close(rows[0], consumed.detach())
    raw = model.get_input_embeddings().weight[ids].mean(0)
    assert rows[0].norm() > 7 * raw.norm()  # sqrt(64) = 8


def test_generate_with_cache_on_a_scaled_embedding_model():
    peft_model = peft.get_peft_model(tiny_gemma(), config(vocab_sampling="uniform", num_virtual_tokens=4))
    common.check_generate_matches_no_cache(peft_model, common.batch_for("llama", left_pad=True), max_new_tokens=32)


def test_saved_config_keeps_a_corpus_digest_not_the_corpus(tmp_path):
    cfg = config(vocab_sampling="task_corpus", corpus=["a b", "c d"], tokenizer_name_or_path=TOKENIZER_DIR)
    assert cfg.corpus_digest.startswith("sha256:") and "corpus" not in cfg.to_dict()
    assert config(vocab_sampling="task_corpus", corpus=["a b", "c e"], tokenizer_name_or_path=TOKENIZER_DIR).corpus_digest != cfg.corpus_digest


def test_corpus_can_be_a_text_file(tmp_path):
    """The file is read when the prompt is initialised (a config's __post_init__ does no I/O)."""
    path = tmp_path / "corpus.txt"
    path.write_text("a b\nc d\n")
    from_file = config(vocab_sampling="task_corpus", corpus=str(path), tokenizer_name_or_path=TOKENIZER_DIR)
    from_texts = config(vocab_sampling="task_corpus", corpus=["a b", "c d"], tokenizer_name_or_path=TOKENIZER_DIR)
    assert from_file.corpus == str(path) and from_file.corpus_digest is None  # not read yet
    prompts = [peft.get_peft_model(common.tiny_model("gpt2")[0], cfg).prompt_encoder["default"].embedding.weight for cfg in (from_file, from_texts)]
    torch.testing.assert_close(prompts[0], prompts[1])
    assert from_file.corpus_digest == from_texts.corpus_digest


def test_describe_prompt_finds_the_tokens_a_prompt_was_sampled_from():
    model, _ = common.tiny_model("gpt2")
    peft_model = peft.get_peft_model(model, config(vocab_sampling="uniform", tokenizer_name_or_path=TOKENIZER_DIR))
    ids = rows_to_ids(model, peft_model.prompt_encoder["default"].embedding.weight.detach())
    description = describe_prompt(peft_model, common.tiny_tokenizer(), k=3)
    assert len(description) == 8 and all(len(entry["nearest"]) == 3 for entry in description)
    for entry, token_id in zip(description, ids.tolist()):
        best = entry["nearest"][0]
        assert best["token_id"] == token_id and abs(best["cosine"] - 1.0) < 1e-5
        assert best["token"] == common.tiny_tokenizer().convert_ids_to_tokens(token_id)
        cosines = [n["cosine"] for n in entry["nearest"]]
        assert cosines == sorted(cosines, reverse=True)


def test_describe_prompt_reads_vanilla_prompt_tuning_too():
    model, _ = common.tiny_model("gpt2")
    vanilla = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert len(describe_prompt(vanilla, common.tiny_tokenizer(), k=1)) == 2


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("value", [0, -3, 2.5, None])
def test_bad_num_virtual_tokens_is_named(value):
    with pytest.raises(ValueError, match=rf"num_virtual_tokens must be a positive integer, got {value}"):
        config(num_virtual_tokens=value)


def test_unknown_vocab_sampling_is_named():
    with pytest.raises(ValueError, match=r"vocab_sampling='most_common' is not one of \['uniform', 'top_frequent'"):
        config(vocab_sampling="most_common")


@pytest.mark.parametrize("labels", [None, [], [""], ["  "]])
def test_class_labels_missing_or_empty_is_refused(labels):
    with pytest.raises(ValueError, match="class_labels"):
        config(vocab_sampling="class_labels", class_labels=labels, tokenizer_name_or_path=TOKENIZER_DIR)


def test_class_label_that_tokenizes_to_nothing_is_named():
    model, _ = common.tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"class label '<pad>' tokenizes to no usable tokens"):
        prompt_rows(model, vocab_sampling="class_labels", class_labels=["<pad>"], tokenizer_name_or_path=TOKENIZER_DIR)


def test_more_labels_than_virtual_tokens_is_refused():
    with pytest.raises(ValueError, match=r"3 class_labels do not fit in num_virtual_tokens=2"):
        config(num_virtual_tokens=2, vocab_sampling="class_labels", class_labels=["a", "b", "c"], tokenizer_name_or_path=TOKENIZER_DIR)


def test_n_larger_than_usable_vocabulary_is_named():
    model, _ = common.tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"num_frequent_tokens=5000 is larger than the usable vocabulary \(\d+ tokens\)"):
        prompt_rows(model, vocab_sampling="top_frequent", tokenizer_name_or_path=TOKENIZER_DIR)


def test_tokenizer_larger_than_embedding_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    small = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match=r"tokenizer has \d+ tokens but the model's input embedding has only 100 rows"):
        prompt_rows(small, vocab_sampling="top_frequent", num_frequent_tokens=10, tokenizer_name_or_path=TOKENIZER_DIR)


@pytest.mark.parametrize("task_type", ["TOKEN_CLS", "QUESTION_ANS", None, "causal"])
def test_unsupported_task_type_is_named(task_type):
    with pytest.raises(ValueError, match=rf"(task_type={task_type!r} is not supported|Invalid task type: {task_type!r})"):
        config(task_type=task_type)


@pytest.mark.parametrize("config_name", ["vocab_uniform", "deep_vocab", "mixture_task_2", "projected"])
@pytest.mark.parametrize("task_type", ["TOKEN_CLS", "FEATURE_EXTRACTION", None])
def test_a_task_type_set_after_the_config_was_made_is_refused_when_the_prompt_is_built(config_name, task_type):
    """Found 2026-12-07 by a probe: the task type was checked only when the config was made; set afterwards, TOKEN_CLS
    built a PeftModelForTokenClassification around a prompt the plugin does not support there, a deep prompt then failed
    with a bare size error, mixtures and projections with a refusal naming another base model, None with KeyError."""
    import peft
    from transformers import AutoModel, AutoModelForTokenClassification

    base = common.tiny_model("bert")[0]
    made = common.conformance_config(config_name, "SEQ_CLS", "bert")
    made.task_type = task_type
    model = (AutoModelForTokenClassification if task_type == "TOKEN_CLS" else AutoModel).from_config(base.config)
    build = peft.PeftModel if task_type is None else peft.get_peft_model  # (get_peft_model: KeyError None, plain PEFT alike)
    with pytest.raises(ValueError, match=rf"task_type='?{task_type}'? is not supported by peft_softprompt_ext"):
        build(model, made)


@pytest.mark.parametrize("strategy", ["top_frequent", "task_corpus", "class_labels"])
def test_strategies_that_need_a_tokenizer_say_so(strategy):
    with pytest.raises(ValueError, match=rf"vocab_sampling='{strategy}' needs tokenizer_name_or_path"):
        config(vocab_sampling=strategy, class_labels=["a"], corpus=["x"])


def test_task_corpus_without_corpus_is_refused():
    with pytest.raises(ValueError, match="needs corpus="):
        config(vocab_sampling="task_corpus", tokenizer_name_or_path=TOKENIZER_DIR)


def test_top_frequent_with_a_small_corpus_fills_the_pool_in_the_tokenizers_ranking():
    """Found 2026-12-05: tokens the corpus never holds tied at count 0 and entered the pool in id order (the byte
    alphabet's lowest ids), not as the tokenizer ranks them."""
    from peft_softprompt_ext.vocab_sampled.model import _ranked_ids

    tokenizer = common.tiny_tokenizer()
    corpus = ["the cat", "the"]
    from peft_softprompt_ext.init import corpus_token_counts

    ranked = _ranked_ids(corpus_token_counts(tokenizer, corpus, common.VOCAB_SIZE), tokenizer, common.VOCAB_SIZE).tolist()
    in_corpus = [i for text in corpus for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    by_tokenizer = merge_rank_order(tokenizer).tolist()
    seen = sorted(set(in_corpus), key=lambda i: (-in_corpus.count(i), by_tokenizer.index(i)))  # ties: the tokenizer's order
    assert ranked[: len(seen)] == seen
    assert ranked[len(seen) : len(seen) + 20] == [i for i in by_tokenizer if i not in seen][:20]


@pytest.mark.parametrize("strategy", ["top_frequent", "task_corpus"])
@pytest.mark.parametrize("corpus", [[], [""], ["<pad><s></s>"]])
def test_a_corpus_without_a_usable_token_is_refused_naming_it(strategy, corpus):
    model, _ = common.tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"corpus \(\d+ texts?\) holds no usable token"):
        prompt_rows(model, vocab_sampling=strategy, corpus=corpus, num_frequent_tokens=10, tokenizer_name_or_path=TOKENIZER_DIR)


def test_class_labels_filling_every_virtual_token_need_no_sampling():
    """Found 2026-12-05: one virtual token per label crashed (`cannot sample n_sample <= 0 samples`)."""
    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    labels = [" positive", " negative"]
    rows = prompt_rows(model, num_virtual_tokens=2, vocab_sampling="class_labels", class_labels=labels, tokenizer_name_or_path=TOKENIZER_DIR)
    embeddings = model.get_input_embeddings()
    for row, label in zip(rows, labels):
        torch.testing.assert_close(row, embeddings(torch.tensor(tokenizer(label, add_special_tokens=False)["input_ids"])).mean(0))


def test_the_fill_after_the_class_labels_never_repeats_a_label_token():
    """Found 2026-12-05: a label's token could be drawn again in the fill, giving two equal rows."""
    from peft_softprompt_ext import init

    model, _ = common.tiny_model("gpt2")
    tokenizer = common.tiny_tokenizer()
    best = init.top_frequent_population(merge_rank_order(tokenizer), usable_token_ids(common.VOCAB_SIZE, tokenizer), 10)
    label = tokenizer.decode([int(best[0])])  # the most frequent token: in the fill's pool
    for seed in range(12):  # 3 draws of a pool of 10: each seed hits the label with chance 0.3
        ids = rows_to_ids(model, prompt_rows(model, num_virtual_tokens=4, vocab_sampling="class_labels", class_labels=[label],
                                             num_frequent_tokens=10, seed=seed, tokenizer_name_or_path=TOKENIZER_DIR))  # fmt: skip
        assert ids[0] == best[0] and best[0] not in ids[1:].tolist() and len(set(ids.tolist())) == 4, (seed, ids)
