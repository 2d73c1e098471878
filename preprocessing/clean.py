"""Cleaning: drop empties, deduplicate by id and by normalised text, flag label conflicts."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from preprocessing.papers import Paper

_SPACE_RE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, lower case, single spaces: two copies of one paper compare equal."""
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def paper_key(title: str, abstract: str) -> str:
    return normalise_text(title) + "\n" + normalise_text(abstract)


@dataclass
class CleanReport:
    kept: int = 0
    dropped_empty: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    duplicate_texts: list[str] = field(default_factory=list)
    conflicting_ids: list[str] = field(default_factory=list)


def clean_papers(papers: list[Paper]) -> tuple[list[Paper], CleanReport]:
    """Keep the first copy of each id and of each text; an id seen under both labels is
    dropped entirely (we cannot know which label is right) and reported."""
    report = CleanReport()
    labels_by_id: dict[str, set[str | None]] = {}
    for paper in papers:
        labels_by_id.setdefault(paper.id, set()).add(paper.label)
    report.conflicting_ids = sorted(i for i, labels in labels_by_id.items() if len(labels) > 1)
    conflicting = set(report.conflicting_ids)
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    kept = []
    for paper in papers:
        if not paper.title.strip() or not paper.abstract.strip():
            report.dropped_empty.append(paper.id)
        elif paper.id in conflicting:
            continue
        elif paper.id in seen_ids:
            report.duplicate_ids.append(paper.id)
        elif (key := paper_key(paper.title, paper.abstract)) in seen_texts:
            report.duplicate_texts.append(paper.id)
        else:
            seen_ids.add(paper.id)
            seen_texts.add(key)
            kept.append(paper)
    report.kept = len(kept)
    return kept, report
