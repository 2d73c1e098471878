"""The gateway's answers equal offline scoring of the same papers by training's evaluation
path (vLLM's offline engine, in the same precision as the server)."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from model_contract.layout import load_manifest, load_renderer
from model_contract.reading import calibrated_probability
from preprocessing.dataset import read_split

pytestmark = pytest.mark.integration

# How far the two label logits' difference may move between the server and the offline engine.
# bf16 keeps 8 significant bits (a step of 0.125 for logits in [16, 32)), and the two batch the
# papers differently (on CPUs with AMX, other batch shapes take other kernels), so each side may
# round each label logit the other way: two steps (seen: 0.015 in P at P = 0.86 on an AMX CPU).
# fp32 rounding is far below that.
LOGIT_GAP_TOL = {"bfloat16": 0.25, "float16": 0.25, "float32": 0.02}


def probability_tolerance(p: float, precision: str) -> float:
    """The largest |dP| a logit-gap change of LOGIT_GAP_TOL can cause at P = p (exact, not
    the slope p(1 - p) g, which undershoots: a gap of 1.0 read as 0.75 moves P by 0.052);
    never below 0.01."""
    if not 0 < p < 1:
        return 0.01
    z, g = math.log(p / (1 - p)), LOGIT_GAP_TOL[precision]
    return max(0.01, *(abs(calibrated_probability(z + d) - p) for d in (g, -g)))


def test_gateway_matches_offline_scoring(gateway_url: str, base_model_dir: Path,
                                         processed_dir: Path) -> None:
    """Including the second, longer read of papers whose capped read was unsure (on the
    untuned base model every cut paper is unsure)."""
    from inference.engine import EngineSettings, engine_precision
    from inference.gateway.settings import GatewaySettings
    from model_contract.reading import needs_reread
    from training.scoring.vllm_engine import vllm_scores

    papers = read_split(processed_dir, "test")[:8]
    renderer = load_renderer(base_model_dir)
    first = vllm_scores(base_model_dir, renderer, papers)
    second = vllm_scores(base_model_dir, renderer.reread_renderer(), papers)
    rule = load_manifest(base_model_dir).reading_rule(GatewaySettings().reread_below)
    below = rule.reread_below
    rereads = [needs_reread(score, renderer.render(p.title, p.abstract).truncated, below)
               for score, p in zip(first, papers, strict=True)]
    assert any(rereads)
    batch = httpx.post(gateway_url + "/v1/classify_papers", timeout=600, json={
        "papers": [{"title": p.title, "abstract": p.abstract, "id": p.id} for p in papers]
    }).json()["results"]
    precision = engine_precision(EngineSettings()).precision.value
    for one, two, reread, item in zip(first, second, rereads, batch, strict=True):
        expected = two if reread else one
        tol = probability_tolerance(expected.cancer_probability, precision)
        assert item["result"]["reread"] is reread
        assert item["result"]["label"] == expected.label
        assert item["result"]["cancer_probability"] == pytest.approx(
            expected.cancer_probability, abs=tol)
        assert item["result"]["probability"] == pytest.approx(expected.probability, abs=tol)
