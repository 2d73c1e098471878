"""Which reader a file needs, from its first bytes (gzip is looked through), not its name."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

FORMATS = ("folder", "pubmed-xml", "medline", "ris", "jsonl", "parquet", "csv")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 8192
_MEDLINE_TAG = re.compile(rb"^(PMID|TI  |AB  |FAU |AU  |PT  |DP  )- ", re.MULTILINE)
_RIS_TAG = re.compile(rb"^TY  - ", re.MULTILINE)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _head(path: Path) -> bytes:
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as f:
        return f.read(_SNIFF_BYTES)


def detect_format(path: Path) -> str:
    """One of FORMATS. Falls back to `csv` (delimited text) when nothing else matches."""
    if path.is_dir():
        return "folder"
    head = _head(path)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "pubmed-xml"
    if _RIS_TAG.search(head):
        return "ris"
    if _MEDLINE_TAG.search(head):
        return "medline"
    if text.startswith(b"{"):
        return "jsonl"
    return "csv"
