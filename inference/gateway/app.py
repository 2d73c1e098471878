"""Builds the gateway app: settings in, a FastAPI app out; state lives on `app.state`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from inference.gateway.classifier import Classifier, ModelInfo, ServiceError
from inference.gateway.engines import EnginePool
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.middleware import GatewayMiddleware
from inference.gateway.routes import router
from inference.gateway.schemas import validation_details
from inference.gateway.settings import GatewaySettings
from model_contract.layout import load_manifest, load_renderer, resolve_model_dir

log = logging.getLogger(__name__)


def build_classifier(
    settings: GatewaySettings,
    engine_urls: list[str],
    model_dir: Path,
    session: aiohttp.ClientSession,
    metrics: GatewayMetrics,
) -> Classifier:
    manifest = load_manifest(model_dir)
    renderer = load_renderer(model_dir)
    version = settings.model_version or manifest.version
    info = ModelInfo(settings.model_name, version, renderer.template.version,
                     manifest.model_dump(mode="json", exclude_none=True))
    metrics.set_model(settings.model_name, version, info.prompt_version)
    pool = EnginePool(engine_urls, session, resolve=settings.resolve_engines)
    return Classifier(settings, pool, renderer, metrics, info)


async def _health_loop(app: FastAPI) -> None:
    settings: GatewaySettings = app.state.settings
    while True:
        service: Classifier = app.state.service
        with contextlib.suppress(Exception):  # a probe must never kill the loop
            await service.pool.probe_all()
        app.state.metrics.engines_healthy.set(len(service.pool.healthy()))
        await asyncio.sleep(settings.health_interval_s)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    # One session for the app's life: pooled keep-alive connections to the engines. aiohttp
    # rather than httpx here: httpx cost half the gateway's CPU per request (py-spy; its pool
    # checks every idle connection on each request), aiohttp under a tenth. Idle connections
    # close after 4 s, before vLLM's own 5 s keep-alive can close one under a request.
    connector = aiohttp.TCPConnector(limit=settings.max_in_flight + 8, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector) as session:
        app.state.session = session
        app.state.service = build_classifier(
            settings, settings.engine_urls, resolve_model_dir(settings.model_dir), session,
            app.state.metrics,
        )
        await app.state.service.pool.probe_all()
        task = asyncio.create_task(_health_loop(app))
        try:
            yield
        finally:
            task.cancel()


async def _service_error(_: Request, err: ServiceError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return JSONResponse({"detail": err.detail}, status_code=err.status, headers=headers)


async def _invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler echoes the input, which fails to encode when it holds bytes that
    # are not UTF-8 or a lone surrogate (a 500 where a 422 is due).
    return JSONResponse({"detail": validation_details(err.errors())}, status_code=422)


async def _unexpected(_: Request, err: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=err)
    return JSONResponse({"detail": "internal error; see the gateway log for this request id"},
                        status_code=500)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = FastAPI(
        title="Paper classifier",
        version="1.0",
        summary="Is this biomedical paper about cancer?",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = GatewayMetrics()
    app.state.api_keys = settings.load_api_keys()
    app.include_router(router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(GatewayMiddleware, metrics=app.state.metrics,
                       max_body_bytes=settings.max_body_bytes)
    return app
