"""RIS (reference managers and screening tools: Zotero, EndNote, Rayyan, ASReview), parsed by
`rispy` with its standard tag mapping: TI/T1 title, AB/N2 abstract, DO doi, ID the record's
identifier, AN accession number (a PMID in exports from PubMed-based tools)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TextIO

import rispy

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish

_PMID_NOTE = re.compile(r"\bPMID:\s*(\d+)")


def _pmid(entry: dict) -> str | None:
    accession = str(entry.get("accession_number", "")).strip()
    if accession.isdigit():
        return accession
    for note in entry.get("notes", []) + [entry.get("extra", "")]:
        if match := _PMID_NOTE.search(str(note)):
            return match.group(1)
    return None


_LAST_TAG = re.compile(r"^([A-Z][A-Z0-9])  -", re.MULTILINE)


def read_ris(stream: TextIO, report: ReadReport) -> Iterator[Record]:
    """Records of an RIS stream. rispy reads the whole file (RIS exports are thousands of
    records, not millions). A file cut before its last `ER` keeps that record. Raises
    ValueError for a file rispy cannot follow."""
    text = stream.read()
    tags = _LAST_TAG.findall(text)
    if tags and tags[-1] != "ER":
        text += "\nER  - \n"
    try:
        entries = rispy.loads(text, skip_unknown_tags=True)
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"the RIS file is malformed ({type(err).__name__}: {err}); check "
                         "that each record starts with TY and ends with ER") from None
    for position, entry in enumerate(entries):
        pmid = _pmid(entry)
        title = entry.get("title") or entry.get("primary_title") or ""
        abstract = entry.get("abstract") or entry.get("notes_abstract") or ""
        id_ = pmid or str(entry.get("id") or position)
        yield finish(report, id_, title, abstract, pmid=pmid, doi=entry.get("doi"))
