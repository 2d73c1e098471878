"""Batched transformers forward: the logits of the label tokens at the answer position."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from model_contract.prompts import PromptRenderer
from model_contract.reading import LabelScore, score_from_logprobs
from preprocessing.papers import Paper


def load_model(model_dir: Path | str, adapter: Path | None = None, dtype: str | None = None):
    """On the CPU, in `dtype` (default: TRAINING_PRECISION, i.e. the hardware rule, which the
    served engine follows too, so both compute alike). Raises OSError for a bad directory."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.settings import TrainingSettings

    dtype = dtype or TrainingSettings().choose_precision("cpu").precision.value
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.eval()


def label_logprobs(model, batch_ids: list[list[int]], label_ids: list[int]) -> list[list[float]]:
    """Log-softmax over the label tokens at each sequence's last position (right-padded batch;
    the LM head runs only at those positions)."""
    import torch

    lengths = torch.tensor([len(ids) for ids in batch_ids])
    width = int(lengths.max())
    input_ids = torch.zeros(len(batch_ids), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(batch_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    last = lengths - 1
    keep = torch.unique(last)  # sorted positions the LM head is evaluated at
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep).logits
    picked = logits[torch.arange(len(batch_ids)), torch.searchsorted(keep, last)]
    return torch.log_softmax(picked[:, label_ids].float(), dim=-1).tolist()


def transformers_scores(model_dir: Path | str, renderer: PromptRenderer, papers: list[Paper],
                        adapter: Path | None = None, batch_size: int = 16,
                        model=None) -> list[LabelScore]:
    """The label score of each paper's prompt, on `model` or on one loaded for the call."""
    model = model if model is not None else load_model(model_dir, adapter)
    prompts = [renderer.render(p.title, p.abstract).text for p in papers]
    return prompt_scores(model, renderer, prompts, batch_size)


def prompt_scores(model, renderer: PromptRenderer, prompts: list[str],
                  batch_size: int = 16) -> list[LabelScore]:
    """The label score (no temperature) of each rendered prompt, in batches of `batch_size`."""
    label_ids = list(renderer.label_token_ids.values())
    encoded = [renderer.tokenizer.encode(text).ids for text in prompts]
    # Length-sorted batches pad little; results go back to the input order.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    scores: dict[int, LabelScore] = {}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="scoring (transformers)", unit="batch"):
        rows = label_logprobs(model, [encoded[i] for i in batch], label_ids)
        for i, row in zip(batch, rows, strict=True):
            scores[i] = score_from_logprobs(renderer, dict(zip(label_ids, row, strict=True)))
    return [scores[i] for i in range(len(prompts))]
