"""The benchmark end to end on a few papers: every path runs and the JSON holds the figures
the README and the targets are read from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REQUIRED = ("ratio_gateway_vs_baseline", "gateway_overhead_throughput",
            "gateway_overhead_p50_ms", "mfu_gateway", "cold_start_s", "accuracy_baseline",
            "accuracy_gateway", "papers", "machine", "paths", "precision", "peak_precision",
            "peak_flops")


def test_bench_smoke(processed_dir: Path, base_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "bench", "--papers", "8", "--concurrency", "4",
         "--rounds", "1", "--out-dir", str(out), "--json", str(out / "smoke.json"),
         "--data-dir", str(processed_dir), "--model", str(base_model_dir)],
        capture_output=True, text=True, timeout=900, env=os.environ | {"TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "smoke.json").read_text())
    assert set(REQUIRED) <= result.keys()
    assert result["papers"] == 8
    assert set(result["paths"]) == {"baseline", "offline", "server", "gateway"}
    for name, path in result["paths"].items():
        assert path["papers"] == 8, name
        assert 0 <= path["accuracy"] <= 1, name
        assert path["papers_per_s"] > 0 and 0 < path["mfu"] < 1.5, name
        assert path["errors"] == 0, name
    assert 0 <= result["accuracy_baseline"] <= 1 and 0 <= result["accuracy_gateway"] <= 1
    assert result["ratio_gateway_vs_baseline"] > 0
    assert 0 < result["mfu_gateway"] < 1.5
    assert 0 < result["cold_start_s"] < 600
    assert -1 < result["gateway_overhead_throughput"] < 1
    assert result["machine"]["cores"] == os.cpu_count()
    # Everything ran in the precision the engine chose, and MFU is against that peak.
    from inference.engine import EngineSettings, engine_precision

    chosen = engine_precision(EngineSettings()).precision.value
    assert result["precision"]["precision"] == result["peak_precision"] == chosen
    assert result["paths"]["baseline"]["precision"] == chosen
    assert all(p["precision"] == chosen for p in result["peak_measurements"])
    assert result["paths"]["offline"]["engine_kwargs"]["dtype"] == chosen
    # The baseline reads whole abstracts, the offline path capped ones; the served paths read
    # capped and then, for unsure papers, whole (on the untuned model, every cut paper).
    tokens = {name: path["prompt_tokens_mean"] for name, path in result["paths"].items()}
    assert tokens["offline"] < tokens["baseline"]
    assert tokens["offline"] <= tokens["gateway"] <= tokens["baseline"] + tokens["offline"] + 8
    assert result["paths"]["gateway"]["rereads"] == result["paths"]["server"]["rereads"] > 0
    assert result["parameters"]["non_embedding"] < result["parameters"]["total"]
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "bench.md").read_text()
    assert table.count("| baseline:") == 1 and "| gateway:" in table
    verdicts = [line.split()[0] for line in done.stdout.splitlines()
                if line.startswith(("PASS ", "FAIL "))]
    assert len(verdicts) == len(result["targets"]) == 6
