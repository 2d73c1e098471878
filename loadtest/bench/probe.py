"""The latency the gateway adds, measured unloaded: one request at a time, direct and through
the gateway, in alternating order, the prefix cache emptied before every request (under load,
latency is mostly queueing and says little about the hop)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from loadtest.bench.clients import Served
from preprocessing.papers import Paper

PATHS = ("server", "gateway")


async def _probe_paper(served: Served, paper: Paper, first: int, repeats: int,
                       latencies: dict[str, list[float]]) -> float | None:
    """Read `paper` `repeats` times on each path, appending each latency (seconds) to
    `latencies`; the order starts with the gateway when `first` is odd. Returns the gap
    between the fastest gateway and the fastest direct answer (seconds), None when the prefix
    cache could not be emptied."""
    fastest = {"server": math.inf, "gateway": math.inf}
    for r in range(repeats):
        for which in PATHS if (first + r) % 2 == 0 else PATHS[::-1]:
            if not await served.reset_prefix_cache():
                return None
            call = served.direct if which == "server" else served.gateway
            started = time.perf_counter()
            await call(paper)
            elapsed = time.perf_counter() - started
            latencies[which].append(elapsed)
            fastest[which] = min(fastest[which], elapsed)
    return fastest["gateway"] - fastest["server"]


async def latency_probe(served: Served, papers: list[Paper], repeats: int = 5) -> dict[str, Any]:
    """Each paper `repeats` times direct and as often through the gateway. Besides the p50
    difference (ms), the median over papers of the difference of each paper's fastest
    answers (ms), which other work on the machine disturbs least, and the time the gateway's
    app spends around its engine call by its own metrics (ms). Empty when the engine refuses
    to empty its prefix cache."""
    latencies: dict[str, list[float]] = {"server": [], "gateway": []}
    fastest_gaps = []
    before = await served.gateway_time_sums()
    for i, paper in enumerate(papers):
        gap = await _probe_paper(served, paper, i, repeats, latencies)
        if gap is None:
            return {}
        fastest_gaps.append(gap)
    after = await served.gateway_time_sums()
    req_s, req_n, eng_s, eng_n = (a - b for a, b in zip(after, before, strict=True))
    # Time inside the gateway's app around its engine call (not the HTTP hops).
    # Per request, not per engine call: a re-read paper makes two engine calls.
    inside = (req_s - eng_s) / req_n * 1000 if req_n and eng_n else None
    server, gateway = (float(np.median(latencies[k])) * 1000 for k in PATHS)
    return {"papers": len(papers), "requests_per_path": len(latencies["server"]),
            "gateway_internal_mean_ms": None if inside is None else round(inside, 2),
            "server_p50_ms": round(server, 2), "gateway_p50_ms": round(gateway, 2),
            "overhead_p50_ms": round(gateway - server, 2),
            "overhead_fastest_paired_ms": round(float(np.median(fastest_gaps)) * 1000, 2)}
