"""Accuracy and macro-F1 through `evaluate`, loaded offline by path: values against hand counts."""

import evaluate
import numpy as np
import pytest
import torch

from softprompt_bench.metrics import compute_metrics, load_metrics, metric_path


def test_accuracy_counts_exact_matches():
    result = compute_metrics(predictions=[0, 1, 1, 0, 2], references=[0, 1, 0, 0, 1])
    assert result["accuracy"] == pytest.approx(3 / 5)


def test_macro_f1_three_classes_by_hand():
    # class 0: TP 2, FP 1, FN 0 -> F1 = 4/5;  class 1: TP 1, FP 0, FN 1 -> 2/3;
    # class 2: TP 1, FP 1, FN 1 -> 1/2.  Macro = mean = (0.8 + 0.6667 + 0.5) / 3
    predictions = [0, 0, 0, 1, 2, 2]
    references = [0, 0, 2, 1, 2, 1]
    result = compute_metrics(predictions, references)
    assert result["macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 1 / 2) / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)


def test_macro_f1_punishes_always_predicting_the_majority_class():
    result = compute_metrics(predictions=[0, 0, 0, 0], references=[0, 0, 0, 1])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


def test_macro_f1_counts_a_class_that_occurs_only_in_predictions():
    # class 5 never occurs in the references: its F1 is 0 and it still counts in the mean
    result = compute_metrics(predictions=[0, 1, 5], references=[0, 1, 1])
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_macro_f1_ignores_classes_absent_from_both():
    # labels 0 and 2 only; a class 1 that nobody mentions must not add a zero
    assert compute_metrics([0, 2, 2], [0, 2, 0])["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_perfect_predictions_score_one():
    assert compute_metrics([3, 1, 2], [3, 1, 2]) == {"accuracy": 1.0, "macro_f1": 1.0}


def test_binary_macro_f1_matches_precision_recall_formula():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 2, size=200)
    predictions = np.where(rng.random(200) < 0.8, references, 1 - references)
    f1s = []
    for label in (0, 1):
        tp = np.sum((predictions == label) & (references == label))
        precision = tp / np.sum(predictions == label)
        recall = tp / np.sum(references == label)
        f1s.append(2 * precision * recall / (precision + recall))
    assert compute_metrics(predictions, references)["macro_f1"] == pytest.approx(np.mean(f1s))


def test_compute_metrics_accepts_tensors_and_arrays():
    result = compute_metrics(torch.tensor([1, 0]), np.array([1, 1]))
    assert result["accuracy"] == pytest.approx(0.5)


def test_compute_metrics_rejects_different_lengths():
    with pytest.raises(ValueError, match="3 vs 2"):
        compute_metrics([0, 1, 1], [0, 1])


def test_compute_metrics_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one"):
        compute_metrics([], [])


def test_load_metrics_combines_both_modules():
    combined = load_metrics()
    assert isinstance(combined, evaluate.CombinedEvaluations)
    assert set(combined.compute(predictions=[0, 1], references=[0, 0])) == {"accuracy", "macro_f1"}


@pytest.mark.parametrize("name", ["accuracy", "macro_f1"])
def test_each_metric_module_loads_by_path_with_evaluate(name):
    metric = evaluate.load(metric_path(name), keep_in_memory=True)
    metric.add_batch(predictions=[0, 1], references=[0, 1])
    assert metric.compute() == {name: 1.0}


def test_metric_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="'f1'.*accuracy"):
        metric_path("f1")


def test_confusion_matrix_counts_true_rows_by_predicted_columns():
    from softprompt_bench.metrics import confusion_matrix

    assert confusion_matrix([0, 2, 1, 1, 0], [0, 1, 1, 2, 2], 3) == [[1, 0, 0], [0, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="out of range 0..1: predicted 2"):
        confusion_matrix([2], [0], 2)
