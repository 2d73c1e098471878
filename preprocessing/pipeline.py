"""labelled sources -> parsed -> cleaned -> split per source -> parquet + summary."""

from __future__ import annotations

import logging
from dataclasses import replace

from preprocessing.clean import clean_papers
from preprocessing.dataset import summarise, write_dataset
from preprocessing.papers import Paper, ParseFailure, read_dataset
from preprocessing.settings import PreprocessSettings
from preprocessing.sources import Source, resolve_sources
from preprocessing.split import SPLITS, stratified_split

log = logging.getLogger(__name__)


def read_sources(sources: list[Source], progress: bool = True
                 ) -> tuple[list[Paper], list[ParseFailure]]:
    """Every paper of every source, tagged with its source's name, in source order."""
    papers, failures = [], []
    for source in sources:
        found, failed = read_dataset(source.path, progress=progress, desc=source.name)
        papers += [replace(p, source=source.name) for p in found]
        failures += failed
    return papers, failures


def split_per_source(papers: list[Paper], settings: PreprocessSettings
                     ) -> dict[str, list[Paper]]:
    """Each source split on its own (stratified by label, seeded), so adding a source never
    moves another source's papers between splits."""
    out: dict[str, list[Paper]] = {name: [] for name in SPLITS}
    for name in dict.fromkeys(p.source for p in papers):
        part = stratified_split([p for p in papers if p.source == name], settings.seed,
                                settings.val_frac, settings.test_frac)
        for split in SPLITS:
            out[split] += part[split]
    return out


def run(settings: PreprocessSettings, progress: bool = True) -> dict:
    """Raises ValueError for a bad source spec and FileNotFoundError for a missing folder."""
    sources = resolve_sources(settings.sources)
    papers, failures = read_sources(sources, progress)
    for failure in failures:
        log.warning("cannot parse %s: %s", failure.path, failure.reason)
    kept, report = clean_papers(papers)
    splits = split_per_source(kept, settings)
    summary = summarise(splits, failures, report, settings.seed, sources)
    write_dataset(settings.out_dir, splits, summary)
    return summary
