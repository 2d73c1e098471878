"""BibTeX (`.bib`): the export of Zotero, Mendeley, JabRef, EndNote and Google Scholar, read
with bibtexparser (v2). Each entry is a record: its citation key the id, `title` and
`abstract` with LaTeX (`{\\"o}`, `\\&`, `--`, protective braces) decoded to text, `doi`, and
the PMID from `pmid` (JabRef, Mendeley, Better BibTeX), from `eprint` when `eprinttype` is
`pubmed` (biblatex), or from a `PMID: n` line of `note`, `extra` or `annote` (Zotero).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import bibtexparser
from bibtexparser.library import Library
from bibtexparser.middlewares import LatexDecodingMiddleware, RemoveEnclosingMiddleware
from bibtexparser.model import Entry, ParsingFailedBlock

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish, unreadable

_PMID_NOTE = re.compile(r"\bPMID:?\s*(\d{1,9})\b", re.IGNORECASE)


def _decoded(entry: Entry) -> Entry | None:
    """`entry` as parse_string's middlewares leave a parsed one (enclosing braces or quotes
    removed, LaTeX decoded); None when that fails."""
    library = Library([entry])
    for middleware in (RemoveEnclosingMiddleware(), LatexDecodingMiddleware()):
        library = middleware.transform(library)
    return library.entries[0] if library.entries and not library.failed_blocks else None


def _pmid(fields: dict[str, str]) -> str | None:
    if fields.get("pmid", "").strip().isdigit():
        return fields["pmid"].strip()
    if fields.get("eprinttype", "").lower() == "pubmed" and fields.get("eprint", "").isdigit():
        return fields["eprint"]
    for name in ("note", "extra", "annote"):
        if found := _PMID_NOTE.search(fields.get(name, "")):
            return found.group(1)
    return None


def _record(entry: Entry, report: ReadReport) -> Record:
    fields = {field.key.lower(): str(field.value) for field in entry.fields}
    return finish(report, entry.key, fields.get("title"), fields.get("abstract"),
                  pmid=_pmid(fields), doi=fields.get("doi") or None)


def read_bibtex(text: str, report: ReadReport) -> Iterator[Record]:
    """Records of BibTeX `text`, in file order; `@string`, `@preamble` and `@comment` blocks
    are left out. An entry whose key repeats an earlier one's, or that names a field twice,
    is still read; an entry bibtexparser cannot parse (an unclosed brace) becomes a record
    with a problem naming its line, and the entries after it are read."""
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    for block in library.blocks:
        if isinstance(block, Entry):
            yield _record(block, report)
        elif isinstance(block, ParsingFailedBlock):
            kept = getattr(block, "ignore_error_block", None)
            entry = _decoded(kept) if isinstance(kept, Entry) else None
            if entry is not None:
                yield _record(entry, report)
            else:
                line = (block.start_line or 0) + 1  # bibtexparser counts from 0
                why = getattr(block.error, "abort_reason", None) or str(block.error)
                yield unreadable(report, f"bibtex-line-{line}", f"the BibTeX entry at line "
                                 f"{line} cannot be read: {why.strip()}")
