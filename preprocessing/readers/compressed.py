"""A file's bytes as the readers take them: gzip looked through, bounded (a small `.gz`
cannot expand into gigabytes), and, for a gzip file cut short, trimmed to its last whole
record."""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from preprocessing.readers.records import GZIP_ERRORS, DamagedInput, InputTooLarge, gzip_damage

_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


class Bounded:
    """A binary stream that raises InputTooLarge past `limit` bytes (None: no limit), so that
    a small gzip file cannot expand into gigabytes (a decompression bomb)."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self.stream, self.limit, self.seen = stream, limit, 0

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, by `read1`: gzip's `read` drops what it decompressed in a call
        that hits a cut, and a cut file's last records are in that call."""
        try:
            data = self.stream.read1(size)
        except GZIP_ERRORS as err:
            raise gzip_damage(err, self.seen) from None
        self.seen += len(data)
        if self.limit is not None and self.seen > self.limit:
            raise InputTooLarge(f"more than {self.limit} bytes once decompressed")
        return data


def read_until_cut(stream: Bounded, upto: int | None = None) -> tuple[bytes, str | None]:
    """Every byte of `stream` (the first `upto` where given), and, for a gzip file cut short,
    the bytes read before the cut and why it broke (None when whole). Raises DamagedInput
    when the bytes cannot be trusted."""
    chunks: list[bytes] = []
    total, wanted = 0, float("inf") if upto is None else upto
    try:
        while total < wanted and (chunk := stream.read(int(min(wanted - total, 1 << 16)))):
            chunks.append(chunk)
            total += len(chunk)
    except DamagedInput as err:
        if not err.sound:
            raise
        return b"".join(chunks), str(err)
    return b"".join(chunks), None


# Where the last complete record of a cut text file ends, by format: a MEDLINE record where
# a blank line is followed by a tag line or where the next one's PMID line starts (a line of
# spaces inside an abstract is a paragraph break), a RIS record with its ER line, a BibTeX
# entry where the next one's "@" starts, and a table or JSON Lines row with its line (a cut
# inside a quoted cell that spans lines leaves an open quote the table reader reports). The
# record the cut falls in is never read, nor a BibTeX entry the cut falls just after, nor a
# table's last whole line: an unquoted line break in it would leave half a row looking whole.
_RECORD_END = {"medline": re.compile(rb"^(?=PMID- )|^[ \t\r]*\n(?=[A-Z0-9 ]{4}- )", re.M),
               "ris": re.compile(rb"^ER  -.*\n", re.M),
               "bibtex": re.compile(rb"^(?=@)", re.M)}
_LINE_END = re.compile(rb"\n")


def complete_records(raw: bytes, fmt: str) -> bytes:
    """`raw` up to the end of its last complete record in format `fmt` (b"" when none, and
    for text in UTF-16 or UTF-32, whose line ends are not these bytes)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return b""  # UTF-32-LE's byte-order mark begins with UTF-16-LE's
    # Old Mac files end lines with CR alone: found on a same-length view with LF.
    view = raw if b"\n" in raw else raw.replace(b"\r", b"\n")
    ends = [m.end() for m in _RECORD_END.get(fmt, _LINE_END).finditer(view)]
    if fmt == "csv":
        ends = ends[:-1]
    return raw[: ends[-1]] if ends else b""


@contextmanager
def open_bounded(path: Path, limit: int | None) -> Iterator[Bounded]:
    """The file's bytes, gzip looked through, bounded by `limit`."""
    with (gzip.open(path) if is_gzip(path) else path.open("rb")) as stream:
        yield Bounded(stream, limit)
