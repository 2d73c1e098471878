"""BibTeX (`.bib`): the export of Zotero, Mendeley, JabRef, EndNote and Google Scholar. The
file is split into entries by bibtexparser (v2) and the title and abstract are turned from
LaTeX into text by pylatexenc; what bibtexparser would change in the other fields is not
wanted (a DOI is taken verbatim).

Each entry is a record: its citation key the id; `title` and `abstract`; `doi`; the PMID
from `pmid` (JabRef, Mendeley, Better BibTeX), from `eprint` when `eprinttype` is `pubmed`
or `pmid` (biblatex), or from a line `PMID: n` of `note`, `extra` or `annote` (Zotero).
A title or abstract that cannot be read for sure (a brace too many, a missing comma, `#`
concatenation, an unknown `@string`) makes the record an error row, never a guess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import bibtexparser
from bibtexparser.model import Entry, ImplicitComment, ParsingFailedBlock
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from preprocessing.readers.records import ReadReport, Record
from preprocessing.readers.text import finish, unreadable

# bibtexparser logs every block it cannot split, and with no logging set up (the command
# line) Python prints that over the progress bar; each such block is an error row here.
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())

# Text-mode symbols that Zotero and Mendeley write for <, > and | (pylatexenc drops them).
_SYMBOLS = {"textless": "<", "textgreater": ">", "textbar": "|", "textquotedbl": '"',
            "textasciitilde": "~", "textasciicircum": "^", "textbackslash": "\\"}
# EndNote and JabRef write %, & and ~ raw; in LaTeX they would start a comment, align, tie.
_RAW = re.compile(r"(?<!\\)([%&~])")
_RAW_AS = {"%": r"\%", "&": r"\&", "~": r"\textasciitilde{}"}
_PMID = re.compile(r"(?:PMID:?\s*)?([1-9][0-9]{0,8})", re.IGNORECASE)
_PMID_LINE = re.compile(r"PMID:?\s*([1-9][0-9]{0,8})", re.IGNORECASE)
_FIELD_LIKE = re.compile(r"\b[A-Za-z]+\s*=\s*[{\"0-9]")
_LATEX = re.compile(r"[\\{}$%&~]")


def _line(block: object) -> int:
    """The block's first line, counted from 1 (bibtexparser counts from 0)."""
    return (getattr(block, "start_line", None) or 0) + 1


def _key(entry: Entry, position: int) -> str:
    """The citation key; an entry without one (`@article{,`) is named by its position."""
    return entry.key or f"entry-{position}"


def _converter() -> LatexNodes2Text:
    context = get_default_latex_context_db().filter_context()
    context.add_context_category("exports", prepend=True, macros=[
        MacroTextSpec(name, text) for name, text in _SYMBOLS.items()])
    return LatexNodes2Text(latex_context=context, math_mode="verbatim")


def _closed(raw: str) -> bool:
    """Whether `raw`'s opening brace or quote closes at its last character and only there."""
    depth = 0
    for i, char in enumerate(raw):
        depth += (char == "{") - (char == "}")
        ends = depth == 0 if raw[0] == "{" else (char == '"' and depth == 0 and i > 0)
        if depth < 0 or (ends and i > 0):
            return i == len(raw) - 1 and depth == 0
    return False


def _unwrap(raw: str, strings: dict[str, str]) -> str | None:
    """The text of a field's raw value: a number, `{...}`, `"..."` or a defined `@string`;
    None for anything else (concatenation, an unknown macro, braces that close early)."""
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return raw
    if raw[:1] in ('{', '"') and _closed(raw):
        return raw[1:-1]
    macro = strings.get(raw.lower())
    return None if macro is None else _unwrap(macro, {})


def _pmid(fields: dict[str, str]) -> str | None:
    if found := _PMID.fullmatch(fields.get("pmid", "").strip()):
        return found.group(1)
    if fields.get("eprinttype", "").strip().lower() in ("pubmed", "pmid") and \
            (found := _PMID.fullmatch(fields.get("eprint", "").strip())):
        return found.group(1)
    for name in ("extra", "note", "annote"):
        for line in fields.get(name, "").splitlines():
            if found := _PMID_LINE.fullmatch(line.strip()):
                return found.group(1)
    return None


class _Entries:
    """Records of one file's entries (its @string definitions and a LaTeX converter)."""

    def __init__(self, strings: dict[str, str], report: ReadReport) -> None:
        self.strings, self.report, self.latex = strings, report, _converter()

    def text(self, raw: str | None) -> str | None:
        """The field as text; None when it cannot be read for sure."""
        value = "" if raw is None else _unwrap(raw, self.strings)
        if not value or not _LATEX.search(value):
            return value
        try:
            return self.latex.latex_to_text(_RAW.sub(lambda m: _RAW_AS[m.group(1)], value))
        except Exception:  # pylatexenc fails on some macros (\href without its argument)
            return None

    def record(self, entry: Entry, position: int) -> Record:
        raw: dict[str, str] = {}
        for field in entry.fields:  # a field named twice: the first, as BibTeX does
            raw.setdefault(field.key.lower(), str(field.value))
        key = _key(entry, position)
        texts = {name: self.text(raw.get(name)) for name in ("title", "abstract")}
        if None in texts.values():
            name = "title" if texts["title"] is None else "abstract"
            return unreadable(self.report, key, f"the {name} of BibTeX entry {key} (line "
                              f"{_line(entry)}) cannot be read for sure: a brace too "
                              "many, a missing comma, # concatenation or an unknown @string?")
        plain = {k: v for k in ("pmid", "eprint", "eprinttype", "note", "extra", "annote",
                                "doi") if (v := _unwrap(raw.get(k, ""), self.strings))}
        return finish(self.report, key, texts["title"], texts["abstract"], pmid=_pmid(plain),
                      doi=plain.get("doi", "").strip() or None)


def read_bibtex(text: str, report: ReadReport) -> Iterator[Record]:
    """Records of BibTeX `text`, in file order; `@string`, `@preamble` and `@comment` blocks
    are left out. An entry whose key repeats an earlier one's, or that names a field twice,
    is still read. An entry followed by text that looks like its fields (it ended early, at
    a brace too many), or that bibtexparser cannot split off (an unclosed brace), is an error
    row naming its line; the entries after it are read."""
    library = bibtexparser.parse_string(text, parse_stack=[])
    strings = {s.key.lower(): str(s.value) for s in library.strings}
    entries = _Entries(strings, report)
    held: tuple[Entry, int] | None = None
    for position, block in enumerate(library.blocks):
        if isinstance(block, ImplicitComment) and held and _FIELD_LIKE.search(block.comment):
            (entry, at), held = held, None
            yield unreadable(report, _key(entry, at), f"BibTeX entry {_key(entry, at)} (line "
                             f"{_line(entry)}) ends before fields that follow it: a "
                             "brace too many?")
            continue
        if held:
            yield entries.record(*held)
            held = None
        kept = getattr(block, "ignore_error_block", None)
        if isinstance(block, Entry) or isinstance(kept, Entry):
            held = (block if isinstance(block, Entry) else kept, position)
        elif isinstance(block, ParsingFailedBlock):
            line = _line(block)
            why = getattr(block.error, "abort_reason", None) or str(block.error)
            yield unreadable(report, f"bibtex-line-{line}", f"the BibTeX block at line {line} "
                             f"cannot be read: {why.strip()}")
    if held:
        yield entries.record(*held)
