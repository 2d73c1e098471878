"""Bulk classification through the gateway: papers in (a folder of paper files, CSV, JSONL or
parquet), results out (parquet), written chunk by chunk so a killed run resumes where it
stopped and every input appears exactly once in the output."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from preprocessing.papers import FOLDER_LABELS, PaperParseError, parse_paper_file

RESULT_SCHEMA = pa.schema([
    ("key", pa.string()), ("id", pa.string()), ("label", pa.string()),
    ("probability", pa.float64()), ("cancer_probability", pa.float64()),
    ("truncated", pa.bool_()), ("reread", pa.bool_()), ("model", pa.string()),
    ("prompt_version", pa.string()), ("error", pa.string()),
])


def read_inputs(path: Path) -> pd.DataFrame:
    """Columns key, id, title, abstract (+ label when the input has one). `key` is unique:
    the id where ids are unique, else the row number."""
    if path.is_dir():
        frame = _read_paper_folder(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif path.suffix in {".jsonl", ".ndjson"}:
        frame = pd.read_json(path, lines=True, dtype=False)
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: expected a folder, .csv, .jsonl or .parquet")
    missing = {"title", "abstract"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    ids = frame["id"].astype(str) if "id" in frame else pd.Series(map(str, range(len(frame))))
    frame = frame.assign(id=ids.values)
    keys = ids if ids.is_unique else pd.Series([f"row-{i}" for i in range(len(frame))])
    return frame.assign(key=keys.values).fillna("")


def _read_paper_folder(folder: Path) -> pd.DataFrame:
    rows = []
    for file in sorted(folder.rglob("*.txt")):
        label = FOLDER_LABELS.get(file.parent.name)
        try:
            paper = parse_paper_file(file, label)
            rows.append({"id": paper.id, "title": paper.title, "abstract": paper.abstract,
                         "label": label or ""})
        except PaperParseError as err:  # unparseable files become error rows, not lost
            rows.append({"id": file.stem, "title": "", "abstract": "", "label": label or "",
                         "parse_error": f"{file.name}: {err}"})
    return pd.DataFrame(rows)


class ResultStore:
    """Finished chunks as part files (written to a temp name, then renamed: a kill never
    leaves half a part), merged into the output at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts = out.with_name(out.name + ".parts")

    def done_keys(self) -> set[str]:
        if not self.parts.exists():
            return set()
        return {k for part in sorted(self.parts.glob("part-*.parquet"))
                for k in pq.read_table(part, columns=["key"])["key"].to_pylist()}

    def write_part(self, rows: list[dict]) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        number = len(list(self.parts.glob("part-*.parquet")))
        tmp = self.parts / f".part-{number:06d}.tmp"
        pq.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp)
        os.replace(tmp, self.parts / f"part-{number:06d}.parquet")

    def finish(self) -> pa.Table:
        self.parts.mkdir(parents=True, exist_ok=True)
        parts = sorted(self.parts.glob("part-*.parquet"))
        table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else \
            RESULT_SCHEMA.empty_table()
        tmp = self.out.with_name(self.out.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)
        # Rename first: a kill from here on leaves either all parts or none.
        trash = self.parts.with_name(self.parts.name + ".done")
        os.replace(self.parts, trash)
        shutil.rmtree(trash)
        return table


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _rows(chunk: pd.DataFrame, response: dict | None, failure: str | None) -> list[dict]:
    rows = []
    for i, record in enumerate(chunk.to_dict("records")):
        row = {"key": record["key"], "id": record["id"], "error": record.get("parse_error")}
        item = response["results"][i] if response else None
        if failure:
            row["error"] = failure
        elif item and item.get("error"):
            row["error"] = str(item["error"]["detail"])
        elif item and not row["error"]:
            result = item["result"]
            row |= {k: result[k] for k in ("label", "probability", "cancer_probability",
                                           "truncated", "reread", "model", "prompt_version")}
        rows.append(row)
    return rows


async def _classify_chunk(client: httpx.AsyncClient, url: str, chunk: pd.DataFrame) -> list[dict]:
    papers = [{"title": r["title"] or " ", "abstract": r["abstract"] or " ", "id": r["id"]}
              for r in chunk.to_dict("records")]
    for attempt in range(5):  # 429/503 are transient: back off and retry the chunk
        try:
            response = await client.post(f"{url}/v1/classify_papers", json={"papers": papers})
        except httpx.HTTPError as err:
            failure = f"gateway unreachable: {type(err).__name__}"
        else:
            if response.status_code == 200:
                return _rows(chunk, response.json(), None)
            failure = f"gateway answered {response.status_code}: {response.text[:200]}"
            if response.status_code not in (429, 502, 503, 504):
                break
        await asyncio.sleep(min(2**attempt, 10))
    raise RuntimeError(failure)


async def classify_file(
    input_path: Path, out: Path, url: str, batch_size: int = 16, concurrency: int = 4,
    api_key: str | None = None,
) -> pa.Table:
    frame = read_inputs(input_path)
    store = ResultStore(out)
    todo = frame[~frame["key"].isin(store.done_keys())]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    progress = tqdm(total=len(frame), initial=len(frame) - len(todo), desc="classifying",
                    unit="paper")
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:

        async def run(chunk: pd.DataFrame) -> None:
            async with slots:
                rows = await _classify_chunk(client, url, chunk)
                store.write_part(rows)  # a chunk is on disk before it counts as done
                progress.update(len(rows))

        await asyncio.gather(*(run(c) for c in _chunks(todo, batch_size)))
    progress.close()
    return store.finish()
