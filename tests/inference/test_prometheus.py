"""A real Prometheus scrapes the gateway; what it stores matches what the gateway did."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.integration


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(prometheus_url + "/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(prometheus_url: str, promql: str, predicate, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(prometheus_url, promql)
        if predicate(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_scrapes_gateway_metrics(gateway_url: str, prometheus_url: str) -> None:
    for i in range(3):
        paper = {"title": f"Prometheus probe {i}: leukaemia", "abstract": f"Marrow {i}."}
        httpx.post(gateway_url + "/v1/classify_paper", json=paper, timeout=600).raise_for_status()
    gateway_text = httpx.get(gateway_url + "/metrics").text
    expected = next(float(line.rsplit(" ", 1)[1]) for line in gateway_text.splitlines()
                    if line.startswith('classifier_requests_total{route="/v1/classify_paper",'
                                       'status="200"}'))
    promql = 'classifier_requests_total{job="gateway",route="/v1/classify_paper",status="200"}'
    result = wait_for(prometheus_url, promql,
                      lambda r: r and float(r[0]["value"][1]) >= expected)
    assert result and float(result[0]["value"][1]) >= expected >= 3

    up = wait_for(prometheus_url, "up", lambda r: len(r) == 2 and all(
        s["value"][1] == "1" for s in r))
    assert {s["metric"]["job"]: s["value"][1] for s in up} == {"gateway": "1", "vllm": "1"}
    info = query(prometheus_url, 'classifier_model_info{job="gateway"}')
    assert info and info[0]["metric"]["prompt_version"].startswith("cancer-yn")
    latency = query(prometheus_url, 'classifier_request_duration_seconds_count{job="gateway"}')
    assert sum(float(s["value"][1]) for s in latency) >= 3
