"""Settings of the load test and the benchmark, read from the environment.

`LoadtestSettings` (variables prefixed LOADTEST_) configure the Locust users: `python -m
loadtest run` sets them from its options, and a bare `locust -f loadtest/locustfile.py` reads
them too. `BenchSettings` (prefixed BENCH_) configure `python -m loadtest bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from preprocessing.settings import DEFAULT_OUT_DIR

#: The serving paths the benchmark can time, in the order it runs them.
BENCH_PATHS = ("baseline", "offline", "server", "gateway")


class LoadtestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOADTEST_")

    data_dir: Path = Field(DEFAULT_OUT_DIR,
                           description="Folder with the dataset's parquet splits")
    split: str = Field("test", description="Split whose real abstracts are sent")
    api_key: str | None = Field(None, description="Sent as `Authorization: Bearer KEY` when set")
    single_weight: int = Field(
        3, ge=0, description="How often a user calls POST /v1/classify_paper, relative to "
        "the batch weight (task weight)")
    batch_weight: int = Field(
        1, ge=0, description="How often a user calls POST /v1/classify_papers, relative to "
        "the single weight (task weight)")
    route_order: Literal["weighted", "alternate"] = Field(
        "weighted", description="weighted: each call picks a route at random by the weights; "
        "alternate: each user alternates the two routes, every other user starting with the "
        "batch route (both routes answer within the first calls, however few: short runs, "
        "slow machines)")
    # The gateway admits GATEWAY_MAX_IN_FLIGHT engine calls (256) at once and sheds the rest
    # with 429 after GATEWAY_QUEUE_WAIT_S: keep users x batch_size below that to load it
    # without shedding.
    batch_size: int = Field(
        4, ge=1, description="Papers per /v1/classify_papers call, at most GATEWAY_MAX_BATCH "
        "(64); the gateway admits GATEWAY_MAX_IN_FLIGHT (256) papers in flight and answers 429 "
        "beyond: users x batch size above that measures shedding")
    cache_bust: bool = Field(
        True, description="Append a unique suffix to each title so the gateway's result cache "
        "never answers (measures the engine, not the cache)")
    wait_min_s: float = Field(0.0, ge=0, description="Least think time between a user's "
                              "calls, seconds")
    wait_max_s: float = Field(0.5, ge=0, description="Most think time between a user's "
                              "calls, seconds")
    labels_out: Path | None = Field(
        None, description="Where to write how many answers matched the dataset's labels (JSON)")


class BenchSettings(BaseSettings):
    """What `python -m loadtest bench` measures and how long it may take. The engine it starts
    takes its own settings from the ENGINE_* variables, as `python -m inference serve` does."""

    model_config = SettingsConfigDict(env_prefix="BENCH_")

    data_dir: Path = Field(
        DEFAULT_OUT_DIR, description="Processed dataset: test papers are timed, validation "
        "papers warm each path up")
    source: str = Field(
        "assignment", min_length=1, description="Labelled source whose test papers are timed "
        "(the assignment's are those the original notebook was measured on), or 'all'")
    papers: int | None = Field(
        None, ge=1, description="Test papers to time, labels interleaved (none: the whole "
        "test split of the source)")
    concurrency: int = Field(16, ge=1, description="Requests in flight on the served paths")
    rounds: int = Field(
        5, ge=1, description="Timed rounds of each served path, interleaved (the median round "
        "is kept)")
    only: str = Field(",".join(BENCH_PATHS),
                      description="Paths to run, comma-separated, of " + ", ".join(BENCH_PATHS))
    seed: int = Field(0, description="Seed of the paper pick and of the baseline's sampling")
    engine_port: int = Field(8200, description="First port tried for the engine (the next "
                             "free one is taken)")
    gateway_port: int = Field(8280, description="First port tried for the gateway (the next "
                              "free one is taken)")
    flops_seconds: float = Field(
        3.0, gt=0, description="Seconds each measurement of the matmul peak runs (MFU's "
        "denominator, measured before and between the paths)")
    probe_papers: int = Field(
        24, ge=0, description="Papers of the unloaded latency probe, direct vs gateway (each "
        "read 5 times per path)")
    # Five pairs take about 150 s on an AVX-512 bf16 2-core machine and 600 s on an AVX2 one
    # (fp32), where 600 s took `make bench` to 24.5 min against its 20-minute target.
    served_budget_s: float = Field(
        300.0, gt=0, description="Seconds of served rounds after which no new pair of rounds "
        "starts (at least one pair runs), so a slow machine finishes too")

    @field_validator("only")
    @classmethod
    def _known_paths(cls, value: str) -> str:
        names = [p.strip() for p in value.split(",") if p.strip()]
        if unknown := sorted(set(names) - set(BENCH_PATHS)):
            raise ValueError(f"unknown paths {unknown}; choose from {BENCH_PATHS}")
        if not names:
            raise ValueError(f"no path given; choose from {BENCH_PATHS}")
        return ",".join(names)

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths to run, in the order given."""
        return tuple(self.only.split(","))
