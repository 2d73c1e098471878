"""Tables: CSV/TSV (PubMed's "Send to: File, CSV" download included), JSON Lines and Parquet.

Columns are found by name in any capitalisation and spacing (`Title`, `ABSTRACT`, `pmid`,
`Article Title`), or named explicitly (`{"title": "Headline"}`). PubMed's CSV has `PMID`,
`Title` and `DOI` but no abstract: its records are title-only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import decode_text, finish, unreadable

FIELDS = ("id", "title", "abstract", "pmid", "doi", "label")
# Accepted column names per field, compared without case, spaces, underscores or hyphens.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "key", "recordid"),
    "title": ("title", "articletitle", "ti", "primarytitle"),
    "abstract": ("abstract", "ab", "abstracttext", "abstractnote"),  # Zotero: Abstract Note
    "pmid": ("pmid", "pubmedid"),
    "doi": ("doi",),
    "label": ("label",),
}


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve_columns(columns: Iterable[str], explicit: Mapping[str, str] | None = None
                    ) -> dict[str, str]:
    """Field -> the table's column for it. Raises ValueError when a named column is absent or
    the table has neither a title nor an abstract column (the message lists the columns)."""
    columns = list(columns)
    by_norm: dict[str, str] = {}
    for name in columns:  # `TITLE` and `Title`: the first wins, as for a repeated name
        by_norm.setdefault(_norm(name), name)
    found: dict[str, str] = {}
    for field, column in (explicit or {}).items():
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r} in the column mapping; fields: {FIELDS}")
        if column not in columns:
            raise ValueError(f"no column {column!r}; the columns are {columns}")
        found[field] = column
    for field, aliases in ALIASES.items():
        if field not in found:
            match = next((by_norm[a] for a in aliases if a in by_norm), None)
            if match is not None:
                found[field] = match
    if "title" not in found and "abstract" not in found:
        raise ValueError(f"no title or abstract column among {columns}; name them with a "
                         "column mapping (--column title=Headline --column abstract=Summary)")
    return found


def _value(row: Mapping[str, Any], column: str | None) -> str | None:
    if column is None:
        return None
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).strip() or None


def table_records(rows: Iterable[Mapping[str, Any]], columns: dict[str, str],
                  report: ReadReport, start: int = 0) -> Iterator[Record]:
    for position, row in enumerate(rows, start):
        pmid = _value(row, columns.get("pmid"))
        id_ = _value(row, columns.get("id")) or pmid or str(position)
        yield finish(report, id_, _value(row, columns.get("title")),
                     _value(row, columns.get("abstract")), pmid=pmid,
                     doi=_value(row, columns.get("doi")), label=_value(row, columns.get("label")))


def read_jsonl(raw: bytes, report: ReadReport, explicit: Mapping[str, str] | None = None
               ) -> Iterator[Record]:
    """JSON Lines, one object per line; a line that is not a JSON object becomes a record with
    a problem (kept in the output), not a crash."""
    text = decode_text(raw, report)
    # Split at newlines only: U+2028 and U+0085 are valid inside a JSON string.
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    rows: list[dict] = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            row = {"__problem__": f"line {number} is not valid JSON: {err.msg}"}
        if not isinstance(row, dict):
            row = {"__problem__": f"line {number} is not a JSON object"}
        rows.append(row)
    keys = {k for row in rows for k in row if k != "__problem__"}
    columns = resolve_columns(sorted(keys), explicit)
    for position, row in enumerate(rows):
        if "__problem__" in row:
            yield unreadable(report, str(position), row["__problem__"])
        else:
            yield from table_records([row], columns, report, start=position)


def read_parquet(path: Path, report: ReadReport, explicit: Mapping[str, str] | None = None
                 ) -> Iterator[Record]:
    frame = pd.read_parquet(path)
    columns = resolve_columns(frame.columns, explicit)
    yield from table_records(frame.to_dict("records"), columns, report)
