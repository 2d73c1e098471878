"""The vLLM engine launcher: vLLM's OpenAI-compatible server with arguments chosen for the
platform, started as a child process and waited on until it answers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from hardware.cpus import usable_cores
from hardware.precision import PrecisionChoice, PrecisionSetting, choose, detect_cuda
from inference.engine_headers import PRECISION_ENV
from inference.engine_server import CORE_OMP_ENV
from model_contract.layout import SERVED_NAME, load_renderer
from model_contract.prompts import CPU_KV_BLOCK_TOKENS

log = logging.getLogger(__name__)


# One worker's core list in vLLM's syntax: "0-3", "0,2,5-6".
_CORES = r"\d+(-\d+)?(,\d+(-\d+)?)*"


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINE_")

    host: str = Field("127.0.0.1", description="Address the engine's OpenAI server binds to "
                      "(0.0.0.0 in a container)")
    port: int = Field(8000, ge=1, le=65535,
                      description="TCP port the engine's OpenAI server listens on")
    served_model_name: str = Field(SERVED_NAME, description="Model name clients ask for "
                                   "(the gateway's GATEWAY_MODEL_NAME must match)")
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="Where the engine "
                        "computes: cpu, cuda, or auto (cuda if an NVIDIA GPU is present)")
    precision: PrecisionSetting = Field(
        "auto", description="vLLM --dtype; auto = the hardware rule (bf16 where native, fp16 on "
        "NVIDIA before compute capability 8.0, else fp32)")
    # CPU: the KV cache is plain memory the OS faults in at start (7-15 s a GiB measured on a
    # 2-core VM). 1 GiB holds about 23,000 fp32 tokens of the default model: 64 first reads
    # of about 250 tokens in one step, with room left for second reads and cached prefixes.
    cpu_kvcache_gib: int = Field(1, ge=1, description="KV cache size on CPU, in GiB "
                                 "(VLLM_CPU_KVCACHE_SPACE)")
    cpu_threads_bind: str = Field(
        "auto", pattern=rf"^(auto|nobind|{_CORES}(\|{_CORES})*)$",
        description="Cores the CPU engine computes on, one thread each, e.g. 0-3 or 0,2 "
        "(VLLM_CPU_OMP_THREADS_BIND); auto = every core this process may use; nobind = "
        "leave threads to OpenMP")
    cpu_block_size: int = Field(
        CPU_KV_BLOCK_TOKENS, ge=32, multiple_of=32, description="KV-cache block on CPU, in "
        "tokens (multiples of 32 on vLLM's CPU backend): the prefix cache shares whole blocks, "
        "and the default template's 64-token shared prefix fills two")
    cpu_worker_in_engine_core: bool = Field(
        True, description="On CPU, run vLLM's model worker inside its engine-core process "
        "(VLLM_ENABLE_V1_MULTIPROCESSING=0) instead of a third process that imports vLLM "
        "again: a cold start 20-40 s shorter on 2 cores at the same MFU")
    enforce_eager: bool = Field(
        True, description="Skip graph compilation: ready in ~30 s instead of ~150 s on CPU"
    )
    gpu_memory_utilization: float = Field(0.85, description="Share of GPU memory vLLM may "
                                          "take, 0 to 1")
    max_num_seqs: int = Field(64, description="Most sequences (papers) scheduled in one step")
    max_num_batched_tokens: int | None = Field(None, description="Tokens per step (default: "
                                               "enough for max_num_seqs prompts on GPU)")
    extra_args: str = Field("", description="More vLLM arguments, space-separated")
    ready_timeout_s: float = Field(600, description="Seconds to wait for the server to serve "
                                   "the model before giving up")

    @field_validator("cpu_threads_bind")
    @classmethod
    def _core_lists_parse(cls, value: str) -> str:
        if value not in ("auto", "nobind"):
            for worker in value.split("|"):
                parse_core_list(worker)
        return value

    @model_validator(mode="after")
    def _cores_fit_the_cpu_engine(self) -> EngineSettings:
        # On GPU the setting is unused; with device auto, build_command checks it on CPU.
        if self.device != "cpu" or self.cpu_threads_bind in ("auto", "nobind"):
            return self
        if self.cpu_worker_in_engine_core:
            omp_binding_env(self.cpu_threads_bind)  # one list, of usable cores
        else:
            for worker in self.cpu_threads_bind.split("|"):
                usable_core_list(worker)
        return self


def engine_device(settings: EngineSettings) -> str:
    if settings.device != "auto":
        return settings.device
    return "cuda" if detect_cuda() is not None else "cpu"


def engine_precision(settings: EngineSettings) -> PrecisionChoice:
    """The precision the engine computes in (ENGINE_PRECISION, else the hardware rule)."""
    return choose(engine_device(settings), settings.precision, "ENGINE_PRECISION")


def build_command(settings: EngineSettings, model_dir: Path,
                  precision: PrecisionChoice | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment for vLLM's OpenAI server, computing in `precision` (default:
    `engine_precision(settings)`). Every response of the server carries that choice in a
    header, which the gateway reports."""
    precision = precision or engine_precision(settings)
    device = precision.device
    renderer = load_renderer(model_dir)
    first_len = renderer.max_prompt_tokens() + 1  # + the one answer token
    # The context must hold the longer second read when the template has one.
    max_len = renderer.served_max_prompt_tokens() + 1
    args = [
        sys.executable, "-m", "inference.engine_server",  # vLLM's OpenAI server
        "--model", str(model_dir),
        "--served-model-name", settings.served_model_name,
        "--host", settings.host, "--port", str(settings.port),
        "--max-model-len", str(max_len),
        "--enable-prefix-caching",  # the system + instruction prefix is shared by every paper
        "--logprobs-mode", "processed_logprobs",  # log-probs over the allowed label tokens
        "--max-num-seqs", str(settings.max_num_seqs),
        "--disable-uvicorn-access-log",
        "--dtype", precision.precision.value,  # the bf16 weights are cast at load
        "--middleware", "inference.engine_headers.PrecisionHeader",
    ]
    # A step's budget is sized for the common (first, short) read; one long read still fits.
    batched = settings.max_num_batched_tokens or max(first_len * settings.max_num_seqs, max_len)
    env: dict[str, str] = {PRECISION_ENV: json.dumps(precision.as_dict())}
    if device == "cpu":
        # Compute on every core (vLLM reserves one for its front end by default; measured
        # 2.66 vs 1.59 papers/s on two cores).
        bind = settings.cpu_threads_bind
        env |= {
            "VLLM_CPU_KVCACHE_SPACE": str(settings.cpu_kvcache_gib),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CPU_OMP_THREADS_BIND": usable_cores() if bind == "auto" else bind,
        }
        if settings.cpu_worker_in_engine_core:
            # The server still runs its engine core in a process of its own; this only keeps
            # the worker in it (vLLM's CPU platform otherwise forces its multiprocess executor).
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            env[CORE_OMP_ENV] = json.dumps(omp_binding_env(env["VLLM_CPU_OMP_THREADS_BIND"]))
        args += ["--max-num-batched-tokens", str(batched),
                 "--block-size", str(settings.cpu_block_size)]
        _log_prefix_blocks(renderer.shared_prefix_tokens(), settings.cpu_block_size)
    else:
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization),
                 "--max-num-batched-tokens", str(max(batched, 8192))]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    args += settings.extra_args.split()
    return args, env


def omp_binding_env(cores: str, allowed: set[int] | None = None) -> dict[str, str]:
    """OpenMP settings that run one compute thread pinned to each of `cores` (vLLM's
    VLLM_CPU_OMP_THREADS_BIND syntax for one worker: "0-3", "0,2,5-6"; "nobind": {}), for the
    engine core only (see inference/engine_server.py).

    vLLM applies that variable only when it spawns its worker as a process of its own (vLLM
    0.32, `OMPProcessManager.configure_omp_envs`); a worker kept in the engine core would
    otherwise compute unpinned. Standard OpenMP variables (OpenMP 4.0 `OMP_PLACES`,
    `OMP_PROC_BIND`) pin it instead. Raises ValueError for a list of several workers
    ("0-1|2-3"), a malformed one, or cores outside `allowed` (default: this process's
    affinity), where the threads would share the cores they may use."""
    if cores == "nobind":
        return {}
    if "|" in cores:
        raise ValueError(f"ENGINE_CPU_THREADS_BIND={cores!r} lists several workers; a worker "
                         "in the engine core takes one list (or set "
                         "ENGINE_CPU_WORKER_IN_ENGINE_CORE=false)")
    ids = usable_core_list(cores, allowed)
    return {"OMP_NUM_THREADS": str(len(ids)),
            "OMP_PLACES": ",".join(f"{{{i}}}" for i in ids),
            "OMP_PROC_BIND": "close"}


def usable_core_list(cores: str, allowed: set[int] | None = None) -> list[int]:
    """`parse_core_list`, and a ValueError for cores outside `allowed` (default: this
    process's affinity)."""
    ids = parse_core_list(cores)
    allowed = os.sched_getaffinity(0) if allowed is None else allowed
    if outside := sorted(set(ids) - allowed):
        raise ValueError(f"ENGINE_CPU_THREADS_BIND={cores!r} names cores {outside} this "
                         f"process may not use (it may use {sorted(allowed)})")
    return ids


def parse_core_list(cores: str) -> list[int]:
    """[0, 2, 5, 6] from "0,2,5-6". Raises ValueError for anything else: a range that runs
    backwards, a core named twice, not numbers."""
    ids: list[int] = []
    for part in cores.split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{cores!r} is not a core list such as 0-3 or 0,2")
        if dash and int(last) < int(first):
            raise ValueError(f"{cores!r}: the range {part} runs backwards")
        ids += range(int(first), int(last or first) + 1)
    if len(set(ids)) < len(ids):
        raise ValueError(f"{cores!r} names a core twice")
    return ids


def _log_prefix_blocks(prefix_tokens: int, block_size: int) -> None:
    cached = prefix_tokens // block_size * block_size
    if cached:
        log.info("prefix cache: %d of the %d tokens every prompt shares are computed once",
                 cached, prefix_tokens)
    else:
        log.warning("the template's shared prefix (%d tokens) fills no %d-token KV block: "
                    "every paper computes it", prefix_tokens, block_size)


def start(settings: EngineSettings, model_dir: Path, log_path: Path | None = None,
          detach: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the server (see `build_command`) with this environment plus `env` (for this
    engine only); its output goes to `log_path` (default: ours)."""
    precision = engine_precision(settings)
    log.info("engine precision: %s", precision.describe())
    args, extra_env = build_command(settings, model_dir, precision)
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - owned by the child
    return subprocess.Popen(args, env=os.environ | (env or {}) | extra_env, stdout=out,
                            stderr=out, start_new_session=detach)


def wait_until(ready: Callable[[], bool], timeout_s: float, interval_s: float,
               what: str) -> float:
    """Call `ready` every `interval_s` until it returns True; an HTTP error or an unreadable
    answer (httpx.HTTPError, ValueError, KeyError) counts as not yet. Returns the seconds
    waited. Raises TimeoutError naming `what` after `timeout_s`; any other exception of
    `ready` (a process that exited) ends the wait at once."""
    started = time.monotonic()
    waiting = Retrying(
        retry=retry_if_result(lambda ok: not ok)
        | retry_if_exception_type((httpx.HTTPError, ValueError, KeyError)),
        stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s))
    try:
        waiting(ready)
    except RetryError:
        raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s") from None
    return time.monotonic() - started


def wait_ready(url: str, model_name: str, timeout_s: float,
               process: subprocess.Popen | None = None,
               watch: Callable[[], None] | None = None) -> float:
    """Block until `url` serves `model_name`; returns the seconds waited. Fails fast when the
    process dies instead of waiting out the timeout (RuntimeError), or when `watch`, called
    at each look, raises (a process started beside it that exited)."""
    def serves() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"engine exited with code {process.returncode} before ready")
        if watch is not None:
            watch()
        models = httpx.get(f"{url}/v1/models", timeout=2).json()
        return any(m["id"] == model_name for m in models.get("data", []))

    return wait_until(serves, timeout_s, 0.5, f"engine at {url}")
