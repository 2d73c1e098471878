"""``python -m inference fetch-model``: copy a published model version from the model bucket
into a local directory, every checksum verified (the engine pod's init container)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from model_registry.s3 import BucketOption, EndpointOption, NameOption, RegistryError, fetch


def fetch_model_command(
    bucket: BucketOption,
    name: NameOption,
    version: Annotated[
        str,
        typer.Option(
            "--version", envvar="MODEL_VERSION", help="Published version: models/NAME/VERSION/."
        ),
    ],
    dest: Annotated[
        Path,
        typer.Option(
            "--dest",
            help="Directory to create or replace with the verified version (its parent must "
            "be writable; a temporary directory is made there first).",
        ),
    ],
    endpoint_url: EndpointOption = None,
) -> None:
    """Download a model version, verify checksums.json, then move it into place atomically.
    Does nothing when DEST already holds that verified version."""
    try:
        path = fetch(bucket, name, version, dest, endpoint_url=endpoint_url)
    except (RegistryError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(path)
