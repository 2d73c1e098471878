"""What the benchmark reads off the embedded model: its parameter counts and the baseline's
uncapped prompt."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import flops
from loadtest.bench.papers import full_abstract_renderer
from model_contract.layout import load_renderer


def test_parameter_counts_of_the_embedded_model(base_model_dir: Path) -> None:
    config = json.loads((base_model_dir / "config.json").read_text())
    counts = flops.parameter_counts(base_model_dir)
    # SmolLM2-135M ties its embeddings: one vocab x hidden matrix, no separate LM head.
    assert config["tie_word_embeddings"] is True
    assert counts["embedding"] == config["vocab_size"] * config["hidden_size"]
    assert counts["total"] == 134_515_008
    assert counts["non_embedding"] == counts["total"] - counts["embedding"]
    assert 100e6 < counts["non_embedding"] < 110e6  # about 106 M (SmolLM2-135M)


def test_baseline_prompt_is_the_served_prompt_with_the_whole_abstract(
        base_model_dir: Path) -> None:
    served = load_renderer(base_model_dir)
    full = full_abstract_renderer(base_model_dir)
    abstract = " ".join(f"word{i}" for i in range(600))  # far beyond any abstract cap
    capped, uncapped = served.render("A title", abstract), full.render("A title", abstract)
    assert capped.truncated and not uncapped.truncated
    assert abstract in uncapped.text and abstract not in capped.text
    # Same frame, system text and instruction: the capped prompt is a prefix-cut of the full one.
    assert uncapped.text.startswith(capped.text[: capped.text.index("Abstract:")])
    assert full.template.abstract_token_cap is None
    assert full.template.name == served.template.name
    assert full.label_token_ids == served.label_token_ids
