"""Request and response bodies of the public contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Paper(BaseModel):
    """One paper. Lengths are checked against the settings in `check_lengths`, so the limits
    live in one place (GatewaySettings) and the error names the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(..., min_length=1, description="Paper title")
    abstract: str = Field(..., min_length=1, description="Paper abstract (capped in tokens by "
                          "the prompt template; longer ones are truncated, not rejected)")
    id: str | None = Field(None, max_length=200, description="Your id, echoed back")

    @field_validator("title", "abstract")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Classification(BaseModel):
    id: str | None
    label: Literal["cancer", "non_cancer"]
    probability: float = Field(..., description="Model probability of the returned label")
    cancer_probability: float
    model: str
    prompt_version: str
    truncated: bool = Field(..., description="True when title or abstract was cut to the cap")
    reread: bool = Field(False, description="True when the capped read was unsure and a longer "
                         "read of the abstract decided the answer")


class BatchRequest(BaseModel):
    # Items stay loosely typed so one malformed paper gets its own error, not a 422 for all.
    papers: list[dict] = Field(..., min_length=1, description="Papers, answered in order")


class ItemError(BaseModel):
    status: int
    detail: str | list


class BatchItem(BaseModel):
    index: int
    id: str | None = None
    result: Classification | None = None
    error: ItemError | None = None


class BatchResponse(BaseModel):
    model: str
    prompt_version: str
    results: list[BatchItem]
