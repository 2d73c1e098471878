"""The classify_paper contract and the served model: API key required (one router-level
dependency). Thin routes; everything else is the Classifier's job."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from inference.gateway.auth import require_api_key
from inference.gateway.classifier import Classifier, ServiceError
from inference.gateway.deps import MetricsDep, ServiceDep, SettingsDep
from inference.gateway.problems import (
    CLASSIFY,
    COMMON,
    INTERNAL_DETAIL,
    InvalidInput,
    problem,
    problem_responses,
    summary,
)
from inference.gateway.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    Classification,
    Paper,
    is_valid_unicode,
    validation_details,
)
from inference.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(require_api_key)],
                   responses=problem_responses(*COMMON, 401))
CLASSIFY_ERRORS = problem_responses(*CLASSIFY)


def length_errors(paper: Paper, settings: GatewaySettings) -> list[dict]:
    limits = {"title": settings.max_title_chars, "abstract": settings.max_abstract_chars}
    return [
        {"loc": [field], "type": "string_too_long",
         "msg": f"{field} is longer than {limit} characters"}
        for field, limit in limits.items()
        if len(getattr(paper, field) or "") > limit
    ]


async def _classify(service: Classifier, paper: Paper) -> Classification:
    abstract = paper.abstract or ""
    answer = await service.classify(paper.title, abstract)
    return Classification(
        id=paper.id, label=answer.label, probability=answer.probability,
        cancer_probability=answer.cancer_probability, model=service.model.version,
        prompt_version=service.model.prompt_version, truncated=answer.truncated,
        reread=answer.reread, abstract_missing=not abstract,
    )


@router.post("/v1/classify_paper", response_model=Classification, tags=["classify"],
             responses=CLASSIFY_ERRORS)
@router.post("/predictions/v1/classify_paper", response_model=Classification,
             tags=["classify"], summary="Original route (same contract)",
             responses=CLASSIFY_ERRORS)
async def classify_paper(paper: Paper, service: ServiceDep,
                         settings: SettingsDep) -> Classification:
    """Classify one paper: `label` is `cancer` or `non_cancer`, `probability` the model's
    probability of that label."""
    if errors := length_errors(paper, settings):
        raise InvalidInput(errors)
    return await _classify(service, paper)


async def classify_item(service: Classifier, index: int, raw: Any,
                        settings: GatewaySettings) -> BatchItem:
    """One paper of a batch (or of an uploaded file): its result, or its own problem document
    (never an exception: one item's fault must not fail the others)."""
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    item_id = raw_id if isinstance(raw_id, str) and is_valid_unicode(raw_id) else None
    try:
        paper = Paper.model_validate(raw)
        if errors := length_errors(paper, settings):
            raise InvalidInput(errors)
        return BatchItem(index=index, id=item_id, result=await _classify(service, paper))
    except ValidationError as err:
        errors = validation_details(err.errors(include_url=False, include_context=False,
                                               include_input=False))
        error = problem(422, summary(errors, whole="paper"), errors)
    except InvalidInput as err:
        error = problem(422, str(err), err.errors)
    except ServiceError as err:
        error = problem(err.status, err.detail)
    except Exception:  # one item's fault must not fail the batch (or leave the rest running)
        log.exception("unexpected error in a batch item", extra={"index": index})
        error = problem(500, INTERNAL_DETAIL)
    return BatchItem.model_validate({"index": index, "id": item_id, "error": error})


@router.post("/v1/classify_papers", response_model=BatchResponse, tags=["classify"],
             responses=CLASSIFY_ERRORS)
async def classify_papers(batch: BatchRequest, service: ServiceDep, settings: SettingsDep,
                          metrics: MetricsDep) -> BatchResponse:
    """Classify up to GATEWAY_MAX_BATCH papers, answered in order; all are sent to the engine
    at once so continuous batching can work. A bad or failed item gets its own problem
    document in `error` (its `loc`s relative to the paper, as for one paper); the request as a
    whole fails only when the batch itself is invalid."""
    if len(batch.papers) > settings.max_batch:
        raise InvalidInput([{"loc": ["papers"], "type": "too_long",
                             "msg": f"at most {settings.max_batch} papers per batch"}])
    metrics.batch_size.observe(len(batch.papers))
    items = await asyncio.gather(
        *(classify_item(service, i, raw, settings) for i, raw in enumerate(batch.papers))
    )
    return BatchResponse(model=service.model.version,
                         prompt_version=service.model.prompt_version, results=list(items))


@router.get("/v1/model", tags=["model"])
async def model(service: ServiceDep) -> dict:
    """The served model's manifest (base model, prompt version, dataset, calibration, metrics),
    how answers are read (`temperature`, `reread_below`: the manifest's calibration unless
    GATEWAY_REREAD_BELOW overrides the threshold) and the precision its engines compute in,
    with the reason (`precision`: one entry per distinct choice, with the engines that made
    it; empty until an engine has been probed)."""
    return {"name": service.model.name, "version": service.model.version,
            "prompt_version": service.model.prompt_version,
            "reread_below": service.model.rule.reread_below,
            "temperature": service.model.rule.temperature,
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
