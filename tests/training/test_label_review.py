"""Counting the misread papers whose text sides with the model, and how the report shows them."""

from __future__ import annotations

import pytest

from preprocessing.papers import Paper
from training.label_review import label_review, names_neoplasm
from training.report import label_review_sections


def _paper(pid: str, title: str, abstract: str, label: str, source: str = "ohsumed") -> Paper:
    return Paper(pid, title, abstract, label, source)


PAPERS = [
    _paper("a", "Adjuvant therapy of colon carcinoma", "Patients were treated.", "cancer"),
    _paper("b", "Growth of rotaviruses in Hep G2 cells", "A liver cell line.", "cancer"),
    _paper("c", "Morphine clearance in six patients", "No gut wall metabolism.", "cancer"),
    _paper("d", "Trends in lung cancer incidence", "Rates rose.", "non_cancer"),
    _paper("e", "Asthma in children", "Rates of melanoma rose too.", "non_cancer"),
    _paper("f", "Sepsis after surgery", "Antibiotics.", "non_cancer", "assignment"),
]
CALLS = {"a": ("cancer", 0.97), "b": ("non_cancer", 0.02), "c": ("cancer", 0.6),
         "d": ("cancer", 0.99), "e": ("cancer", 0.7), "f": ("non_cancer", 0.1)}
PREDICTIONS = [{"id": k, "predicted": v[0], "p_cancer": v[1]} for k, v in CALLS.items()]


def test_neoplasm_terms_cover_c04_stems_and_spare_ordinary_words() -> None:
    for text in ("Hodgkin LYMPHOMA", "tumour suppressor", "acute leukaemia", "metastatic",
                 "pituitary adenoma", "neuroblastoma", "a rat hepatoma cDNA library",
                 "patients with an insulinoma", "multiple meningiomas", "teratomata"):
        assert names_neoplasm(text), text
    for text in ("rotavirus in a liver cell line", "asthma", "hematoma after surgery",
                 "open-angle glaucoma", "tuberculous granulomas", "bone marrow stroma", "coma"):
        assert not names_neoplasm(text), text
    # Phrases that hold a stem and words read as "-oma"s but name no neoplasm.
    for text in ("Tumor necrosis factor-alpha in host defense", "tumour-necrosis-factor",
                 "leukemia inhibitory factor", "malignant hyperthermia", "malignant hyperpyrexia",
                 "neuroleptic malignant syndrome", "malignant hypertension",
                 "malignant external otitis", "a metastable state", "the Thomas procedure",
                 "University of Oklahoma", "fractures of the zygoma", "neonatal cephalhematoma",
                 "a cephalohematoma", "lymphogranuloma venereum", "a lipogranuloma",
                 "juvenile xanthogranuloma", "rhinoscleroma", "a leproma", "chroma subsampling"):
        assert not names_neoplasm(text), text
    # The phrases are taken out, not the rest of the text.
    assert names_neoplasm("tumor necrosis factor in metastatic melanoma")
    assert names_neoplasm("malignant hyperthermia and malignant lymphoma")


def test_counts_per_source_and_the_papers_to_review() -> None:
    review = label_review(PAPERS, PREDICTIONS)
    ohsumed = review["ohsumed"]
    assert ohsumed["cancer"] == {"n": 3, "named": 1, "named_found": 1, "unnamed_found": 1}
    # The abstract's melanoma does not count for a non-cancer paper: only its title does.
    assert ohsumed["non_cancer"] == {"n": 2, "title_named": 1, "title_named_called_cancer": 1,
                                     "false_positives": 2}
    # b: labelled cancer, names none, missed; d: labelled otherwise, title names one, called
    # cancer; most confident first. e is a false positive the text does not explain.
    assert [p["id"] for p in ohsumed["to_review"]] == ["d", "b"]
    assert ohsumed["to_review"][0]["title"] == "Trends in lung cancer incidence"
    assert review["assignment"]["to_review"] == []
    assert review["assignment"]["non_cancer"]["n"] == 1


def test_a_paper_without_a_prediction_is_an_error() -> None:
    with pytest.raises(KeyError):
        label_review(PAPERS, PREDICTIONS[:-1])


def test_the_report_shows_one_table_and_a_list_per_source() -> None:
    sections = label_review_sections(label_review(PAPERS, PREDICTIONS), limit=1)
    table = next(s for s in sections if s.startswith("| source |"))
    assert "| ohsumed | 1 of 1 (100.0%) | 1 of 2 (50.0%) | 1 of 1 (100.0%) | 2 |" in table
    assert "| assignment | - | - | - | 0 |" in table
    assert "### ohsumed: 2 to review" in sections
    listed = sections[sections.index("### ohsumed: 2 to review") + 1]
    assert "| d | non_cancer | 0.990 | Trends in lung cancer incidence |" in listed
    assert "| b |" not in listed  # cut at the limit
    assert label_review_sections({}) == []
    long = [_paper("z", "Lymphoma | B " + "x" * 200, "", "non_cancer")]
    long_calls = [{"id": "z", "predicted": "cancer", "p_cancer": 0.9}]
    cell = label_review_sections(label_review(long, long_calls))[-1].splitlines()[-1]
    assert "Lymphoma / B" in cell and cell.endswith("… |") and len(cell) < 140
