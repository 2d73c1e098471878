"""Bulk runs never store a transient failure: a stand-in gateway (a real HTTP server in this
process) answers some papers with 503/504 or the whole request with 503, and a resumed run
classifies again the rows an older version stored as "inference engine timed out"."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from inference.bulk import Backoff, BulkIncomplete, BulkResult, classify_file

FAST = Backoff(attempts=4, initial_s=0.01, max_s=0.05)
# What to answer for a paper on its n-th request (1-based): a status, or 200 for a result.
Script = Callable[[str, int], int]


def _result(paper_id: str) -> dict:
    return {"id": paper_id, "label": "cancer", "probability": 0.9, "cancer_probability": 0.9,
            "model": "m", "prompt_version": "p", "truncated": False, "reread": False}


class StandInGateway:
    """Answers /v1/classify_papers like the gateway, per paper as `script` says; the first
    request of all is refused whole with 503 when `first_request_503`."""

    def __init__(self, script: Script, first_request_503: bool = False) -> None:
        self.script, self.refuse_next = script, first_request_503
        self.asked: Counter[str] = Counter()
        self.papers: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.Response:
        if self.refuse_next:
            self.refuse_next = False
            return web.json_response({"detail": "no engine"}, status=503,
                                     headers={"Retry-After": "1"})
        results = []
        for index, paper in enumerate((await request.json())["papers"]):
            self.asked[paper["id"]] += 1
            self.papers[paper["id"]] = paper
            status = self.script(paper["id"], self.asked[paper["id"]])
            item = {"index": index, "id": paper["id"], "result": None, "error": None}
            if status == 200:
                item["result"] = _result(paper["id"]) | {
                    "abstract_missing": not paper["abstract"]}
            else:
                item["error"] = {"status": status, "detail": f"stand-in {status}"}
            results.append(item)
        return web.json_response({"model": "m", "prompt_version": "p", "results": results})


@contextlib.asynccontextmanager
async def served(gateway: StandInGateway) -> AsyncIterator[str]:
    """`gateway` on a free loopback port for the block; yields its URL."""
    app = web.Application()
    app.router.add_post("/v1/classify_papers", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


def classify_against(gateway: StandInGateway, source: Path, out: Path,
                     **kwargs) -> BulkResult:
    """`classify_file` of `source` against `gateway` served on a free loopback port (batches
    of 4, two in flight, FAST backoff unless `kwargs` say otherwise)."""
    async def main() -> BulkResult:
        async with served(gateway) as url:
            return await classify_file(source, out, url, **(
                {"batch_size": 4, "concurrency": 2, "backoff": FAST} | kwargs))

    return asyncio.run(main())


def _run(gateway: StandInGateway, source: Path, out: Path, **kwargs) -> pa.Table:
    return classify_against(gateway, source, out, **kwargs).table


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "papers.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "title": f"T{i}", "abstract": "A"}) + "\n"
                            for i in range(10)))
    return path


def test_transient_answers_are_retried_and_refusals_kept(source: Path, tmp_path: Path) -> None:
    def script(paper_id: str, n: int) -> int:
        if paper_id == "p3":
            return 422  # the paper itself is refused: stored, never retried
        if paper_id in {"p1", "p5"} and n == 1:
            return 503
        if paper_id in {"p2", "p8"} and n <= 2:
            return 504
        return 429 if paper_id == "p9" and n == 1 else 200

    gateway = StandInGateway(script, first_request_503=True)
    table = _run(gateway, source, tmp_path / "out.parquet").to_pylist()
    assert [r["key"] for r in table] == [f"p{i}" for i in range(10)]  # each once, input order
    refused = [r for r in table if r["error"] is not None]
    assert [(r["key"], r["error_status"]) for r in refused] == [("p3", 422)]
    assert all(r["label"] == "cancer" for r in table if r["key"] != "p3")
    assert gateway.asked["p3"] == 1 and gateway.asked["p0"] == 1
    assert gateway.asked["p1"] == gateway.asked["p5"] == gateway.asked["p9"] == 2
    assert gateway.asked["p2"] == gateway.asked["p8"] == 3


def test_failures_past_every_retry_are_left_for_the_next_run(source: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    down = StandInGateway(lambda paper_id, n: 503 if paper_id in {"p4", "p7"} else 200)
    with pytest.raises(BulkIncomplete, match="2 papers"):
        _run(down, source, out)
    assert down.asked["p4"] == FAST.attempts and not out.exists()
    stored = {k for p in out.with_name(out.name + ".parts").glob("part-*.parquet")
              for k in pq.read_table(p)["key"].to_pylist()}
    assert stored == {f"p{i}" for i in range(10)} - {"p4", "p7"}  # never a 503 row

    back = StandInGateway(lambda paper_id, n: 200)
    table = _run(back, source, out)
    assert set(back.asked) == {"p4", "p7"}  # only what was left
    assert table["key"].to_pylist() == [f"p{i}" for i in range(10)]
    assert table["error"].null_count == 10


def test_a_resumed_run_answers_timeouts_an_older_version_stored(source: Path,
                                                                tmp_path: Path) -> None:
    """An output written before `error_status` existed, with two 504 rows and one refusal."""
    out = tmp_path / "out.parquet"
    old = [{"key": f"p{i}", "id": f"p{i}", "label": "cancer", "probability": 0.9,
            "cancer_probability": 0.9, "truncated": False, "reread": False, "model": "m",
            "prompt_version": "p", "error": None} for i in range(10)]
    for i in (2, 6):
        old[i] |= {"label": None, "probability": None, "cancer_probability": None,
                   "error": "inference engine timed out"}
    old[8] |= {"label": None, "error": "[{'type': 'string_too_short', 'loc': ['title']}]"}
    pq.write_table(pa.Table.from_pylist(old), out)

    gateway = StandInGateway(lambda paper_id, n: 200)
    table = _run(gateway, source, out, reuse_output=True).to_pylist()
    assert set(gateway.asked) == {"p2", "p6"}
    assert [r["key"] for r in table] == [f"p{i}" for i in range(10)]
    assert [r["key"] for r in table if r["error"]] == ["p8"]
    assert table[2]["label"] == table[6]["label"] == "cancer"

    # Without --retry-failed a finished output is redone whole (the model may have changed).
    again = StandInGateway(lambda paper_id, n: 200)
    assert _run(again, source, out).num_rows == 10
    assert set(again.asked) == {f"p{i}" for i in range(10)}
