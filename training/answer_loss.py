"""The training loss: cross-entropy of the answer token, with the LM head evaluated only where a
label is predicted. trl's fused head scores every position off-GPU (no Triton there): a 49k-word
projection of every prompt token, forward and backward, for one label per paper. This computes
the same loss (the mean over label tokens of the causal-LM cross-entropy) at a fraction of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

IGNORE = -100


def answer_loss(model: Any, inputs: dict, num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """(loss, share of answers the model ranks first). Position t predicts labels[t + 1]."""
    import torch
    import torch.nn.functional as F

    targets = inputs["labels"][:, 1:]
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    keep = torch.unique(cols)  # sorted; the LM head runs at these positions only
    with fp32_head(model):
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                    logits_to_keep=keep, use_cache=False)
    logits = out.logits[rows, torch.searchsorted(keep, cols)].float()
    gold = targets[rows, cols]
    total = F.cross_entropy(logits, gold, reduction="sum")
    # Like trl: normalised by the label count of the whole accumulated batch when given.
    denominator = num_items_in_batch if num_items_in_batch is not None else len(gold)
    top1 = (logits.argmax(-1) == gold).float().mean()
    return total / max(denominator, 1), top1


@contextmanager
def fp32_head(model: Any) -> Iterator[None]:
    """Within the block, the model's LM head returns fp32 logits whatever autocast says. Under
    bf16 autocast SmolLM2's answer logits (near 40) come out on bf16's 0.25 grid, so the loss
    and its gradient would see the label logit only to +-0.125; in fp32 the head costs little,
    since it runs at the answer positions only (`logits_to_keep`)."""
    import torch
    import torch.nn.functional as F

    def recompute(module: Any, args: tuple, output: Any) -> Any:
        if output.dtype == torch.float32:
            return output
        with torch.autocast(device_type=args[0].device.type, enabled=False):
            return F.linear(args[0].float(), module.weight.float())

    handle = model.get_output_embeddings().register_forward_hook(recompute)
    try:
        yield
    finally:
        handle.remove()


def answer_only_trainer_class() -> type:
    """SFTTrainer with `answer_loss` (built lazily: trl is imported after the backend)."""
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, top1 = answer_loss(model, inputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            self._metrics[mode]["answer_accuracy"].append(top1.item())
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlySFTTrainer
