"""Text as the readers hand it on: decoded, control characters removed, lone surrogates found.

Decoding is `preprocessing.papers.decode` (a UTF-16/32 byte-order mark, else UTF-8, else per
line UTF-8, cp1252 or latin-1), the same the training data is read with; `decode_text` reports
the encodings used.
"""

from __future__ import annotations

import re

from preprocessing.papers import decode
from preprocessing.readers.records import ReadReport, Record

# C0 and C1 control characters except tab, newline and carriage return (whitespace, collapsed
# later), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def decode_text(raw: bytes, report: ReadReport) -> str:
    """`raw` decoded by `preprocessing.papers.decode`, the encoding noted in `report`."""
    text, report.encoding = decode(raw)
    # A guess, not what the file says it is: worth a look at the odd characters.
    report.encoding_fallback = report.encoding not in {"utf-8", "utf-16", "utf-32"}
    return text


def clean(text: str | None) -> tuple[str, int]:
    """`text` with control characters removed and whitespace collapsed; how many were removed."""
    if not text:
        return "", 0
    cleaned, removed = _CONTROL.subn("", text)
    return _SPACES.sub(" ", cleaned).strip(), removed


def lone_surrogate(text: str) -> str | None:
    """A description of the first lone surrogate in `text` (e.g. `U+D800 at character 12`),
    None when there is none. Such text cannot be encoded as UTF-8 and cannot reach a model."""
    match = _SURROGATE.search(text)
    return f"U+{ord(match.group()):04X} at character {match.start()}" if match else None


def escape_surrogates(text: str) -> str:
    """Lone surrogates written as `\\udc80`, so the text can be stored and shown."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unreadable(report: ReadReport, id_: str, problem: str, label: str | None = None) -> Record:
    """A record that could not be read at all (counted in `report`), kept with its problem so
    it appears in the output instead of being lost."""
    report.records += 1
    report.problems += 1
    return Record(id=id_, title="", abstract="", label=label, problem=problem)


def finish(report: ReadReport, id_: str, title: str | None, abstract: str | None,
           **fields: str | None) -> Record:
    """A `Record` from raw fields: cleaned, counted in `report`, and marked with a problem when
    it cannot be classified (no title and no abstract, or a lone surrogate)."""
    title, removed_t = clean(title)
    abstract, removed_a = clean(abstract)
    report.control_chars_removed += removed_t + removed_a
    report.records += 1
    problem = None
    for name, value in (("id", id_), ("title", title), ("abstract", abstract)):
        where = lone_surrogate(value)
        if where:
            problem = f"{name} holds a lone surrogate ({where}): not valid Unicode text"
            # Such text cannot be written anywhere (UTF-8, Parquet): keep the id, escaped.
            id_, title, abstract = escape_surrogates(id_), "", ""
            break
    if problem is None and not title and not abstract:
        problem = "the record has neither a title nor an abstract"
    if problem:
        report.problems += 1
    elif not abstract:
        report.title_only += 1
    return Record(id=id_, title=title, abstract=abstract, problem=problem, **fields)
