import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.engine import EngineSettings, build_command, omp_binding_env
from inference.engine_server import CORE_OMP_ENV


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
def test_omp_binding_pins_one_thread_to_each_listed_core(
        bind: str, threads: str, places: str) -> None:
    env = omp_binding_env(bind, allowed=set(range(8)))
    assert (env["OMP_NUM_THREADS"], env["OMP_PLACES"], env["OMP_PROC_BIND"]) == (
        threads, places, "close")


def test_a_worker_in_the_engine_core_gets_the_binding_for_its_core_only(
        base_model_dir: Path) -> None:
    # vLLM pins the threads only of a worker it spawns; for one in the engine core the
    # binding travels to the entry point, which hands it to the engine core alone.
    args, env = build_command(EngineSettings(device="cpu"), base_model_dir)
    assert args[1:3] == ["-m", "inference.engine_server"]
    cores = sorted(os.sched_getaffinity(0))
    binding = json.loads(env[CORE_OMP_ENV])
    assert binding["OMP_NUM_THREADS"] == str(len(cores))
    assert binding["OMP_PLACES"] == ",".join(f"{{{c}}}" for c in cores)
    assert not {"OMP_NUM_THREADS", "OMP_PLACES", "OMP_PROC_BIND"} & env.keys()


def test_binding_is_left_to_vllm_or_openmp_when_asked(base_model_dir: Path) -> None:
    _args, env = build_command(EngineSettings(device="cpu", cpu_threads_bind="nobind"),
                               base_model_dir)
    assert json.loads(env[CORE_OMP_ENV]) == {}
    # A worker of its own: vLLM binds it from VLLM_CPU_OMP_THREADS_BIND.
    cores = sorted(os.sched_getaffinity(0))
    two_workers = f"{cores[0]}|{cores[-1]}"
    _args, env = build_command(EngineSettings(device="cpu", cpu_threads_bind=two_workers,
                                              cpu_worker_in_engine_core=False), base_model_dir)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == two_workers
    assert CORE_OMP_ENV not in env


@pytest.mark.parametrize(("bind", "error"), [
    ("cores 0-1", "cpu_threads_bind"), ("0-", "cpu_threads_bind"),
    ("3-1", "runs backwards"), ("0,3-1", "runs backwards"), ("0,0", "twice"),
])
def test_a_bad_core_list_is_refused_with_the_reason(bind: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        EngineSettings(cpu_threads_bind=bind)


def test_cores_this_process_may_not_use_are_refused_up_front() -> None:
    unusable = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ValidationError, match=rf"cores \[{unusable}\] this process may not use"):
        EngineSettings(device="cpu", cpu_threads_bind=str(unusable))


def test_several_workers_need_the_worker_in_its_own_process_on_cpu() -> None:
    with pytest.raises(ValidationError, match="several workers"):
        EngineSettings(device="cpu", cpu_threads_bind="0-1|2-3")
    # On GPU the setting is unused, so nothing to refuse.
    assert EngineSettings(device="cuda", cpu_threads_bind="0-1|2-3").device == "cuda"


def test_omp_binding_env_refuses_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="several workers"):
        omp_binding_env("0|1")
    with pytest.raises(ValueError, match=r"cores \[4\] this process may not use"):
        omp_binding_env("3-4", allowed={0, 1, 2, 3})
