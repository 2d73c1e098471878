"""The engine's entry point pins the threads of the process it spawns (vLLM's engine core),
not its own: a real libgomp (torch's) in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inference.engine import omp_binding_env
from inference.engine_server import CORE_OMP_ENV


def test_the_binding_reaches_the_spawned_engine_core_only() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two usable cores to tell a pinned process from a free one")
    last = str(allowed[-1])  # not the first core, which an unpinned process also holds
    env = os.environ | {CORE_OMP_ENV: json.dumps(omp_binding_env(last))}
    probe = subprocess.run(
        [sys.executable, "-c", "from inference.engine_server import main; "
         "main('tests.inference.affinity_probe')"],
        env=env, capture_output=True, text=True, timeout=900, check=True)
    cores = json.loads(probe.stdout.strip().splitlines()[-1])
    assert cores == {"server": allowed, "core": [allowed[-1]]}
