"""Faults in the engine: the gateway answers quickly and recovers on its own; a model swap
under load loses no request. (Named zz so it runs last: it restarts the session's engine.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


async def _fire(url: str, n: int, tag: str, timeout: float = 60) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(timeout=timeout) as client:

        async def one(i: int) -> tuple[int, float]:
            started = time.monotonic()
            paper = {"title": f"{tag} {i}: cancer of the pancreas", "abstract": f"Cohort {i}."}
            try:
                response = await client.post(url + "/v1/classify_paper", json=paper)
                return response.status_code, time.monotonic() - started
            except httpx.HTTPError:
                return -1, time.monotonic() - started

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture()
def killable_engine(engine):
    """The session engine, started again afterwards whatever the test did: later test folders
    (infra, loadtest) share it."""
    yield engine
    if engine.proc is None:
        engine.start()


def test_engine_killed_in_flight_then_recovers_without_gateway_restart(
    killable_engine, make_gateway
) -> None:
    engine = killable_engine
    url = make_gateway(cache_size=0, request_timeout_s=20, health_interval_s=0.5)
    results: list[tuple[int, float]] = []
    worker = threading.Thread(target=lambda: results.extend(asyncio.run(_fire(url, 24, "kill"))))
    worker.start()
    time.sleep(0.5)  # let requests reach the engine
    engine.stop()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a request hung past the timeout"
    statuses = [status for status, _ in results]
    assert len(statuses) == 24 and -1 not in statuses
    assert set(statuses) <= {200, 503, 504}, statuses
    assert max(elapsed for _, elapsed in results) < 25

    # Engine down: 503 with Retry-After within a second, never a hang.
    started = time.monotonic()
    down = httpx.post(url + "/v1/classify_paper", timeout=10,
                      json={"title": "Down probe", "abstract": "Melanoma."})
    assert down.status_code == 503 and time.monotonic() - started < 1.0
    assert int(down.headers["retry-after"]) >= 1
    assert httpx.get(url + "/readyz", timeout=5).status_code == 503

    engine.start()  # same port; the gateway's health probe finds it again
    deadline = time.monotonic() + 30
    while httpx.get(url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "gateway did not see the engine come back"
        time.sleep(0.5)
    back = httpx.post(url + "/v1/classify_paper", timeout=600,
                      json={"title": "Back probe", "abstract": "Breast carcinoma."})
    assert back.status_code == 200, back.text


def test_deploy_model_under_load_loses_no_request(base_model_dir: Path, make_gateway,
                                                  tmp_path: Path, monkeypatch) -> None:
    from inference.deploy import deploy_model
    from inference.engine import EngineSettings
    from inference.local import ServeState, free_port, start_engine, stop_process
    from model_contract.manifest import Manifest, PromptRef, write_manifest
    from model_contract.prompts import get_template

    # The "new" model: the same weights under a new manifest version.
    new_dir = tmp_path / "model-v2"
    shutil.copytree(base_model_dir, new_dir)
    template = get_template("cancer-yn-short")
    write_manifest(new_dir, Manifest(
        name="model-v2", version="v2", base_model=base_model_dir.name,
        prompt=PromptRef(template=template.name, version=template.version)))
    # One core each, as two engines would have their own nodes: vLLM's CPU worker keeps its
    # cores busy while it serves, and on shared cores the new engine's start starved past its
    # ready timeout (seen on a 2-core AVX2-only CPU, fp32).
    cores = sorted(os.sched_getaffinity(0))
    old = start_engine(base_model_dir, free_port(8300),
                       EngineSettings(cpu_threads_bind=str(cores[0])))
    monkeypatch.setenv("ENGINE_CPU_THREADS_BIND", str(cores[-1]))
    url = make_gateway(engine_urls=[old.url], cache_size=0)
    state = ServeState(url, -1, [old])
    state.save = lambda *a, **k: None  # keep the real serve state file out of the test

    stop = threading.Event()
    statuses: list[int] = []
    versions: list[str] = []

    def load() -> None:
        with httpx.Client(timeout=600) as client:
            i = 0
            while not stop.is_set():
                i += 1
                r = client.post(url + "/v1/classify_paper",
                                json={"title": f"Load {i}: glioma", "abstract": f"Case {i}."})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model"])
                stop.wait(0.2)  # paced: the load must not hold the old engine's core alone

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(2)
        result = deploy_model(new_dir, state)
        time.sleep(2)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=600)
        for proc in state.engines:
            stop_process(proc.pid)
    assert result["switched_to"] == "v2" and result["drained"] is True
    assert statuses and set(statuses) == {200}, f"lost requests: {statuses.count(200)} ok of "\
        f"{len(statuses)}"
    assert versions[0] == "base" and versions[-1] == "v2"
