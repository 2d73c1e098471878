"""Settings of bulk classification, `python -m inference classify` (environment variables
prefixed BULK_): which gateway to call, how hard, and how patiently. The command line takes its
option defaults and help from these fields; the input, the output and the API key are per-run
arguments of the command.

Kept apart from `inference.bulk` so that the command line (imported by every image, the
gateway's included) does not import pandas and pyarrow just to show its options."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BulkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULK_")

    gateway_url: str = Field("http://127.0.0.1:8080", description="Base URL of the gateway "
                             "(its /v1/classify_papers route is called)")
    batch_size: int = Field(16, ge=1, description="Papers per request; also the number of "
                            "results written to disk at a time")
    concurrency: int = Field(4, ge=1, description="Requests in flight at once")
    # The default and the waits are those of inference.bulk.Backoff (a test keeps them equal).
    attempts: int = Field(8, ge=1, description="Tries per paper when the service is busy or "
                          "down (429, 5xx, lost connection), with exponential backoff from 1 s "
                          "up to 30 s between tries")
