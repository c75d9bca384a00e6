"""Classification metrics through `evaluate`, loaded offline from the modules in this folder.

`evaluate.load("accuracy")` fetches its script from the Hub; these folders hold our own
`accuracy` and `macro_f1` modules, which `evaluate.load` reads by local path instead.

    from softprompt_bench.metrics import compute_metrics
    compute_metrics(predictions=[0, 1, 1], references=[0, 1, 0])
    # {'accuracy': 0.666..., 'macro_f1': 0.666...}
"""

from __future__ import annotations

import functools
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("accuracy", "macro_f1")


def metric_path(name: str) -> str:
    """Local path of one metric module folder (what `evaluate.load` accepts)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; expected one of {list(METRIC_NAMES)}")
    return str(METRICS_DIR / name)


def load_metrics():
    """`evaluate.combine` of accuracy and macro-F1, both loaded from local paths (no network).

    `keep_in_memory=True` so that evaluation writes no arrow cache files (and several processes
    computing metrics at once do not contend for them).
    """
    import evaluate

    return evaluate.combine([evaluate.load(metric_path(name), keep_in_memory=True) for name in METRIC_NAMES])


@functools.lru_cache(maxsize=1)
def _shared_metrics():
    return load_metrics()  # loading takes ~0.1-1 s; reuse it across evaluation calls


def compute_metrics(predictions, references) -> dict[str, float]:
    """{"accuracy": ..., "macro_f1": ...} for class-index predictions against references.

    Args:
        predictions / references: equal-length sequences of class indices (lists, numpy arrays
            or 1-D tensors).
    """
    predictions = [int(p) for p in predictions]
    references = [int(r) for r in references]
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} vs {len(references)}")
    if not references:
        raise ValueError("compute_metrics needs at least one prediction; got empty lists")
    return _shared_metrics().compute(predictions=predictions, references=references)


def confusion_matrix(predictions, references, num_classes: int) -> list[list[int]]:
    """counts[true class][predicted class] (what a run's errors are, beside its accuracy)."""
    counts = [[0] * num_classes for _ in range(num_classes)]
    for predicted, true in zip(predictions, references, strict=True):
        if not (0 <= int(true) < num_classes and 0 <= int(predicted) < num_classes):
            raise ValueError(f"class index out of range 0..{num_classes - 1}: predicted {predicted!r}, true {true!r}")
        counts[int(true)][int(predicted)] += 1
    return counts
