"""The served paths: start the engine and the gateway (timing the cold start), then alternate
timed rounds of the engine called directly ("server") and of the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm import tqdm

from loadtest.bench.clients import REQUEST_TIMEOUT_S, Served
from loadtest.bench.figures import path_figures
from loadtest.bench.options import BenchOptions
from loadtest.bench.probe import latency_probe
from loadtest.checks import check_classification
from preprocessing.papers import Paper


async def drive(items: list, concurrency: int, call: Callable[[Any], Awaitable],
                desc: str, progress: bool) -> tuple[list, list[float], float]:
    """Keep `concurrency` calls in flight until every item is done; results (an exception
    counts as a result) and latencies (seconds) in item order, and the wall time (seconds)."""
    slots = asyncio.Semaphore(concurrency)
    results: list = [None] * len(items)
    latencies = [0.0] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit="paper", disable=not progress)

    async def one(i: int, item: Any) -> None:
        async with slots:
            t = time.perf_counter()
            try:
                results[i] = await call(item)
            except Exception as err:  # noqa: BLE001 - a failed call is a result to count
                results[i] = err
            latencies[i] = time.perf_counter() - t
            bar.update()

    started = time.perf_counter()
    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    wall = time.perf_counter() - started
    bar.close()
    return results, latencies, wall


async def timed_round(served: Served, which: str, papers: list[Paper], warmup: list[Paper],
                      progress: bool) -> dict[str, Any]:
    """One timed round of path `which` ("server" or "gateway") over `papers`, after emptying
    the prefix cache and a warm-up on `warmup`: the path's figures (see `path_figures`) plus
    whether the cache was emptied, the first errors and how many papers were read twice."""
    call = served.direct if which == "server" else served.gateway
    reset = await served.reset_prefix_cache()
    await drive(warmup, served.concurrency, call, f"{which} warm-up", False)
    hits_before = await served.prefix_cache_hits()
    results, latencies, wall = await drive(
        papers, served.concurrency, call, f"{which} ({served.concurrency} in flight)", progress)
    hits_after = await served.prefix_cache_hits()
    # A second read finds its first read's full KV blocks cached: those tokens cost nothing.
    cached = (hits_after - hits_before if hits_before is not None and hits_after is not None
              else None)
    answers = [r if isinstance(r, tuple) else (None, False) for r in results]
    errors = [repr(r) for r in results if isinstance(r, Exception)]
    tokens = [served.prompt_tokens(p, reread) for p, (_, reread) in zip(papers, answers,
                                                                        strict=True)]
    return path_figures(papers, [label for label, _ in answers], latencies, wall, tokens,
                        len(errors), cached) | {
        "prefix_cache_reset": reset, "first_errors": errors[:3],
        "rereads": sum(reread for _, reread in answers)}


async def _first_answer(gateway_url: str, paper: Paper,
                        timeout_s: float = REQUEST_TIMEOUT_S) -> None:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(f"{gateway_url}/v1/classify_paper",
                                     json={"title": paper.title, "abstract": paper.abstract})
        check_classification(response.json())


@dataclass
class Services:
    """The engine and the gateway the served paths time, and how long each took to be ready
    (seconds since the engine was started)."""

    engine_url: str
    gateway_url: str
    model_name: str
    engine_ready_s: float = 0.0
    gateway_ready_s: float = 0.0
    cold_start_s: float = 0.0


@contextmanager
def started_services(opts: BenchOptions, engine_settings: Any,
                     first_paper: Paper) -> Iterator[Services]:
    """Start engine + gateway together (as a cluster starts their pods); ready once the
    gateway has answered `first_paper` (the cold start). Both are stopped when the block ends,
    however it ends."""
    from inference.local import free_port, start_serving, stop_process

    s = opts.settings
    started = time.perf_counter()
    # The result cache off: every timed request reaches the engine, whatever came before.
    gateway_env = {"GATEWAY_CACHE_SIZE": "0", "GATEWAY_API_KEYS": "",
                   "GATEWAY_MAX_IN_FLIGHT": str(max(64, s.concurrency))}
    engine_port = free_port(s.engine_port)
    serving = start_serving(opts.model_dir, engine_port,
                            free_port(s.gateway_port, {engine_port}), engine_settings, gateway_env,
                            engine_env={"VLLM_SERVER_DEV_MODE": "1"})  # /reset_prefix_cache
    try:
        asyncio.run(_first_answer(serving.gateway_url, first_paper))
        yield Services(serving.engine.url, serving.gateway_url,
                       engine_settings.served_model_name, serving.engine_ready_s,
                       serving.ready_s, time.perf_counter() - started)
    finally:
        stop_process(serving.gateway.pid)
        stop_process(serving.engine.pid)


async def _rounds(served: Served, opts: BenchOptions, papers: list[Paper],
                  warmup: list[Paper]) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Every timed round of the wanted served paths, interleaved with the order alternating,
    until `rounds` are done or the time budget is spent; with both paths, the latency probe
    first. Returns the rounds by path and the probe's result ({} when not run)."""
    s = opts.settings
    wanted = [p for p in ("server", "gateway") if p in opts.paths]
    rounds: dict[str, list[dict]] = {p: [] for p in wanted}
    probe: dict[str, Any] = {}
    async with served:
        if len(wanted) == 2:
            await served.direct(warmup[0])
            await served.gateway(warmup[0])
            if s.probe_papers:
                probe = await latency_probe(served, papers[: s.probe_papers])
        begun = time.perf_counter()
        for r in range(s.rounds):
            if r and time.perf_counter() - begun > s.served_budget_s:
                print(f"served rounds: time budget spent after {r}", flush=True)
                break
            for which in wanted if r % 2 == 0 else wanted[::-1]:
                rounds[which].append(
                    await timed_round(served, which, papers, warmup, opts.progress))
    return rounds, probe


def median_round(runs: list[dict]) -> dict[str, Any]:
    """The round of median papers/s (the lower middle one for an even count) with every
    round's papers/s beside it: on a shared, noisy machine it moves less than the best one."""
    middle = sorted(runs, key=lambda r: r["papers_per_s"])[(len(runs) - 1) // 2]
    return middle | {"rounds_papers_per_s": [round(r["papers_per_s"], 3) for r in runs]}


def served_paths(opts: BenchOptions, papers: list[Paper], warmup: list[Paper]) -> dict[str, Any]:
    """Start engine + gateway, time their rounds, stop them. The median round of each path
    under `paths`, the latency probe, the cold start and readiness times (seconds) and the
    engine's settings."""
    from inference.engine import EngineSettings
    from inference.gateway.settings import GatewaySettings
    from model_contract.layout import load_manifest, load_renderer

    settings = EngineSettings()
    # The rule the gateway reads the model by: its calibration, the settings' override.
    rule = load_manifest(opts.model_dir).reading_rule(GatewaySettings().reread_below)
    with started_services(opts, settings, warmup[0]) as services:
        served = Served(services.engine_url, services.gateway_url,
                        load_renderer(opts.model_dir), services.model_name,
                        opts.settings.concurrency, rule)
        rounds, probe = asyncio.run(_rounds(served, opts, papers, warmup))
    return {"paths": {which: median_round(runs) for which, runs in rounds.items()},
            "latency_probe": probe, "cold_start_s": services.cold_start_s,
            "engine_ready_s": services.engine_ready_s,
            "gateway_ready_s": services.gateway_ready_s,
            "engine_settings": settings.model_dump(mode="json")}
