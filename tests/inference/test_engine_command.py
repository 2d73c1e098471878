from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.engine import EngineSettings, build_command


def test_cpu_engine_uses_blocks_the_shared_prefix_fills(base_model_dir: Path) -> None:
    args, _env = build_command(EngineSettings(device="cpu"), base_model_dir)
    assert args[args.index("--block-size") + 1] == "32"
    assert "--enable-prefix-caching" in args
    args, _env = build_command(EngineSettings(device="cpu", cpu_block_size=64), base_model_dir)
    assert args[args.index("--block-size") + 1] == "64"


@pytest.mark.parametrize("size", [16, 48])
def test_cpu_block_size_must_be_a_multiple_of_32(size: int) -> None:
    with pytest.raises(ValidationError, match="cpu_block_size"):
        EngineSettings(cpu_block_size=size)


def test_cpu_worker_runs_in_the_engine_core_unless_turned_off(base_model_dir: Path) -> None:
    _args, env = build_command(EngineSettings(device="cpu"), base_model_dir)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    _args, env = build_command(EngineSettings(device="cpu", cpu_worker_in_engine_core=False),
                               base_model_dir)
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
