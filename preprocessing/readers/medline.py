"""MEDLINE text (PubMed "Send to: File", format PubMed: `.nbib`, `.txt`), parsed by Biopython's
`Bio.Medline`. Tags follow NLM's MEDLINE/PubMed element descriptions: PMID, TI (title), BTI
(book title), AB (abstract), LID/AID (`10.xxxx/... [doi]`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from Bio import Medline

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish


def _doi(record: dict) -> str | None:
    for value in [record.get("LID", "")] + list(record.get("AID", [])):
        if value.endswith("[doi]"):
            return value[: -len("[doi]")].strip()
    return None


def _separated(stream: TextIO) -> Iterator[str]:
    """The lines of `stream` with a blank line before each `PMID- ` that lacks one: records
    pasted together without it would be read as one paper with every PMID."""
    after_blank = True
    for line in stream:
        if line.startswith("PMID-") and not after_blank:
            yield "\n"
        after_blank = not line.strip()
        yield line


def read_medline(stream: TextIO, report: ReadReport) -> Iterator[Record]:
    """Records of a MEDLINE text stream (streamed: one record in memory at a time)."""
    for position, record in enumerate(Medline.parse(_separated(stream))):
        pmid = record.get("PMID") or None
        title = record.get("TI") or record.get("BTI") or ""
        yield finish(report, pmid or str(position), title, record.get("AB", ""), pmid=pmid,
                     doi=_doi(record))
