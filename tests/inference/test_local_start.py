"""Starting engine + gateway together: a gateway that dies while the engine is still starting
is reported at once, by its own log, and takes the engine down with it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from inference import engine as engine_mod
from inference import local


def test_a_gateway_that_dies_during_the_engines_start_fails_the_start_at_once(
        base_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict = {}

    def never_ready_engine(settings, model_dir, log_path=None, detach=False, env=None):
        started["env"] = env
        started["process"] = subprocess.Popen(["sleep", "600"], start_new_session=True)
        return started["process"]

    monkeypatch.setattr(engine_mod, "start", never_ready_engine)
    gateway_port = local.free_port(8480)
    gateway_envs: list[dict] = []
    popen = subprocess.Popen

    def recording_popen(args, **kwargs):
        if "inference" in args and "gateway" in args:
            gateway_envs.append(kwargs["env"])
        return popen(args, **kwargs)

    monkeypatch.setattr(local.subprocess, "Popen", recording_popen)
    # Waited out, the engine's start would end in a TimeoutError, not this error.
    settings = engine_mod.EngineSettings(device="cpu", ready_timeout_s=120)
    with pytest.raises(RuntimeError, match=f"gateway exited .*gateway-{gateway_port}.log"):
        local.start_serving(base_model_dir, local.free_port(8470), gateway_port, settings,
                            gateway_env={"GATEWAY_MAX_IN_FLIGHT": "many"},
                            engine_env={"VLLM_SERVER_DEV_MODE": "1"})
    assert started["process"].poll() is not None  # the engine was stopped too
    # The engine's own variable reached it, and not the gateway.
    assert started["env"] == {"VLLM_SERVER_DEV_MODE": "1"}
    assert "VLLM_SERVER_DEV_MODE" not in gateway_envs[0]


_STOPPED_MIDWAY = """
import subprocess, sys
from pathlib import Path
from inference import engine as engine_mod, local

pids = Path(sys.argv[1])
def never_ready_engine(settings, model_dir, log_path=None, detach=False, env=None):
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (pids / "engine").write_text(str(process.pid))
    return process

launch_gateway = local._launch_gateway
def recorded_gateway(*args):
    process, url = launch_gateway(*args)
    (pids / "gateway").write_text(str(process.pid))
    return process, url

engine_mod.start, local._launch_gateway = never_ready_engine, recorded_gateway
local.start_serving(Path(sys.argv[2]), local.free_port(8470), local.free_port(8480),
                    engine_mod.EngineSettings(device="cpu", ready_timeout_s=600))
"""


def test_a_start_stopped_by_sigterm_stops_what_it_started(base_model_dir: Path,
                                                          tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", _STOPPED_MIDWAY, str(tmp_path),
                                str(base_model_dir)])
    try:
        # Both children are started within moments; the engine would then be waited on.
        engine_mod.wait_until(lambda: (tmp_path / "gateway").exists(), 300, 0.2, "the start")
        starter.send_signal(signal.SIGTERM)
        assert starter.wait(timeout=120) != 0
    finally:
        starter.kill()
    for name in ("engine", "gateway"):
        pid = int((tmp_path / name).read_text())
        assert local._is_gone(pid), f"the {name} outlived the stopped start"


def test_stopping_local_serving_stops_its_processes_and_forgets_them(tmp_path: Path) -> None:
    """After a stop, the state file is gone: a later deploy-model must not act on PIDs the
    system may have given to other processes."""
    gateway = subprocess.Popen(["sleep", "600"], start_new_session=True)
    engine = subprocess.Popen(["sleep", "600"], start_new_session=True)
    path = tmp_path / "serve.json"
    local.ServeState("http://127.0.0.1:1", gateway.pid,
                     [local.EngineProc("http://127.0.0.1:2", 2, engine.pid, "m")]).save(path)
    state = local.ServeState.load(path)
    assert state.gateway_running()
    local.stop_local(path)
    assert gateway.poll() is not None and engine.poll() is not None
    assert not path.exists() and not state.gateway_running()
    with pytest.raises(FileNotFoundError, match="is `python -m inference serve` running"):
        local.ServeState.load(path)
