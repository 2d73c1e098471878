"""Settings of the Locust users (environment variables prefixed LOADTEST_). `python -m loadtest
run` sets them from its options; a bare `locust -f loadtest/locustfile.py` reads them too."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from preprocessing.settings import PROJECT_ROOT


class LoadtestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOADTEST_")

    data_dir: Path = Field(PROJECT_ROOT / "data" / "processed",
                           description="Folder with the dataset's parquet splits")
    split: str = Field("test", description="Split whose real abstracts are sent")
    api_key: str = Field("", description="Sent as `Authorization: Bearer KEY` when set")
    single_weight: int = Field(3, ge=0, description="Task weight of POST /v1/classify_paper")
    batch_weight: int = Field(1, ge=0, description="Task weight of POST /v1/classify_papers")
    # The gateway admits GATEWAY_MAX_IN_FLIGHT papers (64) at once and sheds the rest with 429:
    # keep users x batch_size near that to load it without shedding.
    batch_size: int = Field(4, ge=1, description="Papers per /v1/classify_papers call")
    cache_bust: bool = Field(
        True, description="Append a unique suffix to each title so the gateway's result cache "
        "never answers (measures the engine, not the cache)")
    wait_min_s: float = Field(0.0, ge=0, description="Least think time between a user's calls")
    wait_max_s: float = Field(0.5, ge=0, description="Most think time between a user's calls")
    labels_out: Path | None = Field(
        None, description="Where to write how many answers matched the dataset's labels (JSON)")
