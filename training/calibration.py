"""Fit the model's calibration on validation papers: one temperature over the label logit, and
the second-read threshold chosen with the calibrated probabilities.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): the
served P(cancer) is sigmoid(logit / T), where logit = log P(cancer) - log P(non_cancer) over the
two label tokens. One parameter cannot move the decision boundary (logit 0), so accuracy is
unchanged by it; it only makes the probabilities mean what they say.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from model_contract.manifest import Calibration
from model_contract.reading import needs_reread, score_from_logit
from preprocessing.papers import Paper

#: Temperatures searched (log-uniform bounds): wider than any sane model needs.
T_BOUNDS = (0.05, 20.0)
#: Thresholds tried for the second read: the served probability of the capped read's label.
REREAD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995)
#: One-sided significance level at which the second read counts as harmful on validation.
HARM_ALPHA = 0.05
#: Default serving budget of second reads: the share of validation papers read twice.
DEFAULT_MAX_REREAD_SHARE = 0.2


def nll(logits: Sequence[float], is_cancer: Sequence[bool], temperature: float) -> float:
    """Mean negative log-likelihood of the labels under sigmoid(logit / T), in nats."""
    total = 0.0
    for z, y in zip(logits, is_cancer, strict=True):
        s = z / temperature if y else -z / temperature
        total += math.log1p(math.exp(-s)) if s > -30 else -s  # -log sigmoid(s), stable
    return total / len(logits)


def fit_temperature(logits: Sequence[float], is_cancer: Sequence[bool]) -> float:
    """The T > 0 minimising the NLL (a bounded 1-D search over log T).

    Raises ValueError on no papers."""
    from scipy.optimize import minimize_scalar

    if not logits:
        raise ValueError("no papers to fit a temperature on")
    lo, hi = (math.log(b) for b in T_BOUNDS)
    best = minimize_scalar(lambda u: nll(logits, is_cancer, math.exp(u)), bounds=(lo, hi),
                           method="bounded", options={"xatol": 1e-4})
    return round(math.exp(best.x), 4)


@dataclass(frozen=True)
class TwoReads:
    """One paper's two reads: the capped prompt's logit, whether the cap cut it, and the whole
    abstract's logit (None when the cap kept it whole, so no second read exists)."""

    capped: float
    truncated: bool
    full: float | None


def served_logit(paper: TwoReads, temperature: float, below: float) -> tuple[float, bool]:
    """The logit serving answers with, and whether it read twice (model_contract's rule)."""
    first = score_from_logit(paper.capped, temperature)
    if paper.full is not None and needs_reread(first, paper.truncated, below):
        return paper.full, True
    return paper.capped, False


def threshold_table(papers: Sequence[TwoReads], is_cancer: Sequence[bool], temperature: float,
                    grid: Sequence[float] = REREAD_GRID) -> list[dict]:
    """Per threshold of `grid`: accuracy, share of second reads, and the papers the second read
    fixed (capped read wrong, served right) and broke (capped right, served wrong)."""
    capped_right = [(p.capped >= 0) == y for p, y in zip(papers, is_cancer, strict=True)]
    rows = []
    for below in grid:
        served = [served_logit(p, temperature, below) for p in papers]
        served_right = [(z >= 0) == y for (z, _), y in zip(served, is_cancer, strict=True)]
        pairs = list(zip(capped_right, served_right, strict=True))
        rows.append({"below": below, "accuracy": sum(served_right) / len(papers),
                     "reread_share": sum(r for _, r in served) / len(papers),
                     "fixed": pairs.count((False, True)), "broken": pairs.count((True, False))})
    return rows


def second_read_harms(row: dict, alpha: float = HARM_ALPHA) -> bool:
    """Whether the second read broke significantly more papers than it fixed: a one-sided
    sign test on the changed answers (McNemar's exact test), `scipy.stats.binomtest`."""
    from scipy.stats import binomtest

    changed = row["fixed"] + row["broken"]
    return changed > 0 and binomtest(row["broken"], changed, 0.5,
                                     alternative="greater").pvalue < alpha


def choose_reread_below(table: list[dict], max_reread_share: float) -> float:
    """The highest threshold of `table` whose second reads stay within `max_reread_share` of
    the papers and do not significantly harm accuracy (`second_read_harms`); the lowest
    threshold (no second read) when none qualifies.

    Why not the threshold with the best validation accuracy: on a few hundred validation papers
    the thresholds differ by one or two papers, which is noise, and chasing it picked 0.99 or
    0.995 on two of three models (72-86 % of papers read twice, slower than the notebook's
    whole-abstract read) where 0.85 was as accurate on their test papers (CHANGELOG,
    2026-12-02). A second read costs about 2.7 capped reads (418 against 155 prompt tokens), so
    the share is a serving budget."""
    allowed = [row["below"] for row in table
               if row["reread_share"] <= max_reread_share and not second_read_harms(row)]
    return max(allowed, default=min(row["below"] for row in table))


def fit_calibration(papers: Sequence[Paper], reads: Sequence[TwoReads],
                    max_reread_share: float = DEFAULT_MAX_REREAD_SHARE
                    ) -> tuple[Calibration, dict]:
    """Temperature on every read of the validation papers (capped and whole: serving answers
    with either), then the second-read threshold under it (`choose_reread_below`). Returns the
    calibration and a record of the fit (NLL before/after; accuracy, second-read share and
    papers fixed and broken per threshold)."""
    is_cancer = [p.label == "cancer" for p in papers]
    logits = [r.capped for r in reads] + [r.full for r in reads if r.full is not None]
    labels = is_cancer + [y for r, y in zip(reads, is_cancer, strict=True) if r.full is not None]
    temperature = fit_temperature(logits, labels)
    table = threshold_table(reads, is_cancer, temperature)
    below = choose_reread_below(table, max_reread_share)
    fitted_on = dict(Counter(p.source for p in papers))
    record = {"temperature": temperature, "reread_below": below, "fitted_on": fitted_on,
              "reads": len(logits), "max_reread_share": max_reread_share,
              "nll": {"before": nll(logits, labels, 1.0),
                      "after": nll(logits, labels, temperature)},
              "thresholds": table}
    return Calibration(temperature=temperature, reread_below=below, fitted_on=fitted_on), record
