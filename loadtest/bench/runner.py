"""The whole benchmark, what `python -m loadtest bench` calls: pick the papers, measure the
matmul peak and each path one after the other, judge the targets, write the report."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from loadtest import flops
from loadtest.bench.baseline import baseline_path
from loadtest.bench.isolation import run_in_child
from loadtest.bench.offline import offline_path
from loadtest.bench.options import DESCRIPTIONS, BenchOptions
from loadtest.bench.papers import of_source, pick_papers
from loadtest.bench.report import evaluate_targets, write_outputs
from loadtest.bench.served import served_paths
from preprocessing.dataset import read_split
from preprocessing.papers import Paper


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _papers(opts: BenchOptions) -> tuple[list[Paper], list[Paper]]:
    """The timed test papers (labels interleaved) and the validation papers that warm up."""
    s = opts.settings
    test = pick_papers(of_source(read_split(s.data_dir, "test"), s.source), s.papers, s.seed)
    warmup = of_source(read_split(s.data_dir, "validation"), s.source)[: max(s.concurrency, 4)]
    return test, warmup


def _measure(opts: BenchOptions, test: list[Paper], warmup: list[Paper], engine_settings: Any,
             dtype: str) -> tuple[dict[str, dict], dict[str, Any], list[dict]]:
    """Each wanted path in turn, the matmul peak measured before and after each. Returns the
    paths' figures, what the served paths reported besides, and the peak measurements."""
    s = opts.settings
    peaks = [flops.peak_flops(dtype, s.flops_seconds)]
    print(f"{dtype} matmul peak: {peaks[0]['flops'] / 1e9:.0f} GFLOP/s", flush=True)
    paths: dict[str, dict] = {}
    served: dict[str, Any] = {}
    # The ceiling is measured between the paths too, and the highest rate counts: other work
    # on the machine can only lower a measurement (seen: 808 GFLOP/s quiet, 263 busy).
    if "baseline" in opts.paths:
        paths["baseline"] = run_in_child(baseline_path, str(opts.model_dir), test, warmup[:2],
                                         s.seed, opts.progress, dtype)
        peaks.append(flops.peak_flops(dtype, s.flops_seconds))
    if "offline" in opts.paths:
        paths["offline"] = run_in_child(offline_path, str(opts.model_dir), test, warmup,
                                        engine_settings.model_dump_json(), opts.progress)
        peaks.append(flops.peak_flops(dtype, s.flops_seconds))
    if {"server", "gateway"} & set(opts.paths):
        served = served_paths(opts, test, warmup)
        paths |= served["paths"]
        peaks.append(flops.peak_flops(dtype, s.flops_seconds))
    return paths, served, peaks


def _add_derived(paths: dict[str, dict], non_embedding: int, peak: float,
                 concurrency: int) -> None:
    """MFU (a fraction of `peak` FLOP/s), the ratio to the baseline's papers/s and the table
    description, added to each path's figures."""
    base_rate = paths.get("baseline", {}).get("papers_per_s")
    for name, figures in paths.items():
        figures["mfu"] = flops.mfu(non_embedding, figures["computed_tokens_mean"],
                                   figures["papers_per_s"], peak)
        figures["ratio_to_baseline"] = _ratio(figures["papers_per_s"], base_rate)
        figures["description"] = DESCRIPTIONS[name].format(c=concurrency)


def _result(run: dict[str, Any], paths: dict[str, dict],
            served: dict[str, Any]) -> dict[str, Any]:
    """The result JSON (without its targets); `run` holds what was known before measuring."""
    server, gateway = paths.get("server"), paths.get("gateway")
    probe = served.get("latency_probe")
    return run | {
        "ratio_gateway_vs_baseline": gateway and gateway["ratio_to_baseline"],
        "gateway_overhead_throughput": (1 - gateway["papers_per_s"] / server["papers_per_s"]
                                        if server and gateway else None),
        # The latency the gateway adds to a request (unloaded probe); under load the p50s
        # differ by queueing, reported beside it.
        "gateway_overhead_p50_ms": (probe or {}).get("overhead_p50_ms"),
        "gateway_overhead_p50_ms_at_concurrency": (gateway["p50_ms"] - server["p50_ms"]
                                                   if server and gateway else None),
        "latency_probe": probe,
        "mfu_gateway": gateway and gateway["mfu"],
        "cold_start_s": served.get("cold_start_s"),
        "engine_ready_s": served.get("engine_ready_s"),
        "gateway_ready_s": served.get("gateway_ready_s"),
        "accuracy_baseline": paths.get("baseline", {}).get("accuracy"),
        "accuracy_gateway": gateway and gateway["accuracy"],
    }


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark, write the JSON, bench.md and bench.png (see report.write_outputs)
    and return the result, with its targets and the files written."""
    from inference.engine import EngineSettings, engine_precision
    from model_contract.layout import load_renderer

    test, warmup = _papers(opts)
    renderer = load_renderer(opts.model_dir)
    params = flops.parameter_counts(opts.model_dir)
    machine = flops.machine_info()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"bench: {len(test)} papers of source {opts.settings.source}, model {opts.model_dir}"
          f", prompt {renderer.template.version}, {machine['cpu']} x {machine['usable_cores']}"
          " cores", flush=True)
    engine_settings = EngineSettings()
    chosen = engine_precision(engine_settings)
    dtype = chosen.precision.value
    print(f"precision: {chosen.describe()}", flush=True)
    paths, served, peaks = _measure(opts, test, warmup, engine_settings, dtype)
    peak = max(p["flops"] for p in peaks)
    print(f"{dtype} matmul peak, highest of {len(peaks)}: {peak / 1e9:.0f} GFLOP/s", flush=True)
    _add_derived(paths, params["non_embedding"], peak, opts.settings.concurrency)
    run = {"created_at": created, "source": opts.settings.source, "papers": len(test),
           "concurrency": opts.settings.concurrency, "rounds": opts.settings.rounds,
           "model_dir": str(opts.model_dir), "prompt_version": renderer.template.version}
    result = _result(run, paths, served) | {
        "precision": chosen.as_dict(),
        "peak_precision": dtype,
        "peak_flops": peak,
        "peak_measurements": peaks,
        "parameters": params,
        "machine": machine | {"load_average_1m_end": round(os.getloadavg()[0], 2)},
        "engine_settings": served.get("engine_settings"),
        "paths": paths,
    }
    result["targets"] = evaluate_targets(result)
    write_outputs(result, opts)
    return result
