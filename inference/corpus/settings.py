"""Settings of corpus runs, `python -m inference corpus` (environment variables prefixed
CORPUS_). The engine itself (precision, threads, KV cache) follows EngineSettings (ENGINE_*),
as the served engine does."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CorpusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORPUS_")

    address: str | None = Field(
        None, description="Ray cluster to run on ('auto' inside a RayJob, or ray://HOST:10001); "
        "unset = a local Ray on this machine")
    model_dir: Path | None = Field(
        None, description="Merged model directory; unset = models/latest, else the embedded "
        "base model")
    num_actors: int = Field(1, ge=1, description="Model replicas (Ray actors, one engine each)")
    batch_size: int = Field(64, ge=1, description="Papers per actor call; also the papers per "
                            "output part file (the unit of resume)")
    gpus_per_actor: float = Field(0, ge=0, description="GPUs each actor asks Ray for (1 on a GPU "
                                  "node group; 0 on CPU)")
    cpus_per_actor: float = Field(
        1, gt=0, description="CPUs each actor asks Ray for (Ray's scheduling only: on CPU the "
        "engine computes on the cores ENGINE_CPU_THREADS_BIND names, all usable ones by "
        "default)")
    reread_below: float | None = Field(
        None, ge=0, le=1, description="Second-read threshold; unset = the model's manifest (as "
        "the gateway reads it)")
    max_restarts: int = Field(3, ge=0, description="Restarts of a failed actor (a transient "
                              "fault is retried, never stored as a result)")
