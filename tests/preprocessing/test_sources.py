"""Several labelled sources: named, each split on its own, all covered by the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preprocessing.dataset import read_split
from preprocessing.pipeline import run
from preprocessing.settings import PreprocessSettings
from preprocessing.sources import catalogue, default_sources, resolve_sources

WIDE = {"COLUMNS": "400"}  # one line per message in typer's error box


def _folder(root: Path, prefix: str, n_cancer: int, n_other: int) -> Path:
    for folder, n in (("Cancer", n_cancer), ("Non-Cancer", n_other)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"{prefix}{folder}{i}.txt").write_text(
                f"<ID:{prefix}-{folder}-{i}>\nTitle: {prefix} {folder} title {i}\n"
                f"Abstract: {prefix} {folder} abstract number {i}.\n")
    return root


def _ids(out: Path) -> dict[str, list[str]]:
    return {s: [p.id for p in read_split(out, s)] for s in ("train", "validation", "test")}


def test_catalogue_states_what_each_label_means() -> None:
    known = catalogue()
    assert {"assignment", "ohsumed"} <= set(known)
    assert "Neoplasms" in known["ohsumed"].cancer and "benign" in known["ohsumed"].cancer
    assert all(s.path.is_absolute() for s in known.values())
    # Only sources whose folder exists are in the default set, in catalogue order.
    assert default_sources() == [n for n, s in known.items() if s.path.is_dir()]


def test_specs_resolve_and_bad_ones_say_why(tmp_path: Path) -> None:
    mine = resolve_sources([f"mine={tmp_path}", f"ohsumed={tmp_path}"])
    assert [(s.name, s.path) for s in mine] == [("mine", tmp_path), ("ohsumed", tmp_path)]
    assert "no statement" in mine[0].cancer
    assert mine[1].cancer == catalogue()["ohsumed"].cancer  # a known name keeps its meaning
    for specs, message in (([], "no labelled source"), (["nowhere"], "unknown source"),
                           (["x="], "empty path"), ([f"a={tmp_path}", f"a={tmp_path}"],
                                                    "named twice"),
                           ([f"bad name={tmp_path}"], "pattern")):
        with pytest.raises(ValueError, match=message):
            resolve_sources(specs)


def test_each_source_is_split_on_its_own_and_summarised(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", "a", 20, 20)
    b = _folder(tmp_path / "b", "b", 6, 34)
    alone, both = tmp_path / "alone", tmp_path / "both"
    run(PreprocessSettings(sources=[f"first={a}"], out_dir=alone), progress=False)
    run(PreprocessSettings(sources=[f"first={a}", f"second={b}"], out_dir=both),
        progress=False)
    # Adding a source moves none of the first source's papers between splits.
    first_in_both = {s: [i for i in ids if i.startswith("a-")] for s, ids in _ids(both).items()}
    assert first_in_both == _ids(alone)
    papers = {p.id: p for s in ("train", "validation", "test") for p in read_split(both, s)}
    assert {p.source for p in papers.values()} == {"first", "second"}
    summary = json.loads((both / "summary.json").read_text())
    alone_summary = json.loads((alone / "summary.json").read_text())
    assert summary["papers"] == 80
    assert summary["sources"]["first"]["fingerprint"] == alone_summary["fingerprint"]
    assert summary["fingerprint"] != alone_summary["fingerprint"]
    second = summary["sources"]["second"]
    assert second["counts"]["test"] == {"cancer": 1, "non_cancer": 7}  # stratified, 20 %
    assert sum(sum(c.values()) for c in second["counts"].values()) == second["papers"] == 40
    assert second["label_meaning"]["cancer"].startswith("as labelled by the folder")


def test_cli_reads_several_sources_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from preprocessing.cli import app

    a, b = _folder(tmp_path / "a", "a", 5, 5), _folder(tmp_path / "b", "b", 5, 5)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--source", f"a={a}", "--source", f"b={b}",
                                      "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "summary.json").read_text())["sources"]) == {"a", "b"}
    missing = CliRunner().invoke(app, ["--source", f"c={tmp_path / 'nope'}",
                                       "--out-dir", str(out)], env=WIDE)
    assert missing.exit_code == 2 and "has no Cancer, Non-Cancer folder" in missing.output
    unknown = CliRunner().invoke(app, ["--source", "nosuch", "--out-dir", str(out)], env=WIDE)
    assert unknown.exit_code == 2 and "unknown source 'nosuch'" in unknown.output
