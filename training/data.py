"""Papers -> token ids for supervised fine-tuning: the rendered prompt, then the answer token.

The prompt is rendered by `PromptRenderer` (the text serving sends) and tokenised the way vLLM
tokenises a text prompt, so training sees exactly the token ids served. Only the answer carries
a label; the prompt is masked with -100.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from model_contract.prompts import PromptRenderer
from preprocessing.dataset import read_split
from preprocessing.papers import LABELS, Paper
from training.recipe import DataSpec, Recipe, SourceSampling

log = logging.getLogger(__name__)

IGNORE = -100


def balanced_subset(papers: list[Paper], limit: int | None, seed: int) -> list[Paper]:
    """At most `limit` papers, as even across labels as the data allows, chosen by `seed`;
    the order is shuffled by the same seed (so a subset does not start with one label)."""
    rng = random.Random(seed)
    if limit is None or limit >= len(papers):
        chosen = list(papers)
    else:
        by_label = {label: [p for p in papers if p.label == label] for label in LABELS}
        for group in by_label.values():
            rng.shuffle(group)
        chosen, i = [], 0
        while len(chosen) < limit:
            for label in LABELS:
                if i < len(by_label[label]) and len(chosen) < limit:
                    chosen.append(by_label[label][i])
            i += 1
    rng.shuffle(chosen)
    return chosen


def natural_subset(papers: list[Paper], limit: int | None, seed: int) -> list[Paper]:
    """At most `limit` papers keeping each label's share (a stratified sample by `seed`)."""
    rng = random.Random(seed)
    if limit is None or limit >= len(papers):
        chosen = list(papers)
    else:
        chosen = []
        for label in LABELS:
            group = [p for p in papers if p.label == label]
            rng.shuffle(group)
            chosen += group[:round(limit * len(group) / len(papers))]
    rng.shuffle(chosen)
    return chosen


def load_papers(data_dir: Path, split: str, limit: int | None, seed: int) -> list[Paper]:
    return balanced_subset(read_split(data_dir, split), limit, seed)


def per_source_sample(papers: list[Paper], limit: int | None, seed: int) -> list[Paper]:
    """At most `limit` papers of each source, each a stratified sample (`natural_subset`), in
    their original order; all of them when `limit` is None."""
    if limit is None:
        return list(papers)
    kept = set()
    for name in dict.fromkeys(p.source for p in papers):
        kept |= {id(p) for p in natural_subset([p for p in papers if p.source == name],
                                               limit, seed)}
    return [p for p in papers if id(p) in kept]


def sample_sources(papers: list[Paper], spec: DataSpec, seed: int) -> list[Paper]:
    """The papers of the sources `spec` names, each sampled as it says (all sources, all
    papers, balanced when it names none); mixed in a seeded order."""
    present = list(dict.fromkeys(p.source for p in papers))
    wanted = spec.sources or {name: SourceSampling() for name in present}
    for name in wanted.keys() - set(present):
        log.warning("recipe source %r is not in the dataset; training without it", name)
    chosen = []
    for name, how in wanted.items():
        group = [p for p in papers if p.source == name]
        pick = balanced_subset if how.balance == "balanced" else natural_subset
        chosen += pick(group, how.max_train, seed)
    random.Random(seed).shuffle(chosen)
    return chosen


def repeated_by_source(papers: list[Paper], spec: DataSpec, seed: int) -> list[Paper]:
    """`papers` with each paper of a source listed `spec.sources[source].repeat` times, in a
    seeded order: the examples of one epoch. Unchanged when no source repeats."""
    times = {name: how.repeat for name, how in spec.sources.items()}
    if all(n == 1 for n in times.values()):
        return papers
    examples = [p for p in papers for _ in range(times.get(p.source, 1))]
    random.Random(seed).shuffle(examples)
    return examples


def trained_sources(data_dir: Path, recipe: Recipe) -> list[str]:
    """The dataset's sources that the recipe trains on."""
    present = list(dict.fromkeys(p.source for p in read_split(data_dir, "train")))
    return [s for s in present if not recipe.data.sources or s in recipe.data.sources]


def training_papers(data_dir: Path, recipe: Recipe) -> list[Paper]:
    """The train papers of a recipe: sampled per source, then capped by train.max_examples."""
    papers = sample_sources(read_split(data_dir, "train"), recipe.data, recipe.seed)
    return balanced_subset(papers, recipe.train.max_examples, recipe.seed)


def validation_papers(data_dir: Path, recipe: Recipe, limit: int | None = None) -> list[Paper]:
    """The validation papers of the sources the recipe trains on (balanced when capped)."""
    keep = set(trained_sources(data_dir, recipe))
    papers = [p for p in read_split(data_dir, "validation") if p.source in keep]
    return balanced_subset(papers, limit, recipe.seed)


def count_by_source(papers: list[Paper]) -> dict[str, dict[str, int]]:
    """{source: {label: n}}"""
    out: dict[str, dict[str, int]] = {}
    for p in papers:
        out.setdefault(p.source, dict.fromkeys(LABELS, 0))[p.label] += 1
    return out


def encode_example(renderer: PromptRenderer, paper: Paper, eos_id: int | None = None) -> dict:
    """input_ids = prompt tokens + [answer token] (+ [eos]); labels = -100 on the prompt."""
    prompt = renderer.render(paper.title, paper.abstract).text
    # Encoded with special tokens on, as vLLM encodes a text prompt.
    prompt_ids = renderer.tokenizer.encode(prompt).ids
    answer = [renderer.label_token_ids[paper.label]] + ([eos_id] if eos_id is not None else [])
    return {
        "input_ids": prompt_ids + answer,
        "labels": [IGNORE] * len(prompt_ids) + answer,
        "id": paper.id,
    }


def reread_papers(renderer: PromptRenderer, papers: list[Paper], share: float,
                  seed: int) -> list[Paper]:
    """A seeded `share` of the papers whose capped prompt is cut, to be trained on as the
    second read renders them too; none when the template has no second read."""
    if share <= 0 or renderer.reread_renderer() is None:
        return []
    cut = [p for p in papers if renderer.render(p.title, p.abstract).truncated]
    return random.Random(seed).sample(cut, round(share * len(cut)))


def build_dataset(renderer: PromptRenderer, papers: list[Paper], eos_id: int | None = None,
                  reread: list[Paper] | None = None) -> Any:
    """A `datasets.Dataset` with input_ids/labels (trl accepts it as already tokenised) and
    each example's `length` in tokens (for length-grouped batches): one capped example per
    paper, then one second-read example per paper of `reread`."""
    from datasets import Dataset

    rows = [encode_example(renderer, p, eos_id) for p in papers]
    if reread:
        whole = renderer.reread_renderer()
        rows += [encode_example(whole, p, eos_id) for p in reread]
    return Dataset.from_list([r | {"length": len(r["input_ids"])} for r in rows])


def token_lengths(renderer: PromptRenderer, papers: list[Paper]) -> dict[str, dict[str, float]]:
    """Percentiles (p50, p90, p99, max) of title and abstract lengths in the model's tokens,
    uncapped: how much of each paper the template's caps keep."""
    import numpy as np

    out = {}
    for part in ("title", "abstract"):
        counts = [renderer.count_tokens(getattr(p, part)) for p in papers]
        values = np.percentile(counts, [50, 90, 99, 100]) if counts else [0.0] * 4
        out[part] = dict(zip(("p50", "p90", "p99", "max"), map(float, values), strict=True))
    return out
