"""Bulk classification: resumable, every input exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from inference.bulk import read_inputs
from preprocessing.dataset import read_split


def test_read_inputs_formats(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "a.csv").write_text("id,title,abstract\n1,T1,A1\n1,T2,A2\n")
    frame, report = read_inputs(tmp_path / "a.csv")
    assert list(frame["key"]) == ["row-0", "row-1"]  # duplicate ids: keys fall back to rows
    assert (report.format, report.records) == ("csv", 2)
    (tmp_path / "b.jsonl").write_text('{"title": "T", "abstract": "A"}\n')
    assert list(read_inputs(tmp_path / "b.jsonl")[0]["key"]) == ["0"]
    folder, report = read_inputs(data_dir)
    assert len(folder) == 800 and folder["key"].is_unique and report.format == "folder"
    assert set(folder["label"]) == {"cancer", "non_cancer"}
    with pytest.raises(ValueError, match="no title or abstract column among \\['name'\\]"):
        (tmp_path / "c.csv").write_text("name\nx\n")
        read_inputs(tmp_path / "c.csv")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no papers here")
    with pytest.raises(ValueError, match="no records found .read as folder; skipped: 1 file"):
        read_inputs(tmp_path / "empty")  # a wrong folder must not look like a finished run


@pytest.mark.integration
def test_killed_run_resumes_and_writes_each_input_once(gateway_url: str, processed_dir: Path,
                                                       tmp_path: Path) -> None:
    papers = read_split(processed_dir, "test")[:20]
    source = tmp_path / "papers.jsonl"
    source.write_text("".join(json.dumps({"id": p.id, "title": p.title, "abstract": p.abstract})
                              + "\n" for p in papers))
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "inference", "classify", str(source), "--out", str(out),
               "--url", gateway_url, "--batch-size", "4", "--concurrency", "1"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + 600
    while len(list(parts.glob("part-*.parquet"))) < 2:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)
    first.kill()
    first.wait()
    assert not out.exists()
    done_before = len(list(parts.glob("part-*.parquet")))
    assert 2 <= done_before < 5

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    table = pq.read_table(out).to_pandas()
    assert sorted(table["key"]) == sorted(p.id for p in papers)  # each exactly once
    assert table["error"].isna().all()
    assert set(table["label"]) <= {"cancer", "non_cancer"}
    assert not parts.exists()
