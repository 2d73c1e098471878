"""What one benchmark run is asked to do: the settings plus the per-invocation paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtest.settings import BENCH_PATHS, BenchSettings
from preprocessing.settings import PROJECT_ROOT

PATHS = BENCH_PATHS
DEFAULT_OUT = PROJECT_ROOT / "results" / "bench"
#: One line per path for the table, `{c}` the requests in flight.
DESCRIPTIONS = {
    "baseline": "HF generate, 1 at a time, full abstract",
    "offline": "vLLM offline engine, one generate call, capped read only",
    "server": "vLLM server direct, {c} in flight, unsure papers re-read",
    "gateway": "gateway + vLLM server, {c} in flight",
}


@dataclass
class BenchOptions:
    """One run: the model, where its outputs go, and the settings (papers, concurrency,
    rounds, paths, time budgets)."""

    model_dir: Path
    settings: BenchSettings = field(default_factory=BenchSettings)
    out_dir: Path = DEFAULT_OUT
    json_path: Path | None = None  # None: OUT_DIR/latest.json
    progress: bool = True

    @property
    def paths(self) -> tuple[str, ...]:
        return self.settings.paths

    @property
    def json_file(self) -> Path:
        """Where the JSON result is written."""
        return self.json_path or self.out_dir / "latest.json"
