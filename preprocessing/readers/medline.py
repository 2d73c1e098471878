"""MEDLINE text (PubMed "Send to: File", format PubMed: `.nbib`, `.txt`), parsed by Biopython's
`Bio.Medline`. Tags follow NLM's MEDLINE/PubMed element descriptions: PMID, TI (title), BTI
(book title), AB (abstract), LID/AID (`10.xxxx/... [doi]`)."""

from __future__ import annotations

import re
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


# A MEDLINE tag line: the tag padded to four characters, then "- " (NLM's MEDLINE display).
_TAG_LINE = re.compile(r"^[A-Z0-9 ]{4}- ")


def _separated(stream: TextIO) -> Iterator[str]:
    """The lines of `stream` as Bio.Medline needs them: a blank line before each `PMID- `
    that lacks one (records pasted together without it would be read as one paper with every
    PMID), lines of spaces before a tag line made blank (Bio.Medline separates records only
    at an empty line), and those before a continuation line dropped (a paragraph break inside
    an abstract, as in NCBI Bookshelf records: made blank, it split the record there)."""
    first, blank = True, False
    for line in stream:
        if not line.strip():
            blank = True
            continue
        if not _TAG_LINE.match(line) and not line[0].isspace():
            line = "      " + line  # a wrapped line at column 0 ("PMID-based ...") continues
        if not line[0].isspace() and (blank or line.startswith("PMID- ")) and not first:
            yield "\n"
        first, blank = False, False
        yield line


def _field(record: dict, tag: str) -> str:
    """A tag's text; Bio.Medline gives some tags (BTI, TI in a few exports) as a list."""
    value = record.get(tag) or ""
    return " ".join(value) if isinstance(value, list) else value


def read_medline(stream: TextIO, report: ReadReport) -> Iterator[Record]:
    """Records of a MEDLINE text stream (streamed: one record in memory at a time). Raises
    ValueError where Bio.Medline meets an indented line before any tag (its KeyError)."""
    position = 0
    try:
        for position, record in enumerate(Medline.parse(_separated(stream)), 1):
            pmid = _field(record, "PMID") or None
            title = _field(record, "TI") or _field(record, "BTI")
            yield finish(report, pmid or str(position - 1), title, _field(record, "AB"),
                         pmid=pmid, doi=_doi(record))
    except KeyError:
        raise ValueError(f"MEDLINE record {position + 1} starts with an indented line, not a "
                         "tag line (`PMID- ...`): the text from there on cannot be read") from None
