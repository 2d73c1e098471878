"""HTTP routes: thin, everything else is the Classifier's job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from inference.gateway.auth import require_api_key
from inference.gateway.classifier import Classifier, ServiceError
from inference.gateway.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    Classification,
    ItemError,
    Paper,
    is_valid_unicode,
    validation_details,
)
from inference.gateway.settings import GatewaySettings

router = APIRouter()
protected = [Depends(require_api_key)]


def _service(request: Request) -> Classifier:
    return request.app.state.service


def _length_errors(paper: Paper, settings: GatewaySettings) -> list[dict]:
    limits = {"title": settings.max_title_chars, "abstract": settings.max_abstract_chars}
    return [
        {"loc": ["body", field], "type": "string_too_long",
         "msg": f"{field} is longer than {limit} characters"}
        for field, limit in limits.items()
        if len(getattr(paper, field)) > limit
    ]


async def _classify(service: Classifier, paper: Paper) -> Classification:
    answer = await service.classify(paper.title, paper.abstract)
    return Classification(
        id=paper.id, label=answer.label, probability=answer.probability,
        cancer_probability=answer.cancer_probability, model=service.model.version,
        prompt_version=service.model.prompt_version, truncated=answer.truncated,
        reread=answer.reread,
    )


@router.post("/v1/classify_paper", response_model=Classification, dependencies=protected,
             tags=["classify"])
@router.post("/predictions/v1/classify_paper", response_model=Classification,
             dependencies=protected, tags=["classify"], summary="Original route (same contract)")
async def classify_paper(paper: Paper, request: Request) -> Classification:
    """Classify one paper: `label` is `cancer` or `non_cancer`, `probability` the model's
    probability of that label."""
    if errors := _length_errors(paper, request.app.state.settings):
        raise HTTPException(422, errors)
    return await _classify(_service(request), paper)


async def _batch_item(service: Classifier, index: int, raw: dict, settings) -> BatchItem:
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    item_id = raw_id if isinstance(raw_id, str) and is_valid_unicode(raw_id) else None
    try:
        paper = Paper.model_validate(raw)
        if errors := _length_errors(paper, settings):
            return BatchItem(index=index, id=item_id, error=ItemError(status=422, detail=errors))
        return BatchItem(index=index, id=item_id, result=await _classify(service, paper))
    except ValidationError as err:
        detail = validation_details(err.errors(include_url=False, include_context=False,
                                               include_input=False))
        return BatchItem(index=index, id=item_id, error=ItemError(status=422, detail=detail))
    except ServiceError as err:
        return BatchItem(index=index, id=item_id, error=ItemError(status=err.status,
                                                                   detail=err.detail))


@router.post("/v1/classify_papers", response_model=BatchResponse, dependencies=protected,
             tags=["classify"])
async def classify_papers(batch: BatchRequest, request: Request) -> BatchResponse:
    """Classify up to GATEWAY_MAX_BATCH papers, answered in order; all are sent to the engine
    at once so continuous batching can work. A bad item gets its own error."""
    settings: GatewaySettings = request.app.state.settings
    if len(batch.papers) > settings.max_batch:
        raise HTTPException(422, [{"loc": ["body", "papers"], "type": "too_long",
                                   "msg": f"at most {settings.max_batch} papers per batch"}])
    service = _service(request)
    request.app.state.metrics.batch_size.observe(len(batch.papers))
    items = await asyncio.gather(
        *(_batch_item(service, i, raw, settings) for i, raw in enumerate(batch.papers))
    )
    return BatchResponse(model=service.model.version,
                         prompt_version=service.model.prompt_version, results=list(items))


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict:
    """The gateway process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> JSONResponse:
    """Ready when some healthy engine serves the expected model; else 503."""
    service = _service(request)
    ready = await service.pool.serves_model(service.model.name)
    body = {"status": "ready" if ready else "not ready", "model": service.model.name,
            "engines": [{"url": e.url, "healthy": e.healthy, "in_flight": e.in_flight,
                         "precision": e.precision and e.precision.get("precision")}
                        for e in service.pool.engines]}
    headers = None if ready else {"Retry-After": str(request.app.state.settings.retry_after_s)}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/v1/model", dependencies=protected, tags=["ops"])
async def model(request: Request) -> dict:
    """The served model's manifest (base model, prompt version, dataset, metrics) and the
    precision its engines compute in, with the reason (`precision`: one entry per distinct
    choice, with the engines that made it; empty until an engine has been probed)."""
    service = _service(request)
    return {"name": service.model.name, "version": service.model.version,
            "prompt_version": service.model.prompt_version,
            "reread_below": request.app.state.settings.reread_below,
            "precision": _precisions(service.pool.engines),
            "manifest": service.model.manifest}


def _precisions(engines: list) -> list[dict]:
    grouped: dict[str, dict] = {}
    for engine in engines:
        if engine.precision:
            key = repr(sorted(engine.precision.items()))
            grouped.setdefault(key, engine.precision | {"engines": []})["engines"].append(
                engine.url)
    return list(grouped.values())


@router.get("/metrics", tags=["ops"])
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


class SwapRequest(BaseModel):
    engine_urls: list[str]
    model_dir: Path
    drain_timeout_s: float = 60.0


@router.post("/admin/model", dependencies=protected, tags=["ops"])
async def swap_model(swap: SwapRequest, request: Request) -> dict:
    """Point the gateway at new engines serving a new model, then wait for the old engines'
    in-flight calls to finish (used by `python -m inference deploy-model`)."""
    app = request.app
    if not app.state.settings.admin_enabled:
        raise HTTPException(404, "Not Found")
    from inference.gateway.app import build_classifier  # avoids an import cycle

    try:
        new = build_classifier(app.state.settings, swap.engine_urls, swap.model_dir,
                               app.state.session, app.state.metrics)
    except (OSError, KeyError, ValueError) as err:
        raise HTTPException(422, f"cannot load {swap.model_dir}: {err}") from err
    await new.pool.probe_all()
    if not await new.pool.serves_model(new.model.name):
        raise HTTPException(409, "the new engines are not ready; nothing was switched")
    old, app.state.service = app.state.service, new
    deadline = time.monotonic() + swap.drain_timeout_s
    while old.pool.in_flight() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return {"switched_to": new.model.version, "engines": swap.engine_urls,
            "drained": old.pool.in_flight() == 0}
