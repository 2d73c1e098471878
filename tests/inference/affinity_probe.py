"""Run as __main__ by tests/inference/test_engine_server.py through inference.engine_server:
prints this process's CPU affinity and that of a child it spawns (as vLLM spawns its engine
core), each after loading libgomp, as JSON."""

from __future__ import annotations

import json
import multiprocessing
import os


def _child_affinity(queue: multiprocessing.Queue) -> None:
    import torch  # noqa: F401 - libgomp applies OMP_PLACES / OMP_PROC_BIND as it loads

    queue.put(sorted(os.sched_getaffinity(0)))


if __name__ == "__main__":
    # As vLLM's server does while it starts: a library with an OpenMP runtime of its own,
    # loaded late (libgomp pins the thread that loads it when a binding is in the env).
    import sentencepiece  # noqa: F401

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_affinity, args=(queue,))
    child.start()
    child_cores = queue.get(timeout=600)
    child.join()
    print(json.dumps({"server": sorted(os.sched_getaffinity(0)), "core": child_cores}))
