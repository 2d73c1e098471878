"""The answer-only loss is the causal-LM loss on the labelled tokens, computed cheaply."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_contract.layout import load_renderer
from preprocessing.papers import Paper
from training.answer_loss import answer_loss
from training.data import IGNORE, encode_example

PAPERS = [Paper("1", "Glioma grading", "MRI of brain tumours in adults.", "cancer"),
          Paper("2", "Asthma in children", "A cohort study " * 30, "non_cancer")]


def _batch(base_model_dir: Path, eos: int | None, template: str = "cancer-yn-short",
           papers: list[Paper] = PAPERS) -> dict:
    """Right-padded rows, as trl's collator gives them."""
    import torch

    renderer = load_renderer(base_model_dir, template)
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


def test_shared_prefix_length_stops_at_padding_a_difference_or_the_answer() -> None:
    import torch

    from training.answer_loss import shared_prefix_length

    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 1, 0]])
    assert shared_prefix_length(ids, torch.ones_like(ids), first_answer=4) == 3
    assert shared_prefix_length(ids, torch.ones_like(ids), first_answer=2) == 2
    same = torch.tensor([[5, 6, 7, 2], [5, 6, 7, 2]])
    assert shared_prefix_length(same, torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]), 3) == 2
    assert shared_prefix_length(ids[:1], None, first_answer=4) == 0  # one row: nothing shared


def test_shared_prefix_pass_gives_the_rowwise_loss_and_gradients(
        base_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prefix every row shares, computed once and its KV cache repeated over the batch,
    gives the loss and LoRA gradients of computing each row whole."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training import answer_loss as module

    # Four of the 30 layers: the identity holds at any depth, and the test stays quick.
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32,
                                                num_hidden_layers=4)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False)).eval()
    papers = [*PAPERS, Paper("3", "Statins and sepsis", "A trial.", "non_cancer")]
    batch = _batch(base_model_dir, None, "cancer-yn-defined", papers)  # a 64-token prefix
    assert module.shared_prefix_length(batch["input_ids"], batch["attention_mask"], 99) >= 64

    def loss_and_grads() -> tuple[float, list]:
        model.zero_grad()
        loss, _ = module.answer_loss(model, batch)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    shared_loss, shared_grads = loss_and_grads()
    monkeypatch.setattr(module, "MIN_SHARED_PREFIX", 10**6)  # every row computed whole
    whole_loss, whole_grads = loss_and_grads()
    assert shared_loss == pytest.approx(whole_loss, rel=1e-4)
    assert len(shared_grads) == 2 * 2 * 4  # A and B of q and v in every layer
    for shared, whole in zip(shared_grads, whole_grads, strict=True):
        assert torch.allclose(shared, whole, rtol=1e-3, atol=1e-6)


def test_label_weight_counts_an_answer_that_many_times(base_model_dir: Path) -> None:
    """Weighting the cancer answer by 3 gives the loss of a batch where that paper appears three
    times (summed over answers, normalised by the same answer count)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    yes = renderer.label_token_ids["cancer"]
    one_each = _batch(base_model_dir, None)
    tripled = _batch(base_model_dir, None, papers=[PAPERS[0]] * 3 + [PAPERS[1]])
    with torch.inference_mode():
        weighted, _ = answer_loss(model, one_each, num_items_in_batch=2, token_weights={yes: 3.0})
        plain, _ = answer_loss(model, tripled, num_items_in_batch=2)
        unweighted, _ = answer_loss(model, one_each)
    assert float(weighted) == pytest.approx(float(plain), rel=1e-4)
    assert float(weighted) != pytest.approx(float(unweighted), rel=1e-3)
