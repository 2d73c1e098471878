"""The engine process's entry point: vLLM's OpenAI server, with OpenMP thread binding that
reaches its engine core and not the server itself.

libgomp reads OMP_PLACES / OMP_PROC_BIND once, when it loads, and pins the loading thread to
the first place; a spawned child inherits that one-core mask. Set in the server's own
environment, the binding would pin the server to the first core and, through it, the engine
core too. So the server loads torch (and libgomp) unbound first, and only then puts the
binding into the environment its engine core (started by spawn on CPU) inherits. vLLM does the
same around the worker processes it spawns (vLLM 0.32, `OMPProcessManager.configure_omp_envs`).

Run as `python -m inference.engine_server <vLLM server arguments>`; the binding comes as a JSON
object of variables in CORE_OMP_ENV (absent: none).
"""

from __future__ import annotations

import json
import os
import runpy

#: JSON object of the OpenMP variables meant for the engine core only.
CORE_OMP_ENV = "ENGINE_CORE_OMP_ENV"
VLLM_SERVER = "vllm.entrypoints.openai.api_server"


def main(module: str = VLLM_SERVER) -> None:
    """Run `module` as __main__ (with this process's arguments) after moving the binding from
    CORE_OMP_ENV into the environment its spawned children inherit."""
    import torch  # noqa: F401 - loads libgomp now, before the binding is in the environment

    os.environ.update(json.loads(os.environ.pop(CORE_OMP_ENV, "{}")))
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
