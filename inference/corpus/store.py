"""A corpus run's output: Parquet parts under OUT/model=<version>/ on a local disk or in S3
(any filesystem pyarrow knows by URI). Each part is written whole or not at all (a temp name
then a rename locally; one PUT in S3), so the keys found in parts are the records done: a
killed run resumes by skipping them, and each record is written once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from inference.bulk import RESULT_SCHEMA, InputChanged

INPUT_MARKER = "_input.json"


def filesystem(uri: str) -> tuple[fs.FileSystem, str]:
    """(filesystem, path inside it) of a local path or a URI such as s3://bucket/prefix."""
    if "://" not in uri:
        return fs.LocalFileSystem(), str(Path(uri).resolve())
    return fs.FileSystem.from_uri(uri)


class PartStore:
    def __init__(self, out: str, model_version: str) -> None:
        self.fs, root = filesystem(out)
        self.local = isinstance(self.fs, fs.LocalFileSystem)
        self.dir = f"{root.rstrip('/')}/model={model_version}"
        self.fs.create_dir(self.dir, recursive=True)
        self._run = uuid.uuid4().hex[:8]
        self._seq = 0

    def parts(self) -> list[str]:
        infos = self.fs.get_file_info(fs.FileSelector(self.dir, allow_not_found=True))
        return sorted(i.path for i in infos
                      if i.type == fs.FileType.File and i.base_name.startswith("part-")
                      and i.base_name.endswith(".parquet"))

    def done_keys(self) -> set[str]:
        keys: set[str] = set()
        for path in self.parts():
            keys.update(pq.read_table(path, columns=["key"], filesystem=self.fs)["key"]
                        .to_pylist())
        return keys

    def check_input(self, fingerprint: str) -> None:
        """A resumed run must read the input its parts came from. Raises InputChanged."""
        marker = f"{self.dir}/{INPUT_MARKER}"
        if self.fs.get_file_info(marker).type == fs.FileType.File:
            with self.fs.open_input_stream(marker) as f:
                began = json.loads(f.read())["fingerprint"]
            if began != fingerprint:
                raise InputChanged(f"the input changed since this run began (sha256 "
                                   f"{began[:12]}... then, {fingerprint[:12]}... now): delete "
                                   f"{self.dir} to start over, or write to another OUT")
            return
        with self.fs.open_output_stream(marker) as f:
            f.write(json.dumps({"fingerprint": fingerprint}).encode())

    def write(self, rows: list[dict]) -> str | None:
        """One part of RESULT_SCHEMA rows; returns its path (None for no rows)."""
        if not rows:
            return None
        self._seq += 1
        name = f"{self.dir}/part-{self._run}-{self._seq:06d}.parquet"
        table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
        if not self.local:  # an S3 object appears whole when its upload completes
            pq.write_table(table, name, filesystem=self.fs)
            return name
        tmp = f"{self.dir}/.tmp-{self._run}-{self._seq:06d}"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, name)
        return name

    def read(self) -> pa.Table:
        """Every row written so far (any run), in no particular order."""
        tables = [pq.read_table(p, filesystem=self.fs) for p in self.parts()]
        return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()
