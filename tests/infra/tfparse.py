"""Terraform read with python-hcl2 (no terraform binary here): parsed files, blocks by type and
name, and a tiny evaluator for the string templates that name resources."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
BOOTSTRAP = TERRAFORM / "bootstrap"
# The account id that the placeholders of k8s/ use (terraform-outputs.env, image names).
PLACEHOLDER_ACCOUNT = "000000000000"

OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def tf_files(stack: Path = TERRAFORM) -> list[Path]:
    """The .tf files of one stack (its own folder only, not sub-stacks or .terraform/)."""
    return sorted(stack.glob("*.tf"))


def all_tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


@functools.cache
def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f, serialization_options=OPTIONS)


def blocks(kind: str, stack: Path = TERRAFORM) -> dict[str, Any]:
    """name -> body for single-label blocks (variable, output, module) of a stack."""
    found: dict[str, Any] = {}
    for path in tf_files(stack):
        for item in load(path).get(kind, []):
            for name, body in item.items():
                assert name not in found, f"{kind} {name} declared twice"
                found[name] = body
    return found


def resources(rtype: str, stack: Path = TERRAFORM, kind: str = "resource") -> dict[str, Any]:
    """name -> body of every `resource "RTYPE" "NAME"` (or data source) of a stack."""
    found: dict[str, Any] = {}
    for path in tf_files(stack):
        for item in load(path).get(kind, []):
            for name, body in item.get(rtype, {}).items():
                found[name] = body
    return found


def locals_(stack: Path = TERRAFORM) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in tf_files(stack):
        for item in load(path).get("locals", []):
            merged.update(item)
    return merged


def variable_defaults(stack: Path = TERRAFORM) -> dict[str, Any]:
    return {name: body.get("default") for name, body in blocks("variable", stack).items()}


_REF = re.compile(r"\$\{(var|local)\.([a-z0-9_]+)\}")


def interpolate(template: str, extra: dict[str, str] | None = None) -> str:
    """Evaluate a string template that only refers to var.X (their defaults), local.X (string
    locals, recursively) and local.account_id (the placeholder account)."""
    defaults = variable_defaults()
    local_values = {"account_id": PLACEHOLDER_ACCOUNT, "partition": "aws", **(extra or {})}
    locals_map = locals_()

    def sub(match: re.Match[str]) -> str:
        scope, name = match.groups()
        if scope == "var":
            value = defaults[name]
            assert isinstance(value, str), f"var.{name} has no string default"
            return value
        if name in local_values:
            return local_values[name]
        return interpolate(locals_map[name], extra)

    result = _REF.sub(sub, template)
    assert "${" not in result, f"cannot evaluate {template!r}"
    return result


def string_in_call(expression: str) -> str:
    """The (last) quoted template inside an expression such as
    ${coalesce(var.x, "${var.project}-models")}."""
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', expression)
    assert quoted, f"no string literal in {expression!r}"
    return quoted[-1]
