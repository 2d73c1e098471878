"""The benchmark's report: the targets and their verdicts, the result JSON, the markdown table
and the verdict lines printed at the end."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

from loadtest.bench.options import BenchOptions

#: name -> (key of the result JSON, comparison, threshold)
TARGETS = {
    "gateway >= 3x baseline papers/s": ("ratio_gateway_vs_baseline", ">=", 3.0),
    "gateway throughput overhead <= 5%": ("gateway_overhead_throughput", "<=", 0.05),
    "gateway p50 overhead <= 5 ms": ("gateway_overhead_p50_ms", "<=", 5.0),
    "MFU through the gateway >= 60%": ("mfu_gateway", ">=", 0.60),
    "cold start < 60 s": ("cold_start_s", "<", 60.0),
}
_COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target (TARGETS, and gateway accuracy >= baseline accuracy second): its
    value in `result`, threshold and whether it passed; a missing value fails."""
    rows = []
    for name, (key, op, threshold) in TARGETS.items():
        value = result.get(key)
        passed = value is not None and _COMPARE[op](value, threshold)
        rows.append({"target": name, "key": key, "value": value, "threshold": threshold,
                     "passed": bool(passed)})
    base, gw = result.get("accuracy_baseline"), result.get("accuracy_gateway")
    rows.insert(1, {"target": "gateway accuracy >= baseline accuracy", "key": "accuracy_gateway",
                    "value": gw, "threshold": base,
                    "passed": bool(base is not None and gw is not None and gw >= base)})
    return rows


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """`PASS  <target>: <value>` or `FAIL  ...`, one line per target, as printed."""
    return [f"{'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {_f(t['value'], '.3f')}"
            for t in result["targets"]]


def print_targets(result: dict[str, Any]) -> None:
    """Print the verdict lines."""
    for line in verdict_lines(result):
        print(line)


def _paths_table(result: dict[str, Any]) -> list[str]:
    lines = ["| path | papers/s | x baseline | p50 ms | p99 ms | accuracy "
             "| prompt tokens (cached) | MFU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in result["paths"].items():
        lines.append(
            f"| {name}: {p['description']} | {p['papers_per_s']:.2f} | "
            f"{_f(p['ratio_to_baseline'], '.2f')} | {_f(p['p50_ms'], '.0f')} | "
            f"{_f(p['p99_ms'], '.0f')} | {p['accuracy']:.1%} | {p['prompt_tokens_mean']:.0f} "
            f"({_f(p['cached_tokens_mean'], '.0f')}) | {p['mfu']:.1%} |")
    return lines


def _notes(result: dict[str, Any]) -> list[str]:
    m, probe = result["machine"], result.get("latency_probe") or {}
    overhead = result["gateway_overhead_throughput"]
    return [
        f"- Cold start (engine + gateway processes started -> first answer through the "
        f"gateway): {_f(result['cold_start_s'], '.1f')} s "
        f"(engine ready after {_f(result['engine_ready_s'], '.1f')} s)",
        f"- Gateway overhead vs the server called directly: "
        f"{_f(overhead and overhead * 100, '.1f')}"
        f" % throughput at {result['concurrency']} in flight; p50 latency "
        f"{_f(result['gateway_overhead_p50_ms'], '+.1f')} ms one request at a time "
        f"({_f(result['gateway_overhead_p50_ms_at_concurrency'], '+.0f')} ms at "
        f"{result['concurrency']} in flight, mostly queueing; fastest-answer pairs: "
        f"{_f(probe.get('overhead_fastest_paired_ms'), '+.1f')}"
        " ms; inside the gateway's app, by its own metrics: "
        f"{_f(probe.get('gateway_internal_mean_ms'), '.1f')} ms)",
        "- Re-read (capped read unsure, the whole abstract read again): "
        + ", ".join(f"{name} {p['rereads']} of {p['papers']}" for name, p in
                    result["paths"].items() if "rereads" in p),
        f"- Load average (1 min) at start / end: {m['load_average_1m']} / "
        f"{m['load_average_1m_end']} on {m['usable_cores']} cores (other work distorts the "
        "figures; each served path's median round is shown)",
    ]


def bench_markdown(result: dict[str, Any]) -> str:
    """bench.md: the paths' table, the overhead and cold-start notes, the targets' table."""
    m = result["machine"]
    lines = [
        f"# Serving benchmark ({result['created_at']})",
        "",
        f"{result['papers']} papers of the test split (source {result.get('source', 'all')}), "
        f"model `{Path(result['model_dir']).name}`"
        f", served prompt `{result['prompt_version']}`; {m['cpu']}, {m['usable_cores']} cores, "
        f"computing in {result['precision']['precision']} ({result['precision']['reason']}); "
        f"{result['peak_precision']} matmul peak {result['peak_flops'] / 1e9:.0f} GFLOP/s "
        "(torch, same run).",
        "",
        *_paths_table(result),
        "",
        *_notes(result),
        "",
        "| target | value | result |",
        "|---|---:|---|",
    ]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {_f(t['value'], '.3f')} | "
                     f"{'PASS' if t['passed'] else 'FAIL'} |")
    lines += ["", "Reproduce: `python -m loadtest bench` (or `make bench`).", ""]
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], opts: BenchOptions) -> None:
    """Write the JSON result, bench.md and bench.png; adds their paths to `result["files"]`
    (after the JSON is written, so the JSON does not list them)."""
    from loadtest.bench.chart import bench_chart

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = opts.json_file
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    (opts.out_dir / "bench.md").write_text(bench_markdown(result))
    bench_chart(result, opts.out_dir / "bench.png")
    result["files"] = {"json": str(json_path), "markdown": str(opts.out_dir / "bench.md"),
                       "chart": str(opts.out_dir / "bench.png")}
