import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.engine import EngineSettings, build_command, omp_binding_env


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


@pytest.mark.parametrize(("bind", "threads", "places"), [
    ("0-1", "2", "{0},{1}"),
    ("0,2,5-6", "4", "{0},{2},{5},{6}"),
    ("3", "1", "{3}"),
])
def test_a_worker_in_the_engine_core_gets_its_threads_pinned(
        base_model_dir: Path, bind: str, threads: str, places: str) -> None:
    # vLLM pins the threads only of a worker it spawns; in the core, OpenMP's own variables do.
    _args, env = build_command(EngineSettings(device="cpu", cpu_threads_bind=bind),
                               base_model_dir)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == bind
    assert (env["OMP_NUM_THREADS"], env["OMP_PLACES"], env["OMP_PROC_BIND"]) == (
        threads, places, "close")


def test_auto_binding_pins_a_thread_to_each_usable_core(base_model_dir: Path) -> None:
    _args, env = build_command(EngineSettings(device="cpu"), base_model_dir)
    cores = sorted(os.sched_getaffinity(0))
    assert env["OMP_NUM_THREADS"] == str(len(cores))
    assert env["OMP_PLACES"] == ",".join(f"{{{c}}}" for c in cores)


def test_binding_is_left_to_vllm_or_openmp_when_asked(base_model_dir: Path) -> None:
    _args, env = build_command(EngineSettings(device="cpu", cpu_threads_bind="nobind"),
                               base_model_dir)
    assert not {"OMP_NUM_THREADS", "OMP_PLACES"} & env.keys()
    # A worker of its own: vLLM binds it from VLLM_CPU_OMP_THREADS_BIND.
    _args, env = build_command(EngineSettings(device="cpu", cpu_threads_bind="0-1|2-3",
                                              cpu_worker_in_engine_core=False), base_model_dir)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1|2-3"
    assert not {"OMP_NUM_THREADS", "OMP_PLACES"} & env.keys()


@pytest.mark.parametrize(("bind", "error"), [
    ("0-1|2-3", "several workers"), ("cores 0-1", "cpu_threads_bind"), ("0-", "cpu_threads_bind"),
])
def test_a_bad_core_list_is_refused_with_the_reason(bind: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        EngineSettings(cpu_threads_bind=bind)


def test_omp_binding_env_refuses_what_the_settings_would() -> None:
    with pytest.raises(ValueError, match="several workers"):
        omp_binding_env("0|1")
    with pytest.raises(ValueError, match="not a core list"):
        omp_binding_env("a-b")
