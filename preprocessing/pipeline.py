"""raw files -> parsed -> cleaned -> split -> parquet + summary."""

from __future__ import annotations

import logging

from preprocessing.clean import clean_papers
from preprocessing.dataset import summarise, write_dataset
from preprocessing.papers import read_dataset
from preprocessing.settings import PreprocessSettings
from preprocessing.split import stratified_split

log = logging.getLogger(__name__)


def run(settings: PreprocessSettings, progress: bool = True) -> dict:
    papers, failures = read_dataset(settings.data_dir, progress=progress)
    for failure in failures:
        log.warning("cannot parse %s: %s", failure.path, failure.reason)
    kept, report = clean_papers(papers)
    splits = stratified_split(kept, settings.seed, settings.val_frac, settings.test_frac)
    summary = summarise(splits, failures, report, settings.seed)
    write_dataset(settings.out_dir, splits, summary)
    return summary
