"""Bad input gets a clear 4xx naming what is wrong; overload and slow engines get 429/504."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

pytestmark = pytest.mark.integration
OK = {"title": "A study of colon cancer", "abstract": "Tumour stage and survival."}


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url + "/v1/classify_paper", timeout=600, **kwargs)


def test_malformed_json_is_422(gateway_url: str) -> None:
    response = post(gateway_url, content=b'{"title": "x", "abstract": ',
                    headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(("body", "field"), [
    ({"title": 5, "abstract": "a"}, "title"),
    ({"title": "t", "abstract": None}, "abstract"),
    ({"abstract": "a"}, "title"),
    ({"title": "t"}, "abstract"),
    ({"title": "   ", "abstract": "a"}, "title"),
    ({"title": "t", "abstract": ""}, "abstract"),
    ({"title": "t", "abstract": "a", "colour": "red"}, "colour"),
    ({"title": "t" * 2001, "abstract": "a"}, "title"),
    ({"title": "t", "abstract": "a" * 100_001}, "abstract"),
])
def test_bad_fields_are_422_naming_the_field(gateway_url: str, body: dict, field: str) -> None:
    response = post(gateway_url, json=body)
    assert response.status_code == 422, response.text
    assert field in {str(part) for err in response.json()["detail"] for part in err["loc"]}


def test_not_an_object_is_422(gateway_url: str) -> None:
    assert post(gateway_url, json=["title", "abstract"]).status_code == 422


def test_huge_body_is_413(gateway_url: str) -> None:
    response = post(gateway_url, content=b"x" * (5 * 1024 * 1024),
                    headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_huge_chunked_body_is_413(gateway_url: str) -> None:
    def chunks():
        for _ in range(80):
            yield b"x" * 65536

    response = post(gateway_url, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("paper", [
    {"title": "Control \x00\x07\x1b characters", "abstract": "Text with \t tabs \r\n and \x0b."},
    {"title": "肺癌患者的免疫治疗", "abstract": "这项研究评估了晚期肺癌患者的生存率。"},
    {"title": "Исследование опухолей", "abstract": "Анализ выживаемости пациентов 😀."},
    {"title": "دراسة السرطان", "abstract": "تحليل البقاء على قيد الحياة"},
])
def test_odd_scripts_and_control_characters_are_classified(gateway_url: str, paper) -> None:
    response = post(gateway_url, json=paper)
    assert response.status_code == 200, response.text
    assert response.json()["label"] in {"cancer", "non_cancer"}


def test_fifty_thousand_character_abstract_is_truncated_not_rejected(gateway_url: str) -> None:
    abstract = ("Tumour cells proliferate in the lung tissue of patients. " * 900)[:50_000]
    response = post(gateway_url, json={"title": "Long", "abstract": abstract})
    assert response.status_code == 200, response.text
    assert response.json()["truncated"] is True


def test_over_large_batch_is_422_naming_papers(make_gateway) -> None:
    url = make_gateway(max_batch=3)
    response = httpx.post(url + "/v1/classify_papers", json={"papers": [OK] * 4}, timeout=600)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "papers"]
    empty = httpx.post(url + "/v1/classify_papers", json={"papers": []}, timeout=600)
    assert empty.status_code == 422


def test_api_keys(make_gateway, tmp_path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("file-key\n")
    url = make_gateway(api_keys="env-key", api_keys_file=str(key_file))
    assert post(url, json=OK).status_code == 401
    assert post(url, json=OK, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(url, json=OK, headers={"Authorization": "Bearer env-key"}).status_code == 200
    assert post(url, json=OK, headers={"X-API-Key": "file-key"}).status_code == 200
    assert httpx.get(url + "/v1/model").status_code == 401
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(url + open_path, timeout=10).status_code == 200


def test_overload_gets_429_with_retry_after(make_gateway) -> None:
    url = make_gateway(max_in_flight=1, queue_wait_s=0.01, cache_size=0)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=600) as client:
            papers = [{"title": f"Paper {i} on sarcoma", "abstract": f"Abstract {i}."}
                      for i in range(12)]
            return await asyncio.gather(*(client.post(url + "/v1/classify_paper", json=p)
                                          for p in papers))

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and 429 in statuses
    assert set(statuses) <= {200, 429}
    rejected = next(r for r in responses if r.status_code == 429)
    assert int(rejected.headers["retry-after"]) >= 1


def test_engine_timeout_is_504(make_gateway) -> None:
    url = make_gateway(request_timeout_s=0.001, cache_size=0)
    response = post(url, json={"title": "Timeout probe", "abstract": "Hepatocellular carcinoma."})
    assert response.status_code == 504
    assert "timed out" in response.json()["detail"]


def test_dead_engine_is_skipped_for_a_healthy_one(make_gateway, engine_url: str) -> None:
    url = make_gateway(engine_urls=["http://127.0.0.1:9", engine_url], cache_size=0)
    for i in range(4):
        response = post(url, json={"title": f"Skip probe {i}", "abstract": "Leukaemia in mice."})
        assert response.status_code == 200, response.text
    engines = {e["url"]: e["healthy"] for e in httpx.get(url + "/readyz").json()["engines"]}
    assert engines == {"http://127.0.0.1:9": False, engine_url: True}


@pytest.fixture()
def failing_engine_url() -> Iterator[str]:
    """An engine that looks healthy but answers every completion with 500 (engine loop dead)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /health and /v1/models: "fine, serving the model"
            self._send(200, b'{"data": [{"id": "paper-classifier"}]}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self._send(500, b'{"error": "EngineDeadError"}')

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_engine_5xx_is_503_with_retry_after(make_gateway, failing_engine_url: str) -> None:
    url = make_gateway(engine_urls=[failing_engine_url], cache_size=0)
    response = post(url, json={"title": "5xx probe", "abstract": "Glioblastoma."})
    assert response.status_code == 503, response.text
    assert "engine answered 500" in response.json()["detail"]
    assert int(response.headers["retry-after"]) >= 1


def test_engine_5xx_is_retried_on_another_engine(make_gateway, failing_engine_url: str,
                                                 engine_url: str) -> None:
    url = make_gateway(engine_urls=[failing_engine_url, engine_url], cache_size=0)
    for i in range(4):
        response = post(url, json={"title": f"Retry probe {i}", "abstract": "Lymphoma."})
        assert response.status_code == 200, response.text
    metrics = httpx.get(url + "/metrics").text
    assert 'kind="http"' in metrics  # the failed first tries are counted, not hidden
