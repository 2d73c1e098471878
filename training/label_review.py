"""Which misclassified test papers are questions about the label rather than misreadings.

A source's label is its own definition: OHSUMED's "cancer" is the MeSH category C04
(Neoplasms) its indexers gave the paper, who also read the full text and tagged tumour cell
lines, and each OHSUMED paper carries one category although many belong to several. So some
papers labelled cancer never name a neoplasm in their title or abstract, and some labelled
otherwise name one in their title. A reader of the title and abstract cannot tell these from
the text; the report counts them apart, so a recall target can be read against them.
"""

from __future__ import annotations

import re
from collections import defaultdict

from preprocessing.papers import Paper

# Stems of MeSH C04 (Neoplasms) headings and their common entry terms; "tumo" covers tumor and
# tumour. Deliberately broader than the keyword-rule baseline's two stems.
NEOPLASM_TERMS = re.compile(
    r"cancer|carcinom|tumo|neoplas|malignan|metasta|oncolog|lymphoma|leuk[a]?emi|sarcoma"
    r"|melanoma|glioma|blastoma|myeloma|adenoma|mesothelioma", re.IGNORECASE)


def names_neoplasm(text: str) -> bool:
    """True when `text` contains a stem of `NEOPLASM_TERMS`."""
    return NEOPLASM_TERMS.search(text) is not None


def _disputed(paper: Paper, prediction: dict) -> bool:
    """Misread, and the text sides with the model against the label."""
    if prediction["predicted"] == paper.label:
        return False
    if paper.label == "cancer":
        return not names_neoplasm(f"{paper.title} {paper.abstract}")
    return names_neoplasm(paper.title)


def label_review(papers: list[Paper], predictions: list[dict]) -> dict[str, dict]:
    """Per source: how the model reads the cancer papers that name a neoplasm in the title or
    abstract and those that name none, how many non-cancer papers name one in the title and
    are called cancer, and the misread papers where the text sides with the model (most
    confident first).

    `predictions` are the evaluation's, one per paper with `id`, `predicted` and `p_cancer`.
    Raises KeyError when a paper has no prediction."""
    by_id = {p["id"]: p for p in predictions}
    out: dict[str, dict] = defaultdict(lambda: {
        "cancer": {"n": 0, "named": 0, "named_found": 0, "unnamed_found": 0},
        "non_cancer": {"n": 0, "title_named": 0, "title_named_called_cancer": 0,
                       "false_positives": 0},
        "to_review": []})
    for paper in papers:
        pred, row = by_id[paper.id], out[paper.source]
        called = pred["predicted"] == "cancer"
        if paper.label == "cancer":
            named, counts = names_neoplasm(f"{paper.title} {paper.abstract}"), row["cancer"]
            counts["named"] += named
            counts["named_found" if named else "unnamed_found"] += called
        else:
            named, counts = names_neoplasm(paper.title), row["non_cancer"]
            counts["title_named"] += named
            counts["title_named_called_cancer"] += named and called
            counts["false_positives"] += called
        counts["n"] += 1
        if _disputed(paper, pred):
            row["to_review"].append({"id": paper.id, "label": paper.label,
                                     "predicted": pred["predicted"],
                                     "p_cancer": pred["p_cancer"], "title": paper.title})
    for row in out.values():
        row["to_review"].sort(key=lambda p: -abs(p["p_cancer"] - 0.5))
    return dict(out)

