"""The training loss: cross-entropy of the answer token, with the LM head evaluated only where a
label is predicted. trl's fused head scores every position off-GPU (no Triton there): a 49k-word
projection of every prompt token, forward and backward, for one label per paper. This computes
the same loss (the mean over label tokens of the causal-LM cross-entropy) at a fraction of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

IGNORE = -100


def answer_loss(model: Any, inputs: dict, num_items_in_batch: Any = None,
                token_weights: dict[int, float] | None = None) -> tuple[Any, Any]:
    """(loss, share of answers the model ranks first). Position t predicts labels[t + 1].

    `token_weights` (answer token id -> weight, others 1) makes the loss cost-sensitive: an
    answer weighted w counts as w answers in the sum, the normalisation stays the answer count,
    so a weight acts like training that paper w times (a per-example weight, as in
    scikit-learn's `class_weight`)."""
    import torch
    import torch.nn.functional as F

    targets = inputs["labels"][:, 1:]
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    keep = torch.unique(cols)  # sorted; the LM head runs at these positions only
    with fp32_head(model):
        logits = answer_logits(model, inputs["input_ids"], inputs.get("attention_mask"), keep)
    logits = logits[rows, torch.searchsorted(keep, cols)].float()
    gold = targets[rows, cols]
    weight = None
    if token_weights:
        weight = torch.ones(logits.shape[-1], device=logits.device)
        for token, w in token_weights.items():
            weight[token] = w
    total = F.cross_entropy(logits, gold, weight=weight, reduction="sum")
    # Like trl: normalised by the label count of the whole accumulated batch when given.
    denominator = num_items_in_batch if num_items_in_batch is not None else len(gold)
    top1 = (logits.argmax(-1) == gold).float().mean()
    return total / max(denominator, 1), top1


# Below this many shared tokens a separate prefix pass saves less than it costs.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(input_ids: Any, attention_mask: Any, first_answer: int) -> int:
    """How many leading tokens every row of the batch shares (all attended, none past the
    first answer position); 0 for a single row. Rows are right-padded (trl's collator)."""
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0)
    if attention_mask is not None:
        same &= attention_mask.bool().all(dim=0)
    differs = (~same).nonzero()
    length = int(differs[0]) if len(differs) else input_ids.shape[1]
    return min(length, first_answer)


def answer_logits(model: Any, input_ids: Any, attention_mask: Any, keep: Any) -> Any:
    """Logits (batch, len(keep), vocab) at the sorted positions `keep`. The prompt prefix every
    row shares (the template's frame and instruction, 64 of about 190 tokens) is computed once
    and its KV cache repeated over the batch, so a training step computes it once, not once a
    paper. Without dropout the loss and its gradients are those of the batch computed row by row
    (tested); with LoRA dropout the prefix draws one mask for the batch instead of one a row."""
    shared = shared_prefix_length(input_ids, attention_mask, int(keep[0]))
    if shared < MIN_SHARED_PREFIX or getattr(model, "is_gradient_checkpointing", False):
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep,
                     use_cache=False).logits
    prefix = model(input_ids=input_ids[:1, :shared], use_cache=True, logits_to_keep=1)
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(input_ids.shape[0])
    return model(input_ids=input_ids[:, shared:], attention_mask=attention_mask,
                 past_key_values=cache, logits_to_keep=keep - shared, use_cache=True).logits


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


def answer_only_trainer_class(token_weights: dict[int, float] | None = None) -> type:
    """SFTTrainer with `answer_loss` (built lazily: trl is imported after the backend), its
    answers weighted by `token_weights` (answer token id -> weight) when given."""
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, top1 = answer_loss(model, inputs, num_items_in_batch, token_weights)
            mode = "train" if model.training else "eval"
            self._metrics[mode]["answer_accuracy"].append(top1.item())
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlySFTTrainer
