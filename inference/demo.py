"""The demo: serve the model, classify the test split over REST, print what came back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from preprocessing.dataset import read_split
from preprocessing.papers import Paper


async def classify_over_rest(url: str, papers: list[Paper], batch_size: int = 8,
                             concurrency: int = 4) -> list[dict]:
    """Batches sent concurrently so the engine's continuous batching has work to merge."""
    results: list[dict] = [{}] * len(papers)
    slots = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(papers), desc="classifying over REST", unit="paper")
    async with httpx.AsyncClient(timeout=300) as client:

        async def run(start: int) -> None:
            chunk = papers[start : start + batch_size]
            async with slots:
                response = await client.post(f"{url}/v1/classify_papers", json={"papers": [
                    {"id": p.id, "title": p.title, "abstract": p.abstract} for p in chunk]})
            response.raise_for_status()
            for offset, item in enumerate(response.json()["results"]):
                results[start + offset] = item["result"] or {"error": item["error"]}
            progress.update(len(chunk))

        await asyncio.gather(*(run(s) for s in range(0, len(papers), batch_size)))
    progress.close()
    return results


def report(papers: list[Paper], results: list[dict], seconds: float, console: Console) -> float:
    right = sum(r.get("label") == p.label for p, r in zip(papers, results, strict=True))
    accuracy = right / len(papers)
    table = Table(title="Sample answers")
    for column in ("id", "title", "truth", "answer", "probability"):
        table.add_column(column)
    for paper, result in list(zip(papers, results, strict=True))[:: max(1, len(papers) // 6)]:
        table.add_row(paper.id, paper.title[:60], paper.label, result.get("label", "error"),
                      f"{result.get('probability', 0):.3f}")
    console.print(table)
    console.print(f"[bold]{len(papers)} test papers, accuracy {accuracy:.1%}, "
                  f"{len(papers) / seconds:.2f} papers/s over REST[/bold] "
                  f"(model {results[0].get('model')}, prompt {results[0].get('prompt_version')})")
    return accuracy


def run_demo(processed_dir: Path, gateway_url: str) -> float:
    papers = read_split(processed_dir, "test")
    started = time.monotonic()
    results = asyncio.run(classify_over_rest(gateway_url, papers))
    return report(papers, results, time.monotonic() - started, Console())
