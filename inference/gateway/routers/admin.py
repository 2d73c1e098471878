"""Zero-downtime model swaps (local serving: `python -m inference deploy-model`). Included only
when GATEWAY_ADMIN_ENABLED; API key required. The router is made by `admin_router(build)`, given
the function that builds a Classifier, so this module never imports the app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from inference.gateway.auth import require_api_key
from inference.gateway.classifier import Classifier
from inference.gateway.deps import StateDep
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.problems import COMMON, InvalidInput, problem_responses
from inference.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: (settings, engine_urls, model_dir, session, metrics) -> a Classifier over those engines.
BuildClassifier = Callable[
    [GatewaySettings, list[str], Path, aiohttp.ClientSession, GatewayMetrics], Classifier]


class SwapRequest(BaseModel):
    engine_urls: list[str]
    model_dir: Path
    drain_timeout_s: float = 60.0


def admin_router(build: BuildClassifier) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key)], tags=["admin"],
                       responses=problem_responses(*COMMON, 400, 401, 409, 413, 422))

    @router.post("/admin/model")
    async def swap_model(swap: SwapRequest, state: StateDep) -> dict:
        """Point the gateway at new engines serving a new model, then wait for the old
        engines' in-flight calls to finish."""
        assert state.session is not None and state.service is not None  # set by the lifespan
        try:
            new = build(state.settings, swap.engine_urls, swap.model_dir, state.session,
                        state.metrics)
        except (OSError, KeyError, ValueError) as err:
            log.warning("cannot load a model directory", extra={"error": repr(err)})
            raise InvalidInput([{"loc": ["model_dir"], "type": "model_dir_unreadable",
                                 "msg": f"cannot load the model directory ({type(err).__name__}; "
                                 "the gateway log has the reason)"}]) from err
        await new.pool.probe_all()
        if not await new.pool.serves_model(new.model.name):
            raise HTTPException(409, "the new engines are not ready; nothing was switched")
        old, state.service = state.service, new
        deadline = time.monotonic() + swap.drain_timeout_s
        while old.pool.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"switched_to": new.model.version, "engines": swap.engine_urls,
                "drained": old.pool.in_flight() == 0}

    return router
