"""A store of the untuned base model's reading of the test papers. That reading depends only on
the base model's files, the template, the papers, the precision and the scoring engine, never on
the recipe's training choices, so a retrain on the same inputs reuses it instead of paying for it
again (on a 2-core AVX2 CPU in fp32 it is several minutes of every run)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from model_contract.prompts import PromptTemplate
from preprocessing.papers import Paper

log = logging.getLogger(__name__)


def reading_key(model_dir: Path, template: PromptTemplate, papers: Sequence[Paper],
                precision: str, engine: str) -> str:
    """A hex SHA-256 over every file directly in `model_dir` (weights, config, tokenizer; by
    name and content), every field of the template, each paper's id, source, label, title
    and abstract, the precision and the engine name. Raises FileNotFoundError if `model_dir`
    is missing."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model folder at {model_dir}")
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    rows = [[p.id, p.source, p.label, p.title, p.abstract] for p in papers]
    digest.update(json.dumps([repr(template), precision, engine, rows]).encode())
    return digest.hexdigest()


def cached_reading(cache_dir: Path, key: str, compute: Callable[[], dict]) -> dict:
    """`cache_dir/<key>.json` when it exists, else `compute()` stored there first. A stored
    file that is not valid JSON is recomputed and replaced. The result carries `cached: bool`."""
    path = cache_dir / f"{key}.json"
    if path.exists():
        try:
            found = json.loads(path.read_text())
            log.info("base model's reading reused from %s", path)
            return {**found, "cached": True}
        except json.JSONDecodeError:
            log.warning("unreadable cached reading %s: computing it again", path)
    result = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)  # a run killed mid-write leaves no half file behind
    return {**result, "cached": False}
