"""Builds the gateway app: settings in, a FastAPI app out; its state is one `GatewayState` on
`app.state.gateway` (routes get what they need through `deps`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from inference.gateway.classifier import Classifier, ModelInfo, ServiceError
from inference.gateway.deps import GatewayState
from inference.gateway.engines import EnginePool
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.middleware import GatewayMiddleware
from inference.gateway.problems import (
    INTERNAL_DETAIL,
    InvalidInput,
    problem_media_types,
    problem_response,
    summary,
)
from inference.gateway.routers import admin, classify, files, ops
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
                     manifest.model_dump(mode="json", exclude_none=True),
                     manifest.reading_rule(settings.reread_below))
    metrics.set_model(settings.model_name, version, info.prompt_version)
    pool = EnginePool(engine_urls, session, resolve=settings.resolve_engines)
    return Classifier(settings, pool, renderer, metrics, info)


async def _health_loop(state: GatewayState) -> None:
    while True:
        service = state.service
        assert service is not None
        with contextlib.suppress(Exception):  # a probe must never kill the loop
            await service.pool.probe_all()
        state.metrics.engines_healthy.set(len(service.pool.healthy()))
        await asyncio.sleep(state.settings.health_interval_s)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: GatewayState = app.state.gateway
    settings = state.settings
    # One session for the app's life: pooled keep-alive connections to the engines. aiohttp
    # rather than httpx here: httpx cost half the gateway's CPU per request (py-spy; its pool
    # checks every idle connection on each request), aiohttp under a tenth. Idle connections
    # close after 4 s, before vLLM's own 5 s keep-alive can close one under a request.
    connector = aiohttp.TCPConnector(limit=settings.max_in_flight + 8, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector) as session:
        state.session = session
        state.service = build_classifier(
            settings, settings.engine_urls, resolve_model_dir(settings.model_dir), session,
            state.metrics,
        )
        await state.service.pool.probe_all()
        task = asyncio.create_task(_health_loop(state))
        try:
            yield
        finally:
            task.cancel()


# --- every error is a problem document (problems.py) -------------------------------------


async def _service_error(_: Request, err: Exception) -> Response:
    assert isinstance(err, ServiceError)
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return problem_response(err.status, err.detail, headers=headers)


async def _http_error(_: Request, err: Exception) -> Response:
    """Starlette's and FastAPI's own: 404, 405 (with Allow), 401 (with WWW-Authenticate), 400
    for a body that is not UTF-8 JSON, 409 from the admin route."""
    assert isinstance(err, HTTPException)
    detail = err.detail if isinstance(err.detail, str) else str(err.detail)
    return problem_response(err.status_code, detail, headers=err.headers)


async def _invalid_request(_: Request, err: Exception) -> Response:
    # FastAPI's own handler echoes the input, which fails to encode when it holds bytes that
    # are not UTF-8 or a lone surrogate (a 500 where a 422 is due).
    assert isinstance(err, RequestValidationError)
    errors = validation_details(err.errors())
    return problem_response(422, summary(errors), errors)


async def _invalid_input(_: Request, err: Exception) -> Response:
    assert isinstance(err, InvalidInput)
    return problem_response(422, str(err), err.errors)


async def _unexpected(_: Request, err: Exception) -> Response:
    log.error("unhandled error", exc_info=err)
    return problem_response(500, INTERNAL_DETAIL)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = FastAPI(
        title="Paper classifier",
        version="1.0",
        summary="Is this biomedical paper about cancer?",
        description="Errors are RFC 9457 problem documents (application/problem+json); "
        "`errors[].loc` is relative to the paper for a paper's fields, also in a batch item.",
        lifespan=_lifespan,
    )
    metrics = GatewayMetrics()
    app.state.gateway = GatewayState(settings, metrics, settings.load_api_keys())
    app.include_router(ops.router)
    app.include_router(classify.router)
    app.include_router(files.router)
    if settings.admin_enabled:
        app.include_router(admin.admin_router(build_classifier))
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(GatewayMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_types(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
