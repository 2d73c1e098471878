"""Readers for the files people classify: PubMed XML (`.xml`, `.xml.gz`), MEDLINE text
(`.nbib`, `.txt`), RIS, CSV/TSV (PubMed's CSV download included), JSON Lines, Parquet, and the
assignment's folder layout. The format is recognised from the content, not the extension.

    records = read_records(Path("pubmed25n0001.xml.gz"))
    for record in records:        # Record: id, title, abstract, pmid, doi, label, problem
        ...
    records.report                # ReadReport: counts, skipped, encoding, control characters
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator, Mapping
from pathlib import Path

from preprocessing.readers.detect import FORMATS, detect_format, is_gzip
from preprocessing.readers.folder import read_folder
from preprocessing.readers.medline import read_medline
from preprocessing.readers.pubmed_xml import read_pubmed_xml
from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.ris import read_ris
from preprocessing.readers.tables import read_delimited, read_jsonl, read_parquet
from preprocessing.readers.text import decode, note_encoding

__all__ = ["FORMATS", "ReadReport", "Record", "RecordStream", "detect_format", "read_records"]


class RecordStream:
    """The records of one input, read lazily; `report` fills as they are read."""

    def __init__(self, path: Path, fmt: str, columns: Mapping[str, str] | None) -> None:
        self.path, self.format, self.columns = path, fmt, columns
        self.report = ReadReport(format=fmt)

    def __iter__(self) -> Iterator[Record]:
        path, report = self.path, self.report
        if self.format == "folder":
            yield from read_folder(path, report)
        elif self.format == "pubmed-xml":
            with (gzip.open(path) if is_gzip(path) else path.open("rb")) as stream:
                yield from read_pubmed_xml(stream, report)
        elif self.format in {"medline", "ris"}:
            raw = gzip.decompress(path.read_bytes()) if is_gzip(path) else path.read_bytes()
            text, encoding = decode(raw)
            note_encoding(report, encoding)
            reader = read_medline if self.format == "medline" else read_ris
            yield from reader(io.StringIO(text), report)
        elif self.format == "jsonl":
            yield from read_jsonl(path, report, self.columns)
        elif self.format == "parquet":
            yield from read_parquet(path, report, self.columns)
        else:
            yield from read_delimited(path, report, self.columns)


def read_records(path: Path, fmt: str | None = None,
                 columns: Mapping[str, str] | None = None) -> RecordStream:
    """The records of `path` (a file or a folder). `fmt` (one of FORMATS) overrides detection;
    `columns` maps fields to a table's column names. Raises FileNotFoundError for a missing
    path and ValueError for an unknown format or a table without title/abstract columns."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    chosen = fmt or detect_format(path)
    if chosen not in FORMATS:
        raise ValueError(f"unknown format {chosen!r}; known: {', '.join(FORMATS)}")
    return RecordStream(path, chosen, columns)
