"""`manifest.json`: what a fine-tuned model directory says about itself, typed and versioned.

Written by training when it merges an adapter, read by the gateway (`GET /v1/model`), the
registry and the release workflow. Validated on write and on read: a manifest whose prompt
template is unknown to this code, or whose template version differs from the code's, is
refused, because serving would render a prompt the model was not trained on.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_contract.prompts import TEMPLATES
from model_contract.reading import DEFAULT_REREAD_BELOW, ReadingRule

MANIFEST_FILE = "manifest.json"
# Bump when a field changes meaning; readers refuse formats newer than theirs.
# 2: `calibration` (a reader that ignored it would serve uncalibrated probabilities), `sources`.
FORMAT_VERSION = 2


class ManifestError(ValueError):
    """A manifest that cannot be read or does not fit this code."""


class PromptRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(description="Template name (a key of model_contract.prompts.TEMPLATES)")
    version: str = Field(description="The template's version string when the model was trained")


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: str = Field(description="sha256 over the dataset's papers (preprocessing)")


class SourceRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label_meaning: dict[str, str] = Field(description="What each label means in this source")
    fingerprint: str = Field(description="sha256 over the source's papers (preprocessing)")
    train: dict[str, int] = Field(default_factory=dict,
                                  description="Papers per label trained on (0 = held out)")


class Calibration(BaseModel):
    """Fitted by training on the validation papers of every source; applied by every reader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(gt=0, description="P(cancer) = sigmoid(label logit / T)")
    reread_below: float = Field(ge=0, le=1, description="Second-read threshold on the "
                                "calibrated probability, chosen for accuracy on validation")
    fitted_on: dict[str, int] = Field(description="Validation papers per source")
    method: str = "temperature scaling of the label logit, NLL (Guo et al. 2017)"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    name: str = Field(description="Model name (the registry's NAME)")
    version: str = Field(description="Model version (the registry's VERSION)")
    base_model: str = Field(description="Base model it was tuned from")
    recipe: dict[str, Any] | None = Field(None, description="The training recipe, as run")
    prompt: PromptRef | None = Field(None, description="The prompt template it was trained on")
    dataset: DatasetRef | None = None
    sources: dict[str, SourceRef] | None = Field(None, description="The dataset's sources")
    calibration: Calibration | None = None
    metrics: dict[str, Any] = Field(default_factory=dict,
                                    description="Headline metrics: before, after, baselines")
    created_at: datetime | None = None
    code_version: str | None = Field(None, description="git describe of the training code")

    @model_validator(mode="after")
    def _prompt_known(self) -> Manifest:
        if self.prompt is None:
            return self
        template = TEMPLATES.get(self.prompt.template)
        if template is None:
            raise ValueError(f"unknown prompt template {self.prompt.template!r}; "
                             f"known: {sorted(TEMPLATES)}")
        if template.version != self.prompt.version:
            raise ValueError(f"the model was trained on prompt {self.prompt.version!r} but this "
                             f"code renders {template.version!r}")
        return self

    def reading_rule(self, reread_below: float | None = None) -> ReadingRule:
        """How to read this model: its calibration, `reread_below` overriding its threshold;
        temperature 1 and DEFAULT_REREAD_BELOW for a model without a calibration."""
        c = self.calibration
        below = reread_below if reread_below is not None else (
            c.reread_below if c else DEFAULT_REREAD_BELOW)
        return ReadingRule(temperature=c.temperature if c else 1.0, reread_below=below)

    @classmethod
    def for_base_model(cls, name: str) -> Manifest:
        """How an untuned base model (no manifest file) describes itself."""
        return cls(name=name, version="base", base_model=name)


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    """Write `model_dir/manifest.json` (validated again, so a mutated model cannot slip by)."""
    Manifest.model_validate(manifest.model_dump())
    path = model_dir / MANIFEST_FILE
    path.write_text(manifest.model_dump_json(indent=2, exclude_none=True))
    return path


def read_manifest(model_dir: Path) -> Manifest | None:
    """The directory's manifest, None when it has none. Raises ManifestError when it is not
    valid JSON or does not validate."""
    path = model_dir / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: {e}") from e
