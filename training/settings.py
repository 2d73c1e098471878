"""Settings of the training stage (environment variables prefixed TRAINING_). Hyper-parameters
live in the recipe; what depends on the machine or the deployment lives here. The command line
(`python -m training`) takes its option defaults and help from these fields."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hardware.precision import PrecisionChoice, PrecisionSetting, choose
from training.backends import BackendName
from training.scoring import EngineName


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINING_")

    precision: PrecisionSetting = Field(
        "auto", description="Compute precision of fine-tuning (autocast) and of scoring "
        "(transformers, vLLM's offline engine); auto = the hardware rule in hardware.precision"
    )
    models_dir: Path = Field(
        Path("models"), description="Folder of materialised base models, runs "
        "(runs/<run>/{adapter,merged,report.md}) and the `latest` link to the newest "
        "merged model; relative to the current directory"
    )
    backend: BackendName = Field(
        "auto", description="Fine-tuning backend: auto = unsloth on an NVIDIA GPU where it is "
        "installed, else peft (CPU or GPU); unsloth or peft force one"
    )
    scoring_engine: EngineName = Field(
        "auto", description="How papers are scored in evaluation: vllm (vLLM's offline "
        "engine, merged models only) or transformers (a batched forward, any model or "
        "adapter); auto = vLLM where installed and no adapter is given"
    )

    def choose_precision(self, device: str = "auto") -> PrecisionChoice:
        return choose(device, self.precision, "TRAINING_PRECISION")
