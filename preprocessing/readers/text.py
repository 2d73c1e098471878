"""Text as the readers hand it on: decoded, control characters removed, lone surrogates found.

Decoding follows one stated order: UTF-8 (with or without a byte-order mark), then cp1252 (what
Excel on Windows writes), then latin-1, which never fails. The encoding used is reported.
"""

from __future__ import annotations

import re

from preprocessing.readers.records import ReadReport, Record

FALLBACK_ENCODINGS = ("cp1252", "latin-1")
# C0 and C1 control characters except tab, newline and carriage return (whitespace, collapsed
# later), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def decode(raw: bytes) -> tuple[str, str]:
    """The text and the encoding that decoded it (`utf-8`, `cp1252` or `latin-1`)."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding in FALLBACK_ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def note_encoding(report: ReadReport, encoding: str) -> None:
    report.encoding = encoding
    report.encoding_fallback = encoding != "utf-8"


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
