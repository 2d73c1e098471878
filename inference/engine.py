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
from pydantic import Field
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
from model_contract.layout import SERVED_NAME, load_renderer
from model_contract.prompts import CPU_KV_BLOCK_TOKENS

log = logging.getLogger(__name__)


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINE_")

    host: str = Field("127.0.0.1", description="Address the engine's OpenAI server binds to "
                      "(0.0.0.0 in a container)")
    port: int = Field(8000, description="TCP port the engine's OpenAI server listens on")
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
        "auto", description="Cores the CPU engine computes on, e.g. 0-3 or 0,2 "
        "(VLLM_CPU_OMP_THREADS_BIND); auto = every core this process may use"
    )
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
    reread = renderer.reread_renderer()
    first_len = renderer.max_prompt_tokens() + 1  # + the one answer token
    # The context must hold the longer second read when the template has one.
    max_len = max(first_len, reread.max_prompt_tokens() + 1 if reread else 0)
    args = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
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


def _log_prefix_blocks(prefix_tokens: int, block_size: int) -> None:
    cached = prefix_tokens // block_size * block_size
    if cached:
        log.info("prefix cache: %d of the %d tokens every prompt shares are computed once",
                 cached, prefix_tokens)
    else:
        log.warning("the template's shared prefix (%d tokens) fills no %d-token KV block: "
                    "every paper computes it", prefix_tokens, block_size)


def start(settings: EngineSettings, model_dir: Path, log_path: Path | None = None,
          detach: bool = False) -> subprocess.Popen:
    precision = engine_precision(settings)
    log.info("engine precision: %s", precision.describe())
    args, extra_env = build_command(settings, model_dir, precision)
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - owned by the child
    return subprocess.Popen(args, env=os.environ | extra_env, stdout=out, stderr=out,
                            start_new_session=detach)


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
               process: subprocess.Popen | None = None) -> float:
    """Block until `url` serves `model_name`; returns the seconds waited. Fails fast when the
    process dies instead of waiting out the timeout."""
    def serves() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"engine exited with code {process.returncode} before ready")
        models = httpx.get(f"{url}/v1/models", timeout=2).json()
        return any(m["id"] == model_name for m in models.get("data", []))

    return wait_until(serves, timeout_s, 0.5, f"engine at {url}")
