"""The whole chain on a handful of papers: fine-tune -> merge -> vLLM loads the merged directory
-> labels come back; the manifest, report and models/latest are in place."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from model_contract.layout import load_renderer
from model_contract.prompts import FRAME_FILE
from preprocessing.papers import LABELS
from training.recipe import Recipe

pytestmark = pytest.mark.slow

MANIFEST_KEYS = {"name", "version", "base_model", "recipe", "prompt", "dataset", "metrics",
                 "created_at", "code_version", "sources", "calibration"}


def test_merged_model_is_scored_by_vllm(smoke_run: dict) -> None:
    after = json.loads((smoke_run["run_dir"] / "eval_after.json").read_text())
    assert after["engine"] == "vllm"  # vLLM loaded the merged directory as it is
    assert after["model"] == str(smoke_run["run_dir"] / "merged")
    assert len(after["predictions"]) == 8
    for p in after["predictions"]:
        assert p["predicted"] in LABELS and 0.0 <= p["p_cancer"] <= 1.0
        assert p["predicted"] == ("cancer" if p["p_cancer"] >= 0.5 else "non_cancer")


def test_merged_directory_is_complete(smoke_run: dict, processed_dir: Path) -> None:
    merged = smoke_run["run_dir"] / "merged"
    for name in ("model.safetensors", "config.json", "generation_config.json",
                 "tokenizer.json", "tokenizer_config.json", FRAME_FILE, "manifest.json"):
        assert (merged / name).is_file(), name
    config = json.loads((merged / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest.keys() >= MANIFEST_KEYS
    assert manifest["prompt"]["template"] == "cancer-yn-short"
    assert manifest["recipe"]["name"] == "smoke"
    summary = json.loads((processed_dir / "summary.json").read_text())
    assert manifest["dataset"]["fingerprint"] == summary["fingerprint"]
    assert manifest["metrics"]["after"]["accuracy"] == smoke_run["after"]["accuracy"]
    assert manifest["metrics"]["before"]["n"] == 8
    # Serving renders through the manifest's template.
    assert load_renderer(merged).template.name == "cancer-yn-short"
    source = manifest["sources"]["assignment"]
    assert source["label_meaning"]["cancer"].startswith("The assignment's papers")
    assert source["fingerprint"] == summary["sources"]["assignment"]["fingerprint"]
    assert sum(source["train"].values()) == 12  # the smoke recipe's max_examples


def test_calibration_is_fitted_stored_and_applied(smoke_run: dict) -> None:
    """The temperature fitted on validation is in the manifest, and the test predictions are
    the raw label logits divided by it, read twice where the stored threshold says."""
    from model_contract.reading import calibrated_probability

    run_dir = smoke_run["run_dir"]
    manifest = json.loads((run_dir / "merged" / "manifest.json").read_text())
    fit = json.loads((run_dir / "calibration.json").read_text())
    calibration = manifest["calibration"]
    assert calibration["temperature"] == fit["temperature"] > 0
    assert calibration["reread_below"] == fit["reread_below"]
    assert fit["nll"]["after"] <= fit["nll"]["before"] + 1e-9  # T=1 is among the candidates
    assert sum(calibration["fitted_on"].values()) == 8  # eval.max_examples validation papers
    after = json.loads((run_dir / "eval_after.json").read_text())
    assert after["rule"] == {"temperature": calibration["temperature"],
                             "reread_below": calibration["reread_below"]}
    for p in after["predictions"]:
        confidence = max(p["p_cancer_capped"], 1 - p["p_cancer_capped"])
        if not p["reread"]:
            assert p["p_cancer"] == p["p_cancer_capped"]
        else:
            assert confidence < calibration["reread_below"]
    assert after["per_source"]["assignment"]["served"]["n"] == 8
    assert calibrated_probability(0.0, calibration["temperature"]) == 0.5
    # The validation papers' own figures under the fitted rule, per source and per paper.
    validation = fit["validation"]
    assert sum(m["served"]["n"] for m in validation["per_source"].values()) == 8
    assert len(validation["predictions"]) == 8
    assert all(0 <= p["p_cancer"] <= 1 for p in validation["predictions"])


def test_merge_equals_base_plus_adapter(smoke_run: dict, base_model_dir: Path) -> None:
    """The merged weights give the log-probabilities of base + adapter (bf16 rounding apart),
    from their own LM head centred on the label tokens (label logits near 0, not near 40)."""
    import torch

    from training.scoring.transformers_forward import load_model

    renderer = load_renderer(base_model_dir, "cancer-yn-short")
    ids = torch.tensor([renderer.tokenizer.encode(
        renderer.render("Lung cancer screening", "Low-dose CT in smokers.").text).ids])
    adapter = smoke_run["run_dir"] / "adapter"
    unmerged = load_model(base_model_dir, adapter, dtype="float32")
    merged = load_model(smoke_run["run_dir"] / "merged", dtype="float32")
    with torch.inference_mode():
        a = unmerged(input_ids=ids, logits_to_keep=1).logits[0, -1]
        b = merged(input_ids=ids, logits_to_keep=1).logits[0, -1]
    la, lb = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    assert torch.allclose(la, lb, atol=0.15), float((la - lb).abs().max())
    label_ids = list(renderer.label_token_ids.values())
    pa, pb = (torch.softmax(x[label_ids], -1) for x in (a, b))
    assert torch.allclose(pa, pb, atol=0.02)
    assert a[label_ids].abs().min() > 10 and b[label_ids].abs().max() < 10
    assert abs(float(b[label_ids].sum())) < 0.05  # centred on the label rows' mean
    config = json.loads((smoke_run["run_dir"] / "merged" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False


def test_report_and_figures_are_written(smoke_run: dict) -> None:
    run_dir = smoke_run["run_dir"]
    report = (run_dir / "report.md").read_text()
    for png in ("confusion_matrices.png", "reliability.png", "loss_curves.png",
                "reliability_per_source.png"):
        assert (run_dir / png).stat().st_size > 10_000
        assert f"]({png})" in report
    assert "| accuracy |" in report and "TF-IDF + LR" in report and "keyword rule" in report
    assert "### assignment (8 papers" in report and "fine-tuned, served (second read)" in report
    assert "### Calibration" in report and "| read again below |" in report
    assert "#### Validation: assignment (" in report
    assert "## Labels to review" in report and "| assignment |" in report
    train_log = json.loads((run_dir / "train_log.json").read_text())
    assert train_log["backend"] == "peft" and train_log["global_step"] == 3
    assert any("eval_loss" in e for e in train_log["log_history"])  # validation loss logged


def test_latest_points_at_the_merged_model(smoke_run: dict) -> None:
    latest = smoke_run["models_dir"] / "latest"
    assert latest.is_symlink()
    assert latest.resolve() == (smoke_run["run_dir"] / "merged").resolve()


def test_cpu_run_did_not_import_unsloth(smoke_run: dict) -> None:
    assert not [m for m in sys.modules if m.startswith("unsloth")]


def test_calibrate_refits_a_finished_run_without_training(smoke_run: dict, smoke_recipe,
                                                          processed_dir: Path,
                                                          tmp_path: Path) -> None:
    """`python -m training calibrate` on a copy of the run: a read-twice budget that forbids
    every second read gives threshold 0.5 in calibration.json, the manifest, eval_after.json
    and the report, and no test paper is read twice."""
    import shutil

    from training.run import recalibrate

    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run["run_dir"], run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    recipe = smoke_recipe.with_overrides({"eval.max_reread_share": 1e-6})
    run = recalibrate(run_dir, recipe, processed_dir)
    fit = json.loads((run_dir / "calibration.json").read_text())
    assert fit["max_reread_share"] == 1e-6 and fit["reread_below"] == 0.5
    manifest = json.loads((run_dir / "merged" / "manifest.json").read_text())
    assert manifest["calibration"]["reread_below"] == 0.5
    after = json.loads((run_dir / "eval_after.json").read_text())
    assert after["rule"]["reread_below"] == 0.5
    assert not any(p["reread"] for p in after["predictions"]) and after["reread_share"] == 0
    assert run["after"]["accuracy"] == after["metrics"]["accuracy"]
    assert run["stage_seconds"] == smoke_run["stage_seconds"]  # the training record is kept
    assert "Second-read threshold 0.5: the highest that reads at most 0% " in \
        (run_dir / "report.md").read_text()


def test_served_evaluation_repeats_the_runs_test_read(smoke_run: dict, smoke_recipe: Recipe,
                                                      processed_dir: Path) -> None:
    """`evaluate --served` on the merged model reads the run's test papers as the run did:
    the manifest's rule decides the second reads, and every probability is the run's."""
    from training.evaluate import evaluate_split

    after = json.loads((smoke_run["run_dir"] / "eval_after.json").read_text())
    served = evaluate_split(smoke_run["run_dir"] / "merged", processed_dir, "test",
                            engine="vllm", limit=smoke_recipe.eval.max_examples,
                            seed=smoke_recipe.seed, served=True)
    assert served["served"] and served["rule"] == after["rule"]
    assert [p["id"] for p in served["predictions"]] == [p["id"] for p in after["predictions"]]
    for ours, theirs in zip(served["predictions"], after["predictions"], strict=True):
        assert ours["reread"] == theirs["reread"]
        assert ours["p_cancer"] == pytest.approx(theirs["p_cancer"], abs=1e-4)
    # The same reads give the same label review (counts and the papers to review).
    for source, review in after["label_review"].items():
        ours = served["label_review"][source]
        assert ours["cancer"] == review["cancer"]
        assert ours["non_cancer"] == review["non_cancer"]
        assert [p["id"] for p in ours["to_review"]] == [p["id"] for p in review["to_review"]]
