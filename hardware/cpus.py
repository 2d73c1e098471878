"""The cores this process may compute on."""

from __future__ import annotations

import os


def usable_cores() -> str:
    """The cores this process may run on (its affinity, e.g. under `taskset` or a cpuset, not
    every core of the machine), as vLLM's VLLM_CPU_OMP_THREADS_BIND wants them: "0-3", or
    "0,2" when they are not contiguous, or "1" for one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1 and cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))
