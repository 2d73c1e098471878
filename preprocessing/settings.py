"""Settings of the preprocessing stage (environment variables prefixed PREP_)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The shared data folder sits beside the repository (../shared from the project root).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "Dataset"
#: Where the processed dataset is written (and read by training, the demo and the benchmark).
DEFAULT_OUT_DIR = PROJECT_ROOT / "data" / "processed"


class PreprocessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREP_")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Folder of labelled papers: "
                           "Cancer/*.txt and Non-Cancer/*.txt, one paper per file")
    out_dir: Path = Field(DEFAULT_OUT_DIR, description="Folder of the "
                          "processed dataset: train/validation/test.parquet and summary.json "
                          "(written by preprocessing, read by training)")
    seed: int = Field(42, description="Seed of the stratified split")
    val_frac: float = Field(0.1, gt=0, lt=0.5, description="Share of each label for validation")
    test_frac: float = Field(0.2, gt=0, lt=0.5, description="Share of each label for test")
