"""Shared steps that turn raw (text, label) pairs into a task file: clean, dedup, split, write.

Used by `scripts/make_embedded_data.py` (the committed sentiment files) and by `bbc.py` (the
BBC task, built on first use), so every task follows the same rules. A task file is gzip'd JSON
lines `{"split": ..., "label": <int>, "text": ...}`, rows ordered by split then by hash, gzip
header without timestamp or file name: the same rows always give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .splits import hash_order_key, stratified_split
from .tasks import SPLIT_NAMES


def clean(text: str) -> str:
    """Undo HTML escapes (tweets hold '&amp;') and collapse whitespace to single spaces."""
    return " ".join(html.unescape(text).split())


def deduplicate(rows: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], int, int]:
    """Keep one row per case-folded text; drop texts that appear with different labels.

    Why: a duplicate in both train and test would leak; the BBC package holds ~100 repeated
    articles. Returns (rows, duplicates removed, conflicting texts dropped).
    """
    labels_by_key: dict[str, set[int]] = {}
    first: dict[str, tuple[str, int]] = {}
    for text, label in rows:
        key = text.casefold()
        labels_by_key.setdefault(key, set()).add(label)
        first.setdefault(key, (text, label))
    kept = [row for key, row in first.items() if len(labels_by_key[key]) == 1]
    conflicts = sum(1 for labels in labels_by_key.values() if len(labels) > 1)
    return kept, len(rows) - len(first), conflicts


def split_rows(rows: list[tuple[str, int]], seed: int) -> list[dict]:
    """Stratified 80/10/10 split; rows as dicts ordered by (split, hash of text)."""
    texts, labels = [t for t, _ in rows], [lab for _, lab in rows]
    splits = stratified_split(texts, labels, seed=seed)
    order = sorted(range(len(rows)), key=lambda i: (SPLIT_NAMES.index(splits[i]), hash_order_key(texts[i], seed)))
    return [{"split": splits[i], "label": labels[i], "text": texts[i]} for i in order]


def rows_digest(rows: Iterable[dict]) -> str:
    """sha256 of the sorted (split, label, text) tuples: the content, whatever the row order.

    Independent of gzip settings and of the zlib version, so it can pin a task's exact rows.
    """
    digest = hashlib.sha256()
    for row in sorted((r["split"], r["label"], r["text"]) for r in rows):
        digest.update((json.dumps(list(row), ensure_ascii=False) + "\n").encode("utf-8"))
    return digest.hexdigest()


def write_task_file(path: Path, rows: list[dict]) -> None:
    """Write `rows` as a reproducible `.jsonl.gz` at `path`, atomically.

    The file is written next to `path` under a temporary name and renamed into place, so a
    reader (or a second process building the same file) never sees a half-written file.
    """
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
                out.write(lines.encode("utf-8"))
        os.chmod(staging, 0o644)  # mkstemp makes it 0600
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def read_task_file(path: Path) -> list[dict]:
    """The rows of a `.jsonl.gz` task file."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
