"""notebooks/finetuning.ipynb runs top to bottom on a smoke run (parameters injected after the
cell tagged `parameters`, as papermill does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "finetuning.ipynb"


def inject_parameters(nb, params: dict) -> None:
    import nbformat

    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "# Injected parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)


def test_notebook_runs_on_the_smoke_run(smoke_run: dict, processed_dir: Path,
                                        tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    inject_parameters(nb, {"SMOKE": True, "RUN_DIR": str(smoke_run["run_dir"]),
                           "DATA_DIR": str(processed_dir), "PROJECT_ROOT": str(ROOT)})
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "| accuracy |" in text and "fine-tuned (after)" in text
    assert "run: smoke" in text
    assert "**assignment**" in text and "fine-tuned, served (second read)" in text
    assert "## Labels to review" in text and re.search(r"### assignment: \d+ to review", text)
    assert "temperature " in text and "=== assignment:" in text
    assert "assignment: cancer = The assignment's papers" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # length histogram, confusion, reliability, loss, per source
