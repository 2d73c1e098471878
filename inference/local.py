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
import time
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


def free_port(preferred: int) -> int:
    """The first loopback port from `preferred` (100 tried) that can be bound now: a bind, not
    a connect, also skips ports held by sockets that do not listen. Another process may still
    take it before the caller's server binds; that start then fails and says so. Raises
    RuntimeError when none of the 100 is free."""
    for port in range(preferred, preferred + 100):
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
    settings = settings.model_copy(update={"port": port, "host": "127.0.0.1"})
    RUN_DIR.mkdir(exist_ok=True)
    process = engine_mod.start(settings, model_dir, log_path=RUN_DIR / f"engine-{port}.log",
                               detach=True)
    url = f"http://127.0.0.1:{port}"
    try:
        engine_mod.wait_ready(url, settings.served_model_name, settings.ready_timeout_s, process)
    except BaseException:
        stop_process(process.pid)
        raise
    return EngineProc(url, port, process.pid, str(model_dir))


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
    gateway_env = os.environ | (env or {}) | {
        "GATEWAY_ENGINE_URLS": ",".join(engine_urls),
        "GATEWAY_MODEL_DIR": str(model_dir),
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_ENABLED": "true",
    }
    RUN_DIR.mkdir(exist_ok=True)
    log = open(RUN_DIR / f"gateway-{port}.log", "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "-m", "inference", "gateway"], env=gateway_env,
                               stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}; see {log.name}")
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

    # Ask every 0.3 s for up to GATEWAY_READY_TIMEOUT_S; a gateway that exits fails at once.
    try:
        engine_mod.wait_until(ready, GATEWAY_READY_TIMEOUT_S, 0.3, "gateway")
    except TimeoutError:
        stop_process(process.pid)
        raise
    return process, url


def start_local(model_dir: Path, engine_port: int, gateway_port: int) -> ServeState:
    """Engine, then gateway in front of it; the state file records both for deploy-model."""
    started = time.monotonic()
    proc = start_engine(model_dir, free_port(engine_port), engine_mod.EngineSettings())
    try:
        gateway, url = start_gateway([proc.url], model_dir, free_port(gateway_port))
    except BaseException:
        stop_process(proc.pid)
        raise
    state = ServeState(url, gateway.pid, [proc])
    state.save()
    print(f"engine + gateway ready in {time.monotonic() - started:.0f} s", flush=True)
    return state
