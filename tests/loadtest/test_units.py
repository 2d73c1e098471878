"""Static checks of the load-test and benchmark helpers (no server, no model run)."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from loadtest import flops
from loadtest.bench.figures import latency_stats
from loadtest.bench.papers import NoPapersError, label_from_text, of_source, pick_papers
from loadtest.bench.report import evaluate_targets
from loadtest.checks import BadResponse, check_batch, check_classification
from loadtest.run import (
    RunOptions,
    locust_command,
    papers_per_s_history,
    parse_duration,
    pid_listening_on,
    rss_bytes,
    slo_violations,
    summarise,
)
from loadtest.settings import LoadtestSettings
from preprocessing.papers import Paper

GOOD = {"id": "p1", "label": "cancer", "probability": 0.9, "cancer_probability": 0.9,
        "model": "base", "prompt_version": "cancer-yn-short.r1.t64.a96.re1024", "truncated": False,
        "reread": False}


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("15s", 15), ("10m", 600), ("1h30m", 5400), ("2m30s", 150)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "5m later", "1.5m", "10M"])
def test_parse_duration_rejects(text: str) -> None:
    # What Locust's --run-time rejects is rejected here, before Locust starts.
    with pytest.raises(ValueError, match=r"not a duration: .* \(try 30s, 10m, 1h30m\)"):
        parse_duration(text)


@pytest.mark.parametrize(("stop_timeout_s", "given"), [(30.0, "30"), (55.99, "56"), (0.2, "1")])
def test_locust_gets_whole_seconds_to_stop(stop_timeout_s: float, given: str) -> None:
    opts = RunOptions(host="http://127.0.0.1:8080", users=1, spawn_rate=1, duration="15s",
                      out_dir=Path("out"), settings=LoadtestSettings(),
                      stop_timeout_s=stop_timeout_s)
    command = locust_command(opts, Path("out/locust"), Path("out/report.html"))
    value = command[command.index("--stop-timeout") + 1]
    assert value == given and parse_duration(value) == float(given)
    assert command[command.index("--run-time") + 1] == "15s"


def test_parse_duration_leaves_this_process_unpatched() -> None:
    import socket
    import threading

    parse_duration("1m")
    assert socket.socket.__module__ == "socket" and threading.Thread.__module__ == "threading"
    assert "LOCUST_SKIP_MONKEY_PATCH" not in os.environ


def test_good_classification_passes() -> None:
    assert check_classification(GOOD, "p1") == "cancer"
    no = GOOD | {"label": "non_cancer", "probability": 0.8, "cancer_probability": 0.2}
    assert check_classification(no) == "non_cancer"


@pytest.mark.parametrize("change", [
    {"label": "maybe"},
    {"probability": 1.5},
    {"probability": 0.3},  # the returned label's probability is the larger one
    {"cancer_probability": 0.1},  # says cancer, probability says otherwise
    {"probability": "0.9"},
    {"truncated": "no"},
    {"id": "someone-else"},
])
def test_wrong_shape_fails(change: dict) -> None:
    with pytest.raises(BadResponse):
        check_classification(GOOD | change, "p1")


def test_missing_key_fails() -> None:
    body = dict(GOOD)
    del body["prompt_version"]
    with pytest.raises(BadResponse, match="prompt_version"):
        check_classification(body)
    with pytest.raises(BadResponse):
        check_classification([GOOD])


def test_batch_checks() -> None:
    item = lambda i, pid: {"index": i, "id": pid, "result": GOOD | {"id": pid},  # noqa: E731
                           "error": None}
    body = {"results": [item(0, "a"), item(1, "b")]}
    assert check_batch(body, ["a", "b"]) == ["cancer", "cancer"]
    with pytest.raises(BadResponse, match="2 results for 3"):
        check_batch(body, ["a", "b", "c"])
    with pytest.raises(BadResponse, match="out of order"):
        check_batch({"results": [item(1, "b"), item(0, "a")]}, ["b", "a"])
    failed = {"results": [item(0, "a") | {"result": None, "error": {"status": 503}}]}
    with pytest.raises(BadResponse, match="failed"):
        check_batch(failed, ["a"])


HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,"
          "66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")


def _stats_csv(tmp_path: Path) -> Path:
    rows = [
        "POST,/v1/classify_paper,30,0,400,420,100,900,200,3.0,0.0,400,450,480,500,600,700,800,"
        "850,900,900,900",
        "POST,/v1/classify_papers [batch=8],10,1,1200,1300,800,2500,1500,1.0,0.1,1200,1300,1400,"
        "1500,1800,2000,2400,2500,2500,2500,2500",
        ",Aggregated,40,1,500,640,100,2500,525,4.0,0.1,500,600,700,800,1200,1800,2400,2500,2500,"
        "2500,2500",
    ]
    (tmp_path / "locust_stats.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return tmp_path / "locust"


def test_summary_from_csv(tmp_path: Path) -> None:
    summary = summarise(_stats_csv(tmp_path), batch_size=8)
    total = summary["total"]
    assert (total["requests"], total["failures"]) == (40, 1)
    assert total["error_rate"] == pytest.approx(1 / 40)
    assert (total["p50_ms"], total["p95_ms"], total["p99_ms"]) == (500, 1800, 2500)
    assert total["papers_per_s"] == pytest.approx(3.0 + 8 * 1.0)
    assert summary["routes"]["/v1/classify_papers [batch=8]"]["papers_per_s"] == 8.0


def test_slo_verdicts(tmp_path: Path) -> None:
    summary = summarise(_stats_csv(tmp_path), batch_size=8)
    assert slo_violations(summary, max_error_rate=0.05, max_p95_ms=2000) == []
    broken = slo_violations(summary, max_error_rate=0.0, max_p95_ms=0.001)
    assert broken == ["error rate 0.0250 > 0.0", "p95 1800.0 ms > 0.001 ms"]
    assert slo_violations(summary, max_error_rate=0.025, max_p95_ms=1800) == []  # limits pass
    assert slo_violations(summary, None, None, min_requests=100) == [
        "only 40 requests completed (want >= 100)"]


def test_papers_per_second_history(tmp_path: Path) -> None:
    head = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%\n"
    rows = ("10,4,POST,/v1/classify_paper,2.0,0,400\n"
            "10,4,POST,/v1/classify_papers [batch=8],0.5,0,900\n"
            "10,4,,Aggregated,2.5,0,500\n"
            "11,4,POST,/v1/classify_paper,N/A,0,N/A\n")
    (tmp_path / "locust_stats_history.csv").write_text(head + rows)
    assert papers_per_s_history(tmp_path / "locust", 8) == {10: 2.0 + 0.5 * 8, 11: 0.0}


def test_finds_the_process_listening_on_a_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert pid_listening_on(port) == os.getpid()
    assert pid_listening_on(port) is None  # closed: no one listens
    # The kernel's own figure for this process, in kB.
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    vm_rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
    assert rss_bytes(os.getpid()) == pytest.approx(vm_rss, rel=0.05)
    assert rss_bytes(2**22 + 12345) is None


def test_papers_interleave_labels() -> None:
    papers = [Paper(f"c{i}", "t", "a", "cancer") for i in range(5)] + [
        Paper(f"n{i}", "t", "a", "non_cancer") for i in range(3)]
    picked = pick_papers(papers, 4)
    assert sorted(p.label for p in picked) == ["cancer", "cancer", "non_cancer", "non_cancer"]
    assert pick_papers(papers, 4) == picked  # deterministic
    everything = pick_papers(papers, None)
    assert sorted(p.id for p in everything) == sorted(p.id for p in papers)


def test_bench_times_one_source_or_all() -> None:
    papers = [Paper("a1", "t", "a", "cancer", source="assignment"),
              Paper("o1", "t", "a", "cancer", source="ohsumed"),
              Paper("a2", "t", "a", "non_cancer", source="assignment")]
    assert [p.id for p in of_source(papers, "assignment")] == ["a1", "a2"]
    assert [p.id for p in of_source(papers, "all")] == ["a1", "o1", "a2"]
    with pytest.raises(NoPapersError, match=r"no papers of source 'pubmed'.*\['assignment', "
                       r"'ohsumed'\]"):
        of_source(papers, "pubmed")


@pytest.mark.parametrize(("text", "label"), [
    ("yes", "cancer"), (" Yes.", "cancer"), ("yesyes", "cancer"), ("no", "non_cancer"),
    ("No,", "non_cancer"), ("nono", "non_cancer"), ("", None), ("The", None), ("?", None),
    (" maybe yes", None)])
def test_label_from_generated_text(text: str, label: str | None) -> None:
    assert label_from_text(text, {"cancer": "yes", "non_cancer": "no"}) == label


def test_latency_percentiles() -> None:
    stats = latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(99.0)
    assert latency_stats([]) == {"p50_ms": None, "p99_ms": None}


def _write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header = {name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}
              for name, shape in shapes.items()} | {"__metadata__": {"format": "pt"}}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_parameter_counts_leave_out_embeddings(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "model.safetensors", {
        "model.embed_tokens.weight": [100, 8],
        "model.layers.0.mlp.up_proj.weight": [16, 8],
        "model.norm.weight": [8],
    })
    assert flops.parameter_counts(tmp_path) == {"total": 936, "embedding": 800,
                                                "non_embedding": 136}


def test_mfu_formula() -> None:
    # 2 FLOPs x 1e8 parameters x 150 tokens = 30 GFLOP a paper; 5 papers/s of 300 GFLOP/s.
    assert flops.flops_per_paper(100_000_000, 150) == 3e10
    assert flops.mfu(100_000_000, 150, 5.0, 3e11) == pytest.approx(0.5)


def test_targets_are_judged() -> None:
    result = {"ratio_gateway_vs_baseline": 3.5, "gateway_overhead_throughput": 0.02,
              "gateway_overhead_p50_ms": 7.0, "mfu_gateway": 0.4, "cold_start_s": 40.0,
              "accuracy_baseline": 0.9, "accuracy_gateway": 0.95}
    rows = evaluate_targets(result)
    assert [(t["key"], t["value"], t["threshold"], t["passed"]) for t in rows] == [
        ("ratio_gateway_vs_baseline", 3.5, 3.0, True),
        ("accuracy_gateway", 0.95, 0.9, True),
        ("gateway_overhead_throughput", 0.02, 0.05, True),
        ("gateway_overhead_p50_ms", 7.0, 5.0, False),
        ("mfu_gateway", 0.4, 0.6, False),
        ("cold_start_s", 40.0, 60.0, True)]
    # On the threshold: >= and <= pass, < does not; lower accuracy than the baseline fails.
    edge = {t["key"]: t["passed"] for t in evaluate_targets(
        result | {"ratio_gateway_vs_baseline": 3.0, "gateway_overhead_p50_ms": 5.0,
                  "cold_start_s": 60.0, "accuracy_gateway": 0.89})}
    assert edge["ratio_gateway_vs_baseline"] and edge["gateway_overhead_p50_ms"]
    assert not edge["cold_start_s"] and not edge["accuracy_gateway"]
    missing = evaluate_targets({})
    assert len(missing) == 6 and all(t["value"] is None and not t["passed"] for t in missing)


def test_machine_info_describes_this_machine() -> None:
    info = flops.machine_info()
    assert info["cores"] == os.cpu_count() and info["usable_cores"] >= 1
    assert isinstance(info["cpu"], str) and info["cpu"]


def test_peak_is_measured_in_the_precision_asked_and_sized_to_the_budget() -> None:
    import torch

    # A budget nothing fits in takes the smallest product; a generous one the largest.
    assert flops._fitting_size(torch.float32, 1e-12) == flops.PEAK_SIZES[-1]
    assert flops._fitting_size(torch.float32, 1e6) == flops.PEAK_SIZES[0]
    peak = flops.peak_flops("float32", seconds=0.3, threads=1)
    assert peak["precision"] == "float32" and peak["threads"] == 1
    assert peak["size"] in flops.PEAK_SIZES and peak["products"] >= 1
    assert peak["seconds"] >= 0.3
    assert peak["flops"] == pytest.approx(2.0 * peak["size"] ** 3 * peak["products"]
                                          / peak["seconds"], rel=0.05)
