"""The demo: serve the model, classify the test split over REST with the bulk client (its
retries and backoff), print accuracy and cancer recall per source, what failed, and samples."""

from __future__ import annotations

import asyncio
import tempfile
import textwrap
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inference.bulk import Backoff, BulkIncomplete, classify_file
from preprocessing.dataset import read_split
from preprocessing.papers import Paper


async def classify_split(gateway_url: str, split_file: Path, backoff: Backoff | None = None
                         ) -> dict[str, dict]:
    """The bulk client's row (label, cancer_probability, ..., error) per paper id of the
    parquet `split_file`. A paper still failing transiently after every retry (an overloaded
    or restarting engine) is tried in one more run; raises BulkIncomplete if it fails there
    too: a paper the service never answered is not counted as a wrong answer."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answers.parquet"
        for last in (False, True):
            try:
                result = await classify_file(split_file, out, gateway_url, batch_size=8,
                                             concurrency=4, backoff=backoff or Backoff())
                break
            except BulkIncomplete:
                if last:
                    raise
    return {row["id"]: row for row in result.table.to_pylist()}


def per_source(papers: list[Paper], answers: dict[str, dict]) -> list[dict]:
    """One row per source (and `all`): papers, answered, refused (an error the service
    gave), accuracy and cancer recall over the answered papers."""
    rows = []
    for source in [*sorted({p.source for p in papers}), "all"]:
        chosen = [p for p in papers if source in ("all", p.source)]
        answered = [(p, answers[p.id]) for p in chosen if answers[p.id]["error"] is None]
        cancer = [(p, a) for p, a in answered if p.label == "cancer"]
        rows.append({
            "source": source, "papers": len(chosen), "answered": len(answered),
            "refused": len(chosen) - len(answered),
            "accuracy": sum(a["label"] == p.label for p, a in answered) / len(answered)
            if answered else None,
            "recall": sum(a["label"] == "cancer" for _, a in cancer) / len(cancer)
            if cancer else None,
        })
    return rows


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def report(papers: list[Paper], answers: dict[str, dict], seconds: float,
           console: Console) -> float | None:
    """Prints sample answers and the per-source table; returns the accuracy over all answered
    papers (None when none was answered)."""
    samples = Table(title="Sample answers")
    for column in ("id", "title", "truth", "answer", "P(cancer)"):
        samples.add_column(column)
    for paper in papers[:: max(1, len(papers) // 6)]:
        answer = answers[paper.id]
        samples.add_row(paper.id, textwrap.shorten(paper.title, 60, placeholder=" ..."),
                        paper.label, answer["label"] or f"error: {answer['error']}",
                        "-" if answer["error"] else f"{answer['cancer_probability']:.3f}")
    console.print(samples)
    rows = per_source(papers, answers)
    scores = Table(title=f"Test split over REST: {len(papers) / seconds:.2f} papers/s")
    for column in ("source", "papers", "answered", "refused", "accuracy", "cancer recall"):
        scores.add_column(column, justify="left" if column == "source" else "right")
    for row in rows:
        scores.add_row(row["source"], str(row["papers"]), str(row["answered"]),
                       str(row["refused"]), _percent(row["accuracy"]), _percent(row["recall"]))
    console.print(scores)
    first = next((a for a in answers.values() if a["error"] is None), {})
    console.print(f"model {first.get('model')}, prompt {first.get('prompt_version')}")
    return rows[-1]["accuracy"]


def run_demo(processed_dir: Path, gateway_url: str) -> float | None:
    """Classify PROCESSED_DIR/test.parquet through the gateway and print the report. Raises
    BulkIncomplete when some papers could not be answered (see `classify_split`)."""
    papers = read_split(processed_dir, "test")
    started = time.monotonic()
    answers = asyncio.run(classify_split(gateway_url, processed_dir / "test.parquet"))
    return report(papers, answers, time.monotonic() - started, Console())
