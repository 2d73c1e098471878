"""The classify_paper contract, in process: the real gateway (prompt rendering, cache, metrics,
routes) over a stand-in engine that answers like vLLM. What only a real engine can prove (its
numbers, its precision, its keep-alive) stays in test_gateway_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.inference.conftest import GatewayClient
from tests.inference.standin_engine import StandInEngine

PAPER = {
    "title": "Pembrolizumab in advanced non-small-cell lung cancer",
    "abstract": "We report overall survival of patients with metastatic lung tumours treated "
                "with checkpoint inhibitors in a randomised phase 3 trial.",
}
ROUTES = ["/v1/classify_paper", "/predictions/v1/classify_paper"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("cancer", "label", "probability"),
                         [(0.9, "cancer", 0.9), (0.2, "non_cancer", 0.8), (0.5, "cancer", 0.5)])
def test_both_routes_answer_the_contract(client: GatewayClient, standin: StandInEngine,
                                         route: str, cancer: float, label: str,
                                         probability: float) -> None:
    standin.script.cancer_probability = cancer
    response = client.post(route, json=PAPER | {"id": "p-1"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"id": "p-1", "label": label, "probability": pytest.approx(probability),
                    "cancer_probability": pytest.approx(cancer), "model": "base",
                    "prompt_version": body["prompt_version"], "truncated": False,
                    "reread": False, "abstract_missing": False}
    assert body["prompt_version"].startswith("cancer-yn")
    assert response.headers["x-request-id"]


def test_the_engine_is_asked_for_the_label_logprobs(client: GatewayClient,
                                                    standin: StandInEngine,
                                                    label_token_ids: dict[str, int]) -> None:
    client.post("/v1/classify_paper", json=PAPER).raise_for_status()
    (sent,) = standin.bodies
    assert sent["model"] == "paper-classifier"
    assert sent["max_tokens"] == 1 and sent["temperature"] == 0.0
    assert sent["logprobs"] == 2 and sent["return_tokens_as_token_ids"] is True
    assert sent["allowed_token_ids"] == sorted(label_token_ids.values())
    assert f"Title: {PAPER['title']}" in sent["prompt"]


@pytest.mark.parametrize("missing", [{}, {"abstract": None}, {"abstract": ""},
                                     {"abstract": "   "}])
def test_a_paper_without_abstract_is_classified_by_its_title(
        client: GatewayClient, standin: StandInEngine, missing: dict) -> None:
    standin.script.cancer_probability = 0.8
    paper = {"id": "letter", "title": "Adjuvant chemotherapy in resected colon cancer"}
    response = client.post("/v1/classify_paper", json=paper | missing)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["abstract_missing"] is True and body["label"] == "cancer"
    assert body["reread"] is False  # nothing more to read
    (sent,) = standin.bodies
    assert "Abstract: <|im_end|>" in sent["prompt"]  # the template, its abstract empty
    (item,) = client.post("/v1/classify_papers", json={"papers": [paper | missing]}
                          ).json()["results"]
    assert item["result"]["abstract_missing"] is True


def test_a_paper_with_neither_title_nor_abstract_is_refused(client: GatewayClient) -> None:
    response = client.post("/v1/classify_paper", json={"title": " ", "abstract": ""})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["title"]]


@pytest.mark.parametrize("title", [".", "\u0000\u0000", "\u200b\u200b", "-- ?"])
def test_a_title_without_a_letter_or_digit_is_refused(client: GatewayClient,
                                                      title: str) -> None:
    response = client.post("/v1/classify_paper", json={"title": title, "abstract": "x"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["loc"] == ["title"] and "no letter or digit" in error["msg"]


def test_request_id_is_echoed(client: GatewayClient) -> None:
    response = client.post("/v1/classify_paper", json=PAPER, headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    error = client.post("/v1/classify_paper", json={}, headers={"X-Request-ID": "trace-43"})
    assert error.status_code == 422 and error.headers["x-request-id"] == "trace-43"


def test_both_routes_give_the_same_answer(client: GatewayClient) -> None:
    a = client.post(ROUTES[0], json=PAPER).json()
    b = client.post(ROUTES[1], json=PAPER).json()
    assert a == b


def test_batch_keeps_order_and_isolates_bad_items(client: GatewayClient,
                                                  standin: StandInEngine) -> None:
    standin.script.cancer_probability = lambda prompt: 0.9 if "tumour" in prompt else 0.1
    standin.script.fail_status, standin.script.fail_when = 500, "engine-fault"
    papers = [
        {"id": "a", "title": "Glioblastoma treatment", "abstract": "Brain tumour survival."},
        {"id": "b", "title": "", "abstract": "no title"},
        {"id": "c", "title": "Malaria vaccines", "abstract": "Efficacy in African children."},
        {"id": "d", "title": 12, "abstract": ["not", "a", "string"]},
        "not an object",
        {"id": "f", "abstract": "missing title"},
        {"id": "g", "title": "t" * 2001, "abstract": "too long a title"},
        {"id": "h", "title": "   ", "abstract": "blank title"},
        {"id": "i", "title": "Surrogate \ud800", "abstract": "a"},
        {"id": "j", "title": "t", "abstract": "a", "colour": "red"},
        {"id": "k", "title": "engine-fault probe", "abstract": "The engine fails this one."},
        {"id": "l", "title": "Insulin resistance", "abstract": "A cohort of diabetic adults."},
    ]
    # json.dumps writes the lone surrogate as the escape \ud800, as a client's JSON would.
    response = client.post("/v1/classify_papers", content=json.dumps({"papers": papers}),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(papers)))
    assert [r["id"] for r in results] == ["a", "b", "c", "d", None, "f", "g", "h", "i", "j", "k",
                                          "l"]
    answers = {r["id"]: r["result"]["label"] for r in results if r["error"] is None}
    assert answers == {"a": "cancer", "c": "non_cancer", "l": "non_cancer"}
    for r in results:
        assert (r["result"] is None) != (r["error"] is None)
        if r["result"]:
            assert r["result"]["id"] == r["id"]
    errors = {r["index"]: r["error"] for r in results if r["error"]}
    # Each item's loc is relative to the paper, as for a single paper.
    expected_locs = {1: {("title",)}, 3: {("title",), ("abstract",)}, 4: {()}, 5: {("title",)},
                     6: {("title",)}, 7: {("title",)}, 8: {("title",)}, 9: {("colour",)}}
    for index, locs in expected_locs.items():
        error = errors[index]
        assert error["status"] == 422 and error["type"] == "/problems/validation", error
        assert {tuple(e["loc"]) for e in error["errors"]} == locs, error
    assert errors[10]["status"] == 503 and "engine answered 500" in errors[10]["detail"]
    assert "errors" not in errors[10]


def test_single_and_batch_locs_are_the_same(client: GatewayClient) -> None:
    bad = {"title": "", "abstract": 5}
    single = client.post("/v1/classify_paper", json=bad).json()
    (item,) = client.post("/v1/classify_papers", json={"papers": [bad]}).json()["results"]
    assert single["errors"] == item["error"]["errors"]
    assert {tuple(e["loc"]) for e in single["errors"]} == {("title",), ("abstract",)}


def test_batch_answers_match_single_answers(client: GatewayClient, standin: StandInEngine) -> None:
    standin.script.cancer_probability = lambda prompt: 0.05 + 0.15 * int(
        prompt.split("Study ")[1][0])
    papers = [{"title": f"Study {i} of tumour biology", "abstract": f"Cohort {i}."}
              for i in range(6)]
    batch = client.post("/v1/classify_papers", json={"papers": papers}).json()["results"]
    assert [item["result"]["cancer_probability"] for item in batch] == pytest.approx(
        [0.05 + 0.15 * i for i in range(6)])
    for paper, item in zip(papers, batch, strict=True):
        assert client.post("/v1/classify_paper", json=paper).json() == item["result"]


def test_health_ready_model_and_docs(client: GatewayClient, standin: StandInEngine) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    for probe in ("/healthz", "/readyz"):  # uptime monitors probe with HEAD
        head = client.head(probe)
        assert head.status_code == 200 and head.content == b"", probe
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": "paper-classifier", "engines": [
        {"url": standin.url, "healthy": True, "in_flight": 0, "precision": "float32"}]}
    model = client.get("/v1/model").json()
    assert model["name"] == "paper-classifier" and model["version"] == "base"
    assert model["prompt_version"].startswith("cancer") and model["reread_below"] == 0.98
    assert model["manifest"]["version"] == "base"
    assert model["precision"] == [{"precision": "float32", "reason": "stand-in engine",
                                   "device": "cpu", "engines": [standin.url]}]
    assert "/v1/classify_paper" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_readyz_is_a_503_problem_when_no_engine_serves_the_model(
        make_client, standin: StandInEngine) -> None:
    standin.script.served_model = "another-model"
    client = make_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and int(ready.headers["retry-after"]) == 2
    assert ready.headers["content-type"] == "application/problem+json"
    body = ready.json()
    assert body["status"] == 503 and body["model"] == "paper-classifier"
    assert body["engines"][0]["url"] == standin.url


def test_readyz_probes_at_once_when_no_engine_was_healthy(
        make_client, standin: StandInEngine) -> None:
    """A gateway started beside a starting engine is ready as soon as the engine serves, not
    at the health loop's next turn (60 s in these tests)."""
    standin.script.health_status = 503
    client = make_client()
    assert client.get("/readyz").status_code == 503
    standin.script.health_status = 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["engines"][0]["healthy"] is True


def test_cache_hits_return_the_same_answer_without_an_engine_call(
        client: GatewayClient, standin: StandInEngine) -> None:
    hits = 'classifier_cache_requests_total{result="hit"}'
    misses = 'classifier_cache_requests_total{result="miss"}'
    paper = {"title": "Cache probe: melanoma", "abstract": "Skin cancer incidence in Norway."}
    first = client.post("/v1/classify_paper", json=paper).json()
    assert (client.metric(hits), client.metric(misses), standin.calls) == (0, 1, 1)
    # Whitespace the template collapses anyway gives the same key ...
    again = {"title": "  Cache probe:\n  melanoma ", "abstract": paper["abstract"] + "\t"}
    assert client.post("/v1/classify_paper", json=again).json() == first
    assert (client.metric(hits), client.metric(misses), standin.calls) == (1, 1, 1)


def test_the_cache_tells_apart_what_the_model_tells_apart(
        client: GatewayClient, standin: StandInEngine) -> None:
    # "ALL" (acute lymphoblastic leukaemia) is not "all": the model reads case, so the cache
    # must not fold it, or the first request's answer would decide the second's.
    standin.script.cancer_probability = lambda text: 0.9 if "ALL relapse" in text else 0.2
    upper = client.post("/v1/classify_paper", json={"title": "ALL relapse in children"}).json()
    lower = client.post("/v1/classify_paper", json={"title": "all relapse in children"}).json()
    assert (upper["label"], lower["label"]) == ("cancer", "non_cancer")
    assert standin.calls == 2


def test_no_cache_when_its_size_is_zero(make_client, standin: StandInEngine) -> None:
    client = make_client(cache_size=0)
    for _ in range(2):
        client.post("/v1/classify_paper", json=PAPER).raise_for_status()
    assert standin.calls == 2


def test_metrics_count_what_happened(client: GatewayClient, standin: StandInEngine) -> None:
    standin.script.cancer_probability = lambda prompt: 0.95 if "lymphoma" in prompt else 0.15
    assert client.metric('classifier_predictions_total{label="cancer"}') == 0
    assert client.metric('classifier_predictions_total{label="non_cancer"}') == 0
    for paper in ({"title": "Metrics probe: lymphoma", "abstract": "One."},
                  {"title": "Metrics probe: asthma", "abstract": "Two."}):
        client.post("/v1/classify_paper", json=paper).raise_for_status()
    client.post("/v1/classify_papers", json={"papers": [
        {"title": "Batch lymphoma", "abstract": "Three."}, {"title": ""}]}).raise_for_status()
    client.post("/v1/classify_paper", json={"title": ""})
    assert client.metric('classifier_predictions_total{label="cancer"}') == 2
    assert client.metric('classifier_predictions_total{label="non_cancer"}') == 1
    assert client.metric(
        'classifier_requests_total{route="/v1/classify_paper",status="200"}') == 2
    assert client.metric(
        'classifier_requests_total{route="/v1/classify_paper",status="422"}') == 1
    assert client.metric(
        'classifier_requests_total{route="/v1/classify_papers",status="200"}') == 1
    assert client.metric("classifier_batch_size_count") == 1
    assert client.metric("classifier_batch_size_sum") == 2
    assert client.metric("classifier_engine_duration_seconds_count") == 3
    assert client.metric('classifier_cancer_probability_bucket{le="0.2"}') == 1
    assert client.metric("classifier_cancer_probability_count") == 3
    assert client.metric("classifier_in_flight_requests") == 1  # this scrape itself
    assert client.metric("classifier_engines_healthy") == 1
    for kind in ("connect", "timeout", "http", "overload"):
        assert client.metric(f'classifier_engine_errors_total{{kind="{kind}"}}') == 0
    assert ('classifier_model_info{model="paper-classifier",model_version="base",'
            'prompt_version="cancer-yn') in client.get("/metrics").text


LONG = {"title": "Outcomes of a cohort study",
        "abstract": " ".join(["Patients were followed for several years after treatment."] * 30)
        + " The lesions were malignant melanomas."}


def test_unsure_capped_read_is_read_again_whole(make_client, standin: StandInEngine) -> None:
    # The capped read ends before "malignant melanomas"; the whole one reaches it.
    standin.script.cancer_probability = lambda prompt: 0.97 if "melanomas" in prompt else 0.4
    always = make_client(reread_below=1.0, cache_size=0)
    never = make_client(reread_below=0.0, cache_size=0)
    first = never.post("/v1/classify_paper", json=LONG).json()
    assert (first["truncated"], first["reread"], first["label"]) == (True, False, "non_cancer")
    assert first["cancer_probability"] == pytest.approx(0.4)
    assert standin.calls == 1
    again = always.post("/v1/classify_paper", json=LONG).json()
    # The whole abstract (~360 tokens) fits the second read's cap: nothing is cut.
    assert (again["truncated"], again["reread"], again["label"]) == (False, True, "cancer")
    assert again["cancer_probability"] == pytest.approx(0.97)
    assert standin.calls == 3
    short = always.post("/v1/classify_paper", json=PAPER).json()
    assert short["reread"] is False  # an uncut paper has nothing more to read
    assert standin.calls == 4
    assert always.metric("classifier_rereads_total") == 1
    assert never.metric("classifier_rereads_total") == 0


@pytest.mark.parametrize("paper", [
    {"title": "Control \x00\x07\x1b characters", "abstract": "Text with \t tabs \r\n and \x0b."},
    {"title": "肺癌患者的免疫治疗", "abstract": "这项研究评估了晚期肺癌患者的生存率。"},
    {"title": "Исследование опухолей", "abstract": "Анализ выживаемости пациентов 😀."},
    {"title": "دراسة السرطان", "abstract": "تحليل البقاء على قيد الحياة"},
])
def test_odd_scripts_and_control_characters_are_classified(client: GatewayClient,
                                                           standin: StandInEngine,
                                                           paper: dict) -> None:
    response = client.post("/v1/classify_paper", json=paper)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "cancer"
    assert paper["title"] in standin.bodies[0]["prompt"]


def test_fifty_thousand_character_abstract_is_truncated_not_rejected(
        make_client, standin: StandInEngine) -> None:
    client = make_client(reread_below=0.0)
    abstract = ("Tumour cells proliferate in the lung tissue of patients. " * 900)[:50_000]
    response = client.post("/v1/classify_paper", json={"title": "Long", "abstract": abstract})
    assert response.status_code == 200, response.text
    assert response.json()["truncated"] is True
    assert len(standin.bodies[0]["prompt"]) < 2_000  # capped in tokens, not sent whole


def test_the_models_calibration_is_applied(make_client, standin: StandInEngine,
                                           base_model_dir: Path, tmp_path: Path) -> None:
    """A model whose manifest carries a temperature and a threshold is read by them; the
    threshold setting overrides the manifest's."""
    from model_contract.manifest import Calibration, Manifest, PromptRef, write_manifest
    from model_contract.prompts import get_template

    model = tmp_path / "calibrated"
    model.mkdir()
    for item in base_model_dir.iterdir():
        (model / item.name).symlink_to(item)
    template = get_template()
    write_manifest(model, Manifest(
        name="paper-classifier", version="v-calibrated", base_model="embedded:x",
        prompt=PromptRef(template=template.name, version=template.version),
        calibration=Calibration(temperature=2.0, reread_below=0.8, fitted_on={"a": 10})))
    standin.script.cancer_probability = 0.9
    client = make_client(model_dir=model, cache_size=0)
    info = client.get("/v1/model").json()
    assert (info["temperature"], info["reread_below"]) == (2.0, 0.8)
    assert info["manifest"]["calibration"]["temperature"] == 2.0
    answer = client.post("/v1/classify_paper", json=PAPER).json()
    # sigmoid(ln(0.9 / 0.1) / 2) = 0.75: same label, honest probability.
    assert answer["label"] == "cancer"
    assert answer["probability"] == pytest.approx(0.75)
    assert answer["cancer_probability"] == pytest.approx(0.75)
    batch = client.post("/v1/classify_papers", json={"papers": [PAPER]}).json()
    assert batch["results"][0]["result"]["probability"] == pytest.approx(0.75)
    overridden = make_client(model_dir=model, reread_below=0.99).get("/v1/model").json()
    assert (overridden["temperature"], overridden["reread_below"]) == (2.0, 0.99)
