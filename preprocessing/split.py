"""Stratified, reproducible train/validation/test split: a pure function of data and seed."""

from __future__ import annotations

import random

from preprocessing.papers import Paper

SPLITS = ("train", "validation", "test")


def stratified_split(
    papers: list[Paper], seed: int, val_frac: float, test_frac: float
) -> dict[str, list[Paper]]:
    """Within each label, order by id (so file order does not matter), shuffle with the seed,
    and cut. Each split keeps the label balance of the whole."""
    out: dict[str, list[Paper]] = {name: [] for name in SPLITS}
    for label in sorted({p.label or "" for p in papers}):
        group = sorted((p for p in papers if (p.label or "") == label), key=lambda p: p.id)
        random.Random(f"{seed}:{label}").shuffle(group)
        n_test = round(len(group) * test_frac)
        n_val = round(len(group) * val_frac)
        out["test"] += group[:n_test]
        out["validation"] += group[n_test : n_test + n_val]
        out["train"] += group[n_test + n_val :]
    for name in SPLITS:
        out[name].sort(key=lambda p: p.id)
    return out
