"""Bulk classification through the gateway: papers in (a folder of paper files, CSV, JSONL or
parquet), results out (parquet), written chunk by chunk so a killed run resumes where it
stopped and every input appears exactly once in the output."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tqdm import tqdm

from preprocessing.readers import ReadReport, Record, read_records

log = logging.getLogger(__name__)

RESULT_SCHEMA = pa.schema([
    ("key", pa.string()), ("id", pa.string()), ("pmid", pa.string()), ("doi", pa.string()),
    ("label", pa.string()),
    ("probability", pa.float64()), ("cancer_probability", pa.float64()),
    ("truncated", pa.bool_()), ("reread", pa.bool_()), ("abstract_missing", pa.bool_()),
    ("model", pa.string()),
    ("prompt_version", pa.string()), ("error", pa.string()), ("error_status", pa.int32()),
])

#: In OUT.parts/: the sha256 of the input the run began with (a resume refuses another input).
INPUT_MARKER = "input.json"

#: Per-paper error details that versions before `error_status` stored although the failure was
#: the service's, not the paper's (the gateway's 429, 502, 503 and 504 texts): a resumed run
#: classifies those papers again.
LEGACY_TRANSIENT_ERRORS = (
    "inference engine timed out", "no inference engine is available",
    "inference engine unavailable", "too many requests in flight", "inference engine answered",
    "unexpected engine response",
)


def is_permanent(status: int) -> bool:
    """A 4xx other than 408/429 says the paper itself was refused; anything else (429, 5xx, a
    lost connection) may pass on a retry and is never stored as a result."""
    return 400 <= status < 500 and status not in (408, 429)


@dataclass(frozen=True)
class Backoff:
    """Retries of transient failures: exponential with jitter from `initial_s` up to `max_s`,
    at most `attempts` tries per paper within one run."""

    attempts: int = 8
    initial_s: float = 1.0
    max_s: float = 30.0


class TransientFailure(Exception):
    """The gateway could not answer now (429, 5xx, no connection): retried."""


class InputChanged(ValueError):
    """The input of a resumed run is not the one its stored results came from."""


class BulkIncomplete(Exception):
    """Some papers still failed transiently after every retry: they were not stored, and the
    same command run again classifies just those."""

def read_inputs(path: Path, fmt: str | None = None, columns: Mapping[str, str] | None = None
                ) -> tuple[pd.DataFrame, ReadReport]:
    """Columns key, id, title, abstract, pmid, doi, label, problem, one row per input record
    (see preprocessing.readers: any supported format, recognised from the content), and the
    read report. `key` is unique: the id where ids are unique, else the row number. Raises
    ValueError for a table without title/abstract columns or an input without records,
    FileNotFoundError for no input."""
    records = read_records(path, fmt, columns)
    rows = [asdict(r) for r in tqdm(records, desc="reading", unit="record", disable=None)]
    if not rows:  # a wrong path or format must not look like a finished run
        skipped = ", ".join(f"{n} {why}" for why, n in records.report.skipped.items())
        raise ValueError(f"{path}: no records found (read as {records.report.format}"
                         f"{'; skipped: ' + skipped if skipped else ''})")
    frame = pd.DataFrame(rows, columns=[f.name for f in fields(Record)])
    ids = frame["id"].astype(str)
    keys = ids if ids.is_unique else pd.Series([f"row-{i}" for i in range(len(frame))])
    frame = frame.assign(id=ids.values, key=keys.values)
    frame = frame.astype(object).where(frame.notna(), None)  # missing ids are None, not NaN
    text = ["title", "abstract"]
    frame[text] = frame[text].fillna("")
    return frame, records.report


def input_fingerprint(path: Path) -> str:
    """sha256 over the input's bytes (a folder: over each file's relative path and bytes)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ResultStore:
    """Finished rows as part files (written to a temp name, then renamed: a kill never leaves
    half a part), merged into the output at the end; the newest row of a key wins. With
    `reuse_output`, a finished output is taken back as a part, so a run only redoes the papers
    an older version stored as transient failures (without it, a finished output is redone
    whole: the model may have changed since)."""

    def __init__(self, out: Path, reuse_output: bool = False, fingerprint: str = "") -> None:
        self.out = out
        self.parts = out.with_name(out.name + ".parts")
        if reuse_output and out.exists() and not self.parts.exists():
            self.parts.mkdir(parents=True)
            shutil.copyfile(out, self.parts / "part-000000.parquet")
        self._check_input(fingerprint)

    def _check_input(self, fingerprint: str) -> None:
        """A resumed run must read the input its parts came from. Raises InputChanged."""
        marker = self.parts / INPUT_MARKER
        if marker.exists():
            began = json.loads(marker.read_text())["fingerprint"]
            if fingerprint and began != fingerprint:
                raise InputChanged(
                    f"the input changed since this run began (sha256 {began[:12]}... then, "
                    f"{fingerprint[:12]}... now): {self.parts} holds results of the old input; "
                    "delete it to start over, or write to another --out")
        elif fingerprint:
            self.parts.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"fingerprint": fingerprint}))

    def _tables(self) -> list[pa.Table]:
        return [_conform(pq.read_table(p)) for p in sorted(self.parts.glob("part-*.parquet"))]

    def done_keys(self) -> set[str]:
        if not self.parts.exists():
            return set()
        return {row["key"] for table in self._tables() for row in table.to_pylist()
                if _is_final(row)}

    def write_part(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        number = len(list(self.parts.glob("part-*.parquet")))
        tmp = self.parts / f".part-{number:06d}.tmp"
        pq.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp)
        os.replace(tmp, self.parts / f"part-{number:06d}.parquet")

    def finish(self, keys: list[str]) -> pa.Table:
        """Write the output: the newest final row of each of `keys` (input order), then drop
        the parts."""
        self.parts.mkdir(parents=True, exist_ok=True)
        newest = {row["key"]: row for table in self._tables() for row in table.to_pylist()
                  if _is_final(row)}
        table = pa.Table.from_pylist([newest[k] for k in keys if k in newest],
                                     schema=RESULT_SCHEMA)
        tmp = self.out.with_name(self.out.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)
        # Rename first: a kill from here on leaves either all parts or none.
        trash = self.parts.with_name(self.parts.name + ".done")
        os.replace(self.parts, trash)
        shutil.rmtree(trash)
        return table


def _conform(table: pa.Table) -> pa.Table:
    """A part of any version in RESULT_SCHEMA (columns it lacks are null)."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in RESULT_SCHEMA]
    return pa.Table.from_arrays(columns, schema=RESULT_SCHEMA)


def _is_final(row: dict) -> bool:
    if row["error"] is None:
        return True
    if row["error_status"] is not None:
        return is_permanent(row["error_status"])
    return not row["error"].startswith(LEGACY_TRANSIENT_ERRORS)


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _paper(record: dict) -> dict:
    # An empty abstract is classified by the title alone (abstract_missing in the answer).
    return {"title": record["title"] or " ", "abstract": record["abstract"] or "",
            "id": record["id"]}


def _row(record: dict, item: dict | None) -> dict:
    row = {"key": record["key"], "id": record["id"], "pmid": record.get("pmid"),
           "doi": record.get("doi"), "error": record.get("problem") or None}
    if row["error"]:
        row["error_status"] = 422  # the record itself cannot be classified
    elif item.get("error"):
        row |= {"error": str(item["error"]["detail"]), "error_status": item["error"]["status"]}
    else:
        result = item["result"]
        row |= {k: result[k] for k in ("label", "probability", "cancer_probability",
                                       "truncated", "reread", "model", "prompt_version")}
        row["abstract_missing"] = result.get("abstract_missing", False)
    return row


async def _post_batch(client: httpx.AsyncClient, url: str, papers: list[dict]) -> list[dict]:
    """The batch route's per-paper results. Raises TransientFailure (429, 5xx, no connection)
    or RuntimeError (any other refusal of the whole request: a bad key, a bad URL)."""
    try:
        response = await client.post(f"{url}/v1/classify_papers", json={"papers": papers})
    except httpx.HTTPError as err:
        raise TransientFailure(f"gateway unreachable: {type(err).__name__}") from err
    if response.status_code == 200:
        return response.json()["results"]
    failure = f"gateway answered {response.status_code}: {response.text[:200]}"
    if is_permanent(response.status_code):
        raise RuntimeError(failure)
    raise TransientFailure(failure)


async def _classify_chunk(client: httpx.AsyncClient, url: str, chunk: pd.DataFrame,
                          backoff: Backoff) -> tuple[list[dict], int]:
    """Rows for the papers of `chunk` that got a final answer (a result, or a refusal of the
    paper itself), and how many are left after every retry."""
    records = chunk.to_dict("records")
    rows = [_row(r, None) for r in records if r.get("problem")]
    pending = [r for r in records if not r.get("problem")]
    retrying = AsyncRetrying(
        stop=stop_after_attempt(backoff.attempts), reraise=True,
        wait=wait_exponential(multiplier=backoff.initial_s, max=backoff.max_s)
        + wait_random(0, backoff.initial_s),
        retry=retry_if_exception_type(TransientFailure))
    try:
        async for attempt in retrying:
            with attempt:
                if not pending:
                    break
                results = await _post_batch(client, url, [_paper(r) for r in pending])
                answered = [(r, item) for r, item in zip(pending, results, strict=True)
                            if not item.get("error") or is_permanent(item["error"]["status"])]
                rows += [_row(r, item) for r, item in answered]
                done = {id(r) for r, _ in answered}
                pending = [r for r in pending if id(r) not in done]
                if pending:
                    raise TransientFailure(f"{len(pending)} papers answered 429/5xx")
    except TransientFailure as err:
        log.warning("%d papers left for the next run after %d attempts: %s", len(pending),
                    backoff.attempts, err)
    return rows, len(pending)


@dataclass(frozen=True)
class BulkResult:
    table: pa.Table  # RESULT_SCHEMA, one row per input record, input order
    report: ReadReport
    inputs: pd.DataFrame  # read_inputs' frame: identifiers, title and abstract per record

    def summary(self) -> str:
        """One paragraph for people: what was read, skipped, classified and refused."""
        r = self.report
        errors = sum(e is not None for e in self.table["error"].to_pylist())
        encoding = f", {r.encoding}" + (" (not UTF-8)" if r.encoding_fallback else "") \
            if r.encoding else ""
        skipped = ", ".join(f"{n} {why}" for why, n in r.skipped.items()) or "none"
        return (f"read {r.records} records ({r.format}{encoding}); skipped: {skipped}; "
                f"control characters removed: {r.control_chars_removed}; classified: "
                f"{self.table.num_rows - errors} ({r.title_only} without an abstract); "
                f"refused: {errors} (reason in the error column)")


async def classify_file(
    input_path: Path, out: Path, url: str, batch_size: int = 16, concurrency: int = 4,
    api_key: str | None = None, backoff: Backoff = Backoff(), reuse_output: bool = False,
    fmt: str | None = None, columns: Mapping[str, str] | None = None,
) -> BulkResult:
    """Classify every record of `input_path` (any format of preprocessing.readers; `fmt` and
    `columns` override detection and column names) into the parquet `out`, resuming from what
    a killed run stored (and, with `reuse_output`, keeping the final answers of a finished
    `out`). Transient failures (429, 5xx, lost connections) are retried with backoff and never
    stored. Raises BulkIncomplete when some papers failed through every retry (all others are
    stored: run again), InputChanged when a resumed run's input is not the one it began with,
    RuntimeError when the gateway refuses the requests themselves (401, 404, ...)."""
    frame, report = read_inputs(input_path, fmt, columns)
    store = ResultStore(out, reuse_output, input_fingerprint(input_path))
    todo = frame[~frame["key"].isin(store.done_keys())]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    progress = tqdm(total=len(frame), initial=len(frame) - len(todo), desc="classifying",
                    unit="paper")
    slots = asyncio.Semaphore(concurrency)
    left = 0
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:

        async def run(chunk: pd.DataFrame) -> None:
            nonlocal left
            async with slots:
                rows, unanswered = await _classify_chunk(client, url, chunk, backoff)
                store.write_part(rows)  # on disk before it counts as done
                left += unanswered
                progress.update(len(rows))

        await asyncio.gather(*(run(c) for c in _chunks(todo, batch_size)))
    progress.close()
    if left:
        raise BulkIncomplete(f"{left} papers failed transiently after {backoff.attempts} "
                             "attempts and were not stored; run the same command again")
    return BulkResult(store.finish(list(frame["key"])), report, frame)
