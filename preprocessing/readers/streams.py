"""Inputs that can be read only once: standard input (`-`) and pipes (`<(zcat ...)`, FIFOs).
The readers open an input more than once (to recognise its format, to read it, and the bulk
runs to fingerprint it), so such an input is first copied into a temporary file."""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from preprocessing.readers.records import InputTooLarge

STDIN = "-"
KEEP_FREE = 1 << 30  # bytes a copy leaves free on its disk (1 GiB)


def is_stream(path: Path) -> bool:
    """Standard input (`-`), or a path that exists and is neither a regular file nor a folder
    (a pipe, a FIFO, a character device)."""
    if str(path) == STDIN:
        return True
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextmanager
def as_file(path: Path, folder: Path | None = None, keep_free: int = KEEP_FREE
            ) -> Iterator[Path]:
    """`path` itself when it is a file or a folder (or does not exist: the reader says so);
    a stream (`is_stream`) copied into a temporary file in `folder` (the system's temporary
    folder by default) and deleted on exit. Raises OSError when the copy cannot be written,
    and InputTooLarge when it would leave less than `keep_free` bytes free on its disk (an
    endless stream, or all of PubMed piped through zcat: its files are better classified as
    a folder)."""
    if not is_stream(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="paper-input-", dir=folder) as tmp:
        copy = Path(tmp) / ("stdin" if str(path) == STDIN else path.name)
        # The bar first: opening a FIFO waits for its writer, and the bar says what waits.
        with (tqdm(desc=f"copying {path}", unit="B", unit_scale=True, disable=None) as bar,
              _open_stream(path) as source, copy.open("wb") as target):
            while block := source.read(1 << 20):
                if bar.n % (64 << 20) < len(block) and shutil.disk_usage(tmp).free < keep_free:
                    raise InputTooLarge(
                        f"copying {path} to {tmp} left under {keep_free:,} bytes free after "
                        f"{bar.n:,} bytes; copy it elsewhere, or give the files it comes from "
                        "(a folder is read file by file)")
                target.write(block)
                bar.update(len(block))
        yield copy


@contextmanager
def _open_stream(path: Path) -> Iterator:
    if str(path) == STDIN:
        yield sys.stdin.buffer
    else:
        with path.open("rb") as stream:
            yield stream
