"""LoRA supervised fine-tuning with trl: loss on the answer token only, validation loss during
training, resumable checkpoints, one recipe for both backends."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hardware.precision import Precision
from training.answer_loss import answer_only_trainer_class
from training.backends import BackendName, TrainingModel, choose_backend, load_for_training
from training.data import (
    build_dataset,
    count_by_source,
    repeated_by_source,
    reread_papers,
    training_papers,
    validation_papers,
)
from training.evaluate import ADAPTER_PROMPT_FILE
from training.prompting import renderer_for
from training.recipe import Recipe
from training.settings import TrainingSettings

log = logging.getLogger(__name__)

ADAPTER_DIR, CHECKPOINTS_DIR, TRAIN_LOG = "adapter", "checkpoints", "train_log.json"


@dataclass
class FinetuneResult:
    adapter_dir: Path
    backend: str
    precision: str
    global_step: int
    train_seconds: float
    resumed_from: str | None
    train_examples: int
    eval_examples: int
    reread_examples: int  # whole-abstract second-read examples (data.reread_share)


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint: the trainer writes trainer_state.json last, so a
    checkpoint cut off by a kill mid-save is skipped."""
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def sft_config(recipe: Recipe, tm: TrainingModel, checkpoints: Path):
    from trl import SFTConfig

    t = recipe.train
    return SFTConfig(
        output_dir=str(checkpoints),
        seed=recipe.seed,
        data_seed=recipe.seed,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=recipe.eval.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        logging_steps=t.logging_steps,
        bf16=tm.precision.precision is Precision.BF16,
        fp16=tm.precision.precision is Precision.FP16,
        use_cpu=tm.use_cpu,
        # The recompute costs more than the memory it saves on a 135 M model (unsloth handles
        # its own checkpointing).
        gradient_checkpointing=False,
        max_length=None,  # prompts are capped by the template; never cut the answer off
        packing=False,
        train_sampling_strategy=t.sampling,
        prediction_loss_only=True,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _fresh_checkpoints(checkpoints: Path, resume: bool) -> Path | None:
    found = last_checkpoint(checkpoints) if resume else None
    if resume and found is None:
        log.warning("--resume: no complete checkpoint under %s, starting from scratch", checkpoints)
    if found is None and checkpoints.exists():
        shutil.rmtree(checkpoints)  # stale steps of an earlier run would be rotated in
    return found


def _trainer(tm: TrainingModel, recipe: Recipe, renderer, train_papers: list,
             eval_papers: list, reread: list, checkpoints: Path):
    # After the backend: unsloth patches trl when imported. On GPU trl's fused head already
    # scores only the label positions; elsewhere our answer-only loss does.
    from trl import SFTTrainer

    weights = {renderer.label_token_ids[label]: w
               for label, w in recipe.train.label_weights.items()}
    trainer_class = (SFTTrainer if tm.backend == "unsloth"
                     else answer_only_trainer_class(weights or None))
    eos = tm.tokenizer.eos_token_id if recipe.train.append_eos else None
    return trainer_class(
        model=tm.model,
        args=sft_config(recipe, tm, checkpoints),
        train_dataset=build_dataset(renderer, train_papers, eos, reread),
        eval_dataset=build_dataset(renderer, eval_papers, eos),
        processing_class=tm.tokenizer,
        optimizers=(loraplus_optimizer(tm.model, recipe), None),
    )


def loraplus_optimizer(model: Any, recipe: Recipe) -> Any | None:
    """AdamW with LoRA+ learning rates (B matrices at `train.loraplus_lr_ratio` times the A
    matrices' rate), or None when the recipe sets no ratio: the trainer then builds its own
    optimizer. The trainer's scheduler scales every group's rate alike (warm-up, decay)."""
    t = recipe.train
    if t.loraplus_lr_ratio is None:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model, torch.optim.AdamW, lr=t.learning_rate, loraplus_lr_ratio=t.loraplus_lr_ratio,
        loraplus_weight_decay=t.weight_decay)


def finetune(recipe: Recipe, base: Path | str, data_dir: Path, out_dir: Path,
             backend: BackendName = "auto", resume: bool = False) -> FinetuneResult:
    """Train a LoRA adapter into `out_dir/adapter`; checkpoints go to `out_dir/checkpoints`."""
    chosen = choose_backend(backend)
    if chosen == "unsloth" and recipe.train.label_weights:
        raise ValueError("train.label_weights needs the answer-only loss of the peft backend; "
                         "trl's fused loss on unsloth has no per-label weights")
    renderer = renderer_for(base, recipe.template)
    train_papers = training_papers(data_dir, recipe)
    eval_papers = validation_papers(data_dir, recipe, recipe.train.max_eval_examples)
    reread = reread_papers(renderer, train_papers, recipe.data.reread_share, recipe.seed)
    longest = (renderer.reread_renderer() if reread else renderer).max_prompt_tokens()
    precision = TrainingSettings().choose_precision()
    tm = load_for_training(chosen, base, recipe, longest + 2, precision)
    examples = repeated_by_source(train_papers, recipe.data, recipe.seed)
    log.info("fine-tuning backend: %s, precision %s; %d train papers (%d examples an epoch, "
             "+%d read whole) / %d validation papers; template %s", tm.backend,
             precision.describe(), len(train_papers), len(examples), len(reread),
             len(eval_papers), renderer.template.version)
    checkpoints = out_dir / CHECKPOINTS_DIR
    resume_from = _fresh_checkpoints(checkpoints, resume)
    trainer = _trainer(tm, recipe, renderer, examples, eval_papers, reread, checkpoints)
    if resume_from:
        log.info("resuming from %s", resume_from)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    trainer.save_model(str(out_dir / ADAPTER_DIR))
    # The adapter was trained on this template: evaluation reads it from here.
    (out_dir / ADAPTER_DIR / ADAPTER_PROMPT_FILE).write_text(json.dumps(
        {"template": recipe.template, "version": renderer.template.version}))
    result = FinetuneResult(out_dir / ADAPTER_DIR, tm.backend, precision.precision.value,
                            trainer.state.global_step, seconds,
                            str(resume_from) if resume_from else None, len(train_papers),
                            len(eval_papers), len(reread))
    _write_log(out_dir, recipe, result, trainer.state.log_history, train_papers)
    return result


def _write_log(out_dir: Path, recipe: Recipe, result: FinetuneResult, history: list[dict],
               papers: list) -> None:
    record = {**asdict(result), "adapter_dir": str(result.adapter_dir),
              "recipe": recipe.model_dump(), "train_sources": count_by_source(papers),
              "train_ids": [p.id for p in papers],
              "log_history": history}
    (out_dir / TRAIN_LOG).write_text(json.dumps(record, indent=2))
