"""Gateway settings: environment variables prefixed GATEWAY_ (documented defaults below)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model_contract.layout import SERVED_NAME


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    host: str = Field("127.0.0.1", description="Bind address (0.0.0.0 in a container)")
    port: int = Field(8080, ge=1, le=65535, description="Listen port")
    engine_urls: Annotated[list[str], NoDecode] = Field(
        ["http://127.0.0.1:8000"], description="vLLM OpenAI servers, comma-separated"
    )
    resolve_engines: bool = Field(
        False, description="Expand each engine hostname to all its addresses (headless Service)"
    )
    admin_enabled: bool = Field(
        False, description="Expose POST /admin/model for zero-downtime swaps (local serving)"
    )
    model_name: str = Field(SERVED_NAME, description="Served model name in vLLM")
    model_dir: Path | None = Field(
        None, description="Model directory with tokenizer.json, prompt_frame.json, manifest.json "
        "(default: models/latest, else the embedded base model)"
    )
    model_version: str = Field("", description="Label of the served model version (metrics, logs)")
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="Accepted API keys, comma-separated; empty and no file = auth off"
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key per line; when set, it must exist and hold a "
        "key, or the gateway refuses to start (a missing secret must not turn auth off)")
    max_batch: int = Field(64, ge=1, description="Most papers in one /v1/classify_papers call")
    # Above the engine's own batch (max_num_seqs 64): the engine queues the rest, and 32 users
    # sending batches of 4 (128 calls) must not see 429s (seen at 64 in a 10-minute Locust run).
    max_in_flight: int = Field(256, ge=1, description="Most engine calls in flight at once")
    queue_wait_s: float = Field(1.0, ge=0, description="Wait for a slot before answering 429")
    request_timeout_s: float = Field(30.0, gt=0, description="Per engine call; beyond it 504")
    connect_retries: int = Field(3, ge=0, description="Retries after no connection or a 5xx")
    max_body_bytes: int = Field(4 * 1024 * 1024, description="Larger bodies get 413")
    max_title_chars: int = Field(2_000, description="Longer titles get 422")
    max_abstract_chars: int = Field(100_000, description="Longer abstracts get 422")
    reread_below: float | None = Field(
        None, ge=0, le=1, description="Read a cut paper again, whole, when the first read's "
        "probability is below this (0 = never); unset = the threshold in the model's manifest "
        "(chosen on validation papers), 0.98 for a model without one"
    )
    cache_size: int = Field(10_000, ge=0, description="Result cache entries (0 = off)")
    health_interval_s: float = Field(2.0, gt=0, description="How often engines are probed")
    retry_after_s: int = Field(2, ge=1, description="Retry-After sent with 429, 503 and 504")
    # uvicorn's default (5 s) is shorter than ingress-nginx's upstream keep-alive (60 s): nginx
    # would reuse a connection the gateway is closing, and the client gets a sporadic 502. The
    # side that closes idle connections must be the proxy, so this must exceed its timeout
    # (k8s/base/gateway.yaml; tests/infra/test_kustomize.py checks it).
    keep_alive_s: int = Field(
        75, ge=1, description="Idle client keep-alive before the gateway closes a connection "
        "(uvicorn timeout_keep_alive); must exceed the proxy's upstream keep-alive (nginx: 60 s)"
    )
    max_file_records: int = Field(
        200, ge=1, description="Most records in one /v1/classify_file upload (larger exports: "
        "the bulk command, python -m inference classify)")
    max_file_expanded_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Most bytes an uploaded file may expand to once "
        "decompressed (a small .gz could otherwise expand to gigabytes); beyond it 413")
    log_level: str = Field("info", description="Python log level")

    _split = field_validator("engine_urls", "api_keys", mode="before")(_split_csv)

    @model_validator(mode="after")
    def _keys_file_holds_keys(self) -> GatewaySettings:
        if self.api_keys_file is not None:
            self.load_api_keys()
        return self

    def load_api_keys(self) -> list[str]:
        """The accepted keys: `api_keys`, then the lines of `api_keys_file`. Raises ValueError
        when the file is set but unreadable or holds no key: auth must fail closed."""
        keys = list(self.api_keys)
        if self.api_keys_file is None:
            return keys
        try:
            lines = self.api_keys_file.read_text().splitlines()
        except OSError as err:
            raise ValueError(f"api_keys_file {self.api_keys_file} cannot be read "
                             f"({err.strerror}); refusing to run with auth off") from None
        from_file = [k.strip() for k in lines if k.strip()]
        if not from_file:
            raise ValueError(f"api_keys_file {self.api_keys_file} holds no key; refusing to "
                             "run with auth off")
        return keys + from_file
