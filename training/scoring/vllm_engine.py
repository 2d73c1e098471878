"""vLLM's offline engine: the serving engine, with the serving request parameters."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from hardware.cpus import usable_cores
from model_contract.prompts import CPU_KV_BLOCK_TOKENS, PromptRenderer
from model_contract.reading import LabelScore, sampling_params, score_from_logprobs
from preprocessing.papers import Paper

log = logging.getLogger(__name__)


def engine_env(on_gpu: bool) -> dict[str, str]:
    """The engine core runs in this process (no child to spawn, which would re-import the
    caller's __main__ and could outlive it). On CPU: a small KV cache, no core reserved for a
    front end, threads on every core we may use. Values set by the caller win."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if not on_gpu:
        env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                "VLLM_CPU_OMP_THREADS_BIND": usable_cores()}
    return {k: os.environ.get(k, v) for k, v in env.items()}


@contextlib.contextmanager
def hidden_unsafe_modules() -> Iterator[None]:
    """vLLM's CPU platform rebinds Triton kernels by walking every loaded module and calling
    hasattr() on its attributes; werkzeug's LocalProxy (flask's `current_app`, imported by
    locust's pytest plugin or moto's server) raises RuntimeError there and the engine fails to
    start. Hide such modules from sys.modules while the engine starts, then put them back."""
    hidden = {}
    for name, module in list(sys.modules.items()):
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        for value in values:
            try:
                hasattr(value, "__dict__")
            except Exception:  # noqa: BLE001 - any failure here would fail vLLM the same way
                hidden[name] = module
                break
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def open_engine(model_dir: Path | str, max_model_len: int):
    """vLLM's offline engine in TRAINING_PRECISION (default: the hardware rule)."""
    from vllm import LLM

    from training.settings import TrainingSettings

    on_gpu = _on_gpu()
    # On CPU, blocks the template's shared prefix fills, so evaluation computes it once.
    kwargs = ({"gpu_memory_utilization": 0.5} if on_gpu else
              {"block_size": CPU_KV_BLOCK_TOKENS, "enable_prefix_caching": True})
    precision = TrainingSettings().choose_precision("cuda" if on_gpu else "cpu")
    log.info("offline vLLM engine: %s", precision.describe())
    with hidden_unsafe_modules():
        return LLM(model=str(model_dir), dtype=precision.precision.value, enforce_eager=True,
                   seed=0, max_model_len=max_model_len, logprobs_mode="processed_logprobs",
                   **kwargs)


def close_engine(llm) -> None:
    # Stops the engine-core process now; on another vLLM version the finaliser does it.
    with contextlib.suppress(AttributeError):
        llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


@contextlib.contextmanager
def engine_session(model_dir: Path | str, max_model_len: int) -> Iterator:
    """One offline engine for several scoring calls (pass it to vllm_scores as `llm`)."""
    with mock.patch.dict(os.environ, engine_env(_on_gpu())):
        llm = open_engine(model_dir, max_model_len)
        try:
            yield llm
        finally:
            close_engine(llm)


def vllm_scores(model_dir: Path | str, renderer: PromptRenderer, papers: list[Paper],
                llm=None) -> list[LabelScore]:
    """The label score of each paper's prompt, on `llm` or on an engine opened for the call."""
    prompts = [renderer.render(p.title, p.abstract).text for p in papers]
    if llm is not None:
        return prompt_scores(llm, renderer, prompts)
    with engine_session(model_dir, renderer.max_prompt_tokens() + 8) as own:
        return prompt_scores(own, renderer, prompts)


def prompt_scores(llm, renderer: PromptRenderer, prompts: list[str]) -> list[LabelScore]:
    """The label score (no temperature) of each rendered prompt on an open engine."""
    from vllm import SamplingParams

    # Set for the engine only: child processes started later (a vLLM server in a test
    # session) must not inherit them.
    with mock.patch.dict(os.environ, engine_env(_on_gpu())):
        outputs = llm.generate(prompts, SamplingParams(**sampling_params(renderer)),
                               use_tqdm=True)
    scores = []
    for out in outputs:
        first = out.outputs[0].logprobs[0]  # the one generated position
        scores.append(score_from_logprobs(renderer, {t: lp.logprob for t, lp in first.items()}))
    return scores
