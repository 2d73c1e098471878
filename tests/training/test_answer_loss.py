"""The answer-only loss is the causal-LM loss on the labelled tokens, computed cheaply."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_contract.layout import load_renderer
from preprocessing.papers import Paper
from training.answer_loss import answer_loss
from training.data import IGNORE, encode_example


def _batch(base_model_dir: Path, eos: int | None) -> dict:
    import torch

    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    papers = [Paper("1", "Glioma grading", "MRI of brain tumours in adults.", "cancer"),
              Paper("2", "Asthma in children", "A cohort study " * 30, "non_cancer")]
    rows = [encode_example(renderer, p, eos) for p in papers]
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda seq, v: seq + [v] * (width - len(seq))  # noqa: E731
    return {"input_ids": torch.tensor([pad(r["input_ids"], 2) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows]),
            "labels": torch.tensor([pad(r["labels"], IGNORE) for r in rows])}


@pytest.mark.parametrize("eos", [None, 2], ids=["answer", "answer+eos"])
def test_answer_loss_equals_the_causal_lm_loss(base_model_dir: Path, eos: int | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    batch = _batch(base_model_dir, eos)
    with torch.inference_mode():
        reference = model(**batch).loss  # full logits, shifted labels, mean over labels
        loss, top1 = answer_loss(model, batch)
    assert float(loss) == pytest.approx(float(reference), rel=1e-4)
    assert 0.0 <= float(top1) <= 1.0
    with torch.inference_mode():
        summed, _ = answer_loss(model, batch, num_items_in_batch=8)
    n_labels = int((batch["labels"] != IGNORE).sum())
    assert float(summed) == pytest.approx(float(reference) * n_labels / 8, rel=1e-4)


def test_answer_logits_are_fp32_under_bf16_autocast(base_model_dir: Path) -> None:
    """Under bf16 autocast the LM head inside `fp32_head` returns fp32 logits; without it the
    logits (near 40) are bf16, on a grid of 0.25."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.answer_loss import fp32_head

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    ids = _batch(base_model_dir, None)["input_ids"][:, :24]  # short: bf16 is emulated on AVX2
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        with fp32_head(model):
            fine = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
        coarse = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
    assert coarse.dtype == torch.bfloat16 and fine.dtype == torch.float32
    top = coarse.float().abs() >= 8  # bf16 steps by 1/16 from 8, by 0.25 from 32 (labels)
    assert top.sum() > 100
    grid = coarse.float()[top] * 16
    assert torch.equal(grid, grid.round())
    assert (fine[top] * 16 - (fine[top] * 16).round()).abs().max() > 0.1
    assert torch.allclose(fine[top], coarse.float()[top], atol=0.13)  # rounding, nothing more
    assert model.get_output_embeddings()._forward_hooks == {}  # the hook is removed
