"""Which reader a file needs, from its first bytes (gzip is looked through), not its name."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from preprocessing.papers import WIDE_BOMS
from preprocessing.readers.compressed import open_bounded, read_until_cut
from preprocessing.readers.records import DamagedInput

FORMATS = ("folder", "pubmed-xml", "medline", "ris", "bibtex", "jsonl", "parquet", "csv")
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 8192
_MEDLINE_TAG = re.compile(rb"^(PMID|TI  |AB  |FAU |AU  |PT  |DP  )- ", re.MULTILINE)
_RIS_TAG = re.compile(rb"^TY  - ", re.MULTILINE)
# BibTeX: the first thing after blank and `%` comment lines (JabRef's `% Encoding:`) is an
# entry; an `@article{` line further down a CSV cell or an abstract is not enough.
_BIBTEX_START = re.compile(rb"(?:[ \t]*(?:%[^\n]*)?\r?\n)*[ \t]*@[ \t]*[A-Za-z]+[ \t]*[{(]")


def _head(path: Path) -> bytes:
    """The file's first bytes (gzip looked through) as UTF-8 without a byte-order mark: a
    UTF-16 or UTF-32 export is recognised by what its text says."""
    with open_bounded(path, None) as stream:
        head, cut = read_until_cut(stream, _SNIFF_BYTES)
    if cut and not head:
        raise DamagedInput(cut)
    for bom, codec in WIDE_BOMS:
        if head.startswith(bom):
            return head.decode(codec, errors="ignore").encode("utf-8")
    return head.removeprefix(codecs.BOM_UTF8)


def detect_format(path: Path) -> str:
    """One of FORMATS. Falls back to `csv` (delimited text) when nothing else matches."""
    if path.is_dir():
        return "folder"
    head = _head(path)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(b" \t\r\n")
    if text.startswith(b"<"):
        return "pubmed-xml"
    if _BIBTEX_START.match(head):
        return "bibtex"
    if _RIS_TAG.search(head):
        return "ris"
    if _MEDLINE_TAG.search(head):
        return "medline"
    if text.startswith(b"{"):
        return "jsonl"
    return "csv"
