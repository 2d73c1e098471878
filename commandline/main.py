"""paper-classifier: classify biomedical papers as cancer / non-cancer with a fine-tuned LLM.

The stages in the order data flows; each is also `python -m STAGE` (the same command).
"""

from __future__ import annotations

import typer

from inference.cli import app as inference_app
from loadtest.cli import app as loadtest_app
from preprocessing.cli import main as preprocess
from training.cli import app as training_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.command("preprocess", help="Raw paper files -> clean, split parquet dataset + summary.json "
            "(python -m preprocessing).")(preprocess)
app.add_typer(training_app, name="training",
              help="Base model, LoRA fine-tune, evaluate, merge, report, publish "
              "(python -m training).")
app.add_typer(inference_app, name="inference",
              help="vLLM engine, gateway, local serving, bulk classification "
              "(python -m inference).")
app.add_typer(loadtest_app, name="loadtest",
              help="Locust load test with SLOs, side-by-side benchmark (python -m loadtest).")


def main() -> None:
    app()
