"""The base model directory loads in transformers and answers a prompt."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from model_contract.layout import load_renderer
from model_contract.reading import score_from_logprobs

pytestmark = pytest.mark.slow


def test_base_model_answers_a_prompt(base_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    # The short instruction: after the default's longer one (the label defined), the untuned
    # model continues the title instead of answering; fine-tuning teaches it the answer.
    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    prompt = renderer.render("Breast cancer incidence in 2020",
                             "We report breast cancer incidence and mortality.").text
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
        logits = model(**ids, logits_to_keep=1).logits[0, -1]
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    # The instruct model answers the yes/no question (capitalised: fine-tuning teaches the
    # template's lowercase label words).
    assert answer.split()[0].strip(",.").lower() in {"yes", "no"}, answer
    # The serving rule (renormalise the label tokens' log-probabilities over the whole
    # vocabulary) equals a softmax over the two label logits alone.
    label_ids = renderer.label_token_ids
    logprobs = torch.log_softmax(logits, -1)
    score = score_from_logprobs(renderer, {t: float(logprobs[t]) for t in label_ids.values()})
    two_way = torch.softmax(logits[[label_ids["cancer"], label_ids["non_cancer"]]], -1)
    assert math.isclose(score.cancer_probability, float(two_way[0]), abs_tol=1e-5)
    assert score.label == ("cancer" if two_way[0] >= 0.5 else "non_cancer")
    # The label words are among the tokens the untuned model considers at all.
    top = torch.topk(logits, 200).indices.tolist()
    assert all(t in top for t in label_ids.values())
