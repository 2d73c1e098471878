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
    """Accuracy and share of second reads for each threshold of `grid`."""
    rows = []
    for below in grid:
        served = [served_logit(p, temperature, below) for p in papers]
        right = sum((z >= 0) == y for (z, _), y in zip(served, is_cancer, strict=True))
        rows.append({"below": below, "accuracy": right / len(papers),
                     "reread_share": sum(r for _, r in served) / len(papers)})
    return rows


def choose_reread_below(table: list[dict], tolerance: float = 0.0) -> float:
    """The lowest threshold (fewest second reads) whose accuracy is within `tolerance` of the
    best in `table`."""
    best = max(row["accuracy"] for row in table)
    return min(row["below"] for row in table if row["accuracy"] >= best - tolerance)


def fit_calibration(papers: Sequence[Paper], reads: Sequence[TwoReads]
                    ) -> tuple[Calibration, dict]:
    """Temperature on every read of the validation papers (capped and whole: serving answers
    with either), then the second-read threshold under it. Returns the calibration and a
    record of the fit (NLL before/after, accuracy and second-read share per threshold)."""
    is_cancer = [p.label == "cancer" for p in papers]
    logits = [r.capped for r in reads] + [r.full for r in reads if r.full is not None]
    labels = is_cancer + [y for r, y in zip(reads, is_cancer, strict=True) if r.full is not None]
    temperature = fit_temperature(logits, labels)
    table = threshold_table(reads, is_cancer, temperature)
    below = choose_reread_below(table)
    fitted_on = dict(Counter(p.source for p in papers))
    record = {"temperature": temperature, "reread_below": below, "fitted_on": fitted_on,
              "reads": len(logits), "nll": {"before": nll(logits, labels, 1.0),
                                            "after": nll(logits, labels, temperature)},
              "thresholds": table}
    return Calibration(temperature=temperature, reread_below=below, fitted_on=fitted_on), record
