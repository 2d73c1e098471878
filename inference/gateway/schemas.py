"""Request and response bodies of the public contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inference.gateway.problems import Problem


def is_valid_unicode(text: str) -> bool:
    """False for text holding a lone surrogate (JSON's "\\ud800" escapes decode to one), which
    no UTF-8 encoder, tokenizer or JSON writer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: object) -> object:
    """`value` safe to write back in a JSON error: lone surrogates become `\\udxxx` text."""
    if isinstance(value, str) and not is_valid_unicode(value):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def validation_details(errors: Sequence[Any]) -> list[dict]:
    """Pydantic errors as the API reports them: loc, type and msg, never the input (which may
    be large, private, or not valid Unicode). `loc` is relative to the JSON body (FastAPI's
    leading "body" is dropped; see the loc rule in problems.py); a JSON syntax error points at
    the body as a whole, with the offset in `msg`."""
    details = []
    for e in errors:
        loc = list(e["loc"])
        if loc[:1] == ["body"]:
            loc = loc[1:]
        msg = printable(e["msg"])
        if e["type"] == "json_invalid":
            msg, loc = f"{msg} at character {loc[0]}" if loc else msg, []
        details.append({"loc": [printable(part) for part in loc], "type": e["type"],
                        "msg": msg})
    return details


class Paper(BaseModel):
    """One paper. Lengths are checked against the settings in `length_errors`, so the limits
    live in one place (GatewaySettings) and the error names the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(..., min_length=1, description="Paper title: at least one letter or "
                       "digit")
    abstract: str | None = Field(None, description="Paper abstract (capped in tokens by the "
                                 "prompt template: a long one is truncated, not rejected, up "
                                 "to GATEWAY_MAX_ABSTRACT_CHARS characters). "
                                 "Missing, null or blank: the paper is classified by its title "
                                 "alone and the answer says abstract_missing")
    id: str | None = Field(None, max_length=200, description="Your id, echoed back")

    @field_validator("title")
    @classmethod
    def _has_content(cls, title: str) -> str:
        # Punctuation, NULs or zero-width spaces alone would still get a confident answer.
        if not any(ch.isalnum() for ch in title):
            raise ValueError("the title holds no letter or digit: nothing to classify")
        return title


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
    abstract_missing: bool = Field(False, description="True when the paper had no abstract and "
                                   "was classified by its title alone (less accurate: 93.75 % "
                                   "against 95.6 % on the test split, see the README)")


class BatchRequest(BaseModel):
    # Items stay loosely typed so one malformed paper gets its own error, not a 422 for all.
    papers: list[Any] = Field(..., min_length=1, description="Papers, answered in order")


class BatchItem(BaseModel):
    index: int
    id: str | None = None
    result: Classification | None = None
    error: Problem | None = Field(None, description="This paper's problem document (status "
                                  "422 for an invalid paper, 429/502/503/504 as for one paper)")


class BatchResponse(BaseModel):
    model: str
    prompt_version: str
    results: list[BatchItem]
