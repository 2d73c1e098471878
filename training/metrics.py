"""Classification metrics of label probabilities: accuracy, per-class P/R/F1, confusion matrix,
ROC-AUC, and calibration (ECE over the confidence of the predicted label, with its bins)."""

from __future__ import annotations

from preprocessing.papers import LABELS

N_BINS = 10


def predicted(p_cancer: float) -> str:
    return "cancer" if p_cancer >= 0.5 else "non_cancer"


def reliability_bins(confidence: list[float], correct: list[bool], n_bins: int = N_BINS) -> list:
    """Equal-width bins over [0, 1] of the predicted label's probability (Guo et al. 2017);
    a binary classifier's confidences fall in the upper half."""
    bins = []
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i, c in enumerate(confidence) if lo < c <= hi or (b == 0 and c == 0)]
        if idx:
            bins.append({"lo": lo, "hi": hi, "count": len(idx),
                         "accuracy": sum(correct[i] for i in idx) / len(idx),
                         "confidence": sum(confidence[i] for i in idx) / len(idx)})
    return bins


def expected_calibration_error(bins: list[dict], total: int) -> float:
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins)


def classification_metrics(y_true: list[str], p_cancer: list[float]) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_pred = [predicted(p) for p in p_cancer]
    correct = [t == p for t, p in zip(y_true, y_pred, strict=True)]
    confidence = [p if p >= 0.5 else 1.0 - p for p in p_cancer]
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0)
    both_classes = len(set(y_true)) == 2
    bins = reliability_bins(confidence, correct)
    return {
        "n": len(y_true),
        "accuracy": sum(correct) / len(y_true),
        "per_class": {label: {"precision": float(prec[i]), "recall": float(rec[i]),
                              "f1": float(f1[i]), "support": int(support[i])}
                      for i, label in enumerate(LABELS)},
        "macro_f1": float(sum(f1) / len(LABELS)),
        "labels": list(LABELS),
        # rows: true label, columns: predicted label, both in `labels` order
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(LABELS)).tolist(),
        "roc_auc": float(roc_auc_score([t == "cancer" for t in y_true], p_cancer))
        if both_classes else None,
        "ece": expected_calibration_error(bins, len(y_true)),
        "reliability": bins,
    }
