"""The demo's report: papers the service never answered are retried, a refused paper is
counted apart, and accuracy and cancer recall are per source over the answered papers. The
gateway is the stand-in of test_bulk_retry (a real HTTP server in this process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
from rich.console import Console

from inference.demo import classify_split, per_source, report
from preprocessing.papers import Paper
from tests.inference.test_bulk_retry import FAST, StandInGateway, served

PAPERS = [Paper("a1", "Breast cancer screening", "A.", "cancer", "assignment"),
          Paper("a2", "Asthma in adults", "B.", "non_cancer", "assignment"),
          Paper("o1", "Melanoma in Norway", "C.", "cancer", "ohsumed"),
          Paper("o2", "A refused paper", "D.", "non_cancer", "ohsumed")]


def _answers(gateway: StandInGateway, split_file: Path) -> dict[str, dict]:
    async def main() -> dict[str, dict]:
        async with served(gateway) as url:
            return await classify_split(url, split_file, FAST)

    return asyncio.run(main())


def test_the_report_counts_refusals_apart_and_scores_each_source(tmp_path: Path) -> None:
    split_file = tmp_path / "test.parquet"
    pd.DataFrame([vars(p) for p in PAPERS]).to_parquet(split_file)
    # a1 meets an overloaded engine 5 times (more than one run's FAST attempts): the second
    # run answers it. o2 is refused for good. The stand-in calls every paper cancer.
    gateway = StandInGateway(lambda paper_id, n: {"a1": 503 if n <= 5 else 200,
                                                  "o2": 422}.get(paper_id, 200))
    answers = _answers(gateway, split_file)
    assert gateway.asked["a1"] == 6 and answers["a1"]["label"] == "cancer"
    rows = {r["source"]: r for r in per_source(PAPERS, answers)}
    assert rows["assignment"] == {"source": "assignment", "papers": 2, "answered": 2,
                                  "refused": 0, "accuracy": 0.5, "recall": 1.0}
    assert rows["ohsumed"] == {"source": "ohsumed", "papers": 2, "answered": 1,
                               "refused": 1, "accuracy": 1.0, "recall": 1.0}
    console = Console(record=True, width=120)
    assert report(PAPERS, answers, 2.0, console) == 2 / 3
    text = console.export_text()
    assert "2.00 papers/s" in text and "error: stand-in 422" in text
