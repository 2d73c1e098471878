"""Training examples: the served prompt's exact tokens, then the answer; loss on the answer only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from model_contract.layout import load_renderer
from preprocessing.papers import Paper
from training.data import IGNORE, balanced_subset, build_dataset, encode_example, reread_papers

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


def _sourced(source: str, n_cancer: int, n_other: int) -> list:
    from preprocessing.papers import Paper

    return ([Paper(f"{source}-c{i}", "t", "a", "cancer", source) for i in range(n_cancer)]
            + [Paper(f"{source}-n{i}", "t", "a", "non_cancer", source) for i in range(n_other)])


def test_sources_are_sampled_as_the_recipe_says(caplog) -> None:
    from training.data import count_by_source, sample_sources
    from training.recipe import DataSpec

    papers = _sourced("a", 30, 30) + _sourced("b", 10, 90)
    everything = sample_sources(papers, DataSpec(), seed=1)
    assert count_by_source(everything) == {"a": {"cancer": 30, "non_cancer": 30},
                                           "b": {"cancer": 10, "non_cancer": 90}}
    spec = DataSpec.model_validate({"sources": {
        "a": {"max_train": 20}, "b": {"max_train": 40, "balance": "balanced"},
        "missing": {}}})
    chosen = sample_sources(papers, spec, seed=1)
    assert count_by_source(chosen) == {"a": {"cancer": 10, "non_cancer": 10},
                                       "b": {"cancer": 10, "non_cancer": 30}}
    assert "'missing' is not in the dataset" in caplog.text
    natural = sample_sources(papers, DataSpec.model_validate(
        {"sources": {"b": {"max_train": 50, "balance": "natural"}}}), seed=1)
    assert count_by_source(natural) == {"b": {"cancer": 5, "non_cancer": 45}}
    # Seeded: the same recipe picks the same papers in the same order; sources are mixed.
    assert [p.id for p in sample_sources(papers, spec, seed=1)] == [p.id for p in chosen]
    assert {p.source for p in chosen[:10]} == {"a", "b"}


def test_per_source_sample_caps_each_source_keeping_label_shares_and_order() -> None:
    from training.data import count_by_source, per_source_sample

    papers = _sourced("a", 30, 30) + _sourced("b", 10, 90)
    sample = per_source_sample(papers, 40, seed=1)
    assert count_by_source(sample) == {"a": {"cancer": 20, "non_cancer": 20},
                                       "b": {"cancer": 4, "non_cancer": 36}}
    order = [p.id for p in papers]
    assert [order.index(p.id) for p in sample] == sorted(order.index(p.id) for p in sample)
    assert per_source_sample(papers, 40, seed=1) == sample  # seeded
    assert per_source_sample(papers, None, seed=1) == papers
    assert count_by_source(per_source_sample(papers, 80, seed=1))["a"] == {
        "cancer": 30, "non_cancer": 30}  # a source smaller than the cap is kept whole


def test_a_repeated_source_is_seen_that_many_times_an_epoch() -> None:
    from collections import Counter

    from training.data import count_by_source, repeated_by_source, sample_sources
    from training.recipe import DataSpec

    papers = _sourced("a", 5, 5) + _sourced("b", 20, 20)
    spec = DataSpec.model_validate({"sources": {"a": {"repeat": 3}, "b": {"max_train": 10}}})
    chosen = sample_sources(papers, spec, seed=1)
    examples = repeated_by_source(chosen, spec, seed=1)
    assert count_by_source(examples) == {"a": {"cancer": 15, "non_cancer": 15},
                                         "b": {"cancer": 5, "non_cancer": 5}}
    assert set(Counter(p.id for p in examples if p.source == "a").values()) == {3}
    assert examples != sorted(examples, key=lambda p: p.source)  # mixed, not one block
    assert repeated_by_source(chosen, spec, seed=1) == examples  # seeded
    plain = DataSpec.model_validate({"sources": {"a": {}, "b": {}}})
    assert repeated_by_source(chosen, plain, seed=1) == chosen


def test_an_unknown_sampling_key_fails_loudly() -> None:
    from pydantic import ValidationError

    from training.recipe import DataSpec

    with pytest.raises(ValidationError):
        DataSpec.model_validate({"sources": {"a": {"max_papers": 3}}})
    with pytest.raises(ValidationError):
        DataSpec.model_validate({"sources": {"a": {"balance": "even"}}})


def test_a_share_of_cut_papers_is_also_trained_as_the_second_read(base_model_dir: Path) -> None:
    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    long = [Paper(id=f"l{i}", title="Tumours", abstract="We study p53 " * 200, label="cancer")
            for i in range(10)]
    short = [Paper(id=f"s{i}", title="Asthma", abstract="Airways.", label="non_cancer")
             for i in range(10)]
    chosen = reread_papers(renderer, long + short, 0.3, seed=5)
    # Only cut papers are read twice by serving, so only they get a second-read example.
    assert len(chosen) == 3 and {p.id[0] for p in chosen} == {"l"}
    assert chosen == reread_papers(renderer, long + short, 0.3, seed=5)  # seeded
    assert reread_papers(renderer, long, 0.0, seed=5) == []
    rows = build_dataset(renderer, short[:2], reread=chosen).to_list()
    assert len(rows) == 5 and [r["id"] for r in rows[2:]] == [p.id for p in chosen]
    whole = renderer.reread_renderer().render(chosen[0].title, chosen[0].abstract).text
    assert rows[2]["input_ids"][:-1] == renderer.tokenizer.encode(whole).ids
    assert all(r["length"] == len(r["input_ids"]) for r in rows)
    # The second-read examples are the longer prompts the whole abstract makes.
    assert min(r["length"] for r in rows[2:]) > 2 * max(r["length"] for r in rows[:2])
