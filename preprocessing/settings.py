"""Settings of the preprocessing stage (environment variables prefixed PREP_)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from preprocessing.sources import PROJECT_ROOT, catalogue, default_sources

#: The assignment's 800 labelled papers (the shared data folder sits beside the repository).
DEFAULT_DATA_DIR = catalogue()["assignment"].path
#: Where the processed dataset is written (and read by training, the demo and the benchmark).
DEFAULT_OUT_DIR = PROJECT_ROOT / "data" / "processed"


class PreprocessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREP_")

    sources: list[str] = Field(
        default_factory=default_sources,
        description="Labelled sources, each a folder of Cancer/*.txt and Non-Cancer/*.txt: "
        "NAME from preprocessing/sources.toml, or NAME=PATH; default = every catalogued source "
        "whose folder exists (env: a JSON list)")
    out_dir: Path = Field(DEFAULT_OUT_DIR, description="Folder of the "
                          "processed dataset: train/validation/test.parquet and summary.json "
                          "(written by preprocessing, read by training)")
    seed: int = Field(42, description="Seed of the stratified split (each source on its own)")
    val_frac: float = Field(0.1, gt=0, lt=0.5, description="Share of each label for validation")
    test_frac: float = Field(0.2, gt=0, lt=0.5, description="Share of each label for test")
