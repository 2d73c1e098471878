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


def test_engine_scaledobject_queries_return_a_number(engine_url: str, gateway_url: str,
                                                     tmp_path) -> None:
    """The production ScaledObject's PromQL (k8s/overlays/prod/engine-scaledobject.yaml), as
    written, on a real Prometheus scraping the session's real vLLM with the labels production
    gives the engines' series (job "engine" from the ServiceMonitor's jobLabel, the namespace
    from the Prometheus operator): each query answers one finite number, which is what KEDA
    needs, and the in-flight one (requests inside the engine, Little's law) rises above zero
    under load."""
    import math
    import shutil
    import subprocess
    import threading
    import uuid

    import yaml

    from inference.local import free_port
    from tests.infra.deploytools import K8S, NAMESPACE, find, render

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make setup installs Debian's package)")
    scaled = find(render(K8S / "overlays" / "prod"), "ScaledObject", "engine")
    queries = {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    assert set(queries) == {"engine-in-flight", "engine-queue"}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": "engine",
            "static_configs": [{"targets": [engine_url.split("//", 1)[1]],
                                "labels": {"namespace": NAMESPACE}}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port(9390)
    with open(tmp_path / "log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answers = {name: query(url, q) for name, q in queries.items()}
            except httpx.HTTPError:
                answers = {}
            if answers and all(answers.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for name, result in answers.items():
            assert len(result) == 1, (name, queries[name], result)
            value = float(result[0]["value"][1])
            assert math.isfinite(value) and value >= 0, (name, value)

        # Batches of new papers (no cache hit), back to back from two clients, until the
        # in-flight query (a rate over a window, so not a matter of catching a batch mid-step)
        # sees them.
        stop, errors = threading.Event(), []

        def send(client: int) -> None:
            sent = 0
            while not stop.is_set() and sent < 20:
                papers = [{"title": f"Autoscaling probe {uuid.uuid4().hex}: tumour growth",
                           "abstract": f"Cohort {i} of a xenograft study in mice."}
                          for i in range(64)]
                try:
                    httpx.post(gateway_url + "/v1/classify_papers", json={"papers": papers},
                               timeout=600).raise_for_status()
                except httpx.HTTPError as err:
                    errors.append((client, err))
                    return
                sent += 1

        senders = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(2)]
        for sender in senders:
            sender.start()
        seen, deadline = 0.0, time.monotonic() + 120
        try:
            while seen == 0 and time.monotonic() < deadline and any(
                    s.is_alive() for s in senders):
                result = query(url, queries["engine-in-flight"])
                if result:
                    seen = max(seen, float(result[0]["value"][1]))
                time.sleep(0.2)
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=120)
        assert not errors, errors
        assert seen > 0, "the in-flight query stayed at 0 under load"
    finally:
        process.terminate()
        process.wait(timeout=10)
