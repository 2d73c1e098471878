"""The assignment's layout: a folder of `<ID:n>` / `Title:` / `Abstract:` text files, labelled
by their folder (`Cancer/`, `Non-Cancer/`) when it has one of those names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from preprocessing.papers import FOLDER_LABELS, PaperParseError, decode_bytes, parse_paper_text
from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish, unreadable


def read_folder(folder: Path, report: ReadReport) -> Iterator[Record]:
    """Every `*.txt` below `folder`, in path order; a file that is not a paper becomes a record
    with a problem (named by its file), not a lost input."""
    for file in sorted(folder.rglob("*.txt")):
        label = FOLDER_LABELS.get(file.parent.name)
        try:
            paper = parse_paper_text(decode_bytes(file.read_bytes()), label, str(file))
        except (PaperParseError, OSError) as err:
            yield unreadable(report, file.stem, f"{file.name}: {err}", label)
            continue
        yield finish(report, paper.id, paper.title, paper.abstract, label=label)
