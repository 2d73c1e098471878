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

import io
from collections.abc import Iterator, Mapping
from pathlib import Path

from preprocessing.readers.bibtex import read_bibtex
from preprocessing.readers.compressed import complete_records, open_bounded, read_until_cut
from preprocessing.readers.delimited import read_delimited
from preprocessing.readers.detect import FORMATS, detect_format
from preprocessing.readers.folder import (
    TABLE_SUFFIXES,
    folder_files,
    is_paper_file,
    read_paper_file,
)
from preprocessing.readers.medline import read_medline
from preprocessing.readers.pubmed_xml import read_pubmed_xml
from preprocessing.readers.records import (
    DamagedInput,
    InputTooLarge,
    ReadReport,
    Record,
)
from preprocessing.readers.ris import read_ris
from preprocessing.readers.streams import as_file, is_stream
from preprocessing.readers.tables import read_jsonl, read_parquet
from preprocessing.readers.text import decode_text, unreadable

__all__ = ["FORMATS", "InputTooLarge", "ReadReport", "Record", "RecordStream", "as_file",
           "detect_format", "is_stream", "read_records"]


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
            with open_bounded(path, self.max_bytes) as stream:
                yield from read_pubmed_xml(stream, report)
        else:
            with open_bounded(path, self.max_bytes) as stream:
                raw, cut = read_until_cut(stream)
            if cut is None:
                yield from self._text_records(raw)
                return
            complete = complete_records(raw, self.format)
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
