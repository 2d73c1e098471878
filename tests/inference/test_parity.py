"""The gateway's answers equal offline scoring of the same papers by training's evaluation
path (vLLM's offline engine: the same kernels as the server, so bf16 rounding of the logits is
the same on both sides)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from preprocessing.dataset import read_split
from preprocessing.prompts import PromptRenderer

pytestmark = pytest.mark.integration


def test_gateway_matches_offline_scoring(gateway_url: str, base_model_dir: Path,
                                         processed_dir: Path) -> None:
    """Including the second, longer read of papers whose capped read was unsure (on the
    untuned base model every cut paper is unsure)."""
    from inference.gateway.settings import GatewaySettings
    from preprocessing.scoring import needs_reread
    from training.scoring.vllm_engine import vllm_scores

    papers = read_split(processed_dir, "test")[:8]
    renderer = PromptRenderer.from_model_dir(base_model_dir)
    first = vllm_scores(base_model_dir, renderer, papers)
    second = vllm_scores(base_model_dir, renderer.reread_renderer(), papers)
    below = GatewaySettings().reread_below
    rereads = [needs_reread(score, renderer.render(p.title, p.abstract).truncated, below)
               for score, p in zip(first, papers, strict=True)]
    assert any(rereads)
    batch = httpx.post(gateway_url + "/v1/classify_papers", timeout=600, json={
        "papers": [{"title": p.title, "abstract": p.abstract, "id": p.id} for p in papers]
    }).json()["results"]
    for one, two, reread, item in zip(first, second, rereads, batch, strict=True):
        expected = two if reread else one
        assert item["result"]["reread"] is reread
        assert item["result"]["label"] == expected.label
        assert item["result"]["cancer_probability"] == pytest.approx(
            expected.cancer_probability, abs=0.01)
        assert item["result"]["probability"] == pytest.approx(expected.probability, abs=0.01)
