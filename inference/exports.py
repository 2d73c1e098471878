"""Bulk results in the shapes people import back: CSV (spreadsheets, screening tools) and RIS
(reference managers: Zotero, EndNote, Rayyan), each record with its identifiers, title and
abstract and the classifier's answer added."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import rispy

from inference.spreadsheet import defuse

EXPORT_FORMATS = (".csv", ".ris")
# The answer's columns, after the input's identifiers and text.
ANSWER_COLUMNS = ["label", "cancer_probability", "probability", "abstract_missing",
                  "truncated", "reread", "model", "prompt_version", "error"]


def joined(frame: pd.DataFrame, table: pa.Table) -> pd.DataFrame:
    """One row per input record (input order): id, pmid, doi, title, abstract, the input's own
    label as `given_label`, then the answer's columns."""
    answers = table.to_pandas().drop(columns=["id", "pmid", "doi"]).set_index("key")
    inputs = frame.set_index("key")[["id", "pmid", "doi", "title", "abstract", "label"]]
    inputs = inputs.rename(columns={"label": "given_label"})
    return inputs.join(answers[ANSWER_COLUMNS], how="left").reset_index(drop=True)


def _ris_entry(row: dict) -> dict:
    entry = {"type_of_reference": "JOUR", "id": row["id"], "title": row["title"] or "",
             "abstract": row["abstract"] or ""}
    if row["doi"]:
        entry["doi"] = row["doi"]
    if row["pmid"]:
        entry["accession_number"] = row["pmid"]
    if row["error"]:
        entry["notes"] = [f"paper-classifier: not classified: {row['error']}"]
        return entry
    # A keyword screening tools can filter on, and the figures in a note.
    entry["keywords"] = [f"paper-classifier:{row['label']}"]
    entry["notes"] = [f"paper-classifier: {row['label']}, cancer probability "
                      f"{row['cancer_probability']:.4f}, model {row['model']}, prompt "
                      f"{row['prompt_version']}"]
    return entry


def export_results(frame: pd.DataFrame, table: pa.Table, path: Path) -> Path:
    """Write `path` as CSV (UTF-8) or RIS, chosen by its suffix. Raises ValueError for another
    suffix."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"{path}: export formats are {', '.join(EXPORT_FORMATS)}")
    rows = joined(frame, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        rows.map(defuse).to_csv(path, index=False)
    else:
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        path.write_text(rispy.dumps([_ris_entry(r) for r in records]))
    return path
