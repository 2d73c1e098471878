"""The offline path: vLLM's offline engine (`vllm.LLM`) with the served engine's arguments,
every paper in one `generate` call, the served (capped) prompt and sampling parameters."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from loadtest.bench.figures import path_figures
from preprocessing.papers import Paper


def _recorder(finished: list[float], progress: bool) -> type:
    """A tqdm class for `LLM.generate(use_tqdm=...)` that notes when each paper finished
    (`time.perf_counter()` seconds)."""
    from tqdm import tqdm as base_tqdm

    class Recorder(base_tqdm):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw | {"disable": not progress,
                                            "desc": "offline (vLLM LLM.generate)"})

        def update(self, n: float | None = 1) -> bool | None:
            finished.extend([time.perf_counter()] * int(n or 0))
            return super().update(n)

    return Recorder


def offline_path(model_dir: str, papers: list[Paper], warmup: list[Paper], settings_json: str,
                 progress: bool) -> dict[str, Any]:
    """All papers in one `LLM.generate` call after one call on `warmup`; a paper's latency is
    the time (seconds) from the call to the step that finished it. The path's figures (see
    `path_figures`) plus the prompt version and the engine arguments. Runs in a child process
    of its own (see `isolation`): it changes that process's environment."""
    from inference.engine import EngineSettings
    from inference.offline import offline_engine_kwargs
    from model_contract.layout import load_renderer
    from model_contract.reading import sampling_params
    from training.scoring.vllm_engine import close_engine

    kwargs, env = offline_engine_kwargs(EngineSettings.model_validate_json(settings_json),
                                        Path(model_dir))
    # This is a child process of its own: its environment dies with it. The engine core runs
    # in a process of its own, as in the server: vLLM sets LD_PRELOAD (its tcmalloc, torch's
    # libgomp for the thread binding) for the processes it starts, and an engine core inside
    # this already-running process would miss both (measured: half the throughput).
    os.environ.update(env | {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    from vllm import LLM, SamplingParams

    llm = LLM(**kwargs)
    renderer = load_renderer(Path(model_dir))
    params = SamplingParams(**sampling_params(renderer))
    llm.generate([renderer.render(p.title, p.abstract).text for p in warmup], params,
                 use_tqdm=False)
    finished: list[float] = []
    started = time.perf_counter()
    prompts = [renderer.render(p.title, p.abstract).text for p in papers]
    outputs = llm.generate(prompts, params, use_tqdm=_recorder(finished, progress))
    seconds = time.perf_counter() - started
    labels = _labels(renderer, outputs)
    tokens = [len(out.prompt_token_ids) for out in outputs]
    cached = sum(out.num_cached_tokens or 0 for out in outputs)
    close_engine(llm)
    return path_figures(papers, labels, [t - started for t in finished], seconds, tokens,
                        cached_tokens=cached) | {
        "prompt_version": renderer.template.version,
        "engine_kwargs": {k: v for k, v in kwargs.items() if k != "model"}}


def _labels(renderer: Any, outputs: list[Any]) -> list[str | None]:
    """Each output's label, read off the log-probabilities of its first generated token."""
    from model_contract.reading import score_from_logprobs

    labels = []
    for out in outputs:
        first = out.outputs[0].logprobs[0]
        labels.append(score_from_logprobs(renderer, {t: lp.logprob for t, lp in first.items()})
                      .label)
    return labels
