"""A client that leaves takes its work with it: the request is cancelled and its engine calls
aborted (a real uvicorn server in a thread, over a stand-in engine whose completions never end
on their own). And the gateway's keep-alive outlives the proxy's (uvicorn's setting)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from inference.gateway.app import create_app
from inference.gateway.settings import GatewaySettings
from tests.inference.conftest import metric_value, wait_until
from tests.inference.standin_engine import StandInEngine


class Server:
    """The gateway app under uvicorn in a thread (TestClient cannot drop a connection)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn to start")

    @property
    def metrics(self):
        return self.app.state.gateway.metrics

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def post(self, path: str, body: dict) -> socket.socket:
        """Send a request and return the open connection, its answer unread."""
        raw = json.dumps(body).encode()
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        return conn

    def get(self, path: str) -> tuple[int, str]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()


@pytest.fixture()
def server(base_model_dir: Path, standin: StandInEngine) -> Iterator[Server]:
    running = Server(GatewaySettings(engine_urls=[standin.url], model_dir=base_model_dir,
                                     cache_size=0, request_timeout_s=600, api_keys=[]))
    yield running
    running.stop()


def _gauge(server: Server) -> float:
    return server.metrics.in_flight._value.get()


def test_client_disconnect_cancels_its_engine_calls(server: Server,
                                                    standin: StandInEngine) -> None:
    standin.script.delay_s = 3600  # the engine never answers on its own
    batch = 8
    connections = [
        server.post("/v1/classify_papers", {"papers": [
            {"title": f"Disconnect {c}-{i}", "abstract": "Tumours."} for i in range(batch)]})
        for c in range(2)
    ]
    wait_until(lambda: standin.active == 2 * batch, what="every engine call to be in flight")
    assert _gauge(server) == 2
    for conn in connections:
        conn.close()  # the clients give up
    # Generous bounds: the point is "soon", not "how soon" (the engine would take an hour).
    wait_until(lambda: _gauge(server) == 0, timeout=10, what="the in-flight gauge to reach 0")
    wait_until(lambda: standin.active == 0, timeout=10, what="the engine calls to be aborted")
    assert standin.aborted == 2 * batch
    service = server.app.state.gateway.service
    assert service.pool.in_flight() == 0
    assert service._slots._value == server.app.state.gateway.settings.max_in_flight
    status, text = server.get("/metrics")
    assert status == 200
    assert metric_value(text, 'classifier_requests_total{route="/v1/classify_papers",'
                              'status="499"}') == 2
    # The gateway goes on serving.
    standin.script.delay_s = 0
    conn = server.post("/v1/classify_paper", {"title": "After", "abstract": "Still here."})
    with conn:
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_finished_answer_is_not_cancelled(server: Server, standin: StandInEngine) -> None:
    """The watcher wakes when the response completes too; that must not count as a
    disconnect (status 200 recorded, no abort)."""
    for i in range(3):
        conn = server.post("/v1/classify_paper", {"title": f"Finished {i}", "abstract": "x"})
        with conn:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    wait_until(lambda: _gauge(server) == 0, what="the in-flight gauge to reach 0")
    status, text = server.get("/metrics")
    assert metric_value(text, 'classifier_requests_total{route="/v1/classify_paper",'
                              'status="200"}') == 3
    assert standin.aborted == 0 and standin.calls == 3


def test_gateway_command_keeps_idle_connections_longer_than_the_proxy(monkeypatch) -> None:
    from inference import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr("inference.gateway.logs.configure_logging", lambda level: None)
    monkeypatch.setenv("GATEWAY_KEEP_ALIVE_S", "90")
    cli.gateway()
    assert seen["timeout_keep_alive"] == 90
    monkeypatch.delenv("GATEWAY_KEEP_ALIVE_S")
    assert GatewaySettings().keep_alive_s == 75 > 60  # ingress-nginx's upstream keep-alive
