"""Settings of the training stage (environment variables prefixed TRAINING_). Hyper-parameters
live in the recipe; what depends on the machine lives here."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hardware.precision import PrecisionChoice, PrecisionSetting, choose


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINING_")

    precision: PrecisionSetting = Field(
        "auto", description="Compute precision of fine-tuning (autocast) and of scoring "
        "(transformers, vLLM's offline engine); auto = the hardware rule in hardware.precision"
    )

    def choose_precision(self, device: str = "auto") -> PrecisionChoice:
        return choose(device, self.precision, "TRAINING_PRECISION")
