"""Macro-averaged F1 as an `evaluate` metric module, loadable offline by path (no sklearn).

Self-contained on purpose: `evaluate.load` copies this one file into its module cache and
imports it there, so it must not import from softprompt_bench or peft_softprompt_ext.
"""

import datasets
import evaluate

_DESCRIPTION = """Macro-F1: the unweighted mean, over every class that occurs in the references or
the predictions, of that class's F1 = 2 TP / (2 TP + FP + FN). Each class counts equally however
rare it is, so a model that always predicts the majority class scores low. Same value as
scikit-learn's f1_score(average="macro") with its default labels."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices, same length.
Returns:
    macro_f1 (`float`): in [0, 1].
Example:
    >>> metric = evaluate.load("softprompt_bench/metrics/macro_f1")
    >>> metric.compute(predictions=[0, 0, 0, 0], references=[0, 0, 0, 1])
    {'macro_f1': 0.42857142857142855}
"""

_CITATION = ""


def per_class_f1(predictions, references):
    """{class: F1} for every class in references or predictions."""
    scores = {}
    for label in set(references) | set(predictions):
        true_positive = sum(1 for p, r in zip(predictions, references) if p == label and r == label)
        false_positive = sum(1 for p, r in zip(predictions, references) if p == label and r != label)
        false_negative = sum(1 for p, r in zip(predictions, references) if p != label and r == label)
        # the class occurs somewhere, so the denominator is > 0
        scores[label] = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
    return scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    """Mean of per-class F1 over the classes present in references or predictions."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            raise ValueError("macro_f1 needs at least one prediction; got an empty list")
        scores = per_class_f1(list(predictions), list(references))
        return {"macro_f1": sum(scores.values()) / len(scores)}
