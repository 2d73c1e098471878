"""The model in process: a Ray Data actor that reads papers exactly as the gateway does (same
prompt renderer, label rule, calibration and second read) with vLLM's offline engine configured
as the served engine (same precision rule, threads, prefix caching)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from inference.engine import EngineSettings
from model_contract.layout import load_manifest, load_renderer
from model_contract.prompts import PromptRenderer
from model_contract.reading import (
    LabelScore,
    needs_reread,
    read_batch,
    sampling_params,
    score_from_logprobs,
)

#: Columns the scorer adds to each batch (the rest of RESULT_SCHEMA is the input's).
SCORE_COLUMNS = ("label", "probability", "cancer_probability", "truncated", "reread",
                 "abstract_missing", "model", "prompt_version")


class PaperScorer:
    """Callable on a pandas batch with `title` and `abstract` columns; returns the batch with
    SCORE_COLUMNS added. One vLLM engine per instance (per Ray actor)."""

    def __init__(self, model_dir: str, engine_settings: str,
                 reread_below: float | None = None) -> None:
        from inference.offline import offline_engine_kwargs

        model = Path(model_dir)
        settings = EngineSettings.model_validate_json(engine_settings)
        manifest = load_manifest(model)
        self.renderer = load_renderer(model)
        self.rule = manifest.reading_rule(reread_below)
        self.version, self.prompt_version = manifest.version, self.renderer.template.version
        kwargs, env = offline_engine_kwargs(settings, model)
        # This actor's process is ours: the engine core runs in a child of its own, as in the
        # server (it then gets vLLM's LD_PRELOAD for its allocator and thread binding).
        os.environ.update(env | {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
        from vllm import LLM, SamplingParams

        self.llm = LLM(**kwargs)
        self.params = SamplingParams(**sampling_params(self.renderer))

    def _scores(self, renderer: PromptRenderer, prompts: list[str]) -> list[LabelScore]:
        outputs = self.llm.generate(prompts, self.params, use_tqdm=False)
        return [score_from_logprobs(renderer, {t: lp.logprob for t, lp in
                                               out.outputs[0].logprobs[0].items()},
                                    self.rule.temperature) for out in outputs]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        titles = [t or " " for t in batch["title"]]  # as bulk sends a title-only record
        abstracts = [a or "" for a in batch["abstract"]]
        below = self.rule.reread_below
        reads = read_batch(self.renderer, list(zip(titles, abstracts, strict=True)),
                           self._scores, lambda score: needs_reread(score, True, below))
        scores = [r.deciding for r in reads]
        return batch.assign(
            label=[s.label for s in scores], probability=[s.probability for s in scores],
            cancer_probability=[s.cancer_probability for s in scores],
            truncated=[r.truncated for r in reads], reread=[r.whole is not None for r in reads],
            abstract_missing=[not a for a in abstracts], model=self.version,
            prompt_version=self.prompt_version)
