"""Starting engine + gateway together: a gateway that dies while the engine is still starting
is reported at once, by its own log, and takes the engine down with it."""

from __future__ import annotations

import subprocess
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
