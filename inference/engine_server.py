"""The engine process's entry point: vLLM's OpenAI server, with OpenMP thread binding that
reaches the engine core it spawns and not the server itself.

libgomp reads OMP_PLACES / OMP_PROC_BIND when it loads and pins the loading thread to the
first place, and the server loads several copies while it starts (torch's, then those bundled
with sentencepiece and scikit-learn); a child spawned from a pinned thread inherits its
one-core mask. So the binding is in the environment only while a child process starts, as
vLLM does around the worker processes it spawns (vLLM 0.32,
`OMPProcessManager.configure_omp_envs`); the engine core's own libgomp then applies it.

Run as `python -m inference.engine_server <vLLM server arguments>`; the binding comes as a JSON
object of variables in CORE_OMP_ENV (absent: none).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.process
import os
import runpy
from collections.abc import Iterator

#: JSON object of the OpenMP variables meant for the engine core only.
CORE_OMP_ENV = "ENGINE_CORE_OMP_ENV"
VLLM_SERVER = "vllm.entrypoints.openai.api_server"


def main(module: str = VLLM_SERVER) -> None:
    """Run `module` as __main__ (with this process's arguments), every process it starts
    through multiprocessing getting the binding of CORE_OMP_ENV."""
    binding = json.loads(os.environ.pop(CORE_OMP_ENV, "{}"))
    if binding:
        _bind_started_processes(binding)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _bind_started_processes(binding: dict[str, str]) -> None:
    start = multiprocessing.process.BaseProcess.start

    def start_bound(self: multiprocessing.process.BaseProcess) -> None:
        with _environment(binding):
            start(self)

    multiprocessing.process.BaseProcess.start = start_bound  # type: ignore[method-assign]


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in this process's environment inside the block, restored after."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":
    main()
