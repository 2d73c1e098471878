"""Readers for the files people classify: PubMed XML (`.xml`, `.xml.gz`), MEDLINE text
(`.nbib`, `.txt`), RIS, BibTeX (`.bib`), CSV/TSV (PubMed's CSV download included), JSON
Lines, Parquet, and the assignment's folder layout. The format is recognised from the
content, not the extension.

    records = read_records(Path("pubmed25n0001.xml.gz"))
    for record in records:        # Record: id, title, abstract, pmid, doi, label, problem
        ...
    records.report                # ReadReport: counts, skipped, encoding, control characters
"""

from __future__ import annotations

import codecs
import gzip
import io
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from preprocessing.readers.bibtex import read_bibtex
from preprocessing.readers.delimited import read_delimited
from preprocessing.readers.detect import FORMATS, detect_format, is_gzip
from preprocessing.readers.folder import (
    TABLE_SUFFIXES,
    folder_files,
    is_paper_file,
    read_paper_file,
)
from preprocessing.readers.medline import read_medline
from preprocessing.readers.pubmed_xml import read_pubmed_xml
from preprocessing.readers.records import (
    GZIP_ERRORS,
    DamagedInput,
    InputTooLarge,
    ReadReport,
    Record,
    gzip_damage,
)
from preprocessing.readers.ris import read_ris
from preprocessing.readers.streams import as_file, is_stream
from preprocessing.readers.tables import read_jsonl, read_parquet
from preprocessing.readers.text import decode_text, unreadable

__all__ = ["FORMATS", "InputTooLarge", "ReadReport", "Record", "RecordStream", "as_file",
           "detect_format", "is_stream", "read_records"]


class _Bounded:
    """A binary stream that raises InputTooLarge past `limit` bytes (None: no limit), so that
    a small gzip file cannot expand into gigabytes (a decompression bomb)."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self.stream, self.limit, self.seen = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all when negative). A positive size is served with `read1`
        where the stream has it: gzip's `read` drops what it decompressed in a call that hits
        a cut, and a cut file's last records are in that call."""
        read = self.stream.read if size < 0 else getattr(self.stream, "read1", self.stream.read)
        if self.limit is not None and size < 0:
            size = self.limit - self.seen + 1
        try:
            data = read(size)
        except GZIP_ERRORS as err:
            raise gzip_damage(err, self.seen) from None
        self.seen += len(data)
        if self.limit is not None and self.seen > self.limit:
            raise InputTooLarge(f"more than {self.limit} bytes once decompressed")
        return data


def _read_until_cut(stream: _Bounded) -> tuple[bytes, str | None]:
    """Every byte of `stream`, and, for a gzip file cut short, the bytes read before the cut
    and why it broke (None when whole). Raises DamagedInput when the bytes cannot be trusted."""
    chunks: list[bytes] = []
    try:
        while chunk := stream.read(1 << 16):
            chunks.append(chunk)
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


def _complete_records(raw: bytes, fmt: str) -> bytes:
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
def _open(path: Path, limit: int | None) -> Iterator[_Bounded]:
    """The file's bytes, gzip looked through, bounded by `limit`."""
    with (gzip.open(path) if is_gzip(path) else path.open("rb")) as stream:
        yield _Bounded(stream, limit)


class RecordStream:
    """The records of one input, read lazily; `report` fills as they are read."""

    def __init__(self, path: Path, fmt: str, columns: Mapping[str, str] | None,
                 max_bytes: int | None, report: ReadReport | None = None) -> None:
        self.path, self.format, self.columns, self.max_bytes = path, fmt, columns, max_bytes
        self.report = report or ReadReport(format=fmt)

    def __iter__(self) -> Iterator[Record]:
        path, report = self.path, self.report
        if self.format == "folder":
            yield from self._folder_records()
        elif self.format == "parquet":
            yield from read_parquet(path, report, self.columns)
        elif self.format == "pubmed-xml":
            with _open(path, self.max_bytes) as stream:
                yield from read_pubmed_xml(stream, report)
        else:
            with _open(path, self.max_bytes) as stream:
                raw, cut = _read_until_cut(stream)
            if cut is None:
                yield from self._text_records(raw)
                return
            complete = _complete_records(raw, self.format)
            if not complete.strip():
                raise DamagedInput(f"{cut}: no record could be read")
            yield from self._text_records(complete)
            yield unreadable(self.report, path.name, f"{path.name}: {cut}; the records from "
                             f"byte {len(complete)} on (once decompressed) cannot be read")

    def _folder_records(self) -> Iterator[Record]:
        """Each file of the folder by its own format, into this stream's one report. A file
        that holds no papers by its content or name (a README, an image) is counted as
        skipped; one that cannot be read (no permission, damaged, a table without a title
        column) becomes a record with a problem naming it, and the other files are read."""
        for file in folder_files(self.path):
            try:
                yield from self._folder_file(file)
            except (OSError, ValueError) as err:
                yield unreadable(self.report, file.name, f"{file.name}: {err}")

    def _folder_file(self, file: Path) -> Iterator[Record]:
        if is_paper_file(file):
            yield from read_paper_file(file, self.report)
            return
        fmt = detect_format(file)
        if fmt == "csv" and file.suffix.lower() == ".txt":
            yield from read_paper_file(file, self.report)  # says why it is not a paper
        elif fmt == "csv" and Path(file.name.lower().removesuffix(".gz")).suffix \
                not in TABLE_SUFFIXES:
            self.report.skipped["file that is not a paper export"] += 1
        else:
            before = (self.report.records, sum(self.report.skipped.values()))
            yield from RecordStream(file, fmt, self.columns, self.max_bytes, self.report)
            if (self.report.records, sum(self.report.skipped.values())) == before:
                self.report.skipped["file that is not a paper export"] += 1  # e.g. HTML

    def _text_records(self, raw: bytes) -> Iterator[Record]:
        if self.format == "bibtex":
            yield from read_bibtex(decode_text(raw, self.report), self.report)
        elif self.format == "jsonl":
            yield from read_jsonl(raw, self.report, self.columns)
        elif self.format == "csv":
            suffix = Path(self.path.name.removesuffix(".gz")).suffix
            yield from read_delimited(raw, suffix, self.report, self.columns)
        else:
            # Old Mac files end lines with CR alone; both tag formats are read line by line.
            text = decode_text(raw, self.report).replace("\r\n", "\n").replace("\r", "\n")
            reader = read_medline if self.format == "medline" else read_ris
            yield from reader(io.StringIO(text), self.report)


def read_records(path: Path, fmt: str | None = None, columns: Mapping[str, str] | None = None,
                 max_bytes: int | None = None) -> RecordStream:
    """The records of `path` (a file or a folder; gzip is looked through). `fmt` (one of
    FORMATS) overrides detection; `columns` maps fields to a table's column names; `max_bytes`
    bounds what a file may expand to. Raises FileNotFoundError for a missing path, ValueError
    for an unknown format, a table without title/abstract columns or a pipe (`as_file` copies
    one), and InputTooLarge (while reading) past `max_bytes`."""
    if is_stream(path):  # read twice (format, then records), a pipe would hang or lose bytes
        raise ValueError(f"{path} is standard input, a pipe or a device, not a file: copy it "
                         "first (preprocessing.readers.as_file)")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() and fmt not in (None, "folder"):
        raise ValueError(f"{path} is a folder: its files are recognised one by one, so a "
                         "format can only be given for a file")
    chosen = fmt or detect_format(path)
    if chosen not in FORMATS:
        raise ValueError(f"unknown format {chosen!r}; known: {', '.join(FORMATS)}")
    return RecordStream(path, chosen, columns, max_bytes)
