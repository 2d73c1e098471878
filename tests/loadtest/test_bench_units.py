"""The benchmark's modules one by one, and the commands' options, without a model or a server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from loadtest.bench.figures import path_figures
from loadtest.bench.isolation import run_in_child
from loadtest.bench.options import BenchOptions
from loadtest.bench.report import bench_markdown, evaluate_targets, verdict_lines, write_outputs
from loadtest.bench.served import drive, median_round
from loadtest.cli import app
from loadtest.settings import BenchSettings, LoadtestSettings
from preprocessing.papers import Paper

# --- settings and options -------------------------------------------------------------------


def test_bench_paths_are_checked_and_kept_in_order() -> None:
    assert BenchSettings().paths == ("baseline", "offline", "server", "gateway")
    assert BenchSettings(only=" gateway, server ").paths == ("gateway", "server")
    with pytest.raises(ValidationError, match=r"unknown paths \['gpu'\]"):
        BenchSettings(only="server,gpu")
    with pytest.raises(ValidationError, match="no path given"):
        BenchSettings(only=" , ")


def test_bench_options_take_settings_then_environment(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from loadtest.bench import runner

    monkeypatch.setenv("BENCH_ROUNDS", "3")
    monkeypatch.setenv("BENCH_CONCURRENCY", "7")
    seen: list[BenchOptions] = []

    def fake_run(opts: BenchOptions) -> dict:
        seen.append(opts)
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        (opts.out_dir / "bench.md").write_text("# table\n")
        result = {"cold_start_s": 12.0, "ratio_gateway_vs_baseline": 2.0}
        return result | {"targets": evaluate_targets(result), "files": {"json": "x"}}

    monkeypatch.setattr(runner, "run_bench", fake_run)
    (tmp_path / "config.json").write_text("{}")  # a model folder, as far as --model checks
    done = CliRunner().invoke(app, ["bench", "--papers", "8", "--concurrency", "4", "--only",
                                    "server,gateway", "--out-dir", str(tmp_path), "--model",
                                    str(tmp_path)])
    assert done.exit_code == 0, done.output
    settings = seen[0].settings
    assert (settings.papers, settings.concurrency, settings.rounds) == (8, 4, 3)
    assert seen[0].paths == ("server", "gateway") and seen[0].json_file == tmp_path / "latest.json"
    lines = done.output.splitlines()
    assert lines[0] == "# table"
    assert [line for line in lines if line.startswith(("PASS", "FAIL"))] == [
        "FAIL  gateway >= 3x baseline papers/s: 2.000",
        "FAIL  gateway accuracy >= baseline accuracy: n/a",
        "FAIL  gateway throughput overhead <= 5%: n/a",
        "FAIL  gateway p50 overhead <= 5 ms: n/a",
        "FAIL  MFU through the gateway >= 60%: n/a",
        "PASS  cold start < 60 s: 12.000"]
    assert lines[-1] == '{"json": "x"}'


@pytest.mark.parametrize(("args", "message"), [
    (["bench", "--only", "server,gpu"], "unknown paths ['gpu']"),
    (["bench", "--concurrency", "0"], "concurrency: Input should be greater than or equal"),
    (["run", "--duration", "1.5m"], "not a duration: '1.5m'"),
    (["run", "--batch-size", "0"], "batch_size: Input should be greater than or equal to 1"),
    (["run", "--single-weight", "0", "--batch-weight", "0"], "at least one of"),
    (["bench", "--model", "/"], "Invalid value for --model: / is not a model directory"),
    (["capacity", "--model", "/"], "Invalid value for --model: / is not a model directory"),
])
def test_bad_options_exit_2_before_anything_starts(args: list[str], message: str) -> None:
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2
    assert message in " ".join(done.output.replace("│", " ").split())


def test_run_options_over_environment_over_defaults(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    from loadtest import run as run_module

    monkeypatch.setenv("LOADTEST_BATCH_SIZE", "8")
    seen = []

    def fake_load(opts: run_module.RunOptions) -> dict:
        seen.append(opts)
        (opts.out_dir / "summary.md").write_text("SLO: FAIL\n")
        return {"slo": {"passed": False}}

    monkeypatch.setattr(run_module, "run_load", fake_load)
    done = CliRunner().invoke(app, ["run", "--single-weight", "2", "--no-cache-bust",
                                    "--duration", "1h30m", "--out", str(tmp_path)])
    assert done.exit_code == 1, done.output  # a broken SLO
    settings: LoadtestSettings = seen[0].settings
    assert (settings.batch_size, settings.single_weight, settings.batch_weight) == (8, 2, 1)
    assert settings.cache_bust is False and settings.wait_max_s == 0.5
    assert (seen[0].duration, seen[0].users, seen[0].max_error_rate) == ("1h30m", 32, 0.0)


@pytest.mark.parametrize("command", ["run", "bench"])
def test_every_option_explains_itself(command: str) -> None:
    done = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0
    options = [line for line in done.output.splitlines() if line.lstrip("│ ").startswith("--")]
    assert len(options) >= 8
    # Every option has words after its name and type; none is left without help.
    assert all(len(line.split()) >= 5 for line in options), options


# --- figures, rounds, report ----------------------------------------------------------------

PAPERS = [Paper("a", "t", "x", "cancer"), Paper("b", "t", "x", "non_cancer"),
          Paper("c", "t", "x", "cancer"), Paper("d", "t", "x", "non_cancer")]


def test_path_figures() -> None:
    figures = path_figures(PAPERS, ["cancer", "cancer", None, "non_cancer"],
                           [0.1, 0.2, 0.3, 0.4], 2.0, [100, 110, 120, 130], errors=1)
    assert figures == {"papers": 4, "seconds": 2.0, "papers_per_s": 2.0, "p50_ms": 250.0,
                       "p99_ms": 400.0, "accuracy": 0.5, "unparsed_or_failed": 1, "errors": 1,
                       "prompt_tokens_mean": 115.0, "cached_tokens_mean": 0.0,
                       "computed_tokens_mean": 115.0}
    # Tokens found in the prefix cache are not computed; an unknown count is reported as such.
    cached = path_figures(PAPERS, ["cancer"] * 4, [0.1] * 4, 1.0, [100, 110, 120, 130],
                          cached_tokens=40)
    assert (cached["cached_tokens_mean"], cached["computed_tokens_mean"]) == (10.0, 105.0)
    unknown = path_figures(PAPERS, ["cancer"] * 4, [0.1] * 4, 1.0, [100] * 4, cached_tokens=None)
    assert (unknown["cached_tokens_mean"], unknown["computed_tokens_mean"]) == (None, 100.0)


def test_drive_keeps_order_and_counts_failures() -> None:
    in_flight, most = 0, 0

    async def call(n: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 * (5 - n))
        in_flight -= 1
        if n == 3:
            raise ValueError("three")
        return n * 10

    results, latencies, wall = asyncio.run(drive(list(range(5)), 2, call, "test", False))
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], ValueError)
    assert most == 2
    assert all(0.005 < t < 1 for t in latencies) and wall >= max(latencies)


def test_median_round_is_the_lower_middle() -> None:
    runs = [{"papers_per_s": 3.0, "n": 1}, {"papers_per_s": 1.0, "n": 2},
            {"papers_per_s": 2.0, "n": 3}, {"papers_per_s": 4.0, "n": 4}]
    assert median_round(runs) == {"papers_per_s": 2.0, "n": 3,
                                  "rounds_papers_per_s": [3.0, 1.0, 2.0, 4.0]}
    assert median_round(runs[:3])["n"] == 3


def _result() -> dict:
    path = {"description": "d", "papers_per_s": 2.5, "ratio_to_baseline": None, "p50_ms": 400.0,
            "p99_ms": 900.0, "accuracy": 0.75, "prompt_tokens_mean": 150.0,
            "cached_tokens_mean": 20.0, "mfu": 0.123,
            "papers": 8, "rereads": 2}
    result = {
        "created_at": "2026-01-01T00:00:00+00:00", "papers": 8, "concurrency": 4, "rounds": 1,
        "model_dir": "/m/base", "prompt_version": "v1", "ratio_gateway_vs_baseline": None,
        "gateway_overhead_throughput": 0.02, "gateway_overhead_p50_ms": 1.5,
        "gateway_overhead_p50_ms_at_concurrency": 30.0,
        "latency_probe": {"overhead_fastest_paired_ms": 1.2, "gateway_internal_mean_ms": 0.8},
        "mfu_gateway": 0.123, "cold_start_s": 42.0, "engine_ready_s": 30.0,
        "gateway_ready_s": 33.0, "accuracy_baseline": None, "accuracy_gateway": 0.75,
        "precision": {"precision": "bfloat16", "reason": "why"}, "peak_precision": "bfloat16",
        "peak_flops": 5e11, "machine": {"cpu": "cpu", "usable_cores": 2, "load_average_1m": 1.0,
                                        "load_average_1m_end": 2.0},
        "paths": {"gateway": path}}
    return result | {"targets": evaluate_targets(result)}


def test_verdict_lines_and_markdown() -> None:
    result = _result()
    assert verdict_lines(result) == [
        "FAIL  gateway >= 3x baseline papers/s: n/a",
        "FAIL  gateway accuracy >= baseline accuracy: 0.750",
        "PASS  gateway throughput overhead <= 5%: 0.020",
        "PASS  gateway p50 overhead <= 5 ms: 1.500",
        "FAIL  MFU through the gateway >= 60%: 0.123",
        "PASS  cold start < 60 s: 42.000"]
    markdown = bench_markdown(result)
    assert "| gateway: d | 2.50 | n/a | 400 | 900 | 75.0% | 150 (20) | 12.3% |" in markdown
    assert "): 42.0 s (engine ready after 30.0 s)" in markdown
    assert ("2.0 % throughput at 4 in flight; p50 latency +1.5 ms one request at a time "
            "(+30 ms at 4 in flight, mostly queueing; fastest-answer pairs: +1.2 ms; inside "
            "the gateway's app, by its own metrics: 0.8 ms)") in markdown
    assert "Re-read (capped read unsure, the whole abstract read again): gateway 2 of 8" in markdown
    assert "| cold start < 60 s | 42.000 | PASS |" in markdown
    assert "| MFU through the gateway >= 60% | 0.123 | FAIL |" in markdown


def test_outputs_are_written(tmp_path: Path) -> None:
    result = _result()
    opts = BenchOptions(model_dir=tmp_path, out_dir=tmp_path / "out",
                        json_path=tmp_path / "elsewhere" / "r.json")
    write_outputs(result, opts)
    assert json.loads((tmp_path / "elsewhere" / "r.json").read_text()) == {
        k: v for k, v in result.items() if k != "files"}
    assert (tmp_path / "out" / "bench.md").read_text() == bench_markdown(result)
    assert (tmp_path / "out" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert result["files"] == {"json": str(tmp_path / "elsewhere" / "r.json"),
                               "markdown": str(tmp_path / "out" / "bench.md"),
                               "chart": str(tmp_path / "out" / "bench.png")}


# --- a path in a child process ----------------------------------------------------------------

def child_pid_and_args(*args: object) -> dict:
    return {"pid": os.getpid(), "args": list(args)}


def child_raises() -> dict:
    raise KeyError("no such paper")


def child_dies() -> dict:
    os._exit(3)


def test_run_in_child_returns_raises_and_notices_death() -> None:
    value = run_in_child(child_pid_and_args, 1, "two")
    assert value["args"] == [1, "two"] and value["pid"] != os.getpid()
    with pytest.raises(RuntimeError, match="(?s)child_raises failed:.*KeyError: 'no such paper'"):
        run_in_child(child_raises)
    with pytest.raises(RuntimeError, match="child_dies died with exit code 3"):
        run_in_child(child_dies)


# --- the engine's prefix cache ---------------------------------------------------------------

@pytest.mark.parametrize(("answers", "reset", "calls"), [
    ([(200, b'{"success": false}'), (200, b'{"success": false}'), (200, b'{"success": true}')],
     True, 3),
    ([(500, b"no dev mode")], False, 1),
    ([(200, b"not json")], False, 1),
    ([(200, b'{"success": false}')] * 60, False, 50),  # still busy after every try
])
def test_prefix_cache_reset_retries_while_busy(monkeypatch: pytest.MonkeyPatch, answers: list,
                                               reset: bool, calls: int) -> None:
    from loadtest.bench import clients

    monkeypatch.setattr(clients, "RESET_WAIT_S", 0.0)
    served = clients.Served.__new__(clients.Served)
    served.engine_url = "http://engine"
    posted: list[str] = []

    async def post(url: str, body: bytes) -> tuple[int, bytes]:
        posted.append(url)
        return answers[len(posted) - 1]

    served._post = post
    assert asyncio.run(served.reset_prefix_cache()) is reset
    assert posted == ["http://engine/reset_prefix_cache"] * calls


def test_unknown_source_exits_2_naming_the_sources(processed_dir: Path, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["bench", "--source", "pubmed", "--data-dir",
                                    str(processed_dir), "--out-dir", str(tmp_path)])
    assert done.exit_code == 2, done.output
    text = " ".join(done.output.replace("│", " ").split())
    assert "no papers of source 'pubmed'; the dataset has ['assignment'] (or 'all')" in text
    assert not (tmp_path / "latest.json").exists()
