"""Metrics and baselines on hand-checked inputs."""

from __future__ import annotations

import pytest

from preprocessing.papers import Paper
from training.baselines import keyword_rule, tfidf_logreg
from training.metrics import classification_metrics, reliability_bins


def test_metrics_by_hand() -> None:
    y = ["cancer", "cancer", "non_cancer", "non_cancer"]
    p = [0.9, 0.4, 0.2, 0.7]  # one miss each way
    m = classification_metrics(y, p)
    assert m["accuracy"] == 0.5
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]  # rows true, columns predicted
    assert m["per_class"]["cancer"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                        "support": 2}
    assert m["roc_auc"] == pytest.approx(0.75)
    # confidences 0.9 (right), 0.6 (wrong), 0.8 (right), 0.7 (wrong): one per bin
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.2 + 0.7) / 4)


def test_perfectly_calibrated_bins_have_zero_gap() -> None:
    conf = [0.75] * 4
    bins = reliability_bins(conf, [True, True, True, False])
    assert len(bins) == 1 and bins[0]["accuracy"] == bins[0]["confidence"] == 0.75


def test_single_class_has_no_auc() -> None:
    assert classification_metrics(["cancer"] * 3, [0.9, 0.8, 0.3])["roc_auc"] is None


def _paper(i: int, label: str, text: str) -> Paper:
    return Paper(id=str(i), title=text, abstract=text, label=label)


def test_keyword_rule_matches_cancer_and_tumour_words() -> None:
    papers = [_paper(1, "cancer", "Breast Cancer screening"),
              _paper(2, "cancer", "Tumour growth in mice"),
              _paper(3, "non_cancer", "Asthma in children")]
    assert keyword_rule(papers) == [1.0, 1.0, 0.0]


def test_tfidf_baseline_learns_a_separable_vocabulary() -> None:
    train = [_paper(i, "cancer", f"oncology carcinoma case {i}") for i in range(10)]
    train += [_paper(i + 10, "non_cancer", f"cardiology heart case {i}") for i in range(10)]
    test = [_paper(99, "cancer", "carcinoma oncology"), _paper(98, "non_cancer", "heart")]
    p = tfidf_logreg(train, test)
    assert p[0] > 0.5 > p[1]
