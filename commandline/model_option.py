"""The model a command runs, resolved for the command line: a wrong folder is a usage error."""

from __future__ import annotations

from pathlib import Path

import typer

from model_contract.layout import resolve_model_dir


def model_dir_from(model: Path | None, param_hint: str = "--model") -> Path:
    """The model a command runs: `model` when given, else models/latest, else the embedded
    base model (see model_contract.layout.resolve_model_dir). Raises typer.BadParameter (exit
    code 2, no traceback) when `model` is not a model directory or none is built."""
    try:
        return resolve_model_dir(model)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint=param_hint) from None
