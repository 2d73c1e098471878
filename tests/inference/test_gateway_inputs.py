"""Hostile request bodies, in process (no engine needed: each is refused before any engine
call): a clear 422 naming what is wrong, never a 500, never the input echoed back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from inference.gateway.app import create_app
from inference.gateway.settings import GatewaySettings


@pytest.fixture(scope="module")
def client(base_model_dir) -> Iterator[TestClient]:
    settings = GatewaySettings(engine_urls=["http://127.0.0.1:9"], api_keys=[],
                               model_dir=base_model_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(("body", "content_type", "loc"), [
    ('{"title": "A \\ud800 b", "abstract": "x"}', "application/json", ["body", "title"]),
    ('{"title": "t", "abstract": "\\udfff"}', "application/json", ["body", "abstract"]),
    ('{"\\ud800": 1, "title": "t", "abstract": "a"}', "application/json", ["body"]),
    (b"\x80\x81\x82\xff", "text/plain", ["body"]),
])
def test_undecodable_input_is_422_not_500(client: TestClient, body, content_type: str,
                                          loc: list) -> None:
    response = client.post("/v1/classify_paper", content=body,
                           headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][: len(loc)] == loc and error["msg"] and "input" not in error


def test_bytes_that_are_not_json_are_400(client: TestClient) -> None:
    response = client.post("/v1/classify_paper", content=b"\x80\x81\x82\xff",
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "parsing the body" in response.json()["detail"]


def test_a_batch_answers_each_bad_item_on_its_own(client: TestClient) -> None:
    body = ('{"papers": ["oops", {"id": "\\udc80", "title": "t", "abstract": "a"}, 7, '
            '{"id": "x", "title": ""}]}')
    response = client.post("/v1/classify_papers", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    items = response.json()["results"]
    assert [(i["index"], i["error"]["status"]) for i in items] == [(0, 422), (1, 422), (2, 422),
                                                                   (3, 422)]
    assert items[1]["id"] is None  # an id that is not valid Unicode is not echoed
    assert items[1]["error"]["detail"][0]["loc"] == ["id"]
    assert items[3]["id"] == "x"
    assert {e["loc"][0] for e in items[3]["error"]["detail"]} == {"title", "abstract"}
