"""What every reader yields: a `Record` per paper, and a `ReadReport` of what was read."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Record:
    """One paper of an input file. `id` is the input's own identifier (PMID where the format
    has one, else the record's ID, else its position); `problem` says why the record cannot be
    classified (it is kept, so it appears in the output as an error row, never lost)."""

    id: str
    title: str
    abstract: str
    pmid: str | None = None
    doi: str | None = None
    label: str | None = None
    problem: str | None = None


@dataclass
class ReadReport:
    """Filled while the records are read. `skipped` counts records not yielded, by reason (a
    PubMed update file's deleted citations); `encoding` is the text encoding used and
    `encoding_fallback` whether it was not UTF-8; `control_chars_removed` counts NUL and other
    control characters taken out of titles and abstracts."""

    format: str
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    encoding: str | None = None
    encoding_fallback: bool = False
    control_chars_removed: int = 0
    title_only: int = 0
    problems: int = 0

    def as_dict(self) -> dict:
        return {"format": self.format, "records": self.records, "skipped": dict(self.skipped),
                "encoding": self.encoding, "encoding_fallback": self.encoding_fallback,
                "control_chars_removed": self.control_chars_removed,
                "title_only": self.title_only, "problems": self.problems}


class DamagedInput(ValueError):
    """The file's bytes end or break where its compression says they should not. `sound`:
    the bytes read before are what the file holds (it was cut short, or bytes that are not
    gzip follow its end), so what was read can be kept where the format allows; False when
    they may be wrong (a failed CRC or length check, corrupt compressed data)."""

    def __init__(self, message: str, sound: bool = False) -> None:
        super().__init__(message)
        self.sound = sound


def gzip_damage(err: Exception, read: int) -> DamagedInput:
    """What a gzip or zlib error met after `read` decompressed bytes means (Python's gzip
    raises EOFError for a cut stream and "Not a gzipped file" for bytes after its end)."""
    sound = isinstance(err, EOFError) or str(err).startswith("Not a gzipped file")
    what = "cut short" if sound else "damaged: its text cannot be trusted"
    return DamagedInput(f"the compressed file is {what} ({err}; after {read} bytes)", sound)


class InputTooLarge(ValueError):
    """The input holds more bytes (once decompressed) than the reader was allowed to read, or
    than its copy may take of a disk."""


# What reading a cut or corrupted gzip stream raises (the standard library's gzip and zlib).
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
