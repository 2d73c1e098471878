"""Typer options whose default and help come from a pydantic-settings field.

A stage's settings class is its interface: environment variables, defaults and descriptions
live there once. A command declares `seed: Annotated[int | None, option(Settings, "seed")] = None`
and builds its settings with `settings_from(Settings, seed=seed, ...)`: an option left unset
stays None and does not override the environment variable or the field's default.
"""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def env_name(settings: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field `name` (prefix + name, upper case)."""
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def option(settings: type[BaseSettings], name: str, *param_decls: str, **kwargs: Any) -> Any:
    """A `typer.Option` for field `name` of `settings`: help is the field's description plus
    its environment variable, the shown default is the field's. Raises KeyError for an unknown
    field and ValueError for a field without a description (every option must explain itself)."""
    field = settings.model_fields[name]
    if not field.description:
        raise ValueError(f"{settings.__name__}.{name} has no description")
    default = field.get_default(call_default_factory=True)
    shown = "none" if default is None else str(default)
    help_text = f"{field.description} (env {env_name(settings, name)})"
    return typer.Option(*param_decls, help=help_text, show_default=shown, **kwargs)


def env_epilog(settings: type[BaseSettings]) -> str:
    """A help epilog listing each setting of a command configured by environment alone:
    `VARIABLE (default): description`, one paragraph each."""
    lines = []
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "empty"
        lines.append(f"{env_name(settings, name)} ({default}): {field.description}")
    return "Environment variables:\n\n" + "\n\n".join(lines)


def settings_from(settings: type[S], **given: Any) -> S:
    """The settings with the options that were given (not None) over environment and defaults.
    Raises typer.BadParameter (exit code 2, no traceback) naming each invalid field."""
    try:
        return settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or settings.__name__}: {err['msg']}"
            for err in e.errors(include_url=False, include_input=False))
        raise typer.BadParameter(problems) from None
