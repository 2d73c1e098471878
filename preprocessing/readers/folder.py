"""Folders: the assignment's layout (`<ID:n>` / `Title:` / `Abstract:` text files, labelled by
their folder, `Cancer/` or `Non-Cancer/`, when it has one of those names), and any folder of
exports (PubMed's baseline `.xml.gz` files, `.nbib`, `.ris`, tables), each file read by its own
format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from preprocessing.papers import FOLDER_LABELS, PaperParseError, decode_bytes, parse_paper_text
from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish, unreadable

# Suffixes read as tables when nothing in the content says otherwise (a folder's README.md or
# .DS_Store is not a table of papers).
TABLE_SUFFIXES = {".csv", ".tsv", ".tab"}


def folder_files(folder: Path) -> list[Path]:
    """Every regular file below `folder` in path order, once each (a second link to a file
    already listed is left out), hidden files and folders left out."""
    seen: set[Path] = set()
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".")
                                     for part in path.relative_to(folder).parts):
            continue
        if (real := path.resolve()) not in seen:
            seen.add(real)
            files.append(path)
    return files


def is_paper_file(file: Path) -> bool:
    """A `.txt` file of the assignment's layout (it begins `<ID:`)."""
    if file.suffix.lower() != ".txt":
        return False
    with file.open("rb") as f:
        return f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<ID:")


def read_paper_file(file: Path, report: ReadReport) -> Iterator[Record]:
    """The one paper of `file`; a file that is not one becomes a record with a problem (named
    by its file), not a lost input."""
    label = FOLDER_LABELS.get(file.parent.name)
    try:
        paper = parse_paper_text(decode_bytes(file.read_bytes()), label, str(file))
    except (PaperParseError, OSError) as err:
        yield unreadable(report, file.stem, f"{file.name}: {err}", label)
        return
    yield finish(report, paper.id, paper.title, paper.abstract, label=label)
