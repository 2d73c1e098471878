"""One error shape: every error response the in-process gateway gave in this session (and a
catalogue of one request per status, so this file also stands alone) validates against ONE
problem-details JSON schema; the OpenAPI document declares each route's error statuses."""

from __future__ import annotations

import json
import threading

import jsonschema
import pytest

from tests.inference.conftest import SEEN_PROBLEMS, wait_until
from tests.inference.standin_engine import StandInEngine

#: RFC 9457 problem details as this gateway writes them.
PROBLEM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "minLength": 1, "pattern": r"^(about:blank|/problems/[a-z-]+)$"},
        "title": {"type": "string", "minLength": 1},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "minLength": 1},
        "errors": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["loc", "type", "msg"],
                "additionalProperties": False,
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "type": {"type": "string", "minLength": 1},
                    "msg": {"type": "string", "minLength": 1},
                },
            },
        },
    },
    # A validation problem always says which fields.
    "if": {"properties": {"status": {"const": 422}}},
    "then": {"required": ["errors"]},
}
VALIDATOR = jsonschema.Draft202012Validator(PROBLEM_SCHEMA)
OK = {"title": "A study of colon cancer", "abstract": "Tumour stage and survival."}
SECRET = "do-not-echo-this-title"


def _catalogue(make_client, standin: StandInEngine, tmp_path) -> list:
    """At least one request for every status the gateway answers, each recorded."""
    start = len(SEEN_PROBLEMS)
    keyed = make_client(api_keys=["k"], max_body_bytes=2000, max_batch=2, admin_enabled=True)
    key = {"X-API-Key": "k"}
    keyed.post("/v1/classify_paper", json=OK)  # 401
    keyed.post("/v1/classify_paper", content=b"\x80\xff", headers=key | {
        "content-type": "application/json"})  # 400
    keyed.get("/nowhere")  # 404
    keyed.delete("/v1/classify_paper", headers=key)  # 405
    keyed.post("/v1/classify_paper", content=b"{" * 3000, headers=key | {
        "content-type": "application/json"})  # 413
    keyed.post("/v1/classify_paper", json={"title": SECRET * 3, "abstract": 3},
               headers=key)  # 422
    keyed.post("/v1/classify_papers", json={"papers": [OK] * 3}, headers=key)  # 422
    keyed.post("/admin/model", json={"engine_urls": [standin.url],
                                     "model_dir": str(tmp_path / "missing")}, headers=key)  # 422
    keyed.post("/v1/classify_papers", headers=key, json={"papers": [  # 200, two 422 items
        {"title": SECRET * 3, "abstract": 7}, {"title": "t", "abstract": "a", "colour": 1}]})
    keyed.post("/v1/classify_papers", headers=key, json={"papers": ["x", {"title": 5}]})
    # 429: one slot held by a slow call
    busy = make_client(max_in_flight=1, queue_wait_s=0.01, cache_size=0)
    standin.script.delay_s = 3600
    holder = threading.Thread(target=lambda: busy.post("/v1/classify_paper", json=OK))
    holder.start()
    wait_until(lambda: standin.active == 1, what="a call to hold the slot")
    busy.post("/v1/classify_paper", json={"title": "second", "abstract": "x"})  # 429
    standin.script.delay_s = 0
    holder.join(timeout=60)
    plain = make_client(cache_size=0, request_timeout_s=0.2, connect_retries=0)
    standin.script.fail_status = 400
    plain.post("/v1/classify_paper", json=OK)  # 502
    standin.script.fail_status = 500
    plain.post("/v1/classify_paper", json=OK)  # 503
    plain.post("/v1/classify_papers", json={"papers": [OK]})  # 503 in an item
    standin.script.fail_status, standin.script.delay_s = None, 3600
    plain.post("/v1/classify_paper", json=OK)  # 504
    standin.script.delay_s = 0
    make_client(engine_urls=["http://127.0.0.1:9"]).get("/readyz")  # 503
    return SEEN_PROBLEMS[start:]


def test_every_error_is_one_problem_document(make_client, standin: StandInEngine,
                                             tmp_path) -> None:
    caught = _catalogue(make_client, standin, tmp_path)
    assert {status for _, status, _, _ in caught} >= {400, 401, 404, 405, 413, 422, 429, 502,
                                                     503, 504}
    assert sum(kind == "item" for _, _, kind, _ in caught) >= 5
    walked = 0
    for what, status, content_type, body in SEEN_PROBLEMS:  # this session's, all of them
        assert content_type in ("application/problem+json", "item"), (what, content_type)
        assert isinstance(body, dict), (what, body)
        errors = sorted(VALIDATOR.iter_errors(body), key=str)
        assert not errors, (what, body, [e.message for e in errors])
        assert body["status"] == status, what
        text = json.dumps(body)
        assert SECRET not in text and "\"input\":" not in text, (what, body)
        walked += 1
    assert walked >= len(caught)


def test_the_schema_rejects_what_is_not_a_problem() -> None:
    """Guards the walk above: the schema really tells a problem from FastAPI's default shape."""
    good = {"type": "/problems/validation", "title": "Invalid request", "status": 422,
            "detail": "title: too short", "errors": [{"loc": ["title"], "type": "t", "msg": "m"}]}
    assert VALIDATOR.is_valid(good)
    for bad in ({"detail": [{"loc": ["body", "title"], "msg": "m", "type": "t"}]},
                good | {"errors": None}, {k: v for k, v in good.items() if k != "errors"},
                good | {"errors": [{"loc": ["title"], "type": "t", "msg": "m", "input": "x"}]},
                good | {"status": 200}, good | {"detail": ""}):
        assert not VALIDATOR.is_valid(bad), bad


EXPECTED_ERRORS = {
    ("get", "/healthz"): {404, 405, 500},
    ("get", "/readyz"): {404, 405, 500, 503},
    ("get", "/metrics"): {404, 405, 500},
    ("get", "/v1/model"): {401, 404, 405, 500},
    ("post", "/v1/classify_paper"): {400, 401, 404, 405, 413, 422, 429, 500, 502, 503, 504},
    ("post", "/predictions/v1/classify_paper"): {400, 401, 404, 405, 413, 422, 429, 500, 502,
                                                 503, 504},
    ("post", "/v1/classify_papers"): {400, 401, 404, 405, 413, 422, 429, 500, 502, 503, 504},
    ("post", "/v1/classify_file"): {400, 401, 404, 405, 413, 422, 429, 500, 502, 503, 504},
    ("post", "/admin/model"): {400, 401, 404, 405, 409, 413, 422, 500},
}


@pytest.mark.parametrize("admin", [True, False])
def test_openapi_declares_every_routes_error_statuses(make_client, admin: bool) -> None:
    schema = make_client(admin_enabled=admin).get("/openapi.json").json()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {
        "type", "title", "status", "detail"}
    declared = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {int(s) for s in operation["responses"] if s[0] in "45"}
            declared[(method, path)] = errors
            for status in errors:
                content = operation["responses"][str(status)]["content"]
                assert content == {"application/problem+json": {"schema": problem_ref}}, (
                    method, path, status, content)
    expected = {k: v for k, v in EXPECTED_ERRORS.items() if admin or k[1] != "/admin/model"}
    assert declared == expected


@pytest.mark.parametrize(("method", "path"), list(EXPECTED_ERRORS))
def test_declared_statuses_are_the_ones_answered(make_client, method: str, path: str) -> None:
    """The other direction, for the statuses any route can give: a 405 on every route."""
    client = make_client(admin_enabled=True)
    other = "put"
    response = client.request(other.upper(), path)
    assert response.status_code == 405 and response.headers["allow"] == method.upper()
