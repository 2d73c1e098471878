"""How a label is read off the model: one forward pass, the next-token distribution restricted
to the label tokens. Shared by offline evaluation (training) and the gateway (inference)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from model_contract.prompts import PromptRenderer


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float  # of the returned label
    cancer_probability: float


def sampling_params(renderer: PromptRenderer) -> dict:
    """vLLM sampling parameters (same names offline and on the OpenAI server). With the engine
    flag `--logprobs-mode processed_logprobs` the returned log-probabilities are those over the
    allowed label tokens only."""
    return {
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": len(renderer.label_token_ids),
        "allowed_token_ids": sorted(renderer.label_token_ids.values()),
    }


def score_from_logprobs(renderer: PromptRenderer, logprobs: Mapping[int, float]) -> LabelScore:
    """Renormalise over the label tokens (a missing label counts as probability 0)."""
    probs = {
        label: math.exp(logprobs[tid]) if tid in logprobs else 0.0
        for label, tid in renderer.label_token_ids.items()
    }
    total = sum(probs.values())
    if total <= 0:
        raise ValueError("no label token among the returned log-probabilities")
    cancer = probs["cancer"] / total
    label = "cancer" if cancer >= 0.5 else "non_cancer"
    return LabelScore(label, cancer if label == "cancer" else 1.0 - cancer, cancer)


def needs_reread(score: LabelScore, truncated: bool, below: float) -> bool:
    """Read again, longer, when the capped read cut the paper and is less sure than `below`.
    On the validation split, re-reading below 0.98 took the fine-tuned model from 95.0 % to
    98.75 % while re-reading 15 % of papers (CHANGELOG.md, 2026-11-25)."""
    return truncated and score.probability < below


async def read_paper(
    first: PromptRenderer,
    second: PromptRenderer | None,
    title: str,
    abstract: str,
    below: float,
    score: Callable[[PromptRenderer, str], Awaitable[LabelScore]],
) -> tuple[LabelScore, bool, bool]:
    """The serving read: `first` (capped); when it cut the paper and is unsure, `second`
    decides. `score` sends one rendered prompt to an engine. Returns the deciding score,
    whether its prompt was cut, and whether the paper was read twice."""
    prompt = first.render(title, abstract)
    result = await score(first, prompt.text)
    reread = second is not None and needs_reread(result, prompt.truncated, below)
    if reread:
        prompt = second.render(title, abstract)
        result = await score(second, prompt.text)
    return result, prompt.truncated, reread
