"""vLLM's offline engine (`vllm.LLM`) configured exactly as the served engine: the server's own
command line (`inference.engine.build_command`) parsed by vLLM's engine-argument parser. Used
where the model runs in process: corpus runs on Ray Data and the benchmark's offline path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from inference.engine import EngineSettings, build_command


def offline_engine_kwargs(settings: EngineSettings, model_dir: Path
                          ) -> tuple[dict, dict[str, str]]:
    """`vllm.LLM` keyword arguments that differ from vLLM's defaults, and the environment the
    engine needs (threads, KV cache, precision header), both as the server would get them."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args, env = build_command(settings, model_dir)
    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    served, _server_only = parser.parse_known_args(args[3:])  # after `python -m module`
    defaults, _ = parser.parse_known_args(["--model", str(model_dir)])
    kwargs = {f.name: getattr(served, f.name) for f in dataclasses.fields(EngineArgs)
              if hasattr(served, f.name) and getattr(served, f.name) != getattr(defaults, f.name)}
    kwargs["model"] = str(model_dir)
    kwargs.pop("served_model_name", None)
    return kwargs, env
