"""Deterministic, stratified train / validation / test assignment.

Rows are ordered by a SHA-256 hash of (seed, text) instead of a random generator, so the split
depends only on the seed and the texts: not on the Python or numpy version, nor on input order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

DEFAULT_SPLIT_SEED = 0
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1


def hash_order_key(text: str, seed: int) -> str:
    """A stable pseudo-random sort key for `text` under `seed`."""
    return hashlib.sha256(f"{seed}\0{text}".encode("utf-8")).hexdigest()


def stratified_split(
    texts: Sequence[str],
    labels: Sequence[int],
    seed: int = DEFAULT_SPLIT_SEED,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> list[str]:
    """Assign each row to "train", "validation" or "test", keeping label proportions per split.

    Within each label the rows are hash-ordered; the first `round(n * test_fraction)` go to test,
    the next `round(n * validation_fraction)` to validation, the rest to train.

    Returns:
        A list of split names, one per row, aligned with `texts`.
    """
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} vs {len(labels)}")
    if not (0 <= validation_fraction and 0 <= test_fraction and validation_fraction + test_fraction < 1):
        raise ValueError(
            "validation_fraction and test_fraction must be >= 0 and sum to < 1, got "
            f"{validation_fraction} and {test_fraction}"
        )
    rows_by_label: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels):
        rows_by_label[label].append(row)
    assignment = ["train"] * len(texts)
    for rows in rows_by_label.values():
        rows.sort(key=lambda row: hash_order_key(texts[row], seed))
        num_test = round(len(rows) * test_fraction)
        num_validation = round(len(rows) * validation_fraction)
        for position, row in enumerate(rows[: num_test + num_validation]):
            assignment[row] = "test" if position < num_test else "validation"
    return assignment
