"""The label rule and the two-read decision, on the real renderer with a scripted engine."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from model_contract.layout import load_renderer
from model_contract.prompts import PromptRenderer
from model_contract.reading import LabelScore, needs_reread, read_paper, score_from_logprobs

IDS = SimpleNamespace(label_token_ids={"cancer": 10, "non_cancer": 20})


def test_label_probabilities_are_renormalised_over_the_label_tokens() -> None:
    score = score_from_logprobs(IDS, {10: math.log(0.3), 20: math.log(0.1), 99: math.log(0.6)})
    assert score.label == "cancer" and score.cancer_probability == pytest.approx(0.75)
    assert score.probability == pytest.approx(0.75)
    score = score_from_logprobs(IDS, {10: math.log(0.1), 20: math.log(0.3)})
    assert (score.label, score.probability) == ("non_cancer", pytest.approx(0.75))


def test_a_missing_label_counts_as_zero_and_none_is_an_error() -> None:
    assert score_from_logprobs(IDS, {20: -0.1}).cancer_probability == pytest.approx(0, abs=1e-20)
    with pytest.raises(ValueError, match="no label token"):
        score_from_logprobs(IDS, {99: -0.1})


@pytest.mark.parametrize(("probability", "truncated", "expected"), [
    (0.97, True, True), (0.99, True, False), (0.5, False, False)])
def test_only_cut_and_unsure_reads_are_read_again(probability: float, truncated: bool,
                                                  expected: bool) -> None:
    score = LabelScore("cancer", probability, probability)
    assert needs_reread(score, truncated, below=0.98) is expected


def _read(renderer: PromptRenderer, abstract: str, first_p: float) -> tuple[LabelScore, bool,
                                                                           bool, list[str]]:
    sent: list[str] = []

    async def score(r: PromptRenderer, prompt: str) -> LabelScore:
        sent.append(r.template.version)
        p = first_p if len(sent) == 1 else 0.2
        return LabelScore("cancer" if p >= 0.5 else "non_cancer", max(p, 1 - p), p)

    first = renderer
    result = asyncio.run(read_paper(first, first.reread_renderer(), "A title", abstract, 0.98,
                                    score))
    return (*result, sent)


def test_the_second_read_decides_when_the_first_is_cut_and_unsure(base_model_dir: Path) -> None:
    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    long_abstract = "tumour growth " * 400
    result, truncated, reread, sent = _read(renderer, long_abstract, first_p=0.9)
    assert reread and sent == [renderer.template.version, renderer.reread_renderer()
                               .template.version]
    assert result.cancer_probability == 0.2 and not truncated  # the full read was not cut
    # Sure, or not cut: one read only.
    assert _read(renderer, long_abstract, first_p=0.995)[2] is False
    assert _read(renderer, "Short abstract.", first_p=0.6)[2] is False


def test_temperature_softens_the_answer_but_never_flips_it() -> None:
    from model_contract.reading import score_from_logit

    sharp = score_from_logprobs(IDS, {10: math.log(0.9), 20: math.log(0.1)})
    soft = score_from_logprobs(IDS, {10: math.log(0.9), 20: math.log(0.1)}, temperature=2.0)
    assert sharp.logit == soft.logit == pytest.approx(math.log(9))
    assert soft.cancer_probability == pytest.approx(0.75)  # sigmoid(ln 9 / 2) = 3 / 4
    assert sharp.label == soft.label == "cancer"
    assert score_from_logit(-0.0001, 50.0).label == "non_cancer"
    assert score_from_logit(0.0, 50.0).cancer_probability == 0.5


def test_a_batch_is_read_in_two_calls_and_only_cut_unsure_papers_twice(
        base_model_dir: Path) -> None:
    from model_contract.reading import read_batch, score_from_logit

    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    long, short = "tumour growth " * 400, "Short abstract."
    papers = [("sure, cut", long), ("unsure, cut", long), ("unsure, whole", short)]
    first_logits = {"sure, cut": 6.0, "unsure, cut": 0.3, "unsure, whole": -0.2}
    calls: list[tuple[str, int]] = []

    def score(r: PromptRenderer, prompts: list[str]) -> list[LabelScore]:
        calls.append((r.template.version, len(prompts)))
        if r is renderer:
            return [score_from_logit(first_logits[t]) for t, _ in papers]
        assert all("unsure, cut" in p for p in prompts)
        return [score_from_logit(-3.0)]

    reads = read_batch(renderer, papers, score, lambda s: needs_reread(s, True, 0.9))
    whole_version = renderer.reread_renderer().template.version
    assert calls == [(renderer.template.version, 3), (whole_version, 1)]
    assert [r.whole is not None for r in reads] == [False, True, False]
    assert reads[1].deciding.label == "non_cancer" and reads[1].capped.label == "cancer"
    assert reads[1].capped_truncated and not reads[1].truncated  # the whole read was not cut
    assert reads[0].truncated and not reads[2].truncated
    assert [r.deciding.logit for r in reads] == [6.0, -3.0, -0.2]
