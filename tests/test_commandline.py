"""The option helper and the `paper-classifier` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from commandline.main import app as root
from commandline.options import option, settings_from


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    seed: int = Field(42, ge=0, description="Seed of the split")
    out: Path = Field(Path("out"), description="Where results go")


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def main(seed: Annotated[int | None, option(_Settings, "seed")] = None,
             out: Annotated[Path | None, option(_Settings, "out")] = None) -> None:
        s = settings_from(_Settings, seed=seed, out=out)
        typer.echo(f"{s.seed} {s.out}")

    return app


def test_help_and_default_come_from_the_field() -> None:
    out = CliRunner().invoke(_app(), ["--help"], env={"COLUMNS": "200"}).output
    assert "Seed of the split (env DEMO_SEED)" in out and "42" in out


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, "42 out"),                          # the field's default
    ([], {"DEMO_SEED": "7"}, "7 out"),           # the environment
    (["--seed", "3"], {"DEMO_SEED": "7"}, "3 out"),  # the option wins
])
def test_option_over_environment_over_default(args: list[str], env: dict, expected: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0 and result.output.strip() == expected


def test_invalid_value_names_the_field_without_a_traceback() -> None:
    result = CliRunner().invoke(_app(), ["--seed", "-1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "seed: Input should be greater than or equal to 0" in result.output
    assert "Traceback" not in result.output


def test_a_field_without_description_is_refused() -> None:
    class Bare(BaseSettings):
        x: int = 1

    with pytest.raises(ValueError, match="Bare.x has no description"):
        option(Bare, "x")


def test_entry_point_lists_the_stages() -> None:
    out = CliRunner().invoke(root, ["--help"], env={"COLUMNS": "200"}).output
    for stage in ("preprocess", "training", "inference", "loadtest"):
        assert stage in out
    sub = CliRunner().invoke(root, ["training", "--help"], env={"COLUMNS": "200"}).output
    assert "finetune" in sub and "publish" in sub
