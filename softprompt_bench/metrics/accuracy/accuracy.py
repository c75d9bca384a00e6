"""Accuracy as an `evaluate` metric module, loadable offline by path.

Self-contained on purpose: `evaluate.load` copies this one file into its module cache and
imports it there, so it must not import from softprompt_bench or peft_softprompt_ext.
"""

import datasets
import evaluate

_DESCRIPTION = """Accuracy: the fraction of predictions equal to their reference label."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices, same length.
Returns:
    accuracy (`float`): in [0, 1].
Example:
    >>> metric = evaluate.load("softprompt_bench/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Fraction of exact matches between predicted and reference class indices."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            raise ValueError("accuracy needs at least one prediction; got an empty list")
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": correct / len(references)}
