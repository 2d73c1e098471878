"""python -m loadtest: load-test a running gateway with Locust (`run`), or benchmark the serving
paths side by side on this machine (`bench`).

Typical use: start the service with `make serve` (gateway on http://127.0.0.1:8080), then
`python -m loadtest run --users 32 --duration 10m`. `python -m loadtest bench` needs no running
service: it starts and stops everything it measures."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__,
                  rich_markup_mode="markdown")


def _default_run_dir() -> Path:
    from datetime import datetime

    from preprocessing.settings import PROJECT_ROOT

    return PROJECT_ROOT / "results" / "loadtest" / datetime.now().strftime("%Y%m%d-%H%M%S")


@app.command()
def run(
    host: str = typer.Option("http://127.0.0.1:8080", help="Gateway base URL"),
    users: int = typer.Option(32, min=1, help="Concurrent simulated users"),
    spawn_rate: float = typer.Option(8, min=0.1, help="Users started per second"),
    duration: str = typer.Option("10m", help="How long to run: 30s, 10m, 1h30m"),
    out: Path = typer.Option(None, help="Output folder (default results/loadtest/<timestamp>)"),
    max_error_rate: float = typer.Option(
        0.0, min=0.0, max=1.0, help="SLO: highest share of failed requests (0.01 = 1 %)"),
    max_p95_ms: float = typer.Option(None, help="SLO: highest p95 latency over all requests"),
    gateway_pid: int = typer.Option(
        None, help="Process whose memory to sample (default: whoever listens on the host's "
        "port, when the host is this machine)"),
    api_key: str = typer.Option("", envvar="LOADTEST_API_KEY",
                                help="API key, sent as `Authorization: Bearer KEY`"),
    batch_size: int = typer.Option(
        4, min=1, help="Papers per /v1/classify_papers call (the gateway admits 64 papers in "
        "flight and answers 429 beyond: users x batch size above that measures shedding)"),
    single_weight: int = typer.Option(3, min=0, help="How often users call classify_paper..."),
    batch_weight: int = typer.Option(1, min=0, help="...relative to classify_papers"),
    cache_bust: bool = typer.Option(
        True, help="Make every title unique so the gateway's result cache never answers "
        "(measures the engine, not the cache)"),
    wait_max_s: float = typer.Option(0.5, min=0, help="Think time per user: 0 to this, seconds"),
    split: str = typer.Option("test", help="Dataset split whose abstracts are sent"),
) -> None:
    """Run Locust headless against the gateway and judge the result against SLOs.

    Writes into OUT: Locust's CSV files and HTML report, summary.json and summary.md
    (throughput, p50/p95/p99 latency, failures, the gateway's memory at start and end) and
    latency_throughput.png. Exits with 1 when an SLO is broken.
    """
    from loadtest.run import RunOptions, run_load
    from loadtest.settings import LoadtestSettings

    settings = LoadtestSettings(api_key=api_key, batch_size=batch_size,
                                single_weight=single_weight, batch_weight=batch_weight,
                                cache_bust=cache_bust, wait_max_s=wait_max_s, split=split)
    if single_weight + batch_weight == 0:
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
    papers: int = typer.Option(None, min=1, help="Test papers to use (default: all of them)"),
    concurrency: int = typer.Option(16, min=1, help="Requests in flight on the served paths"),
    rounds: int = typer.Option(5, min=1, help="Timed rounds of each served path, "
                               "interleaved (the median is kept)"),
    model: Path = typer.Option(None, help="Model directory (default: models/latest, else the "
                               "embedded base model)"),
    only: str = typer.Option("baseline,offline,server,gateway",
                             help="Paths to run, comma-separated"),
    out_dir: Path = typer.Option(None, help="Folder for bench.md and bench.png "
                                 "(default results/bench)"),
    json_path: Path = typer.Option(None, "--json", help="JSON result (default "
                                   "OUT_DIR/latest.json)"),
    data_dir: Path = typer.Option(None, help="Processed dataset (default data/processed)"),
) -> None:
    """Benchmark the serving paths one after the other on this machine, on the same model and
    papers: the original notebook's loop (baseline), vLLM's offline engine, the vLLM server
    called directly, and the gateway in front of it.

    Reports papers/s, p50/p99 latency, accuracy, the ratio to the baseline and MFU (model FLOPs
    over the matmul rate torch measures here, in the precision the engine computes in) per
    path, the gateway's overhead and the cold start; prints PASS/FAIL per target (it does not
    fail on a missed target). Engine arguments, precision included, come from the ENGINE_*
    variables, as for `python -m inference serve`.
    Quick smoke: `--papers 16 --concurrency 4`.
    """
    from loadtest.bench import DEFAULT_OUT, BenchOptions, print_targets, run_bench
    from model_contract.layout import resolve_model_dir

    opts = BenchOptions(model_dir=resolve_model_dir(model), papers=papers,
                        concurrency=concurrency, rounds=rounds,
                        paths=tuple(p.strip() for p in only.split(",") if p.strip()),
                        out_dir=out_dir or DEFAULT_OUT, json_path=json_path)
    if data_dir is not None:
        opts.data_dir = data_dir
    # SIGTERM ends the run like Ctrl-C: the engine and gateway it started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_bench(opts)
    typer.echo((opts.out_dir / "bench.md").read_text())
    print_targets(result)
    typer.echo(json.dumps(result["files"]))
