"""Parse the assignment's paper files: `<ID:n>`, `Title: ...`, `Abstract: ...` (may span lines)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

# Folder name -> label. The label strings are the product's vocabulary everywhere.
FOLDER_LABELS = {"Cancer": "cancer", "Non-Cancer": "non_cancer"}
LABELS = ("cancer", "non_cancer")

_ID_RE = re.compile(r"^\s*<ID:\s*([^>]+?)\s*>\s*$")


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    abstract: str
    label: str | None = None
    source: str = ""


@dataclass(frozen=True)
class ParseFailure:
    path: Path
    reason: str


class PaperParseError(ValueError):
    """A file that is not a paper; the message says why."""


# Byte-order marks of the wide encodings a file announces itself in (format detection reads
# them too); UTF-32 LE's begins with UTF-16 LE's, so it is looked for first.
WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
             (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode(raw: bytes) -> tuple[str, str]:
    """The text and the encoding that decoded it. A UTF-16 or UTF-32 byte-order mark decides
    (`utf-16`, `utf-32`; what Excel's "Unicode text" writes); else UTF-8 (with or without a
    mark, reported as `utf-8`). Otherwise each line is decoded on its own, as UTF-8 where it
    is, else `cp1252` (what Excel on Windows writes), else `latin-1`, which never fails: one
    line pasted from a Windows program must not turn every other line into mojibake. The
    encoding reported is then those used by lines with non-ASCII bytes, e.g. `cp1252` or
    `utf-8+cp1252`."""
    for bom, codec in WIDE_BOMS:
        if raw.startswith(bom):
            return raw.decode(codec, errors="replace"), codec
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    parts, used = [], set()
    for number, line in enumerate(raw.splitlines(keepends=True)):
        for codec in ("utf-8-sig" if number == 0 else "utf-8", "cp1252", "latin-1"):
            try:
                parts.append(line.decode(codec))
            except UnicodeDecodeError:
                continue
            if not line.isascii():
                used.add(codec.removesuffix("-sig"))
            break
    order = ("utf-8", "cp1252", "latin-1")
    return "".join(parts), "+".join(c for c in order if c in used)


def decode_bytes(raw: bytes) -> str:
    return decode(raw)[0]


def parse_paper_text(text: str, label: str | None = None, source: str = "") -> Paper:
    """Parse one paper. Lines after `Abstract:` all belong to the abstract."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise PaperParseError("empty file")
    match = _ID_RE.match(lines[0])
    if not match:
        raise PaperParseError(f"first line is not <ID:...>: {lines[0][:60]!r}")
    title, abstract_lines, section = None, [], None
    for line in lines[1:]:
        if section is None and line.startswith("Title:"):
            title, section = line[len("Title:") :].strip(), "title"
        elif section != "abstract" and line.startswith("Abstract:"):
            abstract_lines, section = [line[len("Abstract:") :].strip()], "abstract"
        elif section == "abstract":
            abstract_lines.append(line.strip())
        elif section == "title":
            title = f"{title} {line.strip()}"  # a title wrapped over two lines
    abstract = " ".join(part for part in abstract_lines if part)
    if not title:
        raise PaperParseError("missing or empty Title:")
    if not abstract:
        raise PaperParseError("missing or empty Abstract:")
    return Paper(id=match.group(1), title=title, abstract=abstract, label=label, source=source)


def parse_paper_file(path: Path, label: str | None = None) -> Paper:
    return parse_paper_text(decode_bytes(path.read_bytes()), label=label, source=str(path))


def iter_labelled_files(data_dir: Path) -> Iterator[tuple[Path, str]]:
    for folder, label in FOLDER_LABELS.items():
        for path in sorted((data_dir / folder).glob("*.txt")):
            yield path, label


def read_dataset(data_dir: Path, progress: bool = True, desc: str = "reading papers"
                 ) -> tuple[list[Paper], list[ParseFailure]]:
    """Read every paper under `Cancer/` and `Non-Cancer/`; failures are collected, not raised.
    Raises FileNotFoundError when either folder is missing."""
    missing = [f for f in FOLDER_LABELS if not (data_dir / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"{data_dir} has no {', '.join(missing)} folder")
    files = list(iter_labelled_files(data_dir))
    papers, failures = [], []
    for path, label in tqdm(files, desc=desc, unit="file", disable=not progress):
        try:
            papers.append(parse_paper_file(path, label))
        except (PaperParseError, OSError) as err:
            failures.append(ParseFailure(path, str(err)))
    return papers, failures
