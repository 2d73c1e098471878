"""Label probabilities of a model on papers, one forward pass each, by one of two engines:
vLLM's offline engine (what serving runs; merged models only) or a batched transformers forward
(any model, with or without a LoRA adapter). Both renormalise the next-token distribution over
the label tokens, through `model_contract.reading.score_from_logprobs`."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from model_contract.prompts import PromptRenderer
from model_contract.reading import LabelScore
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


Scorer = Callable[[PromptRenderer, list[Paper]], list[LabelScore]]


@contextlib.contextmanager
def scoring_session(model_dir: Path | str, max_prompt_tokens: int, engine: EngineName = "auto",
                    batch_size: int = 16) -> Iterator[tuple[Scorer, str]]:
    """A scorer for several (renderer, papers) calls on one model, and the engine it uses:
    vLLM starts once for all of them (prompts up to `max_prompt_tokens`)."""
    chosen = choose_engine(engine, None)
    if chosen != "vllm":
        yield (lambda renderer, papers: score_papers(model_dir, papers, renderer, None, chosen,
                                                     batch_size)[0]), chosen
        return
    from training.scoring.vllm_engine import engine_session, vllm_scores

    with engine_session(model_dir, max_prompt_tokens + 8) as llm:
        yield (lambda renderer, papers: vllm_scores(model_dir, renderer, papers, llm)
               if papers else []), chosen
