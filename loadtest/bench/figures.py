"""The figures of one timed path: throughput, latency percentiles, accuracy, prompt size."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from preprocessing.papers import Paper


def latency_stats(latencies_s: list[float]) -> dict[str, float | None]:
    """p50 and p99 of latencies given in seconds, in milliseconds rounded to 0.1 ms: the p50
    is the median (the two middle values averaged), the p99 the nearest observed latency.
    Both None for no latencies."""
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None}
    p50 = float(np.median(latencies_s))
    p99 = float(np.percentile(latencies_s, 99, method="nearest"))
    return {"p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def path_figures(papers: list[Paper], labels: list[str | None], latencies_s: list[float],
                 seconds: float, prompt_tokens: list[int], errors: int = 0,
                 cached_tokens: float | None = 0.0) -> dict[str, Any]:
    """A path's figures: `papers` answered with `labels` (None: unread or failed) in
    `seconds` of wall time, each paper's latency in seconds, the prompt tokens each read and
    how many of all those tokens the engine found in its prefix cache (None: unknown, taken
    as 0). `computed_tokens_mean`, the prompt tokens a paper cost, is what MFU counts."""
    prompt_mean = statistics.fmean(prompt_tokens)
    cached_mean = (cached_tokens or 0.0) / len(papers)
    correct = sum(label == p.label for label, p in zip(labels, papers, strict=True))
    return {
        "papers": len(papers),
        "seconds": round(seconds, 3),
        "papers_per_s": len(papers) / seconds,
        **latency_stats(latencies_s),
        "accuracy": correct / len(papers),
        "unparsed_or_failed": sum(label is None for label in labels),
        "errors": errors,
        "prompt_tokens_mean": prompt_mean,
        "cached_tokens_mean": None if cached_tokens is None else cached_mean,
        "computed_tokens_mean": prompt_mean - cached_mean,
    }
