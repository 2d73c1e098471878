"""Every error status the gateway answers, in process over stand-in engines: bad input gets a
clear 4xx naming what is wrong; overload, failing, slow and missing engines get 429, 502, 503
and 504 with the counters to match; an unexpected fault is a 500 that says nothing of it."""

from __future__ import annotations

import threading

import pytest

from tests.inference.conftest import GatewayClient, wait_until
from tests.inference.standin_engine import StandInEngine

OK = {"title": "A study of colon cancer", "abstract": "Tumour stage and survival."}
PROBLEM = "application/problem+json"


def engine_errors(client: GatewayClient) -> dict[str, float]:
    return {kind: client.metric(f'classifier_engine_errors_total{{kind="{kind}"}}')
            for kind in ("connect", "timeout", "http", "overload")}


def check_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("/problems/")
    return body


def test_malformed_json_is_422(client: GatewayClient) -> None:
    response = client.post("/v1/classify_paper", content=b'{"title": "x", "abstract": ',
                           headers={"content-type": "application/json"})
    body = check_problem(response, 422)
    assert [(e["type"], e["loc"]) for e in body["errors"]] == [("json_invalid", [])]


@pytest.mark.parametrize(("body", "field", "kind"), [
    ({"title": 5, "abstract": "a"}, "title", "string_type"),
    ({"title": "t", "abstract": 5}, "abstract", "string_type"),
    ({"title": "t", "abstract": ["a"]}, "abstract", "string_type"),
    ({"abstract": "a"}, "title", "missing"),
    ({"title": "   ", "abstract": "a"}, "title", "string_too_short"),
    ({"title": "t", "abstract": "a", "colour": "red"}, "colour", "extra_forbidden"),
    ({"title": "t" * 2001, "abstract": "a"}, "title", "string_too_long"),
    ({"title": "t", "abstract": "a" * 100_001}, "abstract", "string_too_long"),
    ({"title": "t", "abstract": "a", "id": "i" * 201}, "id", "string_too_long"),
])
def test_bad_fields_are_422_naming_the_field(client: GatewayClient, standin: StandInEngine,
                                             body: dict, field: str, kind: str) -> None:
    problem = check_problem(client.post("/v1/classify_paper", json=body), 422)
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [([field], kind)]
    assert field in problem["detail"]
    assert standin.calls == 0


def test_not_an_object_is_422(client: GatewayClient) -> None:
    body = check_problem(client.post("/v1/classify_paper", json=["title", "abstract"]), 422)
    assert [e["loc"] for e in body["errors"]] == [[]]


def test_bytes_that_are_not_utf8_json_are_400(client: GatewayClient) -> None:
    response = client.post("/v1/classify_paper", content=b"\x80\x81\x82\xff",
                           headers={"content-type": "application/json"})
    assert "parsing the body" in check_problem(response, 400)["detail"]


def test_huge_body_is_413(make_client, standin: StandInEngine) -> None:
    client = make_client(max_body_bytes=1000)
    response = client.post("/v1/classify_paper", content=b"x" * 5000,
                           headers={"content-type": "application/json"})
    assert "larger than 1000 bytes" in check_problem(response, 413)["detail"]
    assert response.headers["x-request-id"]
    # Chunked (no Content-Length): cut off while reading.
    chunked = client.post("/v1/classify_paper", content=(b"x" * 300 for _ in range(10)),
                          headers={"content-type": "application/json"})
    check_problem(chunked, 413)
    assert client.post("/v1/classify_paper", json=OK).status_code == 200  # under the limit
    assert client.metric('classifier_requests_total{route="unmatched",status="413"}') == 1
    assert standin.calls == 1


def test_unknown_route_is_404_and_wrong_method_405(client: GatewayClient) -> None:
    check_problem(client.get("/v2/classify_paper"), 404)
    response = client.get("/v1/classify_paper")
    check_problem(response, 405)
    assert response.headers["allow"] == "POST"
    check_problem(client.post("/admin/model", json={}), 404)  # admin off by default


def test_over_large_and_empty_batches_are_422_naming_papers(make_client) -> None:
    client = make_client(max_batch=3)
    body = check_problem(client.post("/v1/classify_papers", json={"papers": [OK] * 4}), 422)
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["papers"], "too_long")]
    assert "at most 3 papers" in body["detail"]
    empty = check_problem(client.post("/v1/classify_papers", json={"papers": []}), 422)
    assert [e["loc"] for e in empty["errors"]] == [["papers"]]
    assert client.post("/v1/classify_papers", json={"papers": [OK] * 3}).status_code == 200


def test_api_keys(make_client, tmp_path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("file-key\n")
    client = make_client(api_keys=["env-key"], api_keys_file=key_file, admin_enabled=True)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                    {"Authorization": "Basic env-key"}):
        response = client.post("/v1/classify_paper", json=OK, headers=headers)
        assert "API key" in check_problem(response, 401)["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    ok = client.post("/v1/classify_paper", json=OK, headers={"Authorization": "Bearer env-key"})
    assert ok.status_code == 200
    assert client.post("/v1/classify_paper", json=OK,
                       headers={"X-API-Key": "file-key"}).status_code == 200
    for path in ("/v1/model",):
        check_problem(client.get(path), 401)
    check_problem(client.post("/v1/classify_papers", json={"papers": [OK]}), 401)
    check_problem(client.post("/admin/model", json={}), 401)
    # An invalid body without a key is refused for the key, not the body.
    check_problem(client.post("/v1/classify_paper", json={"title": ""}), 401)
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(open_path).status_code == 200


@pytest.mark.parametrize("content", [None, "", "\n  \n"], ids=["missing", "empty", "blank"])
def test_a_keys_file_without_keys_refuses_to_start(tmp_path, content: str | None) -> None:
    from pydantic import ValidationError

    from inference.gateway.settings import GatewaySettings

    key_file = tmp_path / "keys"
    if content is not None:
        key_file.write_text(content)
    # A secret mounted under another name must not leave the gateway open to anyone.
    with pytest.raises(ValidationError, match="refusing to run with auth off"):
        GatewaySettings(api_keys=["env-key"], api_keys_file=key_file)


def test_overload_gets_429_with_retry_after(make_client, standin: StandInEngine) -> None:
    client = make_client(max_in_flight=1, queue_wait_s=0.05, cache_size=0)
    standin.script.delay_s = 3600  # holds the only slot until the test lets go
    first: list[int] = []
    holder = threading.Thread(target=lambda: first.append(
        client.post("/v1/classify_paper", json=OK).status_code))
    holder.start()
    wait_until(lambda: standin.active == 1, what="the first call to reach the engine")
    rejected = client.post("/v1/classify_paper", json={"title": "Second", "abstract": "x"})
    assert "too many requests" in check_problem(rejected, 429)["detail"]
    assert int(rejected.headers["retry-after"]) == 2
    assert engine_errors(client) == {"connect": 0, "timeout": 0, "http": 0, "overload": 1}
    standin.script.delay_s = 0  # lets the held call go
    holder.join(timeout=60)
    assert first == [200]
    assert client.post("/v1/classify_paper", json={"title": "Third", "abstract": "x"}
                       ).status_code == 200  # the slot was given back


def test_engine_timeout_is_504(make_client, standin: StandInEngine) -> None:
    client = make_client(request_timeout_s=0.2, cache_size=0)
    standin.script.delay_s = 3600
    response = client.post("/v1/classify_paper", json={"title": "Timeout", "abstract": "HCC."})
    assert "timed out" in check_problem(response, 504)["detail"]
    assert response.headers["retry-after"] == "2"
    assert engine_errors(client)["timeout"] == 1
    wait_until(lambda: standin.active == 0, what="the engine to see the call abandoned")
    assert standin.aborted == 1


def test_engine_5xx_is_503_with_retry_after(make_client, standin: StandInEngine) -> None:
    standin.script.fail_status = 500
    client = make_client(cache_size=0, connect_retries=3)
    assert engine_errors(client)["http"] == 0
    response = client.post("/v1/classify_paper", json={"title": "5xx", "abstract": "Glioma."})
    assert "engine answered 500" in check_problem(response, 503)["detail"]
    assert int(response.headers["retry-after"]) == 2
    assert standin.calls == 4  # the first try and 3 retries
    assert engine_errors(client) == {"connect": 0, "timeout": 0, "http": 4, "overload": 0}


def test_engine_5xx_is_retried_until_it_answers(make_client, standin: StandInEngine) -> None:
    standin.script.fail_status, standin.script.fail_times = 503, 2
    client = make_client(cache_size=0)
    response = client.post("/v1/classify_paper", json={"title": "Retry", "abstract": "x"})
    assert response.status_code == 200, response.text
    assert standin.calls == 3
    assert engine_errors(client)["http"] == 2  # the failed tries are counted, not hidden


def test_engine_5xx_is_retried_on_another_engine(make_client, make_engine) -> None:
    failing, healthy = make_engine(), make_engine()
    failing.script.fail_status = 500
    client = make_client(engine_urls=[failing.url, healthy.url], cache_size=0)
    for i in range(4):
        response = client.post("/v1/classify_paper", json={"title": f"Retry {i}",
                                                           "abstract": "Lymphoma."})
        assert response.status_code == 200, response.text
    assert healthy.calls == 4
    assert engine_errors(client)["http"] == failing.calls >= 1


def test_dead_engine_is_skipped_for_a_healthy_one(make_client, standin: StandInEngine) -> None:
    client = make_client(engine_urls=["http://127.0.0.1:9", standin.url], cache_size=0)
    for i in range(4):
        response = client.post("/v1/classify_paper", json={"title": f"Skip {i}",
                                                           "abstract": "Leukaemia."})
        assert response.status_code == 200, response.text
    engines = {e["url"]: e["healthy"] for e in client.get("/readyz").json()["engines"]}
    assert engines == {"http://127.0.0.1:9": False, standin.url: True}
    assert standin.calls == 4


def test_lost_connection_marks_the_engine_down_and_retries_elsewhere(make_client,
                                                                    make_engine) -> None:
    doomed, healthy = make_engine(), make_engine()
    client = make_client(engine_urls=[doomed.url, healthy.url], cache_size=0)
    doomed.close()  # healthy at the start, then gone: the first call to it is refused
    statuses = [client.post("/v1/classify_paper", json={"title": f"Lost {i}", "abstract": "x"}
                            ).status_code for i in range(4)]
    assert statuses == [200] * 4
    assert healthy.calls == 4
    assert engine_errors(client)["connect"] == 1  # then it is skipped until a probe sees it
    engines = {e["url"]: e["healthy"] for e in client.get("/readyz").json()["engines"]}
    assert engines == {doomed.url: False, healthy.url: True}


def test_no_engine_up_is_503_with_retry_after(make_client) -> None:
    client = make_client(engine_urls=["http://127.0.0.1:9"], retry_after_s=7)
    response = client.post("/v1/classify_paper", json=OK)
    assert "no inference engine" in check_problem(response, 503)["detail"]
    assert response.headers["retry-after"] == "7"
    (item,) = client.post("/v1/classify_papers", json={"papers": [OK]}).json()["results"]
    assert item["error"]["status"] == 503 and item["result"] is None
    ready = client.get("/readyz")
    check_problem(ready, 503)
    assert ready.headers["retry-after"] == "7"


@pytest.mark.parametrize(("script", "detail"), [
    ({"fail_status": 400}, "inference engine answered 400"),
    ({"malformed": True}, "unexpected engine response"),
    ({"cancer_probability": 0.0, "fail_status": None}, None),
])
def test_unusable_engine_answers_are_502(make_client, standin: StandInEngine, script: dict,
                                         detail: str | None) -> None:
    for key, value in script.items():
        setattr(standin.script, key, value)
    client = make_client(cache_size=0)
    response = client.post("/v1/classify_paper", json=OK)
    if detail is None:  # probability 0 is an answer (non_cancer), not a fault
        assert response.json()["label"] == "non_cancer"
        return
    assert detail in check_problem(response, 502)["detail"]
    assert standin.calls == 1  # not retried: it would answer the same


def test_unexpected_fault_is_500_without_a_stack_trace(client: GatewayClient,
                                                       monkeypatch) -> None:
    async def broken(title: str, abstract: str):
        raise RuntimeError("secret-internal-state")

    monkeypatch.setattr(client.state.service, "classify", broken)
    response = client.post("/v1/classify_paper", json=OK, headers={"X-Request-ID": "fault-1"})
    body = check_problem(response, 500)
    assert "secret-internal-state" not in response.text and "Traceback" not in response.text
    assert "X-Request-ID" in body["detail"] and response.headers["x-request-id"] == "fault-1"
    assert client.metric(
        'classifier_requests_total{route="/v1/classify_paper",status="500"}') == 1
    # In a batch, the fault is that item's 500; the others are answered.
    (item,) = client.post("/v1/classify_papers", json={"papers": [OK]}).json()["results"]
    assert item["error"]["status"] == 500
    assert "secret-internal-state" not in item["error"]["detail"]
