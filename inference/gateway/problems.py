"""Every error the gateway answers, whole-request or per batch item, is an RFC 9457 problem
document (`application/problem+json`): `type`, `title`, `status`, `detail`, and for invalid
input `errors: [{loc, type, msg}]`. No problem ever echoes the client's input back.

`loc` rule: a path inside the JSON the client sent, relative to the paper for a paper's fields
(`["title"]`), the same for `/v1/classify_paper` and for an item of `/v1/classify_papers` (whose
item already carries its `index`); relative to the request body for the batch's own fields
(`["papers"]`); `[]` for the body as a whole (not JSON, not an object)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(..., description="Path of the offending value (see the loc rule)")
    type: str = Field(..., description="Machine-readable error kind, e.g. string_too_short")
    msg: str = Field(..., description="What is wrong, for a person")


class Problem(BaseModel):
    """An RFC 9457 problem document (extension members allowed, e.g. /readyz's `engines`)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        "type": "/problems/validation", "title": "Invalid request", "status": 422,
        "detail": "title: String should have at least 1 character",
        "errors": [{"loc": ["title"], "type": "string_too_short",
                    "msg": "String should have at least 1 character"}]}})

    type: str = Field(..., description="URI reference naming the kind of problem")
    title: str = Field(..., description="Short summary of the kind of problem")
    status: int = Field(..., description="HTTP status code")
    detail: str = Field(..., description="This occurrence, for a person")
    errors: list[FieldError] | None = Field(
        None, description="Invalid fields (422 only; absent otherwise)",
        exclude_if=lambda errors: errors is None)


# status -> (type, title): one stable type per kind of problem.
_KINDS: dict[int, tuple[str, str]] = {
    400: ("/problems/bad-request", "Bad request"),
    401: ("/problems/unauthorized", "Missing or invalid API key"),
    404: ("/problems/not-found", "Not found"),
    405: ("/problems/method-not-allowed", "Method not allowed"),
    409: ("/problems/conflict", "Conflict"),
    413: ("/problems/body-too-large", "Request body too large"),
    422: ("/problems/validation", "Invalid request"),
    429: ("/problems/overloaded", "Too many requests in flight"),
    500: ("/problems/internal", "Internal error"),
    502: ("/problems/bad-engine-answer", "Bad answer from the inference engine"),
    503: ("/problems/engine-unavailable", "No inference engine available"),
    504: ("/problems/engine-timeout", "Inference engine timed out"),
}


def problem(status: int, detail: str, errors: list[dict] | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The problem document for `status` as a dict (`errors` only when given; `extra`: RFC 9457
    extension members)."""
    kind, title = _KINDS.get(status, ("about:blank", _reason(status)))
    body: dict[str, Any] = {"type": kind, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return (extra or {}) | body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


INTERNAL_DETAIL = "internal error; see the gateway log for this request's X-Request-ID"


class InvalidInput(Exception):
    """A request the gateway refuses as 422 with these field errors (see the loc rule)."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__(summary(errors))
        self.errors = errors


def summary(errors: list[dict], whole: str = "body") -> str:
    """`detail` of a validation problem: each error as `loc: msg` (`whole` for an empty loc:
    the request body, or the paper of a batch item)."""
    parts = [f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in errors]
    return "; ".join(parts) or "invalid request"


def problem_body(status: int, detail: str) -> bytes:
    return orjson.dumps(problem(status, detail))


def problem_response(status: int, detail: str, errors: list[dict] | None = None,
                     headers: dict[str, str] | None = None,
                     extra: dict[str, Any] | None = None) -> Response:
    return Response(orjson.dumps(problem(status, detail, errors, extra)), status_code=status,
                    headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8 JSON)",
    401: "Missing or invalid API key (only when keys are configured)",
    404: "No such route",
    405: "Method not allowed on this route (`Allow` lists the allowed ones)",
    409: "The new engines are not ready; nothing was switched",
    413: "Body larger than GATEWAY_MAX_BODY_BYTES (an upload: also larger than "
         "GATEWAY_MAX_FILE_EXPANDED_BYTES once decompressed)",
    422: "Invalid request: `errors` names each field (see the loc rule)",
    429: "More engine calls in flight than GATEWAY_MAX_IN_FLIGHT; `Retry-After` says when to retry",
    500: "Unexpected fault (no details: see the gateway log for the X-Request-ID)",
    502: "The inference engine answered something unusable",
    503: "No inference engine is available; `Retry-After` says when to retry",
    504: "The inference engine did not answer within GATEWAY_REQUEST_TIMEOUT_S; `Retry-After` "
         "says when to retry",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these error statuses, each a `Problem`."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]}
            for status in statuses}


#: What any route may answer, whatever it does.
COMMON = (404, 405, 500)
#: What every route that calls an engine may answer besides COMMON.
CLASSIFY = (400, 401, 413, 422, 429, 502, 503, 504)


def problem_media_types(schema: dict) -> dict:
    """Rewrite an OpenAPI document so that every 4xx/5xx response is served as
    `application/problem+json` (FastAPI files a `responses=` model under application/json)."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status)[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return schema
