"""Label probabilities of a model on papers, one forward pass each, by one of two engines:
vLLM's offline engine (what serving runs; merged models only) or a batched transformers forward
(any model, with or without a LoRA adapter). Both renormalise the next-token distribution over
the label tokens, through `model_contract.reading.score_from_logprobs`."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from model_contract.prompts import PromptRenderer
from model_contract.reading import LabelScore, PromptScorer
from preprocessing.papers import Paper

log = logging.getLogger(__name__)

EngineName = Literal["auto", "vllm", "transformers"]


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_engine(requested: EngineName, adapter: Path | None) -> str:
    if requested == "vllm" and adapter is not None:
        raise ValueError("vLLM scores merged models only; merge the adapter or use transformers")
    if requested == "vllm" and not vllm_installed():
        raise RuntimeError("vLLM is not installed")
    if requested != "auto":
        return requested
    return "vllm" if vllm_installed() and adapter is None else "transformers"


def score_papers(model_dir: Path | str, papers: list[Paper], renderer: PromptRenderer,
                 adapter: Path | None = None, engine: EngineName = "auto",
                 batch_size: int = 16) -> tuple[list[LabelScore], str]:
    """Scores in the order of `papers`, and the engine that produced them."""
    chosen = choose_engine(engine, adapter)
    log.info("scoring %d papers with %s (%s%s)", len(papers), chosen, model_dir,
             f" + adapter {adapter}" if adapter else "")
    if chosen == "vllm":
        from training.scoring.vllm_engine import vllm_scores

        return vllm_scores(model_dir, renderer, papers), chosen
    from training.scoring.transformers_forward import transformers_scores

    return transformers_scores(model_dir, renderer, papers, adapter, batch_size), chosen


@contextlib.contextmanager
def scoring_session(model_dir: Path | str, max_prompt_tokens: int, engine: EngineName = "auto",
                    batch_size: int = 16) -> Iterator[tuple[PromptScorer, str]]:
    """A scorer of rendered prompts for several calls on one model (`read_batch` takes it),
    and the engine it uses: the model loads once for all of them (vLLM: prompts up to
    `max_prompt_tokens`)."""
    chosen = choose_engine(engine, None)
    if chosen != "vllm":
        from training.scoring.transformers_forward import load_model, prompt_scores

        model = load_model(model_dir)
        yield (lambda renderer, prompts: prompt_scores(model, renderer, prompts, batch_size)
               if prompts else []), chosen
        return
    from training.scoring.vllm_engine import engine_session
    from training.scoring.vllm_engine import prompt_scores as vllm_prompt_scores

    with engine_session(model_dir, max_prompt_tokens + 8) as llm:
        yield (lambda renderer, prompts: vllm_prompt_scores(llm, renderer, prompts)
               if prompts else []), chosen
