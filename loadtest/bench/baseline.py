"""The baseline path: the original notebook's loop, Hugging Face `generate` on two new tokens
per paper, one paper at a time, the whole abstract in the prompt."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loadtest.bench.figures import path_figures
from loadtest.bench.papers import full_abstract_renderer, label_from_text
from preprocessing.papers import Paper


def baseline_path(model_dir: str, papers: list[Paper], warmup: list[Paper], seed: int,
                  progress: bool, precision: str) -> dict[str, Any]:
    """Time the notebook's loop over `papers` after classifying `warmup`, computing in
    `precision` (a torch dtype name) on every core this process may use; the path's figures
    (see `path_figures`) plus the prompt version, threads and precision. Runs in a child
    process of its own (see `isolation`)."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(seed)
    classify = NotebookClassifier(Path(model_dir), getattr(torch, precision))
    for paper in warmup:
        classify(paper)
    labels, latencies, tokens = [], [], []
    started = time.perf_counter()
    for paper in tqdm(papers, desc="baseline (HF generate)", unit="paper", disable=not progress):
        t = time.perf_counter()
        label, n = classify(paper)
        latencies.append(time.perf_counter() - t)
        labels.append(label)
        tokens.append(n)
    seconds = time.perf_counter() - started
    return path_figures(papers, labels, latencies, seconds, tokens) | {
        "prompt_version": classify.prompt_version, "threads": torch.get_num_threads(),
        "precision": precision}


class NotebookClassifier:
    """One paper -> (label or None, prompt tokens), as the notebook did it: two new tokens
    sampled at temperature 0.1, the label word they start with."""

    def __init__(self, model_dir: Path, dtype: Any) -> None:
        from transformers import AutoModelForCausalLM

        self.renderer = full_abstract_renderer(model_dir)
        self.prompt_version = self.renderer.template.version
        self.label_words = dict(self.renderer.template.label_words)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        self.model.eval()
        config = self.model.generation_config
        pad = config.pad_token_id or config.eos_token_id
        self.pad = pad[0] if isinstance(pad, list) else pad

    def __call__(self, paper: Paper) -> tuple[str | None, int]:
        import torch

        tokenizer = self.renderer.tokenizer
        ids = tokenizer.encode(self.renderer.render(paper.title, paper.abstract).text).ids
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=2, do_sample=True, temperature=0.1,
                                      pad_token_id=self.pad)
        text = tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)
        return label_from_text(text, self.label_words), len(ids)
