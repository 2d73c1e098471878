"""The typed manifest: round trip, and refusal of manifests serving could not honour."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from model_contract.layout import load_manifest
from model_contract.manifest import (
    FORMAT_VERSION,
    Manifest,
    ManifestError,
    PromptRef,
    read_manifest,
    write_manifest,
)
from model_contract.prompts import TEMPLATES


def _manifest(**changes: object) -> Manifest:
    template = TEMPLATES["cancer-yn-short"]
    fields = dict(name="paper-classifier", version="v1", base_model="embedded:x",
                  prompt=PromptRef(template=template.name, version=template.version),
                  metrics={"after": {"accuracy": 0.97}},
                  created_at=datetime(2026, 11, 30, 12, tzinfo=UTC))
    return Manifest(**(fields | changes))


def test_round_trip(tmp_path: Path) -> None:
    written = _manifest()
    write_manifest(tmp_path, written)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["prompt"] == {"template": "cancer-yn-short",
                             "version": TEMPLATES["cancer-yn-short"].version}
    assert read_manifest(tmp_path) == written


def test_no_manifest_is_a_base_model(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    base = load_manifest(tmp_path / "smollm2")
    assert (base.name, base.version, base.prompt) == ("smollm2", "base", None)


def test_unknown_template_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown prompt template 'nope'"):
        _manifest(prompt=PromptRef(template="nope", version="nope.r1"))


def test_template_version_drift_is_refused(tmp_path: Path) -> None:
    # A model trained on an older revision of the template must not be served with the new one.
    (tmp_path / "manifest.json").write_text(json.dumps(
        _manifest().model_dump(mode="json") | {
            "prompt": {"template": "cancer-yn-short", "version": "cancer-yn-short.r0.t64.a96"}}))
    with pytest.raises(ManifestError, match="trained on prompt 'cancer-yn-short.r0"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("raw", ["{not json", json.dumps({"name": "x"}),
                                 json.dumps({"name": "x", "version": "v", "base_model": "b",
                                             "format_version": FORMAT_VERSION + 1}),
                                 json.dumps({"name": "x", "version": "v", "base_model": "b",
                                             "surprise": 1})])
def test_invalid_manifests_name_the_file(tmp_path: Path, raw: str) -> None:
    (tmp_path / "manifest.json").write_text(raw)
    with pytest.raises(ManifestError, match="manifest.json"):
        read_manifest(tmp_path)


def test_calibration_is_how_the_model_is_read(tmp_path: Path) -> None:
    from model_contract.manifest import Calibration, SourceRef
    from model_contract.reading import DEFAULT_REREAD_BELOW, ReadingRule

    calibration = Calibration(temperature=1.7, reread_below=0.9, fitted_on={"a": 80, "b": 336})
    sources = {"a": SourceRef(label_meaning={"cancer": "c", "non_cancer": "n"},
                              fingerprint="f", train={"cancer": 2, "non_cancer": 3})}
    write_manifest(tmp_path, _manifest(calibration=calibration, sources=sources))
    manifest = read_manifest(tmp_path)
    assert manifest.calibration == calibration and manifest.sources == sources
    assert manifest.reading_rule() == ReadingRule(temperature=1.7, reread_below=0.9)
    assert manifest.reading_rule(0.5) == ReadingRule(temperature=1.7, reread_below=0.5)
    # A model without a calibration (format 1, a base model) is read as the model says.
    assert _manifest().reading_rule() == ReadingRule(1.0, DEFAULT_REREAD_BELOW)
    with pytest.raises(ValidationError):
        Calibration(temperature=0, reread_below=0.9, fitted_on={})


def test_a_format_1_manifest_is_still_read(tmp_path: Path) -> None:
    raw = json.loads(_manifest().model_dump_json(exclude_none=True)) | {"format_version": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(tmp_path).calibration is None
