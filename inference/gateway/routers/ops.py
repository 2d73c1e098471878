"""Open routes: probes and scrapes must work without a key, before secrets are mounted."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inference.gateway.deps import MetricsDep, ServiceDep, SettingsDep
from inference.gateway.problems import COMMON, problem_response, problem_responses

router = APIRouter(tags=["ops"], responses=problem_responses(*COMMON))


# HEAD as well: uptime monitors and some load balancers probe with HEAD (RFC 9110 9.3.2: a
# server should answer HEAD wherever it answers GET). Left out of the schema: one operation each.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz")
async def healthz() -> dict:
    """The gateway process is alive."""
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", responses=problem_responses(503))
async def readyz(service: ServiceDep, settings: SettingsDep) -> Response:
    """Ready when some healthy engine serves the expected model; else 503, a problem document
    with `Retry-After` that also lists `model` and `engines`."""
    ready = await service.pool.serves_model(service.model.name)
    engines = [{"url": e.url, "healthy": e.healthy, "in_flight": e.in_flight,
                "precision": e.precision and e.precision.get("precision")}
               for e in service.pool.engines]
    if ready:
        return JSONResponse({"status": "ready", "model": service.model.name, "engines": engines})
    return problem_response(
        503, f"no healthy engine serves {service.model.name}",
        headers={"Retry-After": str(settings.retry_after_s)},
        extra={"model": service.model.name, "engines": engines})


@router.get("/metrics")
async def metrics(gateway_metrics: MetricsDep) -> Response:
    """Prometheus metrics of this replica."""
    return Response(generate_latest(gateway_metrics.registry), media_type=CONTENT_TYPE_LATEST)
