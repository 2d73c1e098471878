"""Hostile request bodies, in process (no engine call: each is refused first): a clear 400/422
naming what is wrong, never a 500, never the input echoed back."""

from __future__ import annotations

import pytest

from tests.inference.conftest import GatewayClient


@pytest.mark.parametrize(("body", "content_type", "loc"), [
    ('{"title": "A \\ud800 b", "abstract": "x"}', "application/json", ["title"]),
    ('{"title": "t", "abstract": "\\udfff"}', "application/json", ["abstract"]),
    ('{"title": "t", "abstract": "a", "id": "\\udc80"}', "application/json", ["id"]),
    ('{"\\ud800": 1, "title": "t", "abstract": "a"}', "application/json", []),
    (b"\x80\x81\x82\xff", "text/plain", []),
])
def test_undecodable_input_is_422_not_500(client: GatewayClient, body, content_type: str,
                                          loc: list) -> None:
    response = client.post("/v1/classify_paper", content=body,
                           headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["loc"] == loc and error["msg"] and set(error) == {"loc", "type", "msg"}
    assert "\\ud800" not in response.text and "\\udfff" not in response.text


def test_bytes_that_are_not_json_are_400(client: GatewayClient) -> None:
    response = client.post("/v1/classify_paper", content=b"\x80\x81\x82\xff",
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "parsing the body" in response.json()["detail"]


def test_a_batch_answers_each_bad_item_on_its_own(client: GatewayClient) -> None:
    body = ('{"papers": ["oops", {"id": "\\udc80", "title": "t", "abstract": "a"}, 7, '
            '{"id": "x", "title": ""}, {"title": "\\ud800", "abstract": "a"}]}')
    response = client.post("/v1/classify_papers", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    items = response.json()["results"]
    assert [(i["index"], i["error"]["status"]) for i in items] == [(0, 422), (1, 422), (2, 422),
                                                                   (3, 422), (4, 422)]
    assert [e["loc"] for e in items[0]["error"]["errors"]] == [[]]
    assert items[1]["id"] is None  # an id that is not valid Unicode is not echoed
    assert items[1]["error"]["errors"][0]["loc"] == ["id"]
    assert items[3]["id"] == "x"
    assert {e["loc"][0] for e in items[3]["error"]["errors"]} == {"title"}
    assert items[4]["error"]["errors"][0]["loc"] == ["title"]


def test_a_surrogate_key_in_a_batch_item_is_its_own_422(client: GatewayClient) -> None:
    body = '{"papers": [{"\\ud800": 1, "title": "t", "abstract": "a"}]}'
    response = client.post("/v1/classify_papers", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    (item,) = response.json()["results"]
    assert item["error"]["status"] == 422 and item["id"] is None
    assert [(e["loc"], e["type"]) for e in item["error"]["errors"]] == [([], "string_unicode")]
    assert item["error"]["detail"].startswith("paper: ")
