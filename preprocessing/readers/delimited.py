"""CSV and TSV (PubMed's "Send to: File, CSV" download, spreadsheet and script exports), read
row by row so that one malformed row costs that row, not the file or the rows after it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.tables import resolve_columns, table_records
from preprocessing.readers.text import decode_text, unreadable

_DELIMITERS = ",\t;"


class _Lines:
    """The text's physical lines (csv's own line splitting: \\n, \\r\\n or \\r), keeping
    those the current row took, so a row the strict reader refuses can be read again."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


def read_delimited(raw: bytes, suffix: str, report: ReadReport,
                   explicit: Mapping[str, str] | None = None) -> Iterator[Record]:
    """CSV or TSV bytes; the delimiter is sniffed (comma, tab or semicolon), else the header
    line's most frequent one, else taken from the file's `suffix`. A row that cannot be read
    as the header names its fields becomes a record with a problem and the rows after it are
    read: more fields than the header (an unquoted delimiter: shifted columns would classify
    the wrong text), too few to reach the title or abstract column (a line break inside an
    unquoted field; a row may leave out empty cells at its end). Text after a closing quote
    (`"Real-world" evidence`) is read as the lenient csv reader reads it. A quote never
    closed, or a field over `csv.field_size_limit()` (131,072 characters: a quote left open,
    most likely), would swallow the rest of the file: the rows before are kept and one record
    with a problem says where it began. Raises ValueError for an empty input or a header that
    cannot be read."""
    text = decode_text(raw, report)
    if not text.strip():
        raise ValueError("the input is empty")
    sep = _delimiter(text, suffix)
    lines = _Lines(text)
    # strict: a quote left open at the end of the file is an error, not one field holding the
    # rest of the file.
    reader = csv.reader(lines, delimiter=sep, strict=True)
    try:
        header = next(reader)
    except csv.Error as err:
        raise ValueError(f"the header line of the table cannot be read: {err}") from None
    columns = resolve_columns(header, explicit)
    needed = max(header.index(columns[f]) for f in ("title", "abstract") if f in columns) + 1
    rows = _rows(reader, lines, sep, first=len(lines.taken) + 1)
    for position, (line, row) in enumerate(rows):
        problem = row if isinstance(row, str) else _row_problem(row, len(header), needed,
                                                                line, sep)
        if problem:
            yield unreadable(report, str(position), problem)
        else:
            named: dict[str, str] = {}
            for name, cell in zip(header, row, strict=False):
                named.setdefault(name, cell)  # a repeated column name: the first wins
            yield from table_records([named], columns, report, position)


def _delimiter(text: str, suffix: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    header = text.lstrip().partition("\n")[0]
    counts = {sep: header.count(sep) for sep in _DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    if counts[best] and list(counts.values()).count(counts[best]) == 1:
        return best
    return "\t" if suffix.lower() in {".tsv", ".tab"} else ","


def _rows(reader: Iterator[list[str]], lines: _Lines, sep: str, first: int
          ) -> Iterator[tuple[int, list[str] | str]]:
    """(first line number, fields) per row, blank lines left out; a row that cannot be read
    comes as (line, why). A quote open at the end of the file, or a field over the limit,
    ends the rows: reading on would start inside that field. `first`: the first row's line
    number."""
    line = first
    while True:
        lines.taken.clear()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "expected after" not in str(err):
                yield line, _runaway(err, line)
                return
            again = list(csv.reader(lines.taken, delimiter=sep))  # lenient: `"a" b` -> `a b`
            row = again[0] if len(again) == 1 else f"line {line} cannot be read ({err})"
        if isinstance(row, str) or any(cell.strip() for cell in row):
            yield line, row
        line += len(lines.taken)


def _runaway(err: csv.Error, line: int) -> str:
    what = (f"has a field over {csv.field_size_limit():,} characters (a quote that is not "
            "closed?)" if "field limit" in str(err) else "opens a quoted field that is never "
            "closed")
    return (f"line {line} {what}, so the rest of the file would be one field; the rows from "
            "there on cannot be read")


def _row_problem(row: list[str], width: int, needed: int, line: int, sep: str) -> str | None:
    """Why `row` cannot be read as the header's `width` fields, the title or abstract column
    being among the first `needed`; None when it can."""
    if len(row) > width:
        return (f"line {line} has {len(row)} fields but the header {width}: an unquoted "
                f"{sep!r} in a field?")
    if len(row) < needed:
        fields = f"{len(row)} field" + "s" * (len(row) != 1)
        return (f"line {line} has {fields}, too few to reach the header's title or abstract "
                "column: a line break inside an unquoted field?")
    return None
