"""Training examples: the served prompt's exact tokens, then the answer; loss on the answer only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from model_contract.layout import load_renderer
from preprocessing.papers import Paper
from training.data import IGNORE, balanced_subset, encode_example

PAPER = Paper(id="1", title="Tumour suppressors in mice", label="cancer",
              abstract="We study p53 " * 200)  # long: the abstract cap applies


def test_example_is_prompt_tokens_then_answer(base_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    example = encode_example(renderer, PAPER)
    prompt = renderer.render(PAPER.title, PAPER.abstract).text
    # The ids vLLM computes from the served text (its tokenizer, special tokens on).
    served_ids = AutoTokenizer.from_pretrained(base_model_dir)(prompt)["input_ids"]
    assert example["input_ids"][:-1] == served_ids
    assert example["input_ids"][-1] == renderer.label_token_ids["cancer"]
    assert example["labels"] == [IGNORE] * len(served_ids) + [renderer.label_token_ids["cancer"]]


def test_eos_is_appended_and_trained_when_asked(base_model_dir: Path) -> None:
    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    no = Paper(id="2", title="Asthma", abstract="Airways.", label="non_cancer")
    example = encode_example(renderer, no, eos_id=2)
    assert example["input_ids"][-2:] == [renderer.label_token_ids["non_cancer"], 2]
    assert example["labels"][-2:] == [renderer.label_token_ids["non_cancer"], 2]
    assert set(example["labels"][:-2]) == {IGNORE}


def _papers(n_cancer: int, n_other: int) -> list[Paper]:
    return ([Paper(id=f"c{i}", title="t", abstract="a", label="cancer") for i in range(n_cancer)]
            + [Paper(id=f"n{i}", title="t", abstract="a", label="non_cancer")
               for i in range(n_other)])


def test_subset_is_balanced_and_seeded() -> None:
    papers = _papers(30, 30)
    a, b = balanced_subset(papers, 10, seed=1), balanced_subset(papers, 10, seed=1)
    assert [p.id for p in a] == [p.id for p in b]
    assert Counter(p.label for p in a) == {"cancer": 5, "non_cancer": 5}
    assert [p.id for p in balanced_subset(papers, 10, seed=2)] != [p.id for p in a]


def test_subset_takes_what_a_short_class_has() -> None:
    chosen = balanced_subset(_papers(2, 30), 10, seed=0)
    assert Counter(p.label for p in chosen) == {"cancer": 2, "non_cancer": 8}
    assert len(balanced_subset(_papers(3, 3), None, seed=0)) == 6
