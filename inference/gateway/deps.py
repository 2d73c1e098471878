"""What routes need, as `Annotated` dependencies: the app's state lives in one `GatewayState`
on `app.state.gateway`, and only this module reaches for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from inference.gateway.classifier import Classifier
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.settings import GatewaySettings


@dataclass
class GatewayState:
    settings: GatewaySettings
    metrics: GatewayMetrics
    api_keys: list[str]
    # Set by the lifespan: the engine session, and the service (replaced by a model swap).
    session: aiohttp.ClientSession | None = None
    service: Classifier | None = field(default=None)


def _state(request: Request) -> GatewayState:
    return request.app.state.gateway


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool,
# a thread hop per dependency per request on the hot path.
async def get_state(request: Request) -> GatewayState:
    return _state(request)


async def get_service(request: Request) -> Classifier:
    service = _state(request).service
    if service is None:  # only between app creation and lifespan start
        raise RuntimeError("the gateway has not started")
    return service


async def get_settings(request: Request) -> GatewaySettings:
    return _state(request).settings


async def get_metrics(request: Request) -> GatewayMetrics:
    return _state(request).metrics


StateDep = Annotated[GatewayState, Depends(get_state)]
ServiceDep = Annotated[Classifier, Depends(get_service)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
