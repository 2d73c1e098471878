"""Locust users that classify real abstracts through the gateway.

Each user sends papers of the dataset's test split to `POST /v1/classify_paper` and, in batches,
to `POST /v1/classify_papers` (weights, batch size and the rest from LOADTEST_* variables, see
loadtest/settings.py). A response counts as a failure unless it has the contract's shape: a
200 with a valid label, probabilities in [0, 1] that agree with the label, and the id echoed.

Run it through `python -m loadtest run` (which also writes the summary and the chart), or
directly: `locust -f loadtest/locustfile.py --host http://127.0.0.1:8080`.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import threading
import time
import uuid

from locust import HttpUser, between, events
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loadtest.checks import BadResponse, check_batch, check_classification
from loadtest.settings import LoadtestSettings
from preprocessing.dataset import read_split

SETTINGS = LoadtestSettings()
PAPERS = read_split(SETTINGS.data_dir, SETTINGS.split)
if not PAPERS:
    raise RuntimeError(f"no papers in {SETTINGS.data_dir}/{SETTINGS.split}.parquet")
TRUTH = {p.id: p.label for p in PAPERS}
BATCH_NAME = f"/v1/classify_papers [batch={SETTINGS.batch_size}]"

_run = uuid.uuid4().hex[:8]
_counter = itertools.count()
_users = itertools.count()  # which route a user starts on, with route_order alternate
_agreement = {"answers": 0, "correct": 0}
_lock = threading.Lock()


def _request_body(paper) -> dict:
    """The paper as the contract wants it; with cache busting, a title no one sent before (the
    gateway's cache key is the normalised title + abstract, so a fresh id alone would not do)."""
    n = next(_counter)
    title = f"{paper.title} [{_run}-{n}]" if SETTINGS.cache_bust else paper.title
    return {"id": f"{paper.id}#{_run}-{n}", "title": title, "abstract": paper.abstract}


def _tally(ids: list[str], labels: list[str]) -> None:
    with _lock:
        _agreement["answers"] += len(labels)
        _agreement["correct"] += sum(
            TRUTH.get(i.split("#", 1)[0]) == label for i, label in zip(ids, labels, strict=True)
        )


class PaperClassifierUser(HttpUser):
    wait_time = between(SETTINGS.wait_min_s, max(SETTINGS.wait_max_s, SETTINGS.wait_min_s))

    def on_start(self) -> None:
        self._turn = next(_users)
        if SETTINGS.api_key:
            self.client.headers["Authorization"] = f"Bearer {SETTINGS.api_key}"

    def _post(self, path: str, name: str, payload: dict, check) -> None:
        with self.client.post(path, json=payload, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                if response.status_code in (429, 503):
                    self._back_off(response.headers.get("Retry-After"))
                return
            try:
                check(response.json())
            except (BadResponse, ValueError) as err:  # ValueError: not JSON at all
                response.failure(f"bad response: {err}")
            else:
                response.success()

    @staticmethod
    def _back_off(retry_after: str | None) -> None:
        """A shed request still counts as a failure; like a well-behaved client, the user then
        waits as long as the gateway asked (Retry-After) instead of hammering it."""
        try:
            seconds = float(retry_after or 1)
        except ValueError:
            seconds = 1.0
        time.sleep(min(max(seconds, 0.0), 10.0))  # gevent-patched: only this user waits

    def classify_paper(self) -> None:
        body = _request_body(random.choice(PAPERS))

        def check(answer: dict) -> None:
            _tally([body["id"]], [check_classification(answer, body["id"])])

        self._post("/v1/classify_paper", "/v1/classify_paper", body, check)

    def classify_papers(self) -> None:
        bodies = [_request_body(p) for p in random.sample(PAPERS, min(SETTINGS.batch_size,
                                                                      len(PAPERS)))]
        ids = [b["id"] for b in bodies]

        def check(answer: dict) -> None:
            _tally(ids, check_batch(answer, ids))

        self._post("/v1/classify_papers", BATCH_NAME, {"papers": bodies}, check)

    def alternate_routes(self) -> None:
        route = self.classify_paper if self._turn % 2 == 0 else self.classify_papers
        self._turn += 1
        route()

    # Locust's task table: a callable taking the user, and its weight.
    tasks = ({alternate_routes: 1} if SETTINGS.route_order == "alternate" else
             {classify_paper: SETTINGS.single_weight, classify_papers: SETTINGS.batch_weight})


@events.test_stop.add_listener
def _write_agreement(**_kwargs) -> None:
    if SETTINGS.labels_out is not None:
        with _lock:
            SETTINGS.labels_out.write_text(json.dumps(_agreement))


@events.quitting.add_listener
def _final_stats_csv(environment, **_kwargs) -> None:
    """Locust rewrites `<prefix>_stats.csv` once a second and not again at exit, so requests
    that finish in the last second or while users stop would be missing from it. Write the
    final totals once more, in Locust's own format."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        with open(f"{prefix}_stats.csv", "w", newline="") as f:
            StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(f))
