"""How a label is read off the model: one forward pass, the next-token distribution restricted
to the label tokens. Shared by offline evaluation (training) and the gateway (inference)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from model_contract.prompts import PromptRenderer

#: Second-read threshold for a model whose manifest has no calibration (chosen on the
#: validation split of the first fine-tuned models, CHANGELOG.md 2026-11-25).
DEFAULT_REREAD_BELOW = 0.98
#: |logit| when a label token is missing from the answer: probability 1 - 2e-22, finite.
LOGIT_LIMIT = 50.0


@dataclass(frozen=True)
class ReadingRule:
    """How a model's answer is read: the temperature dividing the label logit (1 = as the model
    says) and the probability below which a cut paper is read again whole."""

    temperature: float = 1.0
    reread_below: float = DEFAULT_REREAD_BELOW


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float  # of the returned label
    cancer_probability: float
    logit: float = 0.0  # log P(cancer) - log P(non_cancer), before any temperature


def calibrated_probability(logit: float, temperature: float = 1.0) -> float:
    """P(cancer) = sigmoid(logit / temperature), without overflow."""
    s = logit / temperature
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


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


def score_from_logprobs(renderer: PromptRenderer, logprobs: Mapping[int, float],
                        temperature: float = 1.0) -> LabelScore:
    """Renormalise over the label tokens, dividing their logit by `temperature` (the model's
    calibration). A missing label counts as probability 0 (logit +-LOGIT_LIMIT); raises
    ValueError when neither label is there."""
    ids = renderer.label_token_ids
    cancer_lp, other_lp = logprobs.get(ids["cancer"]), logprobs.get(ids["non_cancer"])
    if cancer_lp is None and other_lp is None:
        raise ValueError("no label token among the returned log-probabilities")
    if cancer_lp is None or other_lp is None:
        logit = LOGIT_LIMIT if other_lp is None else -LOGIT_LIMIT
    else:
        logit = max(-LOGIT_LIMIT, min(LOGIT_LIMIT, cancer_lp - other_lp))
    return score_from_logit(logit, temperature)


def score_from_logit(logit: float, temperature: float = 1.0) -> LabelScore:
    """The label and its calibrated probability from the label logit (decision at logit 0,
    which no temperature moves)."""
    cancer = calibrated_probability(logit, temperature)
    label = "cancer" if cancer >= 0.5 else "non_cancer"
    return LabelScore(label, cancer if label == "cancer" else 1.0 - cancer, cancer, logit)


def needs_reread(score: LabelScore, truncated: bool, below: float) -> bool:
    """Read again, longer, when the capped read cut the paper and is less sure than `below`
    (each model's threshold is chosen on its validation papers by training and stored in its
    manifest; DEFAULT_REREAD_BELOW for a model without one)."""
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


#: Scores rendered prompts of one renderer, in order (one engine call for the batch).
PromptScorer = Callable[[PromptRenderer, list[str]], list[LabelScore]]


@dataclass(frozen=True)
class BatchRead:
    """One paper's reads in a batch: the capped read, and the whole read where one was asked."""

    capped: LabelScore
    capped_truncated: bool
    whole: LabelScore | None = None
    whole_truncated: bool = False

    @property
    def deciding(self) -> LabelScore:
        return self.whole if self.whole is not None else self.capped

    @property
    def truncated(self) -> bool:
        """Whether the deciding read's prompt was cut."""
        return self.whole_truncated if self.whole is not None else self.capped_truncated


def read_batch(first: PromptRenderer, papers: Sequence[tuple[str, str]], score: PromptScorer,
               read_again: Callable[[LabelScore], bool]) -> list[BatchRead]:
    """`read_paper` over a batch of (title, abstract), in two engine calls: the capped read
    (`first`) of every paper, then the whole read (`first`'s second-read renderer) of each
    paper the cap cut for which `read_again(capped score)` holds. One result per paper, in
    order."""
    prompts = [first.render(title, abstract) for title, abstract in papers]
    reads = [BatchRead(s, p.truncated) for s, p in
             zip(score(first, [p.text for p in prompts]), prompts, strict=True)]
    whole = first.reread_renderer()
    again = [i for i, r in enumerate(reads)
             if whole is not None and r.capped_truncated and read_again(r.capped)]
    if again:
        second = [whole.render(*papers[i]) for i in again]
        for i, s, p in zip(again, score(whole, [p.text for p in second]), second, strict=True):
            reads[i] = replace(reads[i], whole=s, whole_truncated=p.truncated)
    return reads
