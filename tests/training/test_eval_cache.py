"""The base model's stored reading: reused only when every input that decides it is the same."""

from dataclasses import replace
from pathlib import Path

import pytest

from model_contract.prompts import TEMPLATES
from preprocessing.papers import Paper
from training.eval_cache import cached_reading, reading_key

TEMPLATE = TEMPLATES["cancer-yn-short"]
PAPERS = [Paper("1", "Tumour growth", "Cells divided.", "Cancer", "assignment"),
          Paper("2", "Asthma care", "Inhalers helped.", "Non-Cancer", "ohsumed")]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    return folder


def test_the_key_changes_with_each_input(model_dir: Path) -> None:
    key = reading_key(model_dir, TEMPLATE, PAPERS, "float32", "auto")
    assert key == reading_key(model_dir, TEMPLATE, PAPERS, "float32", "auto")
    changed = [
        reading_key(model_dir, replace(TEMPLATE, abstract_token_cap=64), PAPERS, "float32", "auto"),
        reading_key(model_dir, TEMPLATE, PAPERS[:1], "float32", "auto"),
        reading_key(model_dir, TEMPLATE, [replace(PAPERS[0], label="Non-Cancer"), PAPERS[1]],
                    "float32", "auto"),
        reading_key(model_dir, TEMPLATE, PAPERS, "bfloat16", "auto"),
        reading_key(model_dir, TEMPLATE, PAPERS, "float32", "transformers"),
    ]
    (model_dir / "model.safetensors").write_bytes(b"other weights")
    changed.append(reading_key(model_dir, TEMPLATE, PAPERS, "float32", "auto"))
    assert len({key, *changed}) == len(changed) + 1


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model folder"):
        reading_key(tmp_path / "nowhere", TEMPLATE, PAPERS, "float32", "auto")


def test_the_reading_is_computed_once_and_then_reused(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"metrics": {"accuracy": 0.55}}

    first = cached_reading(tmp_path, "abc", compute)
    second = cached_reading(tmp_path, "abc", compute)
    assert calls == [1]
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["metrics"] == {"accuracy": 0.55}
    assert [p.name for p in tmp_path.iterdir()] == ["abc.json"]


def test_an_unreadable_stored_reading_is_computed_again(tmp_path: Path) -> None:
    (tmp_path / "abc.json").write_text("{half a file")
    result = cached_reading(tmp_path, "abc", lambda: {"metrics": {"accuracy": 0.5}})
    assert result == {"metrics": {"accuracy": 0.5}, "cached": False}
    assert cached_reading(tmp_path, "abc", lambda: {})["metrics"] == {"accuracy": 0.5}
