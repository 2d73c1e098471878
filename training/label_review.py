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

# Stems of MeSH C04 (Neoplasms) headings and entry terms ("tumo": tumor, tumour), and any
# "-oma" word (carcinoma, hepatoma, insulinoma, meningioma...) but the listed ones that name no
# neoplasm. Deliberately broader than the keyword-rule baseline's two stems. The phrases
# that hold a stem but name no neoplasm (tumor necrosis factor, malignant hyperthermia...)
# are taken out first.
NOT_NEOPLASM_PHRASES = re.compile(
    r"tumou?r[\s-]+necrosis[\s-]+factor|leuka?emia[\s-]+inhibitory[\s-]+factor"
    r"|neuroleptic[\s-]+malignant"
    r"|malignant[\s-]+(?:hyperthermia|hyperpyrexia|hypertension|(?:external[\s-]+)?otitis)",
    re.IGNORECASE)
NEOPLASM_STEMS = re.compile(r"cancer|tumo|neoplas|malignan|metasta(?!bl)|oncolog|leuka?emi",
                            re.IGNORECASE)
OMA_WORD = re.compile(r"\b[a-z]{2,}om(?:a|as|ata)\b", re.IGNORECASE)
NOT_NEOPLASMS = frozenset({
    "aroma", "atheroma", "cephalhematoma", "cephalohematoma", "cholesteatoma", "chroma",
    "condyloma", "diploma", "endometrioma", "glaucoma", "granuloma", "haematoma", "hematoma",
    "leproma", "lipogranuloma", "lymphogranuloma", "mycetoma", "oklahoma", "rhinoscleroma",
    "scleroma", "scotoma", "seroma", "staphyloma", "stoma", "stroma",
    "thoma",  # Thomas, read as a plural
    "trachoma", "tuberculoma", "xanthogranuloma", "xanthoma", "zygoma"})


def names_neoplasm(text: str) -> bool:
    """True when `text` holds a neoplasm stem or an "-oma" word naming a neoplasm."""
    text = NOT_NEOPLASM_PHRASES.sub(" ", text)
    if NEOPLASM_STEMS.search(text):
        return True
    words = (re.sub(r"om(?:as|ata)$", "oma", w.lower()) for w in OMA_WORD.findall(text))
    return any(w not in NOT_NEOPLASMS for w in words)


def label_review(papers: list[Paper], predictions: list[dict]) -> dict[str, dict]:
    """Per source: how the model reads the cancer papers that name a neoplasm in the title or
    abstract and those that name none, how many non-cancer papers name one in the title and
    are called cancer, and the misread papers where the text sides with the model (most
    confident first).

    `predictions` are the evaluation's, one per paper with `id`, `predicted` and `p_cancer`.
    Returns {source: {"cancer": {n, named, named_found, unnamed_found}, "non_cancer": {n,
    title_named, title_named_called_cancer, false_positives}, "to_review": [{id, label,
    predicted, p_cancer, title}]}}. Raises KeyError when a paper has no prediction."""
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
        if called != (paper.label == "cancer") and called == named:  # the text sides with it
            row["to_review"].append({"id": paper.id, "label": paper.label,
                                     "predicted": pred["predicted"],
                                     "p_cancer": pred["p_cancer"], "title": paper.title})
    for row in out.values():
        row["to_review"].sort(key=lambda p: -abs(p["p_cancer"] - 0.5))
    return dict(out)
