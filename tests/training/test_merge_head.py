"""The merged model's own LM head, centred on the label tokens: same log-probabilities, small
label logits, input embeddings untouched, and it survives a bf16 save and load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from training.merge import centre_output_rows

LABEL_IDS = [5, 9]


def tied_model(logit_offset: float = 40.0) -> LlamaForCausalLM:
    """A tiny tied Llama whose label tokens share a large component along the final hidden
    state, so their logits sit near `logit_offset` as SmolLM2's do (about 40)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.norm.weight.fill_(1.0)
        model.get_input_embeddings().weight[LABEL_IDS] += logit_offset / 4  # shared offset
        model.get_input_embeddings().weight[LABEL_IDS[0]] += 0.17  # a label logit gap of ~0.6
    return model


def label_logits_and_logprobs(model: LlamaForCausalLM) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[1, 2, 3, 4, 7, 11]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1].float()
    return logits[LABEL_IDS], torch.log_softmax(logits, -1)


def test_log_probabilities_are_unchanged_and_label_logits_are_centred() -> None:
    model = tied_model()
    embeddings = model.get_input_embeddings().weight.detach().clone()
    before_logits, before = label_logits_and_logprobs(model)
    centre_output_rows(model, LABEL_IDS)
    after_logits, after = label_logits_and_logprobs(model)
    assert torch.allclose(before, after, atol=1e-4)
    # The label logits are now opposite and keep their difference.
    assert torch.allclose(after_logits.sum(), torch.tensor(0.0), atol=1e-4)
    assert torch.allclose(after_logits[0] - after_logits[1],
                          before_logits[0] - before_logits[1], atol=1e-4)
    assert before_logits.abs().min() > 5 * after_logits.abs().max()
    assert model.config.tie_word_embeddings is False
    assert torch.equal(model.get_input_embeddings().weight, embeddings)


def test_bf16_round_trip_resolves_the_label_logit_finer(tmp_path: Path) -> None:
    """Saved in bf16, the tied head rounds the label logit difference to bf16's step at its
    magnitude; the centred head keeps it to within a few hundredths."""
    exact = tied_model()
    exact_logits, _ = label_logits_and_logprobs(exact)
    differences = {}
    for centred in (False, True):
        model = tied_model()
        if centred:
            centre_output_rows(model, LABEL_IDS)
        model.to(torch.bfloat16).save_pretrained(tmp_path / str(centred))
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path / str(centred),
                                                      dtype=torch.bfloat16)
        assert loaded.config.tie_word_embeddings is (not centred)
        logits, _ = label_logits_and_logprobs(loaded)
        differences[centred] = float(logits[0] - logits[1])
    truth = float(exact_logits[0] - exact_logits[1])
    assert 0.3 < abs(truth) < 1.0  # a gap that is no multiple of 0.25
    assert abs(differences[True] - truth) < 0.03
    # Near 40, bf16 steps by 0.25: the tied head lands on that grid, off the truth.
    assert differences[False] * 4 == pytest.approx(round(differences[False] * 4), abs=1e-6)
    assert abs(differences[False] - truth) > 0.05


def test_no_label_ids_is_refused() -> None:
    with pytest.raises(ValueError, match="no label token ids"):
        centre_output_rows(tied_model(), [])
