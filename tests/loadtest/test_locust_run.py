"""A short real Locust run against the session's gateway, and the SLO verdict's exit code."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loadtest.run import RunOptions, local_port, pid_listening_on, run_load, summary_markdown
from loadtest.settings import LoadtestSettings
from preprocessing.dataset import read_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def load_run(gateway_url: str, processed_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("locust")
    # The run must be long enough for both routes to answer on this machine, whatever its
    # speed: it lasts several times what one batch of real papers takes here, now.
    papers = [{"title": p.title, "abstract": p.abstract}
              for p in read_split(processed_dir, "test")[:4]]
    started = time.monotonic()
    httpx.post(gateway_url + "/v1/classify_papers", json={"papers": papers},
               timeout=600).raise_for_status()
    batch_s = time.monotonic() - started
    # Users alternate the routes, half of them starting with each: both routes answer even
    # when a slow machine completes only one call per user.
    settings = LoadtestSettings(data_dir=processed_dir, route_order="alternate", batch_size=4)
    summary = run_load(RunOptions(host=gateway_url, users=4, spawn_rate=4,
                                  duration=f"{max(15, math.ceil(8 * batch_s))}s", out_dir=out,
                                  settings=settings, progress=False,
                                  stop_timeout_s=max(30.0, 8 * batch_s)))
    return summary, out


def test_no_failures_and_both_routes(load_run: tuple[dict, Path]) -> None:
    summary, _ = load_run
    total = summary["total"]
    assert total["requests"] > 0 and total["failures"] == 0 and total["error_rate"] == 0.0
    assert set(summary["routes"]) == {"/v1/classify_paper", "/v1/classify_papers [batch=4]"}
    assert all(r["requests"] > 0 for r in summary["routes"].values())
    assert summary["slo"] == {"max_error_rate": 0.0, "max_p95_ms": None, "passed": True,
                              "violations": []}
    # Every answered paper was tallied against the dataset's label.
    routes = summary["routes"]
    answered = (routes["/v1/classify_paper"]["requests"]
                + 4 * routes["/v1/classify_papers [batch=4]"]["requests"])
    assert summary["label_agreement"]["answers"] == answered
    assert 0 <= summary["label_agreement"]["correct"] <= answered


def test_files_are_written(load_run: tuple[dict, Path]) -> None:
    _, out = load_run
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                 "summary.json", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    assert "<html" in (out / "report.html").read_text().lower()
    assert (out / "latency_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No failure: Locust's failures file holds its header only.
    assert len((out / "locust_failures.csv").read_text().splitlines()) == 1
    summary = json.loads((out / "summary.json").read_text())
    markdown = (out / "summary.md").read_text()
    assert markdown == summary_markdown(summary)
    total = summary["total"]
    assert f"| **all** | {total['requests']} | 0 | {total['requests_per_s']:,.2f} |" in markdown
    assert markdown.rstrip().endswith("**SLO: PASS**")


def test_summary_agrees_with_locust_csv(load_run: tuple[dict, Path]) -> None:
    summary, out = load_run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    with open(out / "locust_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert summary["total"]["requests"] == int(total["Request Count"])
    assert summary["total"]["failures"] == int(total["Failure Count"])
    assert summary["total"]["p50_ms"] == float(total["50%"])
    assert summary["total"]["p95_ms"] == float(total["95%"])
    assert summary["total"]["p99_ms"] == float(total["99%"])
    assert summary["total"]["requests_per_s"] == pytest.approx(float(total["Requests/s"]))
    assert sum(r["requests"] for r in summary["routes"].values()) == summary["total"]["requests"]
    papers = sum(float(rows[name]["Requests/s"]) * (4 if "batch" in name else 1)
                 for name in summary["routes"])
    assert summary["total"]["papers_per_s"] == pytest.approx(papers)
    assert summary["total"]["p50_ms"] <= summary["total"]["p95_ms"] <= summary["total"]["p99_ms"]


def test_gateway_memory_is_sampled(load_run: tuple[dict, Path], gateway_url: str) -> None:
    import psutil

    rss = load_run[0]["gateway_rss"]
    # The process sampled listens on the gateway's port, in the gateway's process group.
    assert rss["pid"] == pid_listening_on(local_port(gateway_url))
    leader = psutil.Process(os.getpgid(rss["pid"]))
    assert leader.cmdline()[-3:] == ["-m", "inference", "gateway"]
    assert 20 < rss["start_mib"] < 2048 and 20 < rss["end_mib"] < 2048
    assert rss["peak_mib"] >= max(rss["start_mib"], rss["end_mib"])
    assert rss["per_minute_mib"] and rss["per_minute_mib"][0] == rss["start_mib"]
    assert rss["second_half_growth_mib"] == pytest.approx(rss["end_mib"] - rss["middle_mib"],
                                                          abs=0.11)


def test_impossible_slo_exits_non_zero(gateway_url: str, processed_dir: Path,
                                       tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--host", gateway_url, "--users", "1",
         "--spawn-rate", "1", "--duration", "4s", "--max-p95-ms", "0.001",
         "--out", str(tmp_path)],
        env=os.environ | {"LOADTEST_DATA_DIR": str(processed_dir)},
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["total"]["requests"] > 0 and summary["total"]["failures"] == 0
    assert summary["slo"]["passed"] is False
    assert summary["slo"]["violations"] == [f"p95 {summary['total']['p95_ms']} ms > 0.001 ms"]
    assert f"**SLO: FAIL**: {summary['slo']['violations'][0]}" in done.stdout.splitlines()
