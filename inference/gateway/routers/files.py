"""POST /v1/classify_file: an export as people have it (PubMed XML, MEDLINE/nbib, RIS, BibTeX,
PubMed's CSV, CSV/TSV/JSONL/Parquet), uploaded as a multipart `file`, read by the same
readers as the bulk command, answered as JSON or CSV. Bounded: GATEWAY_MAX_BODY_BYTES and
GATEWAY_MAX_FILE_RECORDS; larger exports belong to `python -m inference classify`."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from inference.gateway.auth import require_api_key
from inference.gateway.deps import ServiceDep, SettingsDep
from inference.gateway.problems import CLASSIFY, COMMON, InvalidInput, problem, problem_responses
from inference.gateway.routers.classify import classify_item
from inference.gateway.schemas import BatchItem, printable
from inference.spreadsheet import defuse
from preprocessing.readers import FORMATS, InputTooLarge, Record, read_records

router = APIRouter(dependencies=[Depends(require_api_key)],
                   responses=problem_responses(*COMMON, 401))

CSV_COLUMNS = ["index", "id", "pmid", "doi", "title", "label", "cancer_probability",
               "probability", "abstract_missing", "truncated", "reread", "error_status", "error"]


class FileItem(BatchItem):
    pmid: str | None = None
    doi: str | None = None
    title: str = ""


class FileResponse(BaseModel):
    model: str
    prompt_version: str
    read: dict[str, Any] = Field(description="What was read: format, records, skipped (by "
                                 "reason), encoding, control characters removed, title-only")
    results: list[FileItem]


def _read(raw: bytes, suffix: str, fmt: str | None, max_bytes: int
          ) -> tuple[list[Record], dict]:
    """Parse an upload with the bulk readers (CPU work: run in a thread). Raises
    InputTooLarge past `max_bytes` once decompressed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(raw)
        records = read_records(path, fmt, max_bytes=max_bytes)
        return list(records), records.report.as_dict()


async def _item(service: Any, index: int, record: Record, settings: Any) -> FileItem:
    ids = {"pmid": record.pmid, "doi": record.doi, "title": record.title}
    if record.problem:
        error = problem(422, record.problem, [{"loc": [], "type": "unreadable_record",
                                               "msg": record.problem}])
        return FileItem.model_validate({"index": index, "id": record.id, "error": error} | ids)
    item = await classify_item(service, index, {"id": record.id, "title": record.title,
                                                "abstract": record.abstract}, settings)
    return FileItem.model_validate(item.model_dump() | ids)


def _csv(response: FileResponse) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for item in response.results:
        row = item.model_dump(include={"index", "id", "pmid", "doi", "title"})
        if item.result is not None:
            row |= item.result.model_dump(exclude={"id"})
        if item.error is not None:
            row |= {"error_status": item.error.status, "error": item.error.detail}
        writer.writerow({name: defuse(value) for name, value in row.items()})
    return out.getvalue()


@router.post("/v1/classify_file", response_model=FileResponse, tags=["classify"],
             responses=problem_responses(*CLASSIFY),
             openapi_extra={"responses": {"200": {"content": {"text/csv": {}}}}})
async def classify_file(
    file: UploadFile, service: ServiceDep, settings: SettingsDep,
    fmt: str | None = Query(None, alias="format", description="Read as this format instead of "
                            "recognising it: " + ", ".join(FORMATS)),
    output: Literal["json", "csv"] = Query("json", description="json, or csv (one row per "
                                           "record, ready for a spreadsheet)"),
) -> Any:
    """Classify every record of an uploaded export (`curl -F file=@export.nbib`). Each record
    is answered in file order with its identifiers (PMID, DOI); a record that cannot be read or
    classified gets its own problem document, as a batch item does."""
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput([{"loc": ["format"], "type": "enum",
                             "msg": f"format must be one of {', '.join(FORMATS)}"}])
    suffix = "".join(Path(file.filename or "").suffixes[-2:])[:16]  # .tsv.gz
    try:
        records, report = await asyncio.to_thread(_read, await file.read(), suffix, fmt,
                                                  settings.max_file_expanded_bytes)
    except InputTooLarge as err:
        raise HTTPException(413, f"the file is too large: {err}") from None
    except Exception as err:  # a file no reader accepts: the client's, not ours
        raise InvalidInput([{"loc": ["file"], "type": "unreadable_file",
                             "msg": printable(f"cannot read the file ({type(err).__name__}: "
                                              f"{err})"[:300])}]) from None
    if not records:
        raise InvalidInput([{"loc": ["file"], "type": "no_records",
                             "msg": f"no records found (read as {report['format']}; "
                             f"skipped: {report['skipped'] or 'none'}); the formats read are "
                             f"{', '.join(FORMATS)}"}])
    if len(records) > settings.max_file_records:
        raise InvalidInput([{"loc": ["file"], "type": "too_long",
                             "msg": f"{len(records)} records; at most "
                             f"{settings.max_file_records} per upload (use the bulk command)"}])
    results: list[FileItem] = []
    for start in range(0, len(records), settings.max_batch):  # bounded engine calls
        chunk = records[start:start + settings.max_batch]
        results += await asyncio.gather(*(_item(service, start + i, r, settings)
                                          for i, r in enumerate(chunk)))
    response = FileResponse(model=service.model.version,
                            prompt_version=service.model.prompt_version, read=report,
                            results=results)
    if output == "csv":
        return Response(_csv(response), media_type="text/csv")
    return response
