"""The registry's two commands: `training publish` (a merged model directory becomes an
immutable version) and `inference fetch-model` (the engine pod's init container copies a
version into a local directory, every checksum verified)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from model_registry.s3 import RegistryError, fetch, publish

BucketOption = Annotated[
    str, typer.Option("--bucket", envvar="MODEL_BUCKET", help="Model bucket (S3).")
]
NameOption = Annotated[
    str, typer.Option("--name", envvar="MODEL_NAME", help="Model name: models/NAME/...")
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="S3 endpoint override (boto3 also honours "
                 "AWS_ENDPOINT_URL)."),
]


@contextmanager
def _exit_on_registry_error() -> Iterator[None]:
    """A registry error or a bad name/version: one line on stderr and exit code 1."""
    try:
        yield
    except (RegistryError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err


def publish_command(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="Merged model directory to publish (every file under it is uploaded).",
            exists=True,
            file_okay=False,
            dir_okay=True,
            readable=True,
        ),
    ],
    bucket: BucketOption,
    name: NameOption,
    version: Annotated[
        str,
        typer.Option(
            "--version", envvar="MODEL_VERSION", help="Version to create: models/NAME/VERSION/."
        ),
    ],
    endpoint_url: EndpointOption = None,
) -> None:
    """Publish a model directory as an immutable version, checksums.json written last."""
    with _exit_on_registry_error():
        typer.echo(publish(model_dir, bucket, name, version, endpoint_url=endpoint_url))


def fetch_command(
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
    with _exit_on_registry_error():
        typer.echo(fetch(bucket, name, version, dest, endpoint_url=endpoint_url))
