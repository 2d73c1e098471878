"""Decide whether a newly trained model version should replace the deployed one.

Reads two manifest.json files (the candidate's and the deployed version's, as published in
the model bucket) and promotes the candidate only when its metric reaches --min-accuracy and
beats the deployed version's. No deployed manifest (first rollout) means no baseline.
Writes promote=true|false (and the numbers) to $GITHUB_OUTPUT and a table to
$GITHUB_STEP_SUMMARY when those are set. Exit 0 with a decision, 2 on unusable input.
Standard library only (runs on a bare CI runner).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any


class MetricError(ValueError):
    pass


def read_metric(manifest: dict[str, Any], path: str) -> float:
    """The number at a dotted path, e.g. 'metrics.after.accuracy'."""
    node: Any = manifest
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise MetricError(f"manifest has no {path!r} (missing {part!r})")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        raise MetricError(f"{path!r} is not a finite number: {node!r}")
    return float(node)


def decide(candidate: float, current: float | None, min_accuracy: float) -> tuple[bool, str]:
    if candidate < min_accuracy:
        return False, f"candidate {candidate:.4f} is below the minimum {min_accuracy:.4f}"
    if current is None:
        return True, f"candidate {candidate:.4f} >= minimum {min_accuracy:.4f}, no deployed one"
    if candidate <= current:
        return False, f"candidate {candidate:.4f} does not beat the deployed {current:.4f}"
    return True, f"candidate {candidate:.4f} beats the deployed {current:.4f}"


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MetricError(f"cannot read {path}: {err}") from err
    if not isinstance(doc, dict):
        raise MetricError(f"{path} is not a JSON object")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, required=True, help="candidate manifest.json")
    parser.add_argument("--current", type=Path, help="deployed manifest.json (absent: none)")
    parser.add_argument(
        "--metric", default="metrics.after.accuracy", help="dotted path in manifest.json"
    )
    parser.add_argument("--min-accuracy", type=float, required=True)
    args = parser.parse_args(argv)

    try:
        if not 0.0 <= args.min_accuracy <= 1.0:
            raise MetricError(f"--min-accuracy must be in [0, 1], got {args.min_accuracy}")
        candidate = read_metric(_load(args.candidate), args.metric)
        current = None
        if args.current is not None and args.current.exists():
            current = read_metric(_load(args.current), args.metric)
    except MetricError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    promote, reason = decide(candidate, current, args.min_accuracy)
    print(f"promote={str(promote).lower()}: {reason}")
    if out := os.environ.get("GITHUB_OUTPUT"):
        with open(out, "a", encoding="utf-8") as f:
            f.write(f"promote={str(promote).lower()}\n")
            f.write(f"candidate_metric={candidate}\n")
            f.write(f"current_metric={'' if current is None else current}\n")
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a", encoding="utf-8") as f:
            f.write(f"| {args.metric} | candidate | deployed | minimum |\n|---|---|---|---|\n")
            shown = "none" if current is None else f"{current:.4f}"
            f.write(f"| | {candidate:.4f} | {shown} | {args.min_accuracy:.4f} |\n\n")
            f.write(f"**{'Promote' if promote else 'Keep the deployed version'}**: {reason}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
