"""What a correct gateway answer looks like. One place, used by the Locust users and the
benchmark: a response of the wrong shape is a failure, whatever its status code."""

from __future__ import annotations

import math
from typing import Any

LABELS = ("cancer", "non_cancer")
CLASSIFICATION_KEYS = frozenset(
    {"id", "label", "probability", "cancer_probability", "model", "prompt_version", "truncated",
     "reread"}
)


class BadResponse(ValueError):
    """The gateway answered, but not with the contract's shape."""


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise BadResponse(f"{name} is not a number: {value!r}")
    if not 0.0 <= value <= 1.0:
        raise BadResponse(f"{name} outside [0, 1]: {value!r}")
    return float(value)


def check_classification(body: Any, expected_id: str | None = None) -> str:
    """Validate one `classify_paper` answer; returns its label."""
    if not isinstance(body, dict):
        raise BadResponse(f"expected a JSON object, got {type(body).__name__}")
    if missing := CLASSIFICATION_KEYS - body.keys():
        raise BadResponse(f"missing keys: {sorted(missing)}")
    label = body["label"]
    if label not in LABELS:
        raise BadResponse(f"label {label!r} is not one of {LABELS}")
    probability = _probability(body["probability"], "probability")
    cancer = _probability(body["cancer_probability"], "cancer_probability")
    # `probability` is that of the returned label, so it is the larger of the two.
    if probability < 0.5 - 1e-6:
        raise BadResponse(f"probability {probability} of the returned label is below 0.5")
    if (label == "cancer") != (cancer >= 0.5):
        raise BadResponse(f"label {label} disagrees with cancer_probability {cancer}")
    for flag in ("truncated", "reread"):
        if not isinstance(body[flag], bool):
            raise BadResponse(f"{flag} is not a boolean")
    if expected_id is not None and body["id"] != expected_id:
        raise BadResponse(f"id {body['id']!r} was not echoed (sent {expected_id!r})")
    return label


def check_batch(body: Any, expected_ids: list[str]) -> list[str]:
    """Validate a `classify_papers` answer for papers sent in this order; returns the labels."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise BadResponse("expected an object with a `results` list")
    results = body["results"]
    if len(results) != len(expected_ids):
        raise BadResponse(f"{len(results)} results for {len(expected_ids)} papers")
    labels = []
    for position, (item, paper_id) in enumerate(zip(results, expected_ids, strict=True)):
        if not isinstance(item, dict) or item.get("index") != position:
            raise BadResponse(f"result {position} is out of order or malformed")
        if item.get("error") is not None:
            raise BadResponse(f"paper {position} failed: {item['error']}")
        labels.append(check_classification(item.get("result"), paper_id))
    return labels
