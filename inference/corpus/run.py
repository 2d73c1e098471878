"""A corpus run: read the source with preprocessing's readers, skip the records already in
OUT, classify the rest on Ray Data (the model in process in a pool of actors) and write each
batch as a Parquet part as it arrives."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyarrow import fs
from tqdm import tqdm

from inference.bulk import input_fingerprint, read_inputs
from inference.corpus.scorer import SCORE_COLUMNS, PaperScorer
from inference.corpus.settings import CorpusSettings
from inference.corpus.store import PartStore, filesystem
from inference.engine import EngineSettings
from model_contract.layout import load_manifest, resolve_model_dir
from preprocessing.readers import as_file

log = logging.getLogger(__name__)
INPUT_COLUMNS = ["key", "id", "pmid", "doi", "title", "abstract"]


@dataclass(frozen=True)
class CorpusResult:
    out_dir: str  # OUT/model=<version>
    records: int  # in the source
    already_done: int  # found in OUT before this run
    classified: int  # by this run
    refused: int  # records that could not be read as a paper (stored with error 422)
    seconds: float  # of classification (engine start included)
    first_batch_s: float | None = None  # from the start to the first batch written
    steady_papers_per_s: float | None = None  # after the first batch (engines warm)

    def summary(self) -> str:
        rate = self.classified / self.seconds if self.seconds else 0.0
        return (f"{self.records} records: {self.already_done} already in {self.out_dir}, "
                f"{self.classified} classified in {self.seconds:.0f} s ({rate:.2f} papers/s), "
                f"{self.refused} not papers (error rows)")


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """A local path as it is, standard input (`-`) or a pipe copied into a temporary file; a
    URI (s3://bucket/prefix) copied into a temporary folder."""
    if "://" not in source:
        with as_file(Path(source)) as path:
            yield path
        return
    remote, path = filesystem(source)
    with tempfile.TemporaryDirectory(prefix="corpus-input-") as tmp:
        is_dir = remote.get_file_info(path).type == fs.FileType.Directory
        target = Path(tmp) / ("input" if is_dir else Path(path).name)
        if is_dir:
            target.mkdir()  # copy_files fills a folder but does not make it
        fs.copy_files(path, str(target), source_filesystem=remote,
                      destination_filesystem=fs.LocalFileSystem())
        yield target


def _error_rows(frame: pd.DataFrame) -> list[dict]:
    return [{"key": r["key"], "id": r["id"], "pmid": r["pmid"], "doi": r["doi"],
             "error": r["problem"], "error_status": 422} for r in frame.to_dict("records")]


def _result_rows(batch: pd.DataFrame) -> list[dict]:
    return batch[[*INPUT_COLUMNS[:4], *SCORE_COLUMNS]].to_dict("records")


def run_corpus(source: str, out: str, settings: CorpusSettings, engine: EngineSettings,
               fmt: str | None = None, columns: Mapping[str, str] | None = None,
               progress: bool = True) -> CorpusResult:
    """Classify every record of `source` (a file, a folder or a URI) into `out` (a folder or a
    URI). Raises FileNotFoundError / ValueError for an unreadable source and InputChanged when
    OUT holds a run of another input."""
    model_dir = resolve_model_dir(settings.model_dir)
    store = PartStore(out, load_manifest(model_dir).version)
    with local_copy(source) as path:
        frame, _report = read_inputs(path, fmt, columns)
        store.check_input(input_fingerprint(path))
    done = store.done_keys()
    todo = frame[~frame["key"].isin(done)]
    refused = todo[todo["problem"].notna()]
    store.write(_error_rows(refused))
    papers = todo[todo["problem"].isna()][INPUT_COLUMNS]
    log.info("%d records, %d already done, %d to classify with %s", len(frame), len(done),
             len(papers), model_dir)
    started = time.perf_counter()
    stamps = _classify(papers, store, model_dir, settings, engine, progress)
    seconds = time.perf_counter() - started
    first = stamps[0][1] - started if stamps else None
    steady = None
    if len(stamps) > 1 and stamps[-1][1] > stamps[0][1]:
        steady = (stamps[-1][0] - stamps[0][0]) / (stamps[-1][1] - stamps[0][1])
    return CorpusResult(store.dir, len(frame), len(done), stamps[-1][0] if stamps else 0,
                        len(refused), seconds, first, steady)


def _classify(papers: pd.DataFrame, store: PartStore, model_dir: Path,
              settings: CorpusSettings, engine: EngineSettings, progress: bool
              ) -> list[tuple[int, float]]:
    """(papers written so far, time.perf_counter()) after each part."""
    if papers.empty:
        return []
    import ray

    ray.init(address=settings.address, ignore_reinit_error=True, include_dashboard=False,
             log_to_driver=False)
    try:
        # One block per batch: each finished batch streams back and is written at once (one
        # block of everything would come back only when all of it is done).
        step = settings.batch_size
        blocks = [papers.iloc[i : i + step] for i in range(0, len(papers), step)]
        scored = ray.data.from_pandas(blocks).map_batches(
            PaperScorer, batch_format="pandas", batch_size=settings.batch_size,
            concurrency=settings.num_actors,
            fn_constructor_kwargs={"model_dir": str(model_dir),
                                   "engine_settings": engine.model_dump_json(),
                                   "reread_below": settings.reread_below},
            # The actors decide their device where they run (ENGINE_DEVICE=auto sees their
            # GPU); the driver may sit on a head node without one.
            num_gpus=settings.gpus_per_actor,
            num_cpus=settings.cpus_per_actor,
            max_restarts=settings.max_restarts, max_task_retries=settings.max_restarts)
        stamps: list[tuple[int, float]] = []
        with tqdm(total=len(papers), desc="classifying (Ray Data)", unit="paper",
                  disable=not progress) as bar:
            for batch in scored.iter_batches(batch_size=settings.batch_size,
                                             batch_format="pandas"):
                store.write(_result_rows(batch))
                stamps.append(((stamps[-1][0] if stamps else 0) + len(batch),
                               time.perf_counter()))
                bar.update(len(batch))
        return stamps
    finally:
        ray.shutdown()
