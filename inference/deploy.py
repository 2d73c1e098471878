"""Zero-downtime model swap for local serving: new engine up and ready, gateway switched to
it, old engine drained by the gateway, then stopped."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx

from inference import engine as engine_mod
from inference.local import ServeState, free_port, start_engine, stop_process
from model_contract.layout import resolve_model_dir

log = logging.getLogger(__name__)


def deploy_model(model_dir: Path, state: ServeState, api_key: str | None = None) -> dict:
    model_dir = resolve_model_dir(model_dir)
    settings = engine_mod.EngineSettings()
    port = free_port(max((e.port for e in state.engines), default=settings.port) + 1)
    log.info("starting engine for %s on port %d", model_dir, port)
    new = start_engine(model_dir, port, settings)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(
            f"{state.gateway_url}/admin/model", headers=headers, timeout=120,
            json={"engine_urls": [new.url], "model_dir": str(model_dir)},
        )
        response.raise_for_status()
    except BaseException:
        stop_process(new.pid)  # the old engine keeps serving; nothing changed
        raise
    old, state.engines = state.engines, [new]
    state.save()
    for engine in old:
        stop_process(engine.pid)
    return response.json() | {"stopped": [e.url for e in old]}


def api_key_from_env() -> str | None:
    keys = [k for k in os.environ.get("GATEWAY_API_KEYS", "").split(",") if k.strip()]
    return keys[0].strip() if keys else None
