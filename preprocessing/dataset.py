"""The clean dataset on disk: one parquet file per split with a fixed schema, plus a summary."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from preprocessing.clean import CleanReport
from preprocessing.papers import LABELS, Paper, ParseFailure
from preprocessing.sources import Source
from preprocessing.split import SPLITS

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("abstract", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
SUMMARY_FILE = "summary.json"


def fingerprint(papers: list[Paper]) -> str:
    """sha256 over id, label, title and abstract in id order: same data, same fingerprint."""
    digest = hashlib.sha256()
    for p in sorted(papers, key=lambda p: p.id):
        digest.update(f"{p.id}\x1f{p.label}\x1f{p.title}\x1f{p.abstract}\x1e".encode())
    return digest.hexdigest()[:16]


def write_split(papers: list[Paper], split: str, path: Path) -> None:
    rows = {name: [] for name in SCHEMA.names}
    for p in papers:
        for name, value in (("id", p.id), ("title", p.title), ("abstract", p.abstract),
                            ("label", p.label or ""), ("split", split), ("source", p.source)):
            rows[name].append(value)
    pq.write_table(pa.table(rows, schema=SCHEMA), path)


def read_split(out_dir: Path, split: str) -> list[Paper]:
    table = pq.read_table(out_dir / f"{split}.parquet")
    return [
        Paper(id=r["id"], title=r["title"], abstract=r["abstract"], label=r["label"],
              source=r["source"])
        for r in table.to_pylist()
    ]


def label_counts(splits: dict[str, list[Paper]], source: str | None = None) -> dict:
    """{split: {label: n}}, of one source or of all."""
    return {split: {label: sum(p.label == label and source in (None, p.source)
                               for p in splits[split]) for label in LABELS}
            for split in SPLITS}


def summarise(
    splits: dict[str, list[Paper]],
    failures: list[ParseFailure],
    report: CleanReport,
    seed: int,
    sources: list[Source],
) -> dict:
    """`fingerprint` and `counts` cover every source; `sources` has each one's folder, label
    meaning, counts and fingerprint."""
    everything = [p for split in SPLITS for p in splits[split]]
    return {
        "papers": len(everything),
        "fingerprint": fingerprint(everything),
        "seed": seed,
        "counts": label_counts(splits),
        "sources": {
            s.name: {"path": str(s.path), "label_meaning": s.label_meaning(),
                     "papers": sum(p.source == s.name for p in everything),
                     "fingerprint": fingerprint([p for p in everything if p.source == s.name]),
                     "counts": label_counts(splits, s.name)}
            for s in sources
        },
        "unparsed": [{"file": str(f.path), "reason": f.reason} for f in failures],
        "cleaning": asdict(report),
    }


def write_dataset(out_dir: Path, splits: dict[str, list[Paper]], summary: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_split(splits[split], split, out_dir / f"{split}.parquet")
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def load_summary(out_dir: Path) -> dict:
    return json.loads((out_dir / SUMMARY_FILE).read_text())
