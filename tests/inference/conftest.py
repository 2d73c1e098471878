"""In-process gateway fixtures: the real app (real renderer from the embedded model's
tokenizer, real aiohttp calls) over stand-in engines (tests/inference/standin_engine.py). No
vLLM, no subprocess: each test builds the gateway it needs in a fraction of a second."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.inference.standin_engine import Loop, StandInEngine

#: Every error the in-process gateway answered during the session (whole responses and batch
#: items), as (what was asked, status, content type, body); test_gateway_problems.py walks it.
SEEN_PROBLEMS: list[tuple[str, int, str, Any]] = []


class GatewayClient(TestClient):
    """A TestClient that files every error response it sees in SEEN_PROBLEMS."""

    def request(self, method: str, url, *args, **kwargs) -> httpx.Response:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        record(f"{method} {url}", response)
        return response

    @property
    def state(self):
        return self.app.state.gateway  # type: ignore[attr-defined]

    def metric(self, series: str) -> float:
        """The value of one series of /metrics, e.g. 'classifier_rereads_total'."""
        return metric_value(self.get("/metrics").text, series)


def record(what: str, response: httpx.Response) -> None:
    if response.status_code >= 400:
        body: Any = response.content
        with contextlib.suppress(ValueError):
            body = response.json()
        SEEN_PROBLEMS.append((what, response.status_code,
                              response.headers.get("content-type", ""), body))
    elif response.content and response.headers.get("content-type", "").startswith(
            "application/json"):  # a HEAD answer carries the type but no body
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            for item in body["results"]:
                if isinstance(item, dict) and item.get("error") is not None:
                    SEEN_PROBLEMS.append((f"{what} item {item.get('index')}",
                                          item["error"].get("status"), "item", item["error"]))


def metric_value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no series {series} in /metrics")


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll until `predicate()`; the bound is generous (no test depends on the machine's
    speed), it only keeps a broken gateway from hanging the run."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def engine_loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def label_token_ids(base_model_dir: Path) -> dict[str, int]:
    from model_contract.layout import load_renderer

    return dict(load_renderer(base_model_dir).label_token_ids)


@pytest.fixture()
def make_engine(engine_loop: Loop,
                label_token_ids: dict[str, int]) -> Iterator[Callable[[], StandInEngine]]:
    """Start stand-in engines (each its own port and script); stopped after the test."""
    started: list[StandInEngine] = []

    def make() -> StandInEngine:
        started.append(StandInEngine(engine_loop, label_token_ids))
        return started[-1]

    yield make
    for engine in started:
        engine.close()


@pytest.fixture()
def standin(make_engine) -> StandInEngine:
    """This test's stand-in engine."""
    return make_engine()


GatewayMaker = Callable[..., GatewayClient]


@pytest.fixture()
def make_client(base_model_dir: Path, standin: StandInEngine) -> Iterator[GatewayMaker]:
    """Build and start a gateway (lifespan included) over `standin`, or over `engine_urls`,
    with extra GatewaySettings fields."""
    from inference.gateway.app import create_app
    from inference.gateway.settings import GatewaySettings

    clients: list[GatewayClient] = []

    def make(**overrides: Any) -> GatewayClient:
        fields = {"engine_urls": [standin.url], "model_dir": base_model_dir, "api_keys": [],
                  "request_timeout_s": 60.0, "health_interval_s": 60.0} | overrides
        client = GatewayClient(create_app(GatewaySettings(**fields)),
                               raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client: GatewayMaker) -> GatewayClient:
    """A gateway with default settings over `standin`."""
    return make_client()
