import json
from pathlib import Path

from preprocessing.dataset import fingerprint, read_split
from preprocessing.papers import Paper
from preprocessing.split import stratified_split


def _papers(n: int) -> list[Paper]:
    return [Paper(str(i), f"t{i}", f"a{i}", "cancer" if i % 2 else "non_cancer")
            for i in range(n)]


def test_split_is_stratified_disjoint_and_complete() -> None:
    splits = stratified_split(_papers(200), seed=7, val_frac=0.1, test_frac=0.2)
    ids = {name: {p.id for p in papers} for name, papers in splits.items()}
    assert ids["train"].isdisjoint(ids["test"]) and ids["train"].isdisjoint(ids["validation"])
    assert ids["test"].isdisjoint(ids["validation"])
    assert sum(len(v) for v in ids.values()) == 200
    for papers in splits.values():
        labels = [p.label for p in papers]
        assert labels.count("cancer") == labels.count("non_cancer")
    assert len(splits["test"]) == 40 and len(splits["validation"]) == 20


def test_split_is_a_pure_function_of_data_and_seed() -> None:
    papers = _papers(100)
    a = stratified_split(papers, 1, 0.1, 0.2)
    b = stratified_split(list(reversed(papers)), 1, 0.1, 0.2)  # file order must not matter
    c = stratified_split(papers, 2, 0.1, 0.2)
    assert {k: [p.id for p in v] for k, v in a.items()} == {k: [p.id for p in v]
                                                              for k, v in b.items()}
    assert [p.id for p in a["test"]] != [p.id for p in c["test"]]
    assert fingerprint(papers) == fingerprint(list(reversed(papers)))


def test_pipeline_on_real_data(processed_dir: Path, data_dir: Path) -> None:
    summary = json.loads((processed_dir / "summary.json").read_text())
    assert summary["papers"] == 800 and summary["unparsed"] == []
    totals = {"cancer": 0, "non_cancer": 0}
    for counts in summary["counts"].values():
        for label, n in counts.items():
            totals[label] += n
    assert totals == {"cancer": 400, "non_cancer": 400}
    # A multi-line abstract survives whole in parquet.
    raw = (data_dir / "Cancer" / "33372216.txt").read_text().splitlines()
    whole = " ".join(line.strip() for line in [raw[2][len("Abstract:"):]] + raw[3:]
                     if line.strip())
    papers = {p.id: p for s in ("train", "validation", "test")
              for p in read_split(processed_dir, s)}
    assert papers["33372216"].abstract == whole
    assert papers["33372216"].abstract.endswith(raw[-1].strip())
