"""Which papers the benchmark reads, the baseline's prompt, and how generated text is read."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from model_contract.prompts import FRAME_FILE, PromptRenderer
from preprocessing.papers import Paper


class NoPapersError(ValueError):
    """The dataset has no paper of the source asked for."""


def of_source(papers: list[Paper], source: str) -> list[Paper]:
    """The papers of one labelled source ('all': every one). Raises NoPapersError naming the
    sources there are when none is `source`."""
    chosen = [p for p in papers if source in ("all", p.source)]
    if not chosen:
        known = sorted({p.source for p in papers})
        raise NoPapersError(f"no papers of source {source!r}; the dataset has {known} (or 'all')")
    return chosen


def pick_papers(papers: list[Paper], n: int | None, seed: int = 0) -> list[Paper]:
    """`n` papers, labels interleaved (the split is stored grouped by label, so its first `n`
    would be one label only); all of them when `n` is None. The same `seed`, the same pick."""
    rng = random.Random(seed)
    by_label: dict[str, list[Paper]] = {}
    for p in papers:
        by_label.setdefault(p.label or "", []).append(p)
    for group in by_label.values():
        rng.shuffle(group)
    mixed = [p for row in zip(*by_label.values(), strict=False) for p in row]
    taken = set(mixed)
    mixed += [p for group in by_label.values() for p in group if p not in taken]
    return mixed[: n or len(mixed)]


def full_abstract_renderer(model_dir: Path) -> PromptRenderer:
    """The served chat prompt with the abstract uncapped, as the original notebook sent it."""
    from model_contract.layout import load_renderer

    served = load_renderer(model_dir)
    frame = json.loads((model_dir / FRAME_FILE).read_text())["frame"]
    template = dataclasses.replace(served.template, abstract_token_cap=None)
    return PromptRenderer(template, frame, served.tokenizer)


def label_from_text(text: str, label_words: dict[str, str]) -> str | None:
    """The label whose word the generated text starts with, as the notebook read it (two
    sampled tokens can be "yesyes" or "no,"); None when it starts with neither."""
    text = text.strip().lower()
    return next((label for label, word in label_words.items() if text.startswith(word)), None)
