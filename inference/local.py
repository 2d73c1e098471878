"""Local serving on one machine: engine(s) + gateway as child processes on loopback, with a
small state file so `deploy-model` can find and replace the running engine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from inference import engine as engine_mod
from preprocessing.settings import PROJECT_ROOT

RUN_DIR = PROJECT_ROOT / ".run"
STATE_FILE = RUN_DIR / "serve.json"
GATEWAY_READY_TIMEOUT_S = 60


@dataclass
class EngineProc:
    url: str
    port: int
    pid: int
    model_dir: str


@dataclass
class ServeState:
    gateway_url: str
    gateway_pid: int
    engines: list[EngineProc] = field(default_factory=list)

    def save(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path = STATE_FILE) -> ServeState:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is `python -m inference serve` running?")
        raw = json.loads(path.read_text())
        return cls(raw["gateway_url"], raw["gateway_pid"],
                   [EngineProc(**e) for e in raw["engines"]])

    def gateway_running(self) -> bool:
        """Whether the gateway process this state names is still alive (a `serve` killed
        with SIGKILL leaves its state file behind)."""
        return not _is_gone(self.gateway_pid)


def stop_local(path: Path = STATE_FILE) -> None:
    """Stop the gateway and engines `path` lists (deploy-model may have replaced an engine
    since the start), then delete the file: PIDs left in it would point a later deploy-model
    at processes that are gone, or whose numbers the system has given to others."""
    state = ServeState.load(path)
    stop_process(state.gateway_pid)
    for proc in state.engines:
        stop_process(proc.pid)
    path.unlink(missing_ok=True)


def free_port(preferred: int, exclude: Collection[int] = ()) -> int:
    """The first loopback port from `preferred` (100 tried), not in `exclude` (ports already
    promised to a server not yet listening), that can be bound now: a bind, not a connect,
    also skips ports held by sockets that do not listen. Another process may still take it
    before the caller's server binds; that start then fails and says so. Raises RuntimeError
    when none of the 100 is free."""
    for port in range(preferred, preferred + 100):
        if port in exclude:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {preferred}")


def start_engine(model_dir: Path, port: int, settings: engine_mod.EngineSettings) -> EngineProc:
    """Start an engine in its own process group (it outlives the command that started it) and
    wait until it serves; a failed start is killed, never left half-running."""
    process, url, settings = _launch_engine(model_dir, port, settings)
    _await_engine(process, url, settings)
    return EngineProc(url, port, process.pid, str(model_dir))


def _launch_engine(model_dir: Path, port: int, settings: engine_mod.EngineSettings,
                   env: dict[str, str] | None = None
                   ) -> tuple[subprocess.Popen, str, engine_mod.EngineSettings]:
    settings = settings.model_copy(update={"port": port, "host": "127.0.0.1"})
    RUN_DIR.mkdir(exist_ok=True)
    process = engine_mod.start(settings, model_dir, log_path=RUN_DIR / f"engine-{port}.log",
                               detach=True, env=env)
    return process, f"http://127.0.0.1:{port}", settings


def _await_engine(process: subprocess.Popen, url: str, settings: engine_mod.EngineSettings,
                  watch: Callable[[], None] | None = None) -> None:
    try:
        engine_mod.wait_ready(url, settings.served_model_name, settings.ready_timeout_s,
                              process, watch)
    except BaseException:
        stop_process(process.pid)
        raise


def stop_process(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group (vLLM's engine core is a child), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        # Look every 0.2 s whether it is gone, for up to `timeout_s`.
        gone = Retrying(retry=retry_if_result(lambda done: not done),
                        stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2),
                        retry_error_callback=lambda _: False)
        if gone(_is_gone, pid):
            return


def _is_gone(pid: int) -> bool:
    """The process has exited (or is a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own child, if it is one
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


def start_gateway(engine_urls: list[str], model_dir: Path, port: int,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start a gateway in front of running engines and wait until it is ready (/readyz 200)
    for up to GATEWAY_READY_TIMEOUT_S; a gateway that exits or never gets ready is stopped and
    raises RuntimeError or TimeoutError."""
    process, url = _launch_gateway(engine_urls, model_dir, port, env)
    _await_gateway(process, url, port, GATEWAY_READY_TIMEOUT_S)
    return process, url


def _launch_gateway(engine_urls: list[str], model_dir: Path, port: int,
                    env: dict[str, str] | None) -> tuple[subprocess.Popen, str]:
    gateway_env = os.environ | (env or {}) | {
        "GATEWAY_ENGINE_URLS": ",".join(engine_urls),
        "GATEWAY_MODEL_DIR": str(model_dir),
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_ENABLED": "true",
    }
    RUN_DIR.mkdir(exist_ok=True)
    log = open(_gateway_log(port), "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "-m", "inference", "gateway"], env=gateway_env,
                               stdout=log, stderr=log, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def _gateway_log(port: int) -> Path:
    return RUN_DIR / f"gateway-{port}.log"


def _gateway_alive(process: subprocess.Popen, port: int) -> Callable[[], None]:
    """A check that raises RuntimeError, naming its log, once the gateway has exited."""
    def check() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with code {process.returncode} before it was "
                               f"ready; see {_gateway_log(port)}")
    return check


def _await_gateway(process: subprocess.Popen, url: str, port: int, timeout_s: float) -> None:
    alive = _gateway_alive(process, port)

    def ready() -> bool:
        alive()
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

    # Ask every 0.3 s; a gateway that exits fails at once.
    try:
        engine_mod.wait_until(ready, timeout_s, 0.3, "gateway")
    except BaseException:
        stop_process(process.pid)
        raise


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM (and SIGINT, which a shell's background job ignores) raise
    KeyboardInterrupt, so a start stopped midway still stops the processes it started (they
    run in sessions of their own and would outlive it). The handlers before come back after.
    Only the main thread may set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Serving:
    """An engine and a gateway in front of it, with when each got ready (seconds after the
    start)."""
    engine: EngineProc
    gateway: subprocess.Popen
    gateway_url: str
    engine_ready_s: float
    ready_s: float


def start_serving(model_dir: Path, engine_port: int, gateway_port: int,
                  engine_settings: engine_mod.EngineSettings,
                  gateway_env: dict[str, str] | None = None,
                  engine_env: dict[str, str] | None = None) -> Serving:
    """Start an engine and a gateway at once, as a cluster starts their pods: the gateway's
    own start (imports, tokenizer) overlaps the engine's, and it gets ready as soon as the
    engine serves. `gateway_env` and `engine_env` reach one process each. Returns once the
    gateway is ready; when either exits first or a wait times out, both are stopped and the
    error (RuntimeError naming the log, TimeoutError) propagates."""
    started = time.monotonic()
    with signals_interrupt():
        return _start_both(model_dir, engine_port, gateway_port, engine_settings,
                           gateway_env, engine_env, started)


def _start_both(model_dir: Path, engine_port: int, gateway_port: int,
                engine_settings: engine_mod.EngineSettings, gateway_env: dict[str, str] | None,
                engine_env: dict[str, str] | None, started: float) -> Serving:
    process, engine_url, engine_settings = _launch_engine(model_dir, engine_port,
                                                          engine_settings, engine_env)
    gateway = None
    try:
        gateway, url = _launch_gateway([engine_url], model_dir, gateway_port, gateway_env)
        _await_engine(process, engine_url, engine_settings,
                      watch=_gateway_alive(gateway, gateway_port))
        engine_ready_s = time.monotonic() - started
        _await_gateway(gateway, url, gateway_port, GATEWAY_READY_TIMEOUT_S)
    except BaseException:
        if gateway is not None:
            stop_process(gateway.pid)
        stop_process(process.pid)
        raise
    engine = EngineProc(engine_url, engine_port, process.pid, str(model_dir))
    return Serving(engine, gateway, url, engine_ready_s, time.monotonic() - started)


def start_local(model_dir: Path, engine_port: int, gateway_port: int) -> ServeState:
    """Engine and gateway started together; the state file records both for deploy-model."""
    engine_port = free_port(engine_port)
    serving = start_serving(model_dir, engine_port, free_port(gateway_port, {engine_port}),
                            engine_mod.EngineSettings())
    state = ServeState(serving.gateway_url, serving.gateway.pid, [serving.engine])
    state.save()
    print(f"engine + gateway ready in {serving.ready_s:.0f} s", flush=True)
    return state
