"""The calibration fit: temperature scaling of the label logit and the second-read threshold."""

from __future__ import annotations

import math
import random

import pytest

from model_contract.reading import calibrated_probability
from preprocessing.papers import Paper
from training.calibration import (
    TwoReads,
    choose_reread_below,
    fit_calibration,
    fit_temperature,
    nll,
    second_read_harms,
    served_logit,
    threshold_table,
)


def _sample(true_t: float, n: int = 4000, seed: int = 1) -> tuple[list[float], list[bool]]:
    """Logits of a model that is overconfident by `true_t`: labels drawn from
    sigmoid(logit / true_t)."""
    rng = random.Random(seed)
    logits = [rng.gauss(0, 6) for _ in range(n)]
    labels = [rng.random() < calibrated_probability(z, true_t) for z in logits]
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_the_labels_were_drawn_with(true_t: float) -> None:
    logits, labels = _sample(true_t)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.15)
    assert nll(logits, labels, fitted) <= nll(logits, labels, 1.0) + 1e-12


def test_nll_is_stable_for_huge_logits() -> None:
    assert nll([500.0, -500.0], [True, False], 1.0) == pytest.approx(0.0, abs=1e-12)
    assert nll([500.0], [False], 1.0) == pytest.approx(500.0)
    assert math.isfinite(calibrated_probability(-1e6, 0.01))


def test_no_papers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no papers"):
        fit_temperature([], [])


def test_a_second_read_answers_only_cut_unsure_papers() -> None:
    unsure_cut = TwoReads(capped=0.5, truncated=True, full=-4.0)
    sure_cut = TwoReads(capped=6.0, truncated=True, full=-4.0)
    unsure_whole = TwoReads(capped=0.5, truncated=False, full=None)
    assert served_logit(unsure_cut, 1.0, 0.9) == (-4.0, True)
    assert served_logit(sure_cut, 1.0, 0.9) == (6.0, False)
    assert served_logit(unsure_whole, 1.0, 0.9) == (0.5, False)
    # A higher temperature makes the same capped read less sure: it is then read again.
    assert served_logit(sure_cut, 1.0, 0.99) == (6.0, False)
    assert served_logit(sure_cut, 2.0, 0.99) == (-4.0, True)


def test_the_threshold_table_counts_papers_fixed_and_broken() -> None:
    # Paper 0: capped read wrong and unsure (p 0.62), whole read right. Paper 1: capped read
    # right but unsure (p 0.73), whole read wrong. Paper 2: sure and right.
    reads = [TwoReads(0.5, True, -3.0), TwoReads(1.0, True, -3.0), TwoReads(5.0, True, 5.0)]
    labels = [False, True, True]
    table = threshold_table(reads, labels, 1.0, grid=(0.5, 0.7, 0.8, 0.99))
    assert [(r["below"], round(r["accuracy"], 3), round(r["reread_share"], 3), r["fixed"],
             r["broken"]) for r in table] == [(0.5, 0.667, 0.0, 0, 0), (0.7, 1.0, 0.333, 1, 0),
                                              (0.8, 0.667, 0.667, 1, 1),
                                              (0.99, 0.667, 0.667, 1, 1)]


def _row(below: float, share: float, fixed: int = 0, broken: int = 0) -> dict:
    return {"below": below, "accuracy": 0.9, "reread_share": share, "fixed": fixed,
            "broken": broken}


def test_the_threshold_is_the_highest_within_the_read_twice_budget() -> None:
    table = [_row(0.5, 0.0), _row(0.7, 0.05, 2, 1), _row(0.85, 0.15, 3, 3),
             _row(0.9, 0.25, 3, 2), _row(0.99, 0.8, 4, 1)]
    assert choose_reread_below(table, 0.2) == 0.85  # one paper less right is not evidence
    assert choose_reread_below(table, 0.3) == 0.9
    assert choose_reread_below(table, 1.0) == 0.99
    assert choose_reread_below(table, 0.01) == 0.5  # no second read at all


def test_a_threshold_whose_second_read_harms_is_not_chosen() -> None:
    harmful = _row(0.85, 0.15, fixed=0, broken=6)  # sign test: p = 1/64
    assert second_read_harms(harmful)
    assert not second_read_harms(_row(0.85, 0.15, fixed=1, broken=4))  # p = 0.19
    assert not second_read_harms(_row(0.5, 0.0))
    table = [_row(0.5, 0.0), _row(0.7, 0.05, 1, 1), harmful]
    assert choose_reread_below(table, 0.2) == 0.7


def test_fit_calibration_records_what_it_did() -> None:
    logits, labels = _sample(2.0, n=400)
    papers = [Paper(str(i), "t", "a", "cancer" if y else "non_cancer", "s" + str(i % 2))
              for i, y in enumerate(labels)]
    reads = [TwoReads(z, i % 3 == 0, z * 0.8 if i % 3 == 0 else None)
             for i, z in enumerate(logits)]
    calibration, record = fit_calibration(papers, reads)
    assert calibration.temperature == record["temperature"] > 1.2
    assert calibration.fitted_on == {"s0": 200, "s1": 200}
    assert record["reads"] == 400 + sum(r.full is not None for r in reads)
    assert record["nll"]["after"] < record["nll"]["before"]
    assert record["max_reread_share"] == 0.2
    assert calibration.reread_below == choose_reread_below(record["thresholds"], 0.2)
    chosen = next(r for r in record["thresholds"] if r["below"] == calibration.reread_below)
    assert chosen["reread_share"] <= 0.2


@pytest.mark.parametrize(("temperature", "logit", "asks"), [
    (1.0, 0.0, True),                      # p = 0.5: as unsure as it gets
    (1.0, math.log(9) - 0.01, True),       # just under 0.9
    (1.0, math.log(9) + 0.01, False),      # just over 0.9
    (1.0, -math.log(9) - 0.01, False),     # as sure of non-cancer
    (2.0, math.log(9) + 0.01, True),       # the temperature softens it below 0.9
    (2.0, 2 * math.log(9) + 0.01, False),
])
def test_rule_asks_for_a_second_read_below_the_calibrated_threshold(
        temperature: float, logit: float, asks: bool) -> None:
    from model_contract.reading import ReadingRule
    from training.evaluate import rule_asks

    assert rule_asks(ReadingRule(temperature, 0.9))(logit) is asks


def test_served_read_refuses_an_adapter_or_a_template() -> None:
    from training.evaluate import check_served_arguments

    check_served_arguments(None, None)
    for adapter, template in (("adapter", None), (None, ""), (None, "cancer-yn-short")):
        with pytest.raises(ValueError, match="own template and reading rule"):
            check_served_arguments(adapter, template)


def test_served_rule_is_the_manifests_with_the_gateways_override(tmp_path) -> None:
    """The rule `evaluate --served` reads by: the manifest's calibration, its threshold
    replaced by `--reread-below` as GATEWAY_REREAD_BELOW replaces it; defaults without one."""
    from model_contract.manifest import Calibration, Manifest, write_manifest
    from model_contract.reading import DEFAULT_REREAD_BELOW, ReadingRule
    from training.evaluate import _reading_rule

    calibration = Calibration(temperature=1.4, reread_below=0.9, fitted_on={"assignment": 80})
    write_manifest(tmp_path, Manifest(name="m", version="v", base_model="b",
                                      calibration=calibration))
    assert _reading_rule(tmp_path, None) == ReadingRule(1.4, 0.9)
    assert _reading_rule(tmp_path, None, 0.0) == ReadingRule(1.4, 0.0)
    bare = tmp_path / "bare"
    bare.mkdir()
    assert _reading_rule(bare, None) == ReadingRule(1.0, DEFAULT_REREAD_BELOW)
    assert _reading_rule(bare, None, 0.5) == ReadingRule(1.0, 0.5)
