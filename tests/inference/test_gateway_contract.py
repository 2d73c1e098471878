"""The classify_paper contract against a real gateway in front of a real vLLM CPU server: what
only a real engine proves (its answers, its batching, its precision, its keep-alive, a re-read
that changes the answer). Everything else about the gateway is tested in process, in seconds,
over a stand-in engine (test_gateway_api.py, test_gateway_errors.py)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

PAPER = {
    "title": "Pembrolizumab in advanced non-small-cell lung cancer",
    "abstract": "We report overall survival of patients with metastatic lung tumours treated "
                "with checkpoint inhibitors in a randomised phase 3 trial.",
}


def check_classification(body: dict) -> None:
    assert body["label"] in {"cancer", "non_cancer"}
    cancer = body["cancer_probability"]
    assert 0.0 <= cancer <= 1.0
    expected = cancer if body["label"] == "cancer" else 1 - cancer
    assert body["probability"] == pytest.approx(expected, abs=1e-9)
    assert body["probability"] >= 0.5
    assert body["prompt_version"].startswith("cancer-yn")
    assert isinstance(body["truncated"], bool)


@pytest.mark.parametrize("route", ["/v1/classify_paper", "/predictions/v1/classify_paper"])
def test_both_routes_answer_the_contract(gateway_url: str, route: str) -> None:
    response = httpx.post(gateway_url + route, json=PAPER | {"id": "p-1"}, timeout=600)
    assert response.status_code == 200, response.text
    body = response.json()
    check_classification(body)
    assert body["id"] == "p-1" and body["truncated"] is False
    assert response.headers["x-request-id"]


def test_batch_answers_match_single_answers(gateway_url: str) -> None:
    papers = [{"title": f"Study {i} of tumour biology", "abstract": f"Cohort {i} of patients."}
              for i in range(6)]
    batch = httpx.post(gateway_url + "/v1/classify_papers", json={"papers": papers},
                       timeout=600).json()["results"]
    for paper, item in zip(papers, batch, strict=True):
        single = httpx.post(gateway_url + "/v1/classify_paper", json=paper, timeout=600).json()
        assert single["label"] == item["result"]["label"]
        assert single["cancer_probability"] == pytest.approx(
            item["result"]["cancer_probability"], abs=0.01)


def test_model_says_which_precision_the_engine_runs_and_why(gateway_url: str,
                                                            engine_url: str) -> None:
    """The engine's own choice (by the hardware rule or ENGINE_PRECISION) reaches the client."""
    from inference.engine import EngineSettings, engine_precision

    expected = engine_precision(EngineSettings())
    (reported,) = httpx.get(gateway_url + "/v1/model").json()["precision"]
    assert reported["precision"] == expected.precision.value
    assert reported["reason"] == expected.reason and reported["device"] == "cpu"
    assert reported["engines"] == [engine_url]
    ready = httpx.get(gateway_url + "/readyz", timeout=10).json()
    assert [e["precision"] for e in ready["engines"]] == [expected.precision.value]


def _burst(gateway_url: str, tag: str, n: int = 8) -> list[int]:
    """`n` new papers at once (so the gateway opens several engine connections)."""
    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=600) as client:
            return await asyncio.gather(*(client.post(
                gateway_url + "/v1/classify_paper",
                json={"title": f"Keep-alive probe {tag} {i}", "abstract": "Tumours in mice."})
                for i in range(n)))
    return [r.status_code for r in asyncio.run(send())]


def test_engine_connections_idle_past_the_engines_keep_alive_are_no_failure(
        gateway_url: str) -> None:
    # vLLM closes keep-alive connections idle for 5 s. A request sent down one it is closing
    # would count as an engine failure and mark the engine down: the gateway drops idle
    # connections first.
    def engine_errors() -> float:
        return sum(_metric(gateway_url, f'classifier_engine_errors_total{{kind="{kind}"}}')
                   for kind in ("connect", "http", "timeout"))

    before = engine_errors()
    assert _burst(gateway_url, "a") == [200] * 8
    time.sleep(6)
    assert _burst(gateway_url, "b") == [200] * 8
    assert engine_errors() == before
    assert "classifier_engines_healthy 1.0" in httpx.get(gateway_url + "/metrics").text


def _metric(gateway_url: str, series: str) -> float:
    for line in httpx.get(gateway_url + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


LONG = {"title": "Outcomes of a cohort study",
        "abstract": " ".join(["Patients were followed for several years after treatment."] * 30)
        + " The lesions were malignant melanomas."}


def test_unsure_capped_read_is_read_again_whole(make_gateway) -> None:
    always = make_gateway(reread_below=1.0, cache_size=0)
    never = make_gateway(reread_below=0.0, cache_size=0)
    first = httpx.post(never + "/v1/classify_paper", json=LONG, timeout=600).json()
    again = httpx.post(always + "/v1/classify_paper", json=LONG, timeout=600).json()
    assert first["truncated"] is True and first["reread"] is False
    # The whole abstract (~360 tokens) fits the second read's cap: nothing is cut.
    assert again["truncated"] is False and again["reread"] is True
    assert again["cancer_probability"] != pytest.approx(first["cancer_probability"], abs=1e-6)
    short = httpx.post(always + "/v1/classify_paper", json=PAPER, timeout=600).json()
    assert short["reread"] is False  # an uncut paper has nothing more to read
    metrics = httpx.get(always + "/metrics").text
    assert "classifier_rereads_total 1.0" in metrics
