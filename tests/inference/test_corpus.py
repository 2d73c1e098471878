"""Corpus runs on Ray Data with the real model in process: killed midway and resumed, every
record is written once, and the labels are the gateway's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocessing.dataset import read_split
from tests.inference.test_parity import probability_tolerance

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Killed after its third part: ten batches of two are still to come.
N_PAPERS, BATCH = 24, 2


def _corpus(tmp_path: Path, processed_dir: Path) -> tuple[Path, list]:
    papers = read_split(processed_dir, "test")[:N_PAPERS]
    rows = [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in papers]
    rows.append({"id": "empty-1", "title": "", "abstract": ""})  # not a paper: an error row
    path = tmp_path / "papers.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path, papers


def _command(source: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "inference", "corpus", str(source), str(out),
            "--model-dir", str(model), "--batch-size", str(BATCH)]


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("model=*/part-*.parquet"))


def _ray_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("raylet", "gcs_server")]


def test_a_killed_run_resumes_and_agrees_with_the_gateway(
        tmp_path: Path, processed_dir: Path, base_model_dir: Path, gateway_url: str) -> None:
    source, papers = _corpus(tmp_path, processed_dir)
    out = tmp_path / "out"
    before = {p.pid for p in _ray_processes()}
    first = subprocess.Popen(_command(source, out, base_model_dir), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Generous bound: it only keeps a broken run from hanging the suite.
        deadline = time.monotonic() + 900
        while len(_parts(out)) < 3 and first.poll() is None:  # the error row's part + 2
            assert time.monotonic() < deadline, "no results from the first run"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    written = sum(pq.read_metadata(p).num_rows for p in _parts(out))
    assert 0 < written < N_PAPERS + 1, "the run was not killed midway"

    second = subprocess.run(_command(source, out, base_model_dir), capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{written} already in" in second.stdout

    table = pq.read_table(out / "model=base").to_pylist()
    keys = [row["key"] for row in table]
    assert len(keys) == len(set(keys)) == N_PAPERS + 1  # every record once, none lost
    rows = {row["id"]: row for row in table}
    assert rows["empty-1"]["error_status"] == 422 and rows["empty-1"]["label"] is None
    gateway = httpx.post(gateway_url + "/v1/classify_papers", timeout=600, json={
        "papers": [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in papers],
    }).json()["results"]
    for paper, item in zip(papers, gateway, strict=True):
        mine, theirs = rows[paper.id], item["result"]
        assert (mine["label"], mine["reread"], mine["truncated"]) == \
            (theirs["label"], theirs["reread"], theirs["truncated"]), paper.id
        tol = probability_tolerance(theirs["cancer_probability"], _precision())
        assert mine["cancer_probability"] == pytest.approx(theirs["cancer_probability"], abs=tol)
        assert (mine["model"], mine["prompt_version"]) == (theirs["model"],
                                                            theirs["prompt_version"])
    leftovers = [p for p in _ray_processes() if p.pid not in before]
    for p in leftovers:
        p.kill()
    assert not leftovers, "a killed run left Ray processes behind"


def _precision() -> str:
    from inference.engine import EngineSettings, engine_precision

    return engine_precision(EngineSettings()).precision.value
