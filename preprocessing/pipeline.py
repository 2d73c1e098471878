"""raw files -> parsed -> cleaned -> split -> parquet + summary."""

from __future__ import annotations

import logging
from pathlib import Path

from tokenizers import Tokenizer

from preprocessing.clean import clean_papers
from preprocessing.dataset import summarise, write_dataset
from preprocessing.papers import Paper, read_dataset
from preprocessing.settings import PreprocessSettings
from preprocessing.split import SPLITS, stratified_split

log = logging.getLogger(__name__)


def token_lengths(papers: list[Paper], tokenizer_dir: Path) -> dict[str, list[int]]:
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    count = lambda texts: [len(e.ids) for e in tokenizer.encode_batch(texts)]  # noqa: E731
    return {
        "title": count([p.title for p in papers]),
        "abstract": count([p.abstract for p in papers]),
    }


def run(settings: PreprocessSettings, progress: bool = True) -> dict:
    papers, failures = read_dataset(settings.data_dir, progress=progress)
    for failure in failures:
        log.warning("cannot parse %s: %s", failure.path, failure.reason)
    kept, report = clean_papers(papers)
    splits = stratified_split(kept, settings.seed, settings.val_frac, settings.test_frac)
    lengths = None
    if settings.tokenizer_dir and (settings.tokenizer_dir / "tokenizer.json").exists():
        lengths = token_lengths([p for s in SPLITS for p in splits[s]], settings.tokenizer_dir)
    summary = summarise(splits, failures, report, settings.seed, lengths)
    write_dataset(settings.out_dir, splits, summary)
    return summary
