"""REST bulk against Ray Data bulk on the same papers, side by side in one run: papers/s of
each path and whether their labels agree (`python -m loadtest capacity`).

The REST path is `inference.bulk` posting batches to a gateway in front of one vLLM server;
the Ray path is `inference.corpus` with the model in process. Both start their engine inside
the timed span (the REST path's services are started first and timed apart), and both write
one row per paper."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from preprocessing.dataset import read_split


def corpus_of(data_dir: Path, n: int, split: str = "test") -> pa.Table:
    """`n` papers: the split repeated with fresh ids (`<id>-r<k>`) as often as needed."""
    papers = read_split(data_dir, split)
    rows = [{"id": f"{p.id}-r{i // len(papers)}", "title": p.title, "abstract": p.abstract}
            for i, p in enumerate(papers[i % len(papers)] for i in range(n))]
    return pa.Table.from_pylist(rows)


def rest_path(model_dir: Path, papers: Path, out: Path, batch_size: int,
              concurrency: int) -> dict[str, Any]:
    """Engine + gateway started together (their start timed apart), then `inference.bulk` over
    all papers."""
    from inference.bulk import Backoff, classify_file
    from inference.engine import EngineSettings
    from inference.local import free_port, start_serving, stop_process

    engine_port = free_port(8300)
    serving = start_serving(model_dir, engine_port, free_port(8380, {engine_port}),
                            EngineSettings(), {"GATEWAY_CACHE_SIZE": "0", "GATEWAY_API_KEYS": ""})
    try:
        t0 = time.perf_counter()
        result = asyncio.run(classify_file(papers, out, serving.gateway_url, batch_size,
                                           concurrency, None, Backoff()))
        seconds = time.perf_counter() - t0
    finally:
        stop_process(serving.gateway.pid)
        stop_process(serving.engine.pid)
    return {"papers": result.table.num_rows, "startup_s": round(serving.ready_s, 1),
            "seconds": round(seconds, 1), "papers_per_s": round(result.table.num_rows / seconds, 2),
            "labels": dict(zip(result.table["key"].to_pylist(),
                               result.table["label"].to_pylist(), strict=True))}


def ray_path(model_dir: Path, papers: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """`inference.corpus` on a local Ray: actor start (the engine's) included in `seconds`."""
    from inference.corpus.run import run_corpus
    from inference.corpus.settings import CorpusSettings
    from inference.corpus.store import PartStore
    from inference.engine import EngineSettings
    from model_contract.layout import load_manifest

    settings = CorpusSettings(model_dir=model_dir, batch_size=batch_size)
    result = run_corpus(str(papers), str(out), settings, EngineSettings())
    table = PartStore(str(out), load_manifest(model_dir).version).read()
    steady = result.steady_papers_per_s
    return {"papers": table.num_rows, "seconds": round(result.seconds, 1),
            "papers_per_s": round(result.classified / result.seconds, 2),
            "steady_papers_per_s": None if steady is None else round(steady, 2),
            "first_batch_s": None if result.first_batch_s is None
            else round(result.first_batch_s, 1),
            "labels": dict(zip(table["key"].to_pylist(), table["label"].to_pylist(),
                               strict=True))}


def run_capacity(model_dir: Path, data_dir: Path, out_dir: Path, n: int = 2000,
                 rest_batch: int = 16, rest_concurrency: int = 4, ray_batch: int = 256) -> dict:
    """Both paths on the same `n` papers; writes OUT_DIR/latest.json and returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    papers = out_dir / "papers.parquet"
    pq.write_table(corpus_of(data_dir, n), papers)
    # A rerun starts clean: both paths would skip the papers an older run stored.
    for old in (out_dir / "rest.parquet", out_dir / "ray"):
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    rest = rest_path(model_dir, papers, out_dir / "rest.parquet", rest_batch, rest_concurrency)
    ray = ray_path(model_dir, papers, out_dir / "ray", ray_batch)
    differ = sorted(k for k in rest["labels"] if rest["labels"][k] != ray["labels"].get(k))
    report = {"papers": n, "model_dir": str(model_dir),
              "rest": {k: v for k, v in rest.items() if k != "labels"} | {
                  "batch_size": rest_batch, "concurrency": rest_concurrency},
              "ray": {k: v for k, v in ray.items() if k != "labels"} | {"batch_size": ray_batch},
              "labels_compared": len(rest["labels"]), "labels_differ": len(differ),
              "differing_keys": differ[:20]}
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    return report
