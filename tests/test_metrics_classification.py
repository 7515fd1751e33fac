"""Top-k accuracy, precision, recall and AUC.

Expected values are worked out by hand from the definitions in Keras's
documentation: a prediction is positive when strictly above a threshold, a
label is positive when nonzero, and AUC sums areas between the thresholds
-1e-7, i / (n - 1) for 0 < i < n - 1, and 1 + 1e-7.
"""

import math

import numpy as np
import pytest

import nnfast
from nnfast import layers, metrics
from nnfast.metrics import (
    AUC,
    Precision,
    Recall,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)

# Top-k accuracy ----------------------------------------------------------------

# Row 0: class 2 has one higher score, so it is in the top 2 but not the top 1.
# Row 1: class 3 has three higher scores. Row 2: all scores tie, which counts
# as a hit for any k.
TOP_K_SCORES = np.array([
    [0.1, 0.5, 0.3, 0.1],
    [0.4, 0.3, 0.2, 0.1],
    [0.25, 0.25, 0.25, 0.25],
])
TOP_K_LABELS = np.array([2, 3, 3])


@pytest.mark.parametrize("k, expected", [(1, 1 / 3), (2, 2 / 3), (3, 2 / 3),
                                         (4, 1.0), (5, 1.0)])
def test_sparse_top_k_values(k, expected):
    metric = SparseTopKCategoricalAccuracy(k=k)
    metric.update_state(TOP_K_LABELS, TOP_K_SCORES)
    assert metric.result() == pytest.approx(expected)


@pytest.mark.parametrize("k, expected", [(1, 1 / 3), (2, 2 / 3), (4, 1.0)])
def test_top_k_one_hot_values(k, expected):
    metric = TopKCategoricalAccuracy(k=k)
    metric.update_state(np.eye(4)[TOP_K_LABELS], TOP_K_SCORES)
    assert metric.result() == pytest.approx(expected)


def test_top_k_defaults():
    metric = TopKCategoricalAccuracy()
    assert metric.k == 5
    assert metric.name == "top_k_categorical_accuracy"
    sparse = SparseTopKCategoricalAccuracy()
    assert sparse.k == 5
    assert sparse.name == "sparse_top_k_categorical_accuracy"


def test_top_k_sample_weight():
    # k = 2 hits rows 0 and 2: (1 + 1) / (1 + 2 + 1).
    metric = SparseTopKCategoricalAccuracy(k=2)
    metric.update_state(TOP_K_LABELS, TOP_K_SCORES, sample_weight=[1.0, 2.0, 1.0])
    assert metric.result() == pytest.approx(0.5)


def test_top_k_accumulates_batches():
    metric = SparseTopKCategoricalAccuracy(k=2)
    metric.update_state(TOP_K_LABELS[:1], TOP_K_SCORES[:1])
    metric.update_state(TOP_K_LABELS[1:].reshape(-1, 1), TOP_K_SCORES[1:])
    assert metric.result() == pytest.approx(2 / 3)
    metric.reset_state()
    assert metric.result() == 0.0


def test_sparse_top_k_rejects_labels():
    metric = SparseTopKCategoricalAccuracy(k=2)
    with pytest.raises(ValueError, match="labels must be in"):
        metric.update_state([4, 0, 0], TOP_K_SCORES)
    with pytest.raises(ValueError, match="integer"):
        metric.update_state([0.5, 0, 0], TOP_K_SCORES)


@pytest.mark.parametrize("k, error", [(0, ValueError), (-1, ValueError),
                                      (2.0, TypeError)])
def test_top_k_rejects_k(k, error):
    with pytest.raises(error, match="k"):
        TopKCategoricalAccuracy(k=k)


# Precision and recall ------------------------------------------------------------

# With threshold 0.5, rows 0, 1 and 4 are predicted positive. Labels are
# positive in rows 0, 2, 3 and 4, so TP = 2 (rows 0 and 4), FP = 1 (row 1)
# and FN = 2 (rows 2 and 3).
Y_TRUE = np.array([1, 0, 1, 1, 1])
Y_PRED = np.array([0.9, 0.8, 0.4, 0.3, 0.6])


def test_precision_recall_default_threshold():
    precision = Precision()
    recall = Recall()
    precision.update_state(Y_TRUE, Y_PRED)
    recall.update_state(Y_TRUE, Y_PRED)
    assert precision.result() == pytest.approx(2 / 3)
    assert recall.result() == pytest.approx(2 / 4)
    assert precision.name == "precision"
    assert recall.name == "recall"


def test_precision_recall_batches_exact():
    precision = Precision()
    recall = Recall()
    for start, stop in ((0, 3), (3, 5)):
        precision.update_state(Y_TRUE[start:stop], Y_PRED[start:stop])
        recall.update_state(Y_TRUE[start:stop], Y_PRED[start:stop])
    assert precision.result() == pytest.approx(2 / 3)
    assert recall.result() == pytest.approx(2 / 4)


def test_precision_recall_sample_weight():
    # Weighted TP = 2 + 3, FP = 1, FN = 1 + 1.
    weights = [2.0, 1.0, 1.0, 1.0, 3.0]
    precision = Precision()
    recall = Recall()
    precision.update_state(Y_TRUE, Y_PRED, sample_weight=weights)
    recall.update_state(Y_TRUE, Y_PRED, sample_weight=weights)
    assert precision.result() == pytest.approx(5 / 6)
    assert recall.result() == pytest.approx(5 / 7)


def test_precision_recall_many_thresholds():
    # Threshold 0.7: TP = 1, FP = 1, FN = 3. Threshold 0.35: TP = 3 (rows 0,
    # 2 and 4), FP = 1, FN = 1. Results keep the order of the thresholds.
    precision = Precision(thresholds=[0.7, 0.35])
    recall = Recall(thresholds=[0.7, 0.35])
    precision.update_state(Y_TRUE, Y_PRED)
    recall.update_state(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(precision.result(), [0.5, 0.75])
    np.testing.assert_allclose(recall.result(), [0.25, 0.75])


def test_threshold_is_strict():
    precision = Precision(thresholds=0.5)
    recall = Recall(thresholds=0.5)
    precision.update_state([1.0], [0.5])
    recall.update_state([1.0], [0.5])
    assert precision.result() == 0.0
    assert recall.result() == 0.0
    assert precision.false_positives[0] == 0.0
    assert recall.false_negatives[0] == 1.0


def test_nonzero_labels_are_positive():
    recall = Recall()
    recall.update_state([[0.0], [3.0], [-1.0]], [[0.9], [0.9], [0.1]])
    assert recall.result() == pytest.approx(0.5)


def test_precision_recall_top_k():
    # The top 2 scores are classes 1 (label 1) and 3 (label 0).
    y_true = [[0, 1, 1, 0]]
    y_pred = [[0.2, 0.9, 0.1, 0.8]]
    cases = [
        (Precision(top_k=2), 0.5),
        (Recall(top_k=2), 0.5),
        (Precision(top_k=1), 1.0),
        (Recall(top_k=1), 0.5),
        (Precision(top_k=2, thresholds=0.85), 1.0),
    ]
    for metric, expected in cases:
        metric.update_state(y_true, y_pred)
        assert metric.result() == pytest.approx(expected), metric.get_config()


def test_top_k_ties_keep_lower_index():
    precision = Precision(top_k=1)
    precision.update_state([[0, 0, 1]], [[0.5, 0.5, 0.5]])
    assert precision.result() == 0.0
    precision = Precision(top_k=3)
    precision.update_state([[0, 0, 1]], [[0.5, 0.5, 0.5]])
    assert precision.result() == pytest.approx(1 / 3)


def test_precision_recall_class_id():
    # Column 1 has labels [0, 1, 1] and scores [0.6, 0.7, 0.9], all above 0.5.
    y_true = [[1, 0], [0, 1], [1, 1]]
    y_pred = [[0.8, 0.6], [0.3, 0.7], [0.2, 0.9]]
    precision = Precision(class_id=1)
    recall = Recall(class_id=1)
    precision.update_state(y_true, y_pred)
    recall.update_state(y_true, y_pred)
    assert precision.result() == pytest.approx(2 / 3)
    assert recall.result() == pytest.approx(1.0)


def test_class_id_sample_weight():
    # Per-sample weights [3, 1, 1]: TP = 1 + 1, FP = 3.
    precision = Precision(class_id=1)
    precision.update_state([[1, 0], [0, 1], [1, 1]],
                           [[0.8, 0.6], [0.3, 0.7], [0.2, 0.9]],
                           sample_weight=[3.0, 1.0, 1.0])
    assert precision.result() == pytest.approx(2 / 5)


def test_precision_empty_is_zero():
    precision = Precision()
    assert precision.result() == 0.0
    precision.update_state([1, 1], [0.1, 0.2])
    assert precision.result() == 0.0


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"thresholds": 1.5}, ValueError, "thresholds"),
    ({"thresholds": [0.2, -0.1]}, ValueError, "thresholds"),
    ({"thresholds": []}, ValueError, "thresholds"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"class_id": -1}, ValueError, "class_id"),
    ({"class_id": 1.0}, TypeError, "class_id"),
])
def test_precision_rejects_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        Precision(**kwargs)
    with pytest.raises(error, match=argument):
        Recall(**kwargs)


def test_precision_rejects_shapes():
    with pytest.raises(ValueError, match="same shape"):
        Precision().update_state([1, 0, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="out of range"):
        Precision(class_id=2).update_state([[1, 0]], [[0.2, 0.9]])


# AUC -----------------------------------------------------------------------------

# Negatives score 0.1 and 0.6, positives 0.4 and 0.9: 3 of the 4
# positive-negative pairs are ordered correctly, so the ROC area is 0.75.
AUC_TRUE = np.array([0, 0, 1, 1])
AUC_PRED = np.array([0.1, 0.6, 0.4, 0.9])


def test_auc_defaults():
    auc = AUC()
    assert auc.num_thresholds == 200
    assert auc.curve == "ROC"
    assert auc.summation_method == "interpolation"
    assert auc.name == "auc"
    assert len(auc.thresholds) == 200
    assert auc.thresholds[0] == pytest.approx(-1e-7)
    assert auc.thresholds[1] == pytest.approx(1 / 199)
    assert auc.thresholds[-1] == pytest.approx(1 + 1e-7)


def test_auc_roc_fine_thresholds():
    auc = AUC()
    auc.update_state(AUC_TRUE, AUC_PRED)
    assert auc.result() == pytest.approx(0.75)


def test_auc_three_thresholds_counts():
    # Thresholds -eps, 0.5 and 1 + eps.
    auc = AUC(num_thresholds=3)
    auc.update_state(AUC_TRUE, AUC_PRED)
    np.testing.assert_array_equal(auc.true_positives, [2, 1, 0])
    np.testing.assert_array_equal(auc.false_positives, [2, 1, 0])
    np.testing.assert_array_equal(auc.true_negatives, [0, 1, 2])
    np.testing.assert_array_equal(auc.false_negatives, [0, 1, 2])


@pytest.mark.parametrize("curve, method, expected", [
    # ROC points (FPR, TPR): (1, 1), (0.5, 0.5), (0, 0).
    ("ROC", "interpolation", 0.5 * 0.75 + 0.5 * 0.25),
    ("ROC", "minoring", 0.5 * 0.5 + 0.5 * 0.0),
    ("ROC", "majoring", 0.5 * 1.0 + 0.5 * 0.5),
    # PR points (recall, precision): (1, 0.5), (0.5, 0.5), (0, 0).
    ("PR", "minoring", 0.5 * 0.5 + 0.5 * 0.0),
    ("PR", "majoring", 0.5 * 0.5 + 0.5 * 0.5),
    # Both intervals have slope 1/2 and intercept 0: 0.5 * 1 / 2 each.
    ("PR", "interpolation", 0.25 + 0.25),
])
def test_auc_summation_methods(curve, method, expected):
    auc = AUC(num_thresholds=3, curve=curve, summation_method=method)
    auc.update_state(AUC_TRUE, AUC_PRED)
    assert auc.result() == pytest.approx(expected)


def test_auc_pr_interpolation_log_term():
    # Thresholds -eps, 0.5, 1 + eps give TP [3, 2, 0], FP [1, 1, 0] and
    # FN [0, 1, 3], so P = TP + FP = [4, 3, 0]. First interval: slope 1,
    # intercept 2 - 3 = -1, area (1 - log(4 / 3)) / 3. Second: slope 2/3,
    # intercept 0, area (2/3) * 2 / 3.
    auc = AUC(num_thresholds=3, curve="PR")
    auc.update_state([0, 1, 1, 1], [0.7, 0.6, 0.8, 0.3])
    expected = (1 - math.log(4 / 3)) / 3 + 4 / 9
    assert auc.result() == pytest.approx(expected)


def test_auc_sample_weight():
    # Pairs weighted by w_pos * w_neg: (0.4 > 0.1) 1 + (0.9 > 0.1) 1 +
    # (0.9 > 0.6) 3, out of 2 * 4.
    auc = AUC()
    auc.update_state(AUC_TRUE, AUC_PRED, sample_weight=[1.0, 3.0, 1.0, 1.0])
    assert auc.result() == pytest.approx(5 / 8)


def test_auc_ties_give_half():
    auc = AUC()
    auc.update_state([0, 1], [0.5, 0.5])
    assert auc.result() == pytest.approx(0.5)


def test_auc_batches_exact():
    auc = AUC()
    auc.update_state(AUC_TRUE[:2], AUC_PRED[:2])
    auc.update_state(AUC_TRUE[2:], AUC_PRED[2:])
    assert auc.result() == pytest.approx(0.75)
    auc.reset_state()
    assert auc.result() == 0.0


def test_auc_from_logits():
    # These logits are in the order of AUC_PRED, which the sigmoid keeps.
    auc = AUC(from_logits=True)
    auc.update_state(AUC_TRUE, [-2.2, 0.4, -0.4, 2.2])
    assert auc.result() == pytest.approx(0.75)


def test_auc_clips_predictions():
    auc = AUC(num_thresholds=3)
    auc.update_state([0, 1], [-0.5, 1.5])
    np.testing.assert_array_equal(auc.true_positives, [1, 1, 0])
    np.testing.assert_array_equal(auc.false_positives, [1, 0, 0])


def test_auc_explicit_thresholds():
    auc = AUC(thresholds=[0.5])
    assert auc.num_thresholds == 3
    auc.update_state(AUC_TRUE, AUC_PRED)
    assert auc.result() == pytest.approx(0.5)
    assert auc.get_config()["thresholds"] == [0.5]


MULTI_TRUE = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
MULTI_PRED = np.array([[0.2, 0.3], [0.8, 0.7], [0.6, 0.9], [0.4, 0.1]])


def test_auc_multi_label():
    # Label 0 is ranked perfectly (area 1). Label 1 has positives 0.3 and 0.9
    # and negatives 0.7 and 0.1, so 3 of 4 pairs are right (area 0.75).
    auc = AUC(multi_label=True)
    auc.update_state(MULTI_TRUE, MULTI_PRED)
    assert auc.true_positives.shape == (200, 2)
    assert auc.result() == pytest.approx((1.0 + 0.75) / 2)


def test_auc_multi_label_weights():
    auc = AUC(multi_label=True, label_weights=[1.0, 3.0])
    auc.update_state(MULTI_TRUE, MULTI_PRED)
    assert auc.result() == pytest.approx((1.0 * 1.0 + 3.0 * 0.75) / 4)


def test_auc_pooled_labels():
    # Pooled, positives are 0.8, 0.6, 0.3, 0.9 and negatives 0.2, 0.4, 0.7,
    # 0.1; pairs in order: 4 + 3 + 2 + 4 of 16.
    auc = AUC()
    auc.update_state(MULTI_TRUE, MULTI_PRED)
    assert auc.result() == pytest.approx(13 / 16)


def test_auc_pooled_label_weights():
    # A weight of 0 on label 1 leaves only label 0, which is ranked perfectly.
    auc = AUC(label_weights=[1.0, 0.0])
    auc.update_state(MULTI_TRUE, MULTI_PRED)
    assert auc.result() == pytest.approx(1.0)


def test_auc_multi_label_count_checked():
    auc = AUC(multi_label=True, num_labels=3)
    with pytest.raises(ValueError, match="expected 3 labels"):
        auc.update_state(MULTI_TRUE, MULTI_PRED)


@pytest.mark.parametrize("kwargs, argument", [
    ({"num_thresholds": 1}, "num_thresholds"),
    ({"curve": "DET"}, "curve"),
    ({"summation_method": "trapezoid"}, "summation_method"),
    ({"thresholds": [1.2]}, "thresholds"),
    ({"label_weights": [1.0, -1.0]}, "label_weights"),
])
def test_auc_rejects_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        AUC(**kwargs)


def test_auc_config_roundtrip():
    auc = AUC(num_thresholds=50, curve="pr", summation_method="Majoring",
              multi_label=True, label_weights=[1.0, 2.0])
    restored = AUC.from_config(auc.get_config())
    assert restored.get_config() == auc.get_config()
    assert restored.curve == "PR"
    assert restored.summation_method == "majoring"


# Registry and training -------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("precision", Precision),
    ("recall", Recall),
    ("auc", AUC),
    ("AUC", AUC),
    ("top_k_categorical_accuracy", TopKCategoricalAccuracy),
    ("sparse_top_k_categorical_accuracy", SparseTopKCategoricalAccuracy),
])
def test_metrics_get_by_name(name, cls):
    metric = metrics.get(name)
    assert isinstance(metric, cls)


def test_metrics_in_fit_and_evaluate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, :1] + 0.5 * rng.normal(size=(64, 1)) > 0).astype("float32")
    model = nnfast.Sequential([nnfast.Input(shape=(3,)),
                               layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="mse",
                  metrics=["auc", "precision", "recall"])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for name in ("auc", "precision", "recall"):
        assert len(history.history[name]) == 2
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    probabilities = model.predict(x, verbose=0)
    for metric in (AUC(), Precision(), Recall()):
        metric.update_state(y, probabilities)
        assert logs[metric.name] == pytest.approx(metric.result(), abs=1e-6)
