"""Bulk runs on real-world inputs: every record appears once, bad records become error rows
with the reason (never a crash), identifiers are carried, a changed input is refused on resume.
The gateway is the stand-in of test_bulk_retry (a real HTTP server in this process)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from inference.bulk import BulkResult, InputChanged
from tests.inference.test_bulk_retry import StandInGateway, classify_against
from tests.preprocessing.test_readers import BIBTEX, PUBMED_CSV, PUBMED_XML, RIS


def _run(gateway: StandInGateway, source: Path, out: Path) -> BulkResult:
    return classify_against(gateway, source, out, batch_size=2, concurrency=1)


def test_bad_records_are_error_rows_not_a_crash(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "ok", "title": "Fine", "abstract": "Text."}),
        '{"id": "sur", "title": "Bad \\udc80", "abstract": "Text."}',
        "{broken",
        json.dumps({"id": "nul", "title": "Ti\u0000tle", "abstract": "Text."}),
    ]))
    gateway = StandInGateway(lambda paper_id, n: 200)
    result = _run(gateway, source, tmp_path / "out.parquet")
    rows = result.table.to_pylist()
    assert [r["key"] for r in rows] == ["ok", "sur", "2", "nul"]
    assert set(gateway.asked) == {"ok", "nul"}  # the bad ones never reach the service
    errors = {r["key"]: (r["error_status"], r["error"]) for r in rows if r["error"]}
    assert errors["sur"][0] == 422 and "lone surrogate" in errors["sur"][1]
    assert errors["2"][0] == 422 and "not valid JSON" in errors["2"][1]
    assert result.report.control_chars_removed == 1
    assert "refused: 2" in result.summary() and "control characters removed: 1" in result.summary()


def test_pubmed_xml_identifiers_reach_the_output(tmp_path: Path) -> None:
    source = tmp_path / "pubmed26n0001.xml.gz"
    source.write_bytes(gzip.compress(PUBMED_XML.encode()))
    result = _run(StandInGateway(lambda paper_id, n: 200), source, tmp_path / "out.parquet")
    rows = result.table.to_pylist()
    assert [(r["pmid"], r["doi"]) for r in rows] == [
        ("1000001", "10.9999/example.1"), ("1000002", None), ("1000003", None)]
    assert "skipped: 2 deleted citation" in result.summary()


def test_bibtex_keys_and_pmids_reach_the_output(tmp_path: Path) -> None:
    source = tmp_path / "library.bib"
    source.write_text(BIBTEX)
    gateway = StandInGateway(lambda paper_id, n: 200)
    rows = _run(gateway, source, tmp_path / "out.parquet").table.to_pylist()
    assert [(r["id"], r["pmid"], r["error"] is None) for r in rows] == [
        ("smith2020", "6000001", True), ("zotero2021", "6000002", True),
        ("biblatex2022", "6000003", True), ("bibtex-line-18", None, False),
        ("smith2020", None, True), ("notitle", None, False)]
    assert sum(gateway.asked.values()) == 4  # the two error rows never reach the service


def test_excel_csv_is_classified_and_the_encoding_reported(tmp_path: Path) -> None:
    source = tmp_path / "excel.csv"
    source.write_bytes("Title,Abstract\nM\xe9n\xe9trier disease,Folds.\n".encode("cp1252"))
    result = _run(StandInGateway(lambda paper_id, n: 200), source, tmp_path / "out.parquet")
    assert result.table["label"].to_pylist() == ["cancer"]
    assert "csv, cp1252 (not UTF-8)" in result.summary()


def test_a_resumed_run_refuses_a_changed_input(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    source.write_text("".join(json.dumps({"id": f"p{i}", "title": "T", "abstract": "A"}) + "\n"
                              for i in range(4)))
    with pytest.raises(Exception, match="4 papers"):  # the service is down: parts stay
        _run(StandInGateway(lambda paper_id, n: 503), source, out)
    source.write_text(source.read_text() + json.dumps({"id": "new", "title": "T",
                                                       "abstract": "A"}) + "\n")
    with pytest.raises(InputChanged, match="the input changed since this run began"):
        _run(StandInGateway(lambda paper_id, n: 200), source, out)


def test_results_export_to_csv_and_ris_with_identifiers(tmp_path: Path) -> None:
    import pandas as pd
    import rispy

    from inference.exports import export_results

    source = tmp_path / "refs.ris"
    # A title a spreadsheet would run as a formula is written with an apostrophe before it.
    source.write_text(RIS.replace("TI  - Second", "TI  - =1+1 Second"))
    result = _run(StandInGateway(lambda paper_id, n: 422 if paper_id == "ref-2" else 200),
                  source, tmp_path / "out.parquet")
    csv = pd.read_csv(export_results(result.inputs, result.table, tmp_path / "r.csv"),
                      dtype=str, keep_default_na=False)
    assert list(csv["id"]) == ["4000001", "ref-2"] and list(csv["pmid"]) == ["4000001", ""]
    assert list(csv["label"]) == ["cancer", ""] and csv["error"][1] == "stand-in 422"
    assert csv["title"][0] == "First reference title"
    assert csv["title"][1].startswith("'=1+1 Second")
    entries = rispy.loads((export_results(result.inputs, result.table, tmp_path / "r.ris")
                           ).read_text())
    assert [e.get("accession_number") for e in entries] == ["4000001", None]
    assert entries[0]["keywords"] == ["paper-classifier:cancer"]
    assert "cancer probability 0.9000" in entries[0]["notes"][0]
    assert entries[1]["notes"] == ["paper-classifier: not classified: stand-in 422"]
    with pytest.raises(ValueError, match="export formats are .csv, .ris"):
        export_results(result.inputs, result.table, tmp_path / "r.xlsx")


def test_title_only_records_are_classified_and_flagged(tmp_path: Path) -> None:
    source = tmp_path / "csv-pubmed.csv"  # PubMed's CSV download has no abstracts
    source.write_text(PUBMED_CSV)
    gateway = StandInGateway(lambda paper_id, n: 200)
    result = _run(gateway, source, tmp_path / "out.parquet")
    assert result.table["abstract_missing"].to_pylist() == [True, True]
    assert result.table["error"].null_count == 2
    assert [p["abstract"] for p in gateway.papers.values()] == ["", ""]
    assert "classified: 2 (2 without an abstract)" in result.summary()
