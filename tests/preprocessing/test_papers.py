from pathlib import Path

import pytest

from preprocessing.clean import clean_papers
from preprocessing.papers import Paper, PaperParseError, parse_paper_file, read_dataset


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_well_formed(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", b"<ID:123>\nTitle: A title.\nAbstract: One line.\n")
    paper = parse_paper_file(f, "cancer")
    assert (paper.id, paper.title, paper.abstract, paper.label) == (
        "123", "A title.", "One line.", "cancer")


def test_multiline_abstract_kept_whole(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt",
              b"<ID:9>\nTitle: T\nAbstract: First part.\nSecond part.\n\nThird part.\n")
    assert parse_paper_file(f).abstract == "First part. Second part. Third part."


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"<ID:1>\nAbstract: only abstract\n", "Title"),
    (b"<ID:1>\nTitle: only title\n", "Abstract"),
    (b"<ID:1>\nTitle: t\nAbstract:   \n", "Abstract"),
    (b"no id here\nTitle: t\nAbstract: a\n", "<ID"),
])
def test_malformed_files_say_why(tmp_path: Path, content: bytes, reason: str) -> None:
    with pytest.raises(PaperParseError, match=reason):
        parse_paper_file(write(tmp_path / "bad.txt", content))


def test_non_utf8_byte_is_tolerated(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", b"<ID:5>\nTitle: Caf\xe9 study\nAbstract: Na\xefve T cells.\n")
    paper = parse_paper_file(f)
    assert paper.title == "Café study" and paper.abstract == "Naïve T cells."


def test_read_dataset_reports_failures_by_name_without_stopping(tmp_path: Path) -> None:
    write(tmp_path / "Cancer" / "1.txt", b"<ID:1>\nTitle: t1\nAbstract: a1\n")
    write(tmp_path / "Cancer" / "2.txt", b"")
    write(tmp_path / "Non-Cancer" / "3.txt", b"<ID:3>\nTitle: t3\nAbstract: a3\n")
    papers, failures = read_dataset(tmp_path, progress=False)
    assert [(p.id, p.label) for p in papers] == [("1", "cancer"), ("3", "non_cancer")]
    assert [(f.path.name, f.reason) for f in failures] == [("2.txt", "empty file")]


def test_clean_deduplicates_and_flags_conflicts() -> None:
    papers = [
        Paper("1", "T", "A", "cancer"),
        Paper("1", "T", "A", "cancer"),          # same id again
        Paper("2", " t ", "a", "cancer"),         # same text, other id
        Paper("3", "X", "Y", "cancer"),
        Paper("3", "X", "Y", "non_cancer"),       # one id under both labels
        Paper("4", "Z", "W", "non_cancer"),
    ]
    kept, report = clean_papers(papers)
    assert [p.id for p in kept] == ["1", "4"]
    assert report.duplicate_ids == ["1"]
    assert report.duplicate_texts == ["2"]
    assert report.conflicting_ids == ["3"]


def test_real_dataset_parses_completely(data_dir: Path) -> None:
    papers, failures = read_dataset(data_dir, progress=False)
    assert failures == []
    assert len(papers) == 800
    assert sum(p.label == "cancer" for p in papers) == 400
