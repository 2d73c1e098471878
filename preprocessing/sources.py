"""Labelled sources: named folders of papers, each with a statement of what its labels mean.

The catalogue (`sources.toml` beside this module) names the sources the project knows; a user
adds one there or on the command line as `NAME=PATH`. A source's name is recorded on each of its
papers, so training can sample per source and evaluation can report per source.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CATALOGUE = Path(__file__).resolve().parent / "sources.toml"
PROJECT_ROOT = CATALOGUE.parent.parent
UNSTATED = "as labelled by the folder it came from (no statement of meaning given)"


class Source(BaseModel):
    """A labelled folder: `path/Cancer/*.txt` and `path/Non-Cancer/*.txt`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Recorded on each paper")
    path: Path
    cancer: str = Field(UNSTATED, description="What a `Cancer/` label means in this source")
    non_cancer: str = Field(UNSTATED, description="What a `Non-Cancer/` label means")

    def label_meaning(self) -> dict[str, str]:
        return {"cancer": self.cancer, "non_cancer": self.non_cancer}


def catalogue(path: Path = CATALOGUE) -> dict[str, Source]:
    """The known sources by name, paths resolved against the project root."""
    with open(path, "rb") as f:
        entries = tomllib.load(f).get("sources", {})
    return {name: Source(name=name, **{**entry, "path": PROJECT_ROOT / entry["path"]})
            for name, entry in entries.items()}


def default_sources() -> list[str]:
    """Every catalogued source whose folder exists here, in catalogue order."""
    return [name for name, s in catalogue().items() if s.path.is_dir()]


def resolve_sources(specs: list[str]) -> list[Source]:
    """`NAME` (from the catalogue) or `NAME=PATH` (a catalogued NAME keeps its label meaning).

    Raises ValueError for an unknown NAME without a path, a malformed spec or a repeated name."""
    known, out = catalogue(), []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep and name not in known:
            raise ValueError(f"unknown source {name!r}: give NAME=PATH or one of {sorted(known)}")
        if sep and not path.strip():
            raise ValueError(f"source {spec!r} has an empty path")
        base = known.get(name) or Source(name=name, path=Path(path))
        out.append(base.model_copy(update={"path": Path(path).expanduser()}) if sep else base)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"a source is named twice: {names}")
    if not out:
        raise ValueError("no labelled source given")
    return out
