"""CSV and TSV (PubMed's "Send to: File, CSV" download, spreadsheet, pandas and R exports),
read row by row so that a malformed row costs that row, never a silently wrong paper.

The rule throughout: a row whose fields cannot be told apart for sure becomes a record with a
problem (an error row that names its lines), not a record read by guesswork.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.tables import resolve_columns, table_records
from preprocessing.readers.text import decode_text, unreadable

_DELIMITERS = ",\t;"
# csv's own limit is 131,072 characters; a notes or full-text column can be longer. The limit
# is the csv module's, process-wide; it still bounds what a quote left open can swallow.
FIELD_LIMIT = 16 * 1024 * 1024
_QUOTED = re.compile(r'"[^"]*"')


@dataclass
class _Row:
    line: int  # the first line
    last: int  # the last line (a quoted field may span lines)
    fields: list[str] | None  # None: the reader refused the row
    problem: str | None = None


class _Lines:
    """The text's physical lines (split as csv splits them: \\n, \\r\\n or \\r), counting
    how many have been read, so a row's first and last line numbers are known."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.taken = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken += 1
        return line


def read_delimited(raw: bytes, suffix: str, report: ReadReport,
                   explicit: Mapping[str, str] | None = None) -> Iterator[Record]:
    """CSV or TSV bytes. The delimiter is Excel's `sep=X` first line, else the one (comma,
    tab or semicolon) the header line holds most, else sniffed, else the `suffix`'s. These
    rows become records with a problem, and the rows after them are read: more fields than
    the header (an unquoted delimiter: shifted columns would classify the wrong text), fewer
    (an unquoted line break; a row beside it that could be its other half is a problem too),
    and text after a closing quote (`"Real-world" evidence`: quote such a field whole). A
    header one field short of every row is R's row names. A quote never closed, or a field
    over FIELD_LIMIT characters, would swallow the rest of the file: the rows before are kept
    and one record with a problem says where it began. Raises ValueError for an empty input
    or a header that cannot be read."""
    text = decode_text(raw, report)
    if not text.strip():
        raise ValueError("the input is empty")
    sep, text = _delimiter(text, suffix)
    header, rows = _read(text, sep)
    if sum(len(r.fields or ()) == len(header) + 1 for r in rows) > \
            sum(len(r.fields or ()) == len(header) for r in rows):
        header = ["", *header]  # R's write.table: row names have no header cell
    columns = resolve_columns(header, explicit)
    _mark_broken_rows(rows, len(header), sep)
    for position, row in enumerate(rows):
        if row.problem:
            yield unreadable(report, str(position), row.problem)
        else:
            named: dict[str, str] = {}
            for name, cell in zip(header, row.fields or (), strict=False):
                named.setdefault(name, cell)  # a repeated column name: the first wins
            yield from table_records([named], columns, report, position)


def _delimiter(text: str, suffix: str) -> tuple[str, str]:
    """The delimiter, and the text without Excel's `sep=` line."""
    first, *rest = re.split(r"\r\n|\r|\n", text.lstrip("\r\n"), maxsplit=1)
    if re.fullmatch(r"sep=[,\t;]", first):
        return first[4], "".join(rest)
    counts = {sep: _QUOTED.sub("", first).count(sep) for sep in _DELIMITERS}
    most = max(counts.values())
    if most and list(counts.values()).count(most) == 1:
        return max(counts, key=counts.__getitem__), text
    try:  # the sniffer's regex is slow on long quote-heavy text: a short sample
        return csv.Sniffer().sniff(text[:16384], delimiters=_DELIMITERS).delimiter, text
    except csv.Error:
        return ("\t" if suffix.lower() in {".tsv", ".tab"} else ","), text


def _read(text: str, sep: str) -> tuple[list[str], list[_Row]]:
    """The header and every row after it, blank lines left out."""
    lines = _Lines(text)
    # strict: a quote left open at the end is an error, not one field holding the rest.
    reader = csv.reader(lines, delimiter=sep, strict=True)
    header: list[str] = []
    rows: list[_Row] = []
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    while True:
        first = lines.taken + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            if not header:
                raise ValueError(f"the header (line {first}) cannot be read: {err}") from None
            runaway = "end of data" in str(err) or "field limit" in str(err)
            problem = _runaway(err, first) if runaway else _after_quote(err, first, lines.taken)
            rows.append(_Row(first, lines.taken, None, problem))
            if runaway:
                break  # reading on would start inside the field
            continue
        if not any(cell.strip() for cell in fields):
            continue
        if not header:
            header = fields
        else:
            rows.append(_Row(first, lines.taken, fields))
    return header, rows


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _runaway(err: csv.Error, first: int) -> str:
    what = (f"has a field over {FIELD_LIMIT:,} characters (a quote that is not closed?)"
            if "field limit" in str(err) else "opens a quoted field that is never closed")
    return (f"line {first} {what}, so the rest of the file would be one field; the rows from "
            "there on cannot be read")


def _after_quote(err: csv.Error, first: int, last: int) -> str:
    return (f"{_lines(first, last)}: text after a closing quote ({err}); a field that begins "
            'with a quote must be quoted whole ("""Real-world"" evidence")')


def _mark_broken_rows(rows: list[_Row], width: int, sep: str) -> None:
    """Set the problem of each row that is not `width` fields, then of each row beside a short
    one that may be the other half of a row cut by a line break."""
    for row in rows:
        if row.problem or row.fields is None or len(row.fields) == width:
            continue
        where, count = _lines(row.line, row.last), len(row.fields)
        if count > width:
            row.problem = (f"{where} has {count} fields but the header {width}: an unquoted "
                           f"{sep!r} in a field?")
        else:
            row.problem = (f"{where} has {count} of the header's {width} fields: a line break "
                           "inside an unquoted field? (write every field, empty ones too)")
    short = [i for i, row in enumerate(rows) if row.fields and len(row.fields) < width]
    for i in short:
        for near in rows[max(i - 1, 0):i] + rows[i + 1:i + 2]:
            if not near.problem and len(near.fields) + len(rows[i].fields) - 1 == width:
                near.problem = (f"{_lines(near.line, near.last)} may be cut by a line break: "
                                f"line {rows[i].line} beside it holds too few fields")
