"""The gateway's answers equal offline scoring of the same prompts (vLLM's offline engine,
one forward pass, label-token log-probabilities)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from preprocessing.dataset import read_split
from preprocessing.prompts import PromptRenderer
from preprocessing.scoring import sampling_params, score_from_logprobs

pytestmark = pytest.mark.integration


def offline_cancer_probabilities(model_dir: Path, prompts: list[str],
                                 renderer: PromptRenderer) -> list[float]:
    """vLLM's offline engine in this process: the same kernels as the server, so bf16 rounding
    of the logits (0.125 at their magnitude) is the same on both sides."""
    import os

    from vllm import LLM, SamplingParams

    os.environ |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    llm = LLM(str(model_dir), dtype="bfloat16", enforce_eager=True, max_model_len=512,
              logprobs_mode="processed_logprobs")
    outputs = llm.generate(prompts, SamplingParams(**sampling_params(renderer)),
                           use_tqdm=False)
    return [score_from_logprobs(renderer, {tid: lp.logprob for tid, lp in
                                           out.outputs[0].logprobs[0].items()}).cancer_probability
            for out in outputs]


def test_gateway_matches_offline_scoring(gateway_url: str, base_model_dir: Path,
                                         processed_dir: Path) -> None:
    papers = read_split(processed_dir, "test")[:8]
    renderer = PromptRenderer.from_model_dir(base_model_dir)
    prompts = [renderer.render(p.title, p.abstract).text for p in papers]
    offline = offline_cancer_probabilities(base_model_dir, prompts, renderer)
    batch = httpx.post(gateway_url + "/v1/classify_papers", timeout=120, json={
        "papers": [{"title": p.title, "abstract": p.abstract, "id": p.id} for p in papers]
    }).json()["results"]
    for expected, item in zip(offline, batch, strict=True):
        served = item["result"]["cancer_probability"]
        assert served == pytest.approx(expected, abs=0.01)
        # Labels agree wherever the offline answer is not a coin toss within bf16 noise.
        if abs(expected - 0.5) > 0.01:
            assert item["result"]["label"] == ("cancer" if expected >= 0.5 else "non_cancer")
