"""python -m loadtest: load-test a running gateway with Locust (`run`), or benchmark the serving
paths side by side on this machine (`bench`), or REST bulk against Ray Data bulk (`capacity`).

Typical use: start the service with `make serve` (gateway on http://127.0.0.1:8080), then
`python -m loadtest run --users 32 --duration 10m`. `python -m loadtest bench` needs no running
service: it starts and stops everything it measures."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from commandline.model_option import model_dir_from
from commandline.options import option, settings_from
from loadtest.settings import BenchSettings, LoadtestSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__,
                  rich_markup_mode="markdown")
L, B = LoadtestSettings, BenchSettings
RUN_PANEL, USERS_PANEL = "The run and its SLOs", "The simulated users (LOADTEST_* settings)"
BENCH_PANEL, FILES_PANEL = "What to measure (BENCH_* settings)", "Model and outputs"


def _users(field: str) -> typer.models.OptionInfo:
    """The option of a LoadtestSettings field: its description, default and variable."""
    return option(L, field, rich_help_panel=USERS_PANEL)


def _measured(field: str) -> typer.models.OptionInfo:
    """The option of a BenchSettings field: its description, default and variable."""
    return option(B, field, rich_help_panel=BENCH_PANEL)


def _default_run_dir() -> Path:
    from datetime import datetime

    from preprocessing.settings import PROJECT_ROOT

    return PROJECT_ROOT / "results" / "loadtest" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _duration(text: str) -> str:
    """Reject what Locust's --run-time would reject, before anything starts."""
    from loadtest.run import parse_duration

    try:
        parse_duration(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    return text


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Gateway base URL", rich_help_panel=RUN_PANEL)] = "http://127.0.0.1:8080",
    users: Annotated[int, typer.Option(
        min=1, help="Concurrent simulated users", rich_help_panel=RUN_PANEL)] = 32,
    spawn_rate: Annotated[float, typer.Option(
        min=0.1, help="Users started per second", rich_help_panel=RUN_PANEL)] = 8,
    duration: Annotated[str, typer.Option(
        callback=_duration, help="How long to run, in Locust's syntax: 90, 30s, 10m, 1h30m",
        rich_help_panel=RUN_PANEL)
    ] = "10m",
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default results/loadtest/DATE-TIME)",
        rich_help_panel=RUN_PANEL)] = None,
    max_error_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="SLO: highest share of failed requests (0.01 = 1 %)",
        rich_help_panel=RUN_PANEL)] = 0.0,
    max_p95_ms: Annotated[float | None, typer.Option(
        help="SLO: highest p95 latency over all requests, ms (default: no limit)",
        rich_help_panel=RUN_PANEL)] = None,
    gateway_pid: Annotated[int | None, typer.Option(
        help="Process whose memory to sample (default: whoever listens on the host's port, "
        "when the host is this machine)", rich_help_panel=RUN_PANEL)] = None,
    api_key: Annotated[str | None, _users("api_key")] = None,
    batch_size: Annotated[int | None, _users("batch_size")] = None,
    single_weight: Annotated[int | None, _users("single_weight")] = None,
    batch_weight: Annotated[int | None, _users("batch_weight")] = None,
    route_order: Annotated[str | None, _users("route_order")] = None,
    cache_bust: Annotated[bool | None, _users("cache_bust")] = None,
    wait_min_s: Annotated[float | None, _users("wait_min_s")] = None,
    wait_max_s: Annotated[float | None, _users("wait_max_s")] = None,
    split: Annotated[str | None, _users("split")] = None,
    data_dir: Annotated[Path | None, _users("data_dir")] = None,
) -> None:
    """Run Locust headless against the gateway and judge the result against SLOs.

    Writes into OUT: Locust's CSV files and HTML report, summary.json and summary.md
    (throughput, p50/p95/p99 latency, failures, the gateway's memory at start and end) and
    latency_throughput.png. Exits with 1 when an SLO is broken.
    """
    from loadtest.run import RunOptions, run_load

    settings = settings_from(L, api_key=api_key, batch_size=batch_size,
                             single_weight=single_weight, batch_weight=batch_weight,
                             route_order=route_order,
                             cache_bust=cache_bust, wait_min_s=wait_min_s,
                             wait_max_s=wait_max_s, split=split, data_dir=data_dir)
    if settings.route_order == "weighted" and settings.single_weight + settings.batch_weight == 0:
        raise typer.BadParameter("at least one of --single-weight/--batch-weight must be > 0")
    out = out or _default_run_dir()
    summary = run_load(RunOptions(host=host.rstrip("/"), users=users, spawn_rate=spawn_rate,
                                  duration=duration, out_dir=out, settings=settings,
                                  gateway_pid=gateway_pid, max_error_rate=max_error_rate,
                                  max_p95_ms=max_p95_ms))
    typer.echo((out / "summary.md").read_text())
    typer.echo(f"files in {out}")
    if not summary["slo"]["passed"]:
        raise typer.Exit(1)


@app.command()
def bench(
    source: Annotated[str | None, _measured("source")] = None,
    papers: Annotated[int | None, _measured("papers")] = None,
    concurrency: Annotated[int | None, _measured("concurrency")] = None,
    rounds: Annotated[int | None, _measured("rounds")] = None,
    only: Annotated[str | None, _measured("only")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Model directory (default: models/latest, else the embedded base model)",
        rich_help_panel=FILES_PANEL)] = None,
    out_dir: Annotated[Path | None, typer.Option(
        help="Folder for bench.md and bench.png (default results/bench)",
        rich_help_panel=FILES_PANEL)] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="JSON result (default OUT_DIR/latest.json)",
        rich_help_panel=FILES_PANEL)] = None,
    data_dir: Annotated[Path | None, _measured("data_dir")] = None,
) -> None:
    """Benchmark the serving paths one after the other on this machine, on the same model and
    papers: the original notebook's loop (baseline), vLLM's offline engine, the vLLM server
    called directly, and the gateway in front of it.

    Reports papers/s, p50/p99 latency, accuracy, the ratio to the baseline and MFU (model FLOPs
    over the matmul rate torch measures here, in the precision the engine computes in) per
    path, the gateway's overhead and the cold start; prints PASS/FAIL per target (it does not
    fail on a missed target). Engine arguments, precision included, come from the ENGINE_*
    variables, as for `python -m inference serve`; further settings (seed, ports, time
    budgets) from the BENCH_* variables.
    Quick smoke: `--papers 16 --concurrency 4`.
    """
    from loadtest.bench.options import DEFAULT_OUT, BenchOptions
    from loadtest.bench.papers import NoPapersError
    from loadtest.bench.report import print_targets
    from loadtest.bench.runner import run_bench

    settings = settings_from(B, source=source, papers=papers, concurrency=concurrency,
                             rounds=rounds, only=only, data_dir=data_dir)
    opts = BenchOptions(model_dir=model_dir_from(model), settings=settings,
                        out_dir=out_dir or DEFAULT_OUT, json_path=json_path)
    # SIGTERM ends the run like Ctrl-C: the engine and gateway it started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_bench(opts)
    except NoPapersError as err:
        raise typer.BadParameter(str(err), param_hint="--source") from None
    typer.echo((opts.out_dir / "bench.md").read_text())
    print_targets(result)
    typer.echo(json.dumps(result["files"]))


@app.command()
def capacity(
    papers: Annotated[int, typer.Option(
        help="Papers classified by each path (the test split repeated with fresh ids)")] = 2000,
    model: Annotated[Path | None, typer.Option(
        help="Model directory (default: models/latest, else the embedded base model)")] = None,
    data_dir: Annotated[Path | None, _measured("data_dir")] = None,
    out_dir: Annotated[Path, typer.Option(
        help="Folder for the papers, both paths' outputs and latest.json")]
    = Path("results/capacity"),
) -> None:
    """REST bulk against Ray Data bulk, side by side in one run on the same papers and model:
    `python -m inference classify` through a gateway in front of one vLLM server, then
    `python -m inference corpus` on a local Ray with the model in process. Prints papers/s of
    each path and how many labels differ (the figures for the README's capacity plan). Needs
    no running service; takes several minutes per 1,000 papers on a 2-core CPU."""
    from loadtest.capacity import run_capacity

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_capacity(model_dir_from(model), data_dir or B().data_dir, out_dir, papers)
    typer.echo(json.dumps(report, indent=2))
