"""Shared fixtures. One real vLLM CPU server on the embedded model and one real gateway per
test session (starting vLLM costs ~30-60 s, so never one per test)."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preprocessing.settings import DEFAULT_DATA_DIR

os.environ.setdefault("ENGINE_CPU_KVCACHE_GIB", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DEFAULT_DATA_DIR.exists():
        pytest.skip(f"labelled data not found at {DEFAULT_DATA_DIR}")
    return DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    from model_contract.layout import embedded_base_dir
    from training.base_model import materialise_embedded

    return materialise_embedded(embedded_base_dir())


@pytest.fixture(scope="session")
def processed_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from preprocessing.pipeline import run
    from preprocessing.settings import PreprocessSettings

    out = tmp_path_factory.mktemp("processed")
    run(PreprocessSettings(sources=[f"assignment={data_dir}"], out_dir=out), progress=False)
    return out


class EngineHandle:
    """The session's engine; fault tests stop and restart it on the same port."""

    def __init__(self, model_dir: Path, port: int) -> None:
        self.model_dir, self.port = model_dir, port
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from inference.engine import EngineSettings
        from inference.local import start_engine

        self.proc = start_engine(self.model_dir, self.port, EngineSettings())

    def stop(self) -> None:
        from inference.local import stop_process

        if self.proc:
            stop_process(self.proc.pid)
            self.proc = None


@pytest.fixture(scope="session")
def engine(base_model_dir: Path) -> Iterator[EngineHandle]:
    from inference.local import free_port

    handle = EngineHandle(base_model_dir, free_port(8100))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def engine_url(engine: EngineHandle) -> str:
    return engine.url


GatewayFactory = Callable[..., str]


@pytest.fixture(scope="session")
def make_gateway(engine: EngineHandle) -> Iterator[GatewayFactory]:
    """Start a gateway (a real uvicorn process) with extra GATEWAY_* settings."""
    from inference.local import free_port, start_gateway, stop_process

    started: list[subprocess.Popen] = []

    def make(engine_urls: list[str] | None = None, **env: str) -> str:
        # Unless a test is about timeouts, no engine call may time out on a slow machine.
        env.setdefault("request_timeout_s", "600")
        settings = {f"GATEWAY_{k.upper()}": str(v) for k, v in env.items()}
        process, url = start_gateway(engine_urls or [engine.url], engine.model_dir,
                                     free_port(8180), settings)
        started.append(process)
        return url

    yield make
    for process in started:
        stop_process(process.pid)


@pytest.fixture(scope="session")
def gateway_url(make_gateway: GatewayFactory) -> str:
    return make_gateway()


@pytest.fixture(scope="session")
def prometheus_url(gateway_url: str, engine_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian's package) scraping the session's gateway and engine every
    second."""
    import shutil
    import time

    import httpx

    from inference.local import free_port

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make setup installs Debian's package)")
    work = tmp_path_factory.mktemp("prometheus")
    targets = {"gateway": gateway_url, "vllm": engine_url}
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{url.split('//')[1]}']\n"
        for job, url in targets.items()
    )
    (work / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
    port = free_port(9190)
    process = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work}/data",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "log", "wb"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=10)


# ---- S3 through moto's server on a loopback port (never AWS) --------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Fake credentials only: no profile, config file or real endpoint can leak in."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    for var in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "MODEL_BUCKET",
        "MODEL_NAME",
        "MODEL_VERSION",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def s3(s3_endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
